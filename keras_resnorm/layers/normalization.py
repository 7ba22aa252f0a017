"""Look up a normalization layer by its short name."""

from keras_resnorm.layers.dynamic_tanh import DynamicTanh
from keras_resnorm.layers.layer_normalization import LayerNormalization
from keras_resnorm.layers.rms_normalization import RMSNormalization
from keras_resnorm.layers.scale_normalization import ScaleNormalization

NORMALIZATIONS = {
    "layer": LayerNormalization,
    "rms": RMSNormalization,
    "scale": ScaleNormalization,
    "dyt": DynamicTanh,
}


def check_norm_name(name, argument="norm"):
    if name not in NORMALIZATIONS:
        raise ValueError(
            f"{argument} must be one of {tuple(NORMALIZATIONS)}. "
            f"Received: {argument}={name!r}"
        )
    return name


# The norms that take `fused=` (the others have no fused kernel).
FUSABLE = ("layer", "rms")


def make_norm(norm, *, name, dtype=None, norm_kwargs=None, fused=None):
    """The norm a residual layer makes: `norm` by short name with
    `norm_kwargs`; `fused` (when given) reaches the norms that take it,
    unless `norm_kwargs` sets it. The one factory of `ResidualWrapper`,
    `HyperConnection` and `TransformerEncoder`, so `fused=False` means the
    same in each."""
    kwargs = dict(norm_kwargs or {})
    if fused is not None and norm in FUSABLE:
        kwargs.setdefault("fused", fused)
    return normalization(norm, name=name, dtype=dtype, **kwargs)


def normalization(norm, /, **kwargs):
    """Create a normalization layer from its short name.

    `norm` names the layer: `"layer"` (LayerNormalization), `"rms"` (RMSNormalization),
    `"scale"` (ScaleNormalization), `"dyt"` (DynamicTanh); an unknown name
    raises a ValueError listing these. Keyword arguments (`name=` too) go to
    the layer's constructor.

    Example:

    >>> import keras_resnorm
    >>> type(keras_resnorm.normalization("rms", epsilon=1e-5)).__name__
    'RMSNormalization'
    """
    return NORMALIZATIONS[check_norm_name(norm)](**kwargs)
