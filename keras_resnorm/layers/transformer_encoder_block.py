import keras

from keras_resnorm import placements
from keras_resnorm.layers._base import (
    check_choice,
    check_fused,
    check_int,
    check_positive,
    check_rate,
)
from keras_resnorm.layers._fusion import FUSED_DEFAULT, pre_norm_chain
from keras_resnorm.layers._norm_registry import check_norm
from keras_resnorm.layers._residual_layer import residual_layer
from keras_resnorm.layers.feed_forward import FeedForward
from keras_resnorm.layers.self_attention import SelfAttention
from keras_resnorm.placements import is_pre_norm

__all__ = ["TransformerEncoderBlock"]


@keras.saving.register_keras_serializable(package="keras_resnorm")
class TransformerEncoderBlock(keras.layers.Layer):
    """One Transformer encoder block: self-attention, then feed-forward.

    Each sub-layer sits in a `ResidualWrapper`, so every placement, norm and
    branch scaling of the wrapper is available (Vaswani et al., 2017):

    ```
    x = ResidualWrapper(SelfAttention)(x)
    y = ResidualWrapper(FeedForward)(x)
    ```

    With `placement="pre"` or `"sandwich"` the block's output is not
    normalized; a stack of such blocks needs a final norm, which
    `TransformerEncoder` adds. For those placements the attention residual
    add is fused with the feed-forward input norm (`pre_norm_chain`).

    Args:
        num_heads: number of attention heads. keras-hub's
            `TransformerEncoder(intermediate_dim, num_heads)` takes these two
            in the other order: pass both by keyword when moving over.
        intermediate_dim: width of the feed-forward hidden layer.
        key_dim: size of each attention head; `None` means
            `features // num_heads`, which must be at least 1 (a ValueError
            names both numbers at build otherwise). Defaults to `None`.
        norm: norm name (`"layer"`, `"rms"`, `"scale"`, `"dyt"`), or a
            Keras norm layer or a callable that returns one, as in
            `ResidualWrapper`. Defaults to `"layer"`.
        placement: norm placement, see `ResidualWrapper`, or `"hyper"` /
            `"mhc"`: each sub-layer in a `HyperConnection` (hyper-connections
            or mHC) over `expansion` streams, the block's input and output
            then being `(batch, time, expansion, features)` streams
            (`TransformerEncoder` widens and averages them). Defaults to
            `"pre"`.
        norm_kwargs: dict of norm constructor arguments. Defaults to `None`.
        branch_scale: `None`, `"rezero"`, `"layerscale"` or a float.
            Defaults to `None`.
        layerscale_init: initial LayerScale value, `None` for the CaiT
            schedule by `depth`. Defaults to `None`.
        depth: number of blocks in the stack (DeepNorm, LayerScale).
            Defaults to `None`.
        dropout: dropout on each residual branch (Vaswani et al.'s residual
            dropout). Defaults to `0.0`.
        attention_dropout: dropout on the attention weights. Defaults to
            `0.0`.
        drop_path: stochastic depth rate of both branches. Defaults to
            `0.0`.
        activation: feed-forward activation. Defaults to `"gelu"`.
        seed: optional int seed. Defaults to `None`.
        fused: whether norms use the fused kernels, see `ResidualWrapper`.
            Defaults to `"auto"`.
        intermediate_dropout: dropout between the two feed-forward layers.
            Defaults to `0.0`.
        expansion: number of streams for the hyper placements. Defaults to
            `4`.
        use_causal_mask: whether position `i` attends only to positions
            `j <= i` (a decoder-only, causal language model), combined with
            the padding mask. Nothing else in the block mixes positions, so
            the outputs up to `i` do not depend on the inputs after it.
            Defaults to `False`.
        block_index: the block's position in its stack (the hyper
            placements' initial read weights depend on it). Defaults to `0`.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: `(batch, time, features)` tensor.
        mask: optional `(batch, time)` padding mask.
        training: whether dropout is active.

    Input shape:
        `(batch, time, features)`.

    Output shape:
        `(batch, time, features)`.

    Example:

    >>> import numpy as np
    >>> from keras_resnorm import TransformerEncoderBlock
    >>> block = TransformerEncoderBlock(num_heads=2, intermediate_dim=32,
    ...                                 norm="rms", placement="sandwich")
    >>> tuple(block(np.zeros((2, 7, 16), "float32")).shape)
    (2, 7, 16)

    Reference:
        Vaswani et al., "Attention Is All You Need", NeurIPS 2017,
        https://arxiv.org/abs/1706.03762
    """

    def __init__(
        self,
        num_heads,
        intermediate_dim,
        key_dim=None,
        norm="layer",
        placement="pre",
        norm_kwargs=None,
        branch_scale=None,
        layerscale_init=None,
        depth=None,
        dropout=0.0,
        attention_dropout=0.0,
        drop_path=0.0,
        activation="gelu",
        seed=None,
        fused=FUSED_DEFAULT,
        intermediate_dropout=0.0,
        expansion=4,
        block_index=0,
        use_causal_mask=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        placement = placements.canonical(placement)
        self.fused = check_fused(fused)
        self.expansion = check_positive("expansion", expansion, integer=True)
        self.block_index = check_int("block_index", block_index, 0)
        self.intermediate_dropout = check_rate("intermediate_dropout",
                                               intermediate_dropout)
        self.num_heads = check_positive("num_heads", num_heads, integer=True)
        self.intermediate_dim = check_positive(
            "intermediate_dim", intermediate_dim, integer=True)
        self.key_dim = key_dim
        norm = check_norm(norm, norm_kwargs)
        self.norm = norm
        self.placement = placement
        self.norm_kwargs = norm_kwargs
        self.branch_scale = branch_scale
        self.layerscale_init = layerscale_init
        self.depth = depth
        self.dropout = check_rate("dropout", dropout)
        self.attention_dropout = check_rate(
            "attention_dropout", attention_dropout
        )
        self.drop_path = check_rate("drop_path", drop_path)
        self.activation = keras.activations.serialize(
            keras.activations.get(activation)
        )
        self.seed = seed
        self.use_causal_mask = check_choice("use_causal_mask",
                                            use_causal_mask, (False, True))
        self.supports_masking = True
        # Each sub-layer is made right before its wrapper: layers with an
        # unseeded dropout draw their seed when made, so this order keeps
        # the random streams of the blocks as they always were.
        def attention():
            return SelfAttention(
                num_heads, key_dim=key_dim, dropout=self.attention_dropout,
                use_causal_mask=self.use_causal_mask,
                dtype=self.dtype_policy, name="self_attention",
            )

        def feed_forward():
            return FeedForward(
                intermediate_dim, activation=activation,
                dropout=self.intermediate_dropout, dtype=self.dtype_policy,
                name="feed_forward",
            )

        common = dict(
            placement=placement, norm=norm, norm_kwargs=norm_kwargs,
            branch_scale=branch_scale, layerscale_init=layerscale_init,
            depth=depth, dropout=self.dropout, drop_path=self.drop_path,
            seed=seed, fused=fused, expansion=self.expansion,
            dtype=self.dtype_policy)
        self.attention_block = residual_layer(
            attention(), layer_index=2 * self.block_index,
            name="attention_residual", **common)
        self.feed_forward_block = residual_layer(
            feed_forward(), layer_index=2 * self.block_index + 1,
            name="feed_forward_residual", **common)

    def build(self, input_shape):
        self.attention_block.build(input_shape)
        self.feed_forward_block.build(input_shape)

    @property
    def residual_wrappers(self):
        """The block's two residual steps (`ResidualWrapper`s, or
        `HyperConnection`s for the hyper placements), in call order."""
        return (self.attention_block, self.feed_forward_block)

    def call(self, inputs, mask=None, training=None):
        if is_pre_norm(self.placement):
            return pre_norm_chain(list(self.residual_wrappers), None, inputs,
                                  mask, training, self.fused)
        x = self.attention_block(inputs, mask=mask, training=training)
        return self.feed_forward_block(x, mask=mask, training=training)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "intermediate_dim": self.intermediate_dim,
                "key_dim": self.key_dim,
                "norm": self.norm,
                "placement": self.placement,
                "norm_kwargs": self.norm_kwargs,
                "branch_scale": self.branch_scale,
                "layerscale_init": self.layerscale_init,
                "depth": self.depth,
                "dropout": self.dropout,
                "attention_dropout": self.attention_dropout,
                "drop_path": self.drop_path,
                "activation": self.activation,
                "seed": self.seed,
                "fused": self.fused,
                "intermediate_dropout": self.intermediate_dropout,
                "expansion": self.expansion,
                "block_index": self.block_index,
                "use_causal_mask": self.use_causal_mask,
            }
        )
        return config
