"""`residual_layer`: a layer in the residual layer its placement calls for
(the one factory of `TransformerEncoderBlock` and the NER model's blocks)."""

from keras_resnorm import placements
from keras_resnorm.layers.hyper_connection import HyperConnection
from keras_resnorm.layers.residual_wrapper import ResidualWrapper


def residual_layer(layer, placement="pre", *, layer_index=0, expansion=4,
                   branch_scale=None, drop_path=0.0, layerscale_init=None,
                   depth=None, projection=False, **kwargs):
    """`layer` in the residual layer its placement calls for.

    A `HyperConnection` for the placements that widen the stream (the
    `layer_index`-th of the stack, over `expansion` streams), otherwise a
    `ResidualWrapper` (without a projection unless `projection` says).
    Other keyword arguments (`norm`, `norm_kwargs`, `dropout`, `seed`,
    `fused`, `dtype`, `name`) go to either. The one factory of
    `TransformerEncoderBlock` and the NER model's recurrent blocks.
    """
    placement = placements.canonical(placement)
    if placements.widens_stream(placement):
        if branch_scale is not None or drop_path > 0:
            raise ValueError(
                f"placement={placement!r} takes no branch_scale or "
                f"drop_path. Received: branch_scale={branch_scale!r}, "
                f"drop_path={drop_path}")
        return HyperConnection(
            layer, expansion=expansion, layer_index=layer_index,
            manifold=placement == "mhc", **kwargs)
    return ResidualWrapper(
        layer, placement=placement, branch_scale=branch_scale,
        layerscale_init=layerscale_init, depth=depth, drop_path=drop_path,
        projection=projection, **kwargs)
