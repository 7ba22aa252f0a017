import math

import keras
from keras import ops

from keras_resnorm import placements
from keras_resnorm._checks import check_fused
from keras_resnorm.layers._base import (
    check_floating_input,
    check_int,
    check_number,
    check_positive,
    check_rate,
)
from keras_resnorm.layers._residual_core import (
    ResidualRecording,
    call_wrapped,
    check_wrapped,
    deserialize_wrapped,
    serialize_wrapped,
    wrapped_arguments,
)
from keras_resnorm.layers._norm_registry import check_norm, make_norm

__all__ = [
    "HYPER_PLACEMENTS",
    "HyperConnection",
    "collapse_stream",
    "expand_stream",
    "sinkhorn_knopp",
]

# TransformerEncoder placements that widen the stream (see HyperConnection).
HYPER_PLACEMENTS = placements.STREAM


def sinkhorn_knopp(logits, iterations=20):
    """Project `exp(logits)` (`[..., n, n]`) onto doubly stochastic matrices.

    Sinkhorn & Knopp's alternating row and column normalization of
    `P = exp(L)`, in float32, as the mHC paper computes it; each row of `L`
    is first shifted by its maximum (which leaves the result unchanged), so
    that large logits cannot overflow:

    ```
    P <- exp(L - max_j L_ij)
    P <- P / sum_j P_ij;  P <- P / sum_i P_ij          (repeat)
    ```
    After the last step every column sums to 1; rows sum to 1 as far as the
    iterations have converged, which is fast for logits of moderate spread
    (as mHC starts, and in our tests) and slow for nearly permutation-like
    ones; raise `iterations` for those. A column whose every entry is more
    than about 87 below its row's maximum underflows to zero in float32 and
    stays zero (no NaN), where the log-domain form, at about four times the
    ops, would not.

    Example:

    >>> import numpy as np
    >>> from keras_resnorm.layers.hyper_connection import sinkhorn_knopp
    >>> m = np.asarray(sinkhorn_knopp(np.array([[2.0, 0.0], [0.0, 1.0]])))
    >>> np.round(m.sum(axis=0), 5).tolist(), np.round(m.sum(axis=1), 5).tolist()
    ([1.0, 1.0], [1.0, 1.0])
    """
    logits = ops.cast(logits, "float32")
    m = ops.exp(logits - ops.stop_gradient(
        ops.max(logits, axis=-1, keepdims=True)))
    # The exp-domain form costs 4 ops an iteration (the log-domain one
    # about 16), and these iterations are a large part of an mHC step.
    tiny = 1e-30

    def iteration(m):
        m = m / ops.maximum(ops.sum(m, axis=-1, keepdims=True), tiny)
        return m / ops.maximum(ops.sum(m, axis=-2, keepdims=True), tiny)

    # A loop, not `iterations` copies: unrolled, XLA's optimized graph of
    # the gradient grew with the square of the iterations (21,233 HLO
    # lines and 2.8 s to compile on the CPU at 20; 77,553 and 13.7 s at
    # 40), and on an H200 an mHC step's compile had not finished after
    # several minutes.
    if keras.backend.backend() == "tensorflow":
        # XLA differentiates a TensorFlow while loop only when it is
        # told its trip count (`ops.fori_loop` does not say it).
        import tensorflow as tf

        return tf.while_loop(
            lambda i, m: i < iterations,
            lambda i, m: (i + 1, iteration(m)), (0, m),
            maximum_iterations=iterations)[1]
    return ops.fori_loop(0, iterations, lambda _, m: iteration(m), m)


def expand_stream(x, expansion):
    """`[..., d]` -> `[..., n, d]`: the residual stream copied `n` times."""
    return ops.repeat(ops.expand_dims(x, -2), expansion, axis=-2)


def collapse_stream(h):
    """`[..., n, d]` -> `[..., d]`: the mean of the `n` streams.

    Zhu et al. sum the streams before the final norm; the mean is the same
    up to the factor `n`, which a final LayerNorm or RMSNorm removes, and
    makes a hyper-connected stack at initialization equal, to the last bit,
    the pre-norm stack it starts as.
    """
    return ops.mean(h, axis=-2)


@keras.saving.register_keras_serializable(package="keras_resnorm")
class HyperConnection(ResidualRecording, keras.layers.Layer):
    """Hyper-connections (Zhu et al. 2024) and mHC (Xie et al. 2025).

    The residual stream is widened to `n = expansion` copies `H` (shape
    `[..., n, d]`). For a branch `F` with its input norm `N`, one step reads
    the branch input from the streams with weights `a` (width
    connections), writes the branch output back to every stream with
    weights `b` (depth connections), and mixes the streams with `M`
    (`M[i, j]` is the weight of stream `i` in the new stream `j`):

    ```
    h      = sum_i a_i H_i
    H'_j   = b_j F(N(h)) + sum_i M_ij H_i
    ```

    Hyper-connections (`manifold=False`), static form: `a`, `b`, `M` are
    learned, initialized to `a = e_(k mod n)` (`k = layer_index`), `b = 1`,
    `M = I`, so that the stack starts as a pre-norm residual network. The
    dynamic form (`dynamic=True`, the paper's DHC) adds input-dependent
    terms from the normalized streams `Hn = LayerNorm(H)` (`n x d`), with
    the projections `w_a`, `w_b` (`d`) and `W_M` (`d x n`) initialized to
    zero and the scales `s_a`, `s_b` to `dynamic_scale_init`:

    ```
    a = a_static + s_a * tanh(Hn w_a)        (n)
    M = M_static + s_a * tanh(Hn W_M)        (n x n, row i from stream i)
    b = b_static + s_b * tanh(Hn w_b)        (n)
    ```

    Manifold-constrained hyper-connections (`manifold=True`): from the
    RMS-normalized flattened stream `x = RMSNorm(vec(H))` (`n * d`),

    ```
    a = sigmoid(alpha_a * x phi_a + c_a)                (non-negative)
    b = 2 * sigmoid(alpha_b * x phi_b + c_b)            (non-negative)
    M = SinkhornKnopp(alpha_M * mat(x phi_M) + C_M)     (doubly stochastic)
    ```
    with `phi` initialized to zero, `alpha` to `dynamic_scale_init`,
    `c_b = 0`, `C_M = 0` (so `b = 1`, `M = 1/n` everywhere) and `c_a` so
    that `a` is 1 - 0.01 (n - 1) for stream `k mod n` and 0.01 for each
    other: `a` sums to 1, so on identical streams, as the stack starts, this
    too is a pre-norm residual network, and the uneven reads let the
    streams grow apart in training (with uniform reads they never would).
    `dynamic=False` keeps the biases only. Rows and columns of `M` sum to
    1, so mixing can neither grow nor shrink the stream. Two consequences
    in a stack that copies its input into the streams and averages them at
    the end (`TransformerEncoder`): the first step's `M` gets no gradient
    (any doubly stochastic `M` maps identical streams to themselves), nor
    does the last step's (any doubly stochastic `M` keeps the mean).

    All of `a`, `b`, `M`, their weights and the mixing are float32 under
    every dtype policy; the output is cast to the compute dtype. Masks reach
    `F` (when its `call` takes `mask`) and pass through unchanged.

    Args:
        layer: the branch `F`, a `keras.layers.Layer` that keeps the
            feature size `d`.
        expansion: `n`, the number of streams. Defaults to `4`.
        layer_index: `k`, this step's position in the stack (sets which
            stream the static form reads at first). Defaults to `0`.
        dynamic: whether the weights depend on the input. Defaults to
            `True`.
        manifold: `False` for hyper-connections, `True` for mHC. Defaults
            to `False`.
        norm: the branch input norm `N`, one of `"layer"`, `"rms"`,
            `"scale"`, `"dyt"`; or a Keras norm layer (copied for
            each norm the wrapper makes, under the wrapper's dtype policy;
            its own settings apply, `fused` and `norm_kwargs` do not), or a
            callable that returns one. Defaults to `"layer"`.
        norm_kwargs: dict of keyword arguments for `N`. Defaults to `None`.
        sinkhorn_iterations: Sinkhorn-Knopp iterations for mHC. Defaults to
            `20`, as in the mHC paper.
        dynamic_scale_init: initial `s` / `alpha`. Defaults to `0.01`.
        dropout: dropout on the branch output `F(N(h))`. Defaults to `0.0`.
        seed: optional int seed for the dropout. Defaults to `None`.
        fused: whether the branch and stream norms use the fused kernels
            (`"auto"`, `True`, `False`), as in `ResidualWrapper`. Defaults
            to `"auto"`.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: floating-point tensor `[..., n, d]` (see `expand_stream`).
        training: passed to `F` when it takes it.
        mask: passed to `F` when it takes it; returned unchanged.

    Input shape:
        `(batch, ..., expansion, d)`.

    Output shape:
        Same as the input.

    Example:

    >>> import numpy as np, keras
    >>> from keras_resnorm import HyperConnection
    >>> from keras_resnorm.layers.hyper_connection import expand_stream
    >>> hc = HyperConnection(keras.layers.Dense(16), expansion=4)
    >>> tuple(hc(expand_stream(np.zeros((2, 5, 16), "float32"), 4)).shape)
    (2, 5, 4, 16)

    Reference:
        Zhu et al., "Hyper-Connections", ICLR 2025,
        https://arxiv.org/abs/2409.19606; Xie et al. (DeepSeek-AI),
        "mHC: Manifold-Constrained Hyper-Connections", 2025,
        https://arxiv.org/abs/2512.24880
    """

    def __init__(self, layer, expansion=4, layer_index=0, dynamic=True,
                 manifold=False, norm="layer", norm_kwargs=None,
                 sinkhorn_iterations=20, dynamic_scale_init=0.01,
                 dropout=0.0, seed=None, fused="auto", **kwargs):
        super().__init__(**kwargs)
        check_wrapped(layer)
        self.fused = check_fused(fused)
        if norm_kwargs is not None and not isinstance(norm_kwargs, dict):
            raise TypeError(
                f"norm_kwargs must be a dict. Received: norm_kwargs={norm_kwargs!r}")
        self.layer = layer
        self.expansion = check_positive("expansion", expansion, integer=True)
        self.layer_index = check_int("layer_index", layer_index, 0)
        self.dynamic = bool(dynamic)
        self.manifold = bool(manifold)
        self.norm = check_norm(norm, norm_kwargs)
        self.norm_kwargs = dict(norm_kwargs or {})
        self.sinkhorn_iterations = check_positive(
            "sinkhorn_iterations", sinkhorn_iterations, integer=True)
        self.dynamic_scale_init = check_number("dynamic_scale_init",
                                               dynamic_scale_init)
        self.dropout = check_rate("dropout", dropout)
        self.seed = seed
        self.dropout_layer = None
        if self.dropout > 0:
            self.dropout_layer = keras.layers.Dropout(
                self.dropout, seed=seed, dtype=self.dtype_policy,
                name="branch_dropout")
        self.norm_layer = make_norm(
            self.norm, name="norm", dtype=self.dtype_policy,
            norm_kwargs=self.norm_kwargs, fused=self.fused)
        self.stream_norm = None
        if self.dynamic:
            # HC normalizes each stream; mHC the flattened n * d vector.
            self.stream_norm = make_norm(
                "rms" if self.manifold else "layer", name="stream_norm",
                dtype=self.dtype_policy, fused=self.fused)
        self._takes = wrapped_arguments(layer)
        self.supports_masking = True

    # ------------------------------------------------------------------ build
    def build(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) < 3 or input_shape[-2] != self.expansion \
                or input_shape[-1] is None:
            raise ValueError(
                f"HyperConnection expects inputs [..., expansion, d] with "
                f"expansion={self.expansion} and d known (see "
                f"expand_stream). Received: input_shape={input_shape}")
        n, d = self.expansion, input_shape[-1]
        branch_shape = input_shape[:-2] + (d,)
        if not self.layer.built:
            self.layer.build(branch_shape)
        out = tuple(self.layer.compute_output_shape(branch_shape))
        if out[-1] != d:
            raise ValueError(
                f"The wrapped layer must keep the feature size {d}; it "
                f"returns {out[-1]}. Received: layer={self.layer.name}")
        self.norm_layer.build(branch_shape)
        f32 = dict(dtype="float32", autocast=False)
        zeros = "zeros"
        if self.manifold:
            # a = sigmoid(c_a) starts at 1 - (n - 1) * 0.01 for stream
            # k mod n and 0.01 for the others: it sums to 1 (a pre-norm
            # step on identical streams) and, like HC's one-hot read, lets
            # the streams grow apart (uniform weights never would).
            eps = 0.01
            main = 1.0 - eps * (n - 1)
            logits = [_logit(eps)] * n
            logits[self.layer_index % n] = _logit(main) if n > 1 else 20.0
            self.read_bias = self.add_weight(
                name="read_bias", shape=(n,),
                initializer=keras.initializers.Constant(logits), **f32)
            self.write_bias = self.add_weight(
                name="write_bias", shape=(n,), initializer=zeros, **f32)
            self.mix_bias = self.add_weight(
                name="mix_bias", shape=(n, n), initializer=zeros, **f32)
        else:
            read = [0.0] * n
            read[self.layer_index % n] = 1.0
            self.read_bias = self.add_weight(
                name="read_bias", shape=(n,),
                initializer=keras.initializers.Constant(read), **f32)
            self.write_bias = self.add_weight(
                name="write_bias", shape=(n,), initializer="ones", **f32)
            self.mix_bias = self.add_weight(
                name="mix_bias", shape=(n, n), initializer="identity", **f32)
        if self.dynamic:
            # HC projects each normalized stream (d) to one read weight, one
            # write weight and a row of M; mHC projects the flattened
            # stream (n * d) to all of a, b and M at once.
            width = n * d if self.manifold else d
            per = 1 if not self.manifold else n
            self.stream_norm.build(input_shape[:-2] + (width,)
                                   if self.manifold else input_shape)
            self.read_proj = self.add_weight(
                name="read_proj", shape=(width, per), initializer=zeros,
                **f32)
            self.write_proj = self.add_weight(
                name="write_proj", shape=(width, per), initializer=zeros,
                **f32)
            self.mix_proj = self.add_weight(
                name="mix_proj", shape=(width, n * per), initializer=zeros,
                **f32)
            scale = keras.initializers.Constant(self.dynamic_scale_init)
            # HC shares s_a between a and M (Zhu et al.); mHC has one alpha
            # each for a, b and M (Xie et al.).
            names = ("read_scale", "write_scale") + (
                ("mix_scale",) if self.manifold else ())
            for name in names:
                setattr(self, name, self.add_weight(
                    name=name, shape=(), initializer=scale, **f32))

    # ------------------------------------------------------------------- call
    def weights_for(self, inputs):
        """`(a, b, M)` for `inputs` `[..., n, d]`, in float32: read and
        write `[..., n]`, mix `[..., n, n]` (`M[..., i, j]`: the weight of
        stream `i` in stream `j`); without `dynamic`, `[n]` and `[n, n]`."""
        n = self.expansion
        read, write, mix = self.read_bias, self.write_bias, self.mix_bias
        if self.dynamic and self.manifold:
            batch_shape = tuple(ops.shape(inputs)[:-2])
            flat = ops.reshape(inputs, batch_shape + (-1,))
            x = ops.cast(self.stream_norm(flat), "float32")
            read = self.read_scale * ops.matmul(x, self.read_proj) + read
            write = self.write_scale * ops.matmul(x, self.write_proj) + write
            mix = self.mix_scale * ops.reshape(
                ops.matmul(x, self.mix_proj), batch_shape + (n, n)) + mix
        elif self.dynamic:
            hn = ops.cast(self.stream_norm(inputs), "float32")  # [..., n, d]
            s_a, s_b = self.read_scale, self.write_scale
            read = s_a * ops.tanh(ops.matmul(hn, self.read_proj))[..., 0] \
                + read
            write = s_b * ops.tanh(ops.matmul(hn, self.write_proj))[..., 0] \
                + write
            mix = s_a * ops.tanh(ops.matmul(hn, self.mix_proj)) + mix
        if self.manifold:
            read = ops.sigmoid(read)
            write = 2.0 * ops.sigmoid(write)
            mix = sinkhorn_knopp(mix, self.sinkhorn_iterations)
        return read, write, mix

    def call(self, inputs, training=None, mask=None):
        check_floating_input(self, inputs)
        streams = ops.cast(inputs, "float32")
        read, write, mix = self.weights_for(inputs)
        batch = "..." if self.dynamic else ""
        # The combined stream the branch reads, normalized for the layer.
        h = ops.einsum(f"{batch}i,...id->...d", read, streams)
        y = call_wrapped(self.layer, self._takes,
                         self.norm_layer(ops.cast(h, self.compute_dtype)),
                         training, mask)
        if self.dropout_layer is not None:
            y = self.dropout_layer(y, training=training)
        self._record(h, y)
        y = ops.cast(y, "float32")
        # sum_i M_ij H_i, with M broadcast over the batch when static.
        mixed = ops.einsum(f"{batch}ij,...id->...jd", mix, streams)
        out = mixed + ops.expand_dims(write, -1) * ops.expand_dims(y, -2)
        return ops.cast(out, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({
            "layer": serialize_wrapped(self.layer),
            "expansion": self.expansion,
            "layer_index": self.layer_index,
            "dynamic": self.dynamic,
            "manifold": self.manifold,
            "norm": self.norm,
            "norm_kwargs": self.norm_kwargs,
            "sinkhorn_iterations": self.sinkhorn_iterations,
            "dynamic_scale_init": self.dynamic_scale_init,
            "dropout": self.dropout,
            "seed": self.seed,
            "fused": self.fused,
        })
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**deserialize_wrapped(config))


def _logit(p):
    return math.log(p) - math.log(1.0 - p)
