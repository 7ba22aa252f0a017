import keras
import numpy as np

from keras_resnorm import placements
from keras_resnorm.layers._base import check_choice, check_positive, check_rate
from keras_resnorm.layers._fusion import FUSED_DEFAULT, pre_norm_chain
from keras_resnorm.layers._norm_registry import check_norm, make_norm
from keras_resnorm.layers._scan import ScannedStack, Untracked
from keras_resnorm.layers.hyper_connection import (
    collapse_stream,
    expand_stream,
)
from keras_resnorm.layers.transformer_encoder_block import (
    TransformerEncoderBlock,
)
from keras_resnorm.placements import is_pre_norm

__all__ = ["TransformerEncoder"]

_FINAL_NORM = ("auto", True, False)


@keras.saving.register_keras_serializable(package="keras_resnorm")
class TransformerEncoder(keras.layers.Layer):
    """A stack of `num_layers` TransformerEncoderBlocks, with a final norm.

    Pre-norm and sandwich stacks leave the residual stream unnormalized, so
    the stack ends with one more norm (Xiong et al., 2020); post-norm and
    DeepNorm blocks already end in one. `depth` is set to `num_layers`, so
    DeepNorm constants and LayerScale initial values follow the stack's
    depth. Stochastic depth grows linearly from 0 at the first block to
    `drop_path` at the last (Huang et al., 2016).

    ```
    for i in 1..num_layers:  x = Block_i(x)
    y = N_final(x)           (final_norm=True, or "auto" with pre/sandwich)
    ```

    With `scan=True` the blocks' weights are stacked along a leading depth
    axis (one variable of shape `(num_layers, ...)` per block weight) and
    one block body runs in a loop (`tf.while_loop`, or `keras.ops.scan` on
    other backends), so `tf.function` and XLA trace and compile one block
    whatever the depth, as Flax's `nn.scan` does. The outputs and gradients
    are the unrolled stack's for the same weights;
    `get_unrolled_weights` / `set_unrolled_weights` convert weights both
    ways. Every placement scans. Dropout and drop path draw different
    masks at every depth from the encoder's own seed generator. What a
    scanned stack gives up: the add between two blocks is not fused with
    the next block's input norm (each block still fuses its own), and
    `keras_resnorm.callbacks.ResidualStreamDiagnostics` sees no wrappers
    inside it.

    Args:
        num_layers: number of blocks.
        num_heads: attention heads per block (keras-hub's encoder takes
            `intermediate_dim` first: pass both by keyword when moving over).
        intermediate_dim: feed-forward width.
        final_norm: `"auto"`, `True` or `False`. Defaults to `"auto"`.
        drop_path: stochastic depth rate of the last block. Defaults to
            `0.0`.
        scan: whether to run one block body in a loop over stacked
            weights instead of unrolling the blocks. Defaults to `False`.
        key_dim, norm, placement, norm_kwargs, branch_scale,
            layerscale_init, dropout, attention_dropout, activation, seed,
            fused, intermediate_dropout, expansion, use_causal_mask: every
            block's, as in `TransformerEncoderBlock` and with its defaults
            (`key_dim=None`, `norm="layer"`, `placement="pre"`,
            `activation="gelu"`, `fused="auto"`, `expansion=4`, no scale,
            no dropout, no causal mask). Block `i` takes `seed + i`. With
            `use_causal_mask=True` the stack is a decoder-only (causal)
            Transformer, scanned or not, with every placement.
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
    >>> from keras_resnorm import TransformerEncoder
    >>> encoder = TransformerEncoder(num_layers=2, num_heads=2,
    ...                              intermediate_dim=32, placement="pre")
    >>> tuple(encoder(np.zeros((2, 7, 16), "float32")).shape)
    (2, 7, 16)
    >>> scanned = TransformerEncoder(num_layers=2, num_heads=2,
    ...                              intermediate_dim=32, scan=True)
    >>> _ = scanned(np.zeros((2, 7, 16), "float32"))
    >>> scanned.set_unrolled_weights(encoder.get_weights())
    >>> x = np.random.default_rng(0).normal(size=(2, 7, 16))
    >>> bool(np.allclose(scanned(x), encoder(x), atol=1e-5))
    True

    Reference:
        Xiong et al., "On Layer Normalization in the Transformer
        Architecture", ICML 2020, https://arxiv.org/abs/2002.04745
    """

    # The arguments every block takes as they are given here.
    _BLOCK_ARGS = (
        "key_dim", "norm", "placement", "norm_kwargs", "branch_scale",
        "layerscale_init", "dropout", "attention_dropout", "activation",
        "seed", "fused", "intermediate_dropout", "expansion",
        "use_causal_mask",
    )

    def __init__(self, num_layers, num_heads, intermediate_dim,
                 final_norm="auto", drop_path=0.0, scan=False, key_dim=None,
                 norm="layer", placement="pre", norm_kwargs=None,
                 branch_scale=None, layerscale_init=None, dropout=0.0,
                 attention_dropout=0.0, activation="gelu", seed=None,
                 fused=FUSED_DEFAULT, intermediate_dropout=0.0, expansion=4,
                 use_causal_mask=False, **kwargs):
        super().__init__(**kwargs)
        given = locals()
        block_kwargs = {k: given[k] for k in self._BLOCK_ARGS}
        block_kwargs["norm"] = check_norm(norm, norm_kwargs)
        block_kwargs["placement"] = placements.canonical(placement)
        block_kwargs["activation"] = keras.activations.serialize(
            keras.activations.get(activation))
        self.num_layers = check_positive("num_layers", num_layers,
                                         integer=True)
        self.num_heads = check_positive("num_heads", num_heads, integer=True)
        self.intermediate_dim = check_positive(
            "intermediate_dim", intermediate_dim, integer=True)
        self.final_norm = check_choice("final_norm", final_norm, _FINAL_NORM)
        self.drop_path = check_rate("drop_path", drop_path)
        self.scan = check_choice("scan", scan, (False, True))
        self.block_kwargs = block_kwargs
        self.supports_masking = True
        norm, placement = block_kwargs["norm"], block_kwargs["placement"]
        per_block = {k: v for k, v in block_kwargs.items() if k != "seed"}
        blocks = []
        for i in range(num_layers):
            rate = self.drop_path * i / max(1, num_layers - 1)
            blocks.append(
                TransformerEncoderBlock(
                    num_heads, intermediate_dim, depth=num_layers,
                    drop_path=rate,
                    seed=None if seed is None else seed + i,
                    block_index=i,
                    dtype=self.dtype_policy, name=f"block_{i}",
                    **per_block,
                )
            )
        if scan:
            # The blocks only give the stacked weights their initial values
            # (in `build`); they are kept out of Keras's tracking.
            self._scan_blocks = Untracked(blocks)
            self._stack = None
            self.seed_generator = None
            rates = (self.drop_path, dropout, attention_dropout,
                     intermediate_dropout)
            if any(rate > 0 for rate in rates):
                self.seed_generator = keras.random.SeedGenerator(seed)
        else:
            self.blocks = blocks
        self._hyper = placements.widens_stream(placement)
        wants_final = final_norm is True or (
            final_norm == "auto" and placements.needs_final_norm(placement)
        )
        self.final_norm_layer = None
        if wants_final:
            self.final_norm_layer = make_norm(
                norm, name="final_norm", dtype=self.dtype_policy,
                norm_kwargs=norm_kwargs, fused=fused)

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        block_shape = input_shape
        if self._hyper:
            block_shape = input_shape[:-1] + (
                self.block_kwargs["expansion"], input_shape[-1])
        blocks = self._scan_blocks.layer if self.scan else self.blocks
        for block in blocks:
            block.build(block_shape)
        if self.scan:
            self._stack = ScannedStack(self, blocks, self.seed_generator,
                                       self.drop_path)
            self._scan_blocks = None
        if self.final_norm_layer is not None:
            self.final_norm_layer.build(input_shape)

    def _run_blocks(self, x, mask, training):
        if self.scan:
            return self._stack(x, mask=mask, training=training)
        for block in self.blocks:
            x = block(x, mask=mask, training=training)
        return x

    def call(self, inputs, mask=None, training=None):
        if self._hyper:
            # n copies of the stream through every block, then their mean.
            x = expand_stream(inputs, self.block_kwargs["expansion"])
            x = collapse_stream(self._run_blocks(x, mask, training))
        elif is_pre_norm(self.block_kwargs["placement"]) and not self.scan:
            # One chain over every wrapper of every block: each residual add
            # is fused with the next input norm (or the final norm). A
            # scanned stack fuses within each block only.
            wrappers = [w for b in self.blocks for w in b.residual_wrappers]
            return pre_norm_chain(wrappers, self.final_norm_layer, inputs,
                                  mask, training, self.block_kwargs["fused"])
        else:
            x = self._run_blocks(inputs, mask, training)
        if self.final_norm_layer is not None:
            x = self.final_norm_layer(x)
        return x

    def get_unrolled_weights(self):
        """The weights as an unrolled encoder's `get_weights()` lists them
        (block by block, then the final norm), for either `scan` setting."""
        if not self.scan:
            return self.get_weights()
        self._check_built("get_unrolled_weights")
        per_block = self._stack.unrolled_values()
        return [v for block in per_block for v in block] + [
            np.asarray(w) for w in self._final_weights()]

    def set_unrolled_weights(self, weights):
        """Set the weights from an unrolled encoder's `get_weights()` (or
        `get_unrolled_weights()`), for either `scan` setting: a trained
        unrolled encoder's weights load into a scanned one of the same
        config, and back."""
        if not self.scan:
            return self.set_weights(weights)
        self._check_built("set_unrolled_weights")
        weights = list(weights)
        per = len(self._stack.stacked)
        expected = self.num_layers * per + len(self._final_weights())
        if len(weights) != expected:
            raise ValueError(
                f"Expected {expected} arrays ({self.num_layers} blocks of "
                f"{per}, then the final norm's). Received: {len(weights)} "
                "arrays")
        self._stack.assign_unrolled([
            weights[i * per:(i + 1) * per] for i in range(self.num_layers)])
        if self.final_norm_layer is not None:
            self.final_norm_layer.set_weights(weights[self.num_layers * per:])

    def _final_weights(self):
        if self.final_norm_layer is None:
            return []
        return self.final_norm_layer.weights

    def _check_built(self, what):
        if not self.built:
            raise ValueError(f"{what} needs a built encoder; call it on an "
                             f"input first. Received: encoder '{self.name}'"
                             " (not built)")

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_layers": self.num_layers,
                "num_heads": self.num_heads,
                "intermediate_dim": self.intermediate_dim,
                "final_norm": self.final_norm,
                "drop_path": self.drop_path,
                "scan": self.scan,
                **self.block_kwargs,
            }
        )
        return config
