"""Functional normalization kernels shared by every keras_resnorm layer.

Each kernel computes its statistics in float32 whatever the input dtype,
and returns its output in the input dtype (or `dtype=` when given). The
layers in `keras_resnorm.layers` are thin wrappers that own the weights.

Formulas (statistics over the normalized axes, `d` elements per row):

```
layer_norm(x)  = (x - mean(x)) / sqrt(var(x) + eps) * gamma + beta
rms_norm(x)    = x / sqrt(mean(x ** 2) + eps) * gamma
scale_norm(x)  = g * x / max(||x||_2, eps)
dynamic_tanh(x) = gamma * tanh(alpha * x) + beta
```
"""

import keras
from keras import ops

from keras_resnorm._checks import check_fused

__all__ = [
    "layer_norm",
    "rms_norm",
    "std_scale",
    "scale_norm",
    "dynamic_tanh",
    "fused_add_norm",
    "can_fuse",
]


def _as_axes(axis, ndim):
    axes = [axis] if isinstance(axis, int) else list(axis)
    return sorted(a % ndim for a in axes)


def _broadcast(weight, axes, ndim, shape):
    """Reshape a weight of shape `[shape[a] for a in axes]` to broadcast."""
    if weight is None:
        return None
    weight = ops.cast(weight, "float32")
    if len(weight.shape) == 0 or axes == [ndim - 1]:
        return weight
    target = [1] * ndim
    for a in axes:
        target[a] = shape[a]
    return ops.reshape(weight, target)


def _scale(gamma, unit_offset):
    if gamma is None:
        return None
    gamma = ops.cast(gamma, "float32")
    return gamma + 1.0 if unit_offset else gamma


def _normalize(x, gamma, beta, axis, epsilon, use_mean, unit_offset):
    """The shared LayerNorm / RMSNorm path, in float32.

    `use_mean=False` is RMSNorm: no centering, mean of squares in place of
    the variance (the same path, as in Zhang & Sennrich 2019, Eq. 4).
    """
    ndim = len(x.shape)
    axes = _as_axes(axis, ndim)
    xf = ops.cast(x, "float32")
    if use_mean:
        mean = ops.mean(xf, axis=axes, keepdims=True)
        centered = xf - mean
    else:
        centered = xf
    # Two-pass statistics: the square of a centered value cannot cancel
    # catastrophically, unlike E[x^2] - E[x]^2.
    second_moment = ops.mean(ops.square(centered), axis=axes, keepdims=True)
    y = centered * ops.rsqrt(second_moment + epsilon)
    gamma = _broadcast(_scale(gamma, unit_offset), axes, ndim, x.shape)
    beta = _broadcast(beta, axes, ndim, x.shape)
    if gamma is not None:
        y = y * gamma
    if beta is not None:
        y = y + beta
    return y


def can_fuse(x, axis=-1, residual=None):
    """Whether the fused kernel can take `x` (and `residual`): normalization
    over the last axis, of known size, on the TensorFlow backend, with a
    residual of the same shape. `fused="auto"` uses it where this holds
    inside a `tf.function` or XLA."""
    if keras.backend.backend() != "tensorflow":
        return False
    ndim = len(x.shape)
    if _as_axes(axis, ndim) != [ndim - 1] or x.shape[-1] is None:
        return False
    return residual is None or tuple(residual.shape) == tuple(x.shape)


def _fused_last_axis(x, residual, gamma, beta, epsilon, use_mean,
                     unit_offset, out_dtype, res_dtype):
    """Add + LayerNorm/RMSNorm over the last axis with a hand-written gradient.

    Row means are matrix-vector products with a constant `1/d` column
    rather than reductions: XLA's CPU reductions are slow, while a dot goes
    to the optimized matmul kernels (numerically the same two-pass
    statistics; `benchmarks/norms.py` measures the kernel against the
    composite path and Keras's layers). Backward keeps only the row mean and
    reciprocal standard deviation and recomputes the sum, in the standard
    form

    ```
    xhat = (s - mean) * rstd,   g = dy * gamma
    ds   = rstd * (g - mean(g) - xhat * mean(g * xhat)) + d(new_residual)
    ```
    (without the `mean(g)` term for RMSNorm).
    """
    import tensorflow as tf

    has_r, has_g, has_b = residual is not None, gamma is not None, \
        beta is not None
    args = [tf.convert_to_tensor(x)]
    if has_r:
        args.append(tf.convert_to_tensor(residual))
    if has_g:
        args.append(tf.cast(tf.convert_to_tensor(gamma), tf.float32))
    if has_b:
        args.append(tf.cast(tf.convert_to_tensor(beta), tf.float32))
    x_dtype = args[0].dtype
    r_dtype = args[1].dtype if has_r else None
    depth = int(x.shape[-1])
    column = tf.fill([depth, 1], 1.0 / depth)

    def row_mean(v):
        flat = tf.matmul(tf.reshape(v, [-1, depth]), column)
        return tf.reshape(flat, tf.concat([tf.shape(v)[:-1], [1]], axis=0))

    def unpack(values):
        values = list(values)
        xv = values.pop(0)
        rv = values.pop(0) if has_r else None
        gv = values.pop(0) if has_g else None
        bv = values.pop(0) if has_b else None
        return xv, rv, gv, bv

    def stats(sum_):
        if use_mean:
            mean = row_mean(sum_)
            centered = sum_ - mean
            return mean, tf.math.rsqrt(row_mean(tf.square(centered)) + epsilon)
        return None, tf.math.rsqrt(row_mean(tf.square(sum_)) + epsilon)

    @tf.custom_gradient
    def kernel(*values):
        xv, rv, gv, bv = unpack(values)
        sum_ = tf.cast(xv, tf.float32)
        if has_r:
            sum_ = sum_ + tf.cast(rv, tf.float32)
        mean, rstd = stats(sum_)
        xhat = (sum_ - mean) * rstd if use_mean else sum_ * rstd
        scale = None
        if has_g:
            scale = gv + 1.0 if unit_offset else gv
        y = xhat if scale is None else xhat * scale
        if has_b:
            y = y + bv
        outputs = (tf.cast(y, out_dtype), tf.cast(sum_, res_dtype))

        def grad(dy, dres):
            dy = tf.cast(dy, tf.float32)
            s2 = tf.cast(xv, tf.float32)
            if has_r:
                s2 = s2 + tf.cast(rv, tf.float32)
            xh = (s2 - mean) * rstd if use_mean else s2 * rstd
            g = dy if scale is None else dy * scale
            inner = g - xh * row_mean(g * xh)
            if use_mean:
                inner = inner - row_mean(g)
            ds = rstd * inner
            if dres is not None:
                ds = ds + tf.cast(dres, tf.float32)
            reduce_axes = list(range(len(dy.shape) - 1))
            grads = [tf.cast(ds, x_dtype)]
            if has_r:
                grads.append(tf.cast(ds, r_dtype))
            if has_g:
                grads.append(tf.reduce_sum(dy * xh, axis=reduce_axes))
            if has_b:
                grads.append(tf.reduce_sum(dy, axis=reduce_axes))
            return grads

        return outputs, grad

    return kernel(*args)


def _out_dtype(x, dtype):
    return dtype or keras.backend.standardize_dtype(x.dtype)


def layer_norm(
    x, gamma=None, beta=None, axis=-1, epsilon=1e-3, unit_offset=False,
    dtype=None, fused="auto",
):
    """Layer normalization (Ba et al., 2016), statistics in float32.

    ```
    y = (x - mean(x)) / sqrt(var(x) + epsilon) * gamma + beta
    ```
    With `unit_offset=True` the scale applied is `1 + gamma`. `fused`
    (`"auto"`, `True`, `False`) picks the hand-written kernel of
    `fused_add_norm` for last-axis normalization on TensorFlow; `"auto"`
    uses it inside `tf.function`/XLA (see `benchmarks/results/norms-*.md`)
    and the composite reference path when executing eagerly, `False`
    always the composite path.

    Example:

    >>> import numpy as np
    >>> from keras_resnorm import ops
    >>> y = ops.layer_norm(np.array([[1.0, 2.0, 3.0]]), epsilon=0.0)
    >>> np.round(np.asarray(y, "float64"), 4).tolist()
    [[-1.2247, 0.0, 1.2247]]
    """
    return _norm(x, gamma, beta, axis, epsilon, True, unit_offset, dtype,
                 fused)


def _norm(x, gamma, beta, axis, epsilon, use_mean, unit_offset, dtype, fused):
    out_dtype = _out_dtype(x, dtype)
    if _use_fused(fused, x, axis):
        return _fused_last_axis(x, None, gamma, beta, epsilon, use_mean,
                                unit_offset, out_dtype, out_dtype)[0]
    y = _normalize(x, gamma, beta, axis, epsilon, use_mean, unit_offset)
    return ops.cast(y, out_dtype)


def _use_fused(fused, x, axis, residual=None):
    check_fused(fused)
    possible = can_fuse(x, axis, residual)
    if fused is True and not possible:
        raise ValueError(
            "fused=True needs the TensorFlow backend, normalization over the "
            "last axis only, and a residual of the same shape. Received: "
            f"axis={axis}, input shape {tuple(x.shape)}"
        )
    if fused == "auto" and possible:
        # Measured (benchmarks/results/norms-*.md): the kernel wins inside
        # tf.function and XLA, but op-by-op eager execution of its custom
        # gradient is slower than the composite path, so "auto" keeps the
        # composite path eagerly.
        import tensorflow as tf

        return not tf.executing_eagerly()
    return possible and fused is True


def rms_norm(x, gamma=None, axis=-1, epsilon=1e-6, unit_offset=False,
             dtype=None, fused="auto"):
    """Root-mean-square normalization (Zhang & Sennrich, 2019).

    ```
    y = x / sqrt(mean(x ** 2) + epsilon) * gamma
    ```
    `fused` as in `layer_norm`.
    """
    return _norm(x, gamma, None, axis, epsilon, False, unit_offset, dtype,
                 fused)


def std_scale(x, gamma=None, axis=-1, epsilon=1e-3, unit_offset=False,
              dtype=None):
    """Keras's `layer_normalization(..., rms_scaling=True)`, in float32.

    ```
    y = x / sqrt(var(x) + epsilon) * gamma
    ```
    The input is divided by its standard deviation about the mean, but not
    centered. This is not RMSNorm (Zhang & Sennrich 2019 divide by
    `sqrt(mean(x ** 2))`, see `rms_norm`); the two agree only on rows of
    mean zero. It exists so that `LayerNormalization(rms_scaling=True)`
    gives Keras's numbers.
    """
    ndim = len(x.shape)
    axes = _as_axes(axis, ndim)
    xf = ops.cast(x, "float32")
    centered = xf - ops.mean(xf, axis=axes, keepdims=True)
    variance = ops.mean(ops.square(centered), axis=axes, keepdims=True)
    y = xf * ops.rsqrt(variance + epsilon)
    gamma = _broadcast(_scale(gamma, unit_offset), axes, ndim, x.shape)
    if gamma is not None:
        y = y * gamma
    return ops.cast(y, _out_dtype(x, dtype))


def scale_norm(x, g=None, axis=-1, epsilon=1e-5, dtype=None):
    """ScaleNorm (Nguyen & Salazar, 2019): `g * x / max(||x||_2, epsilon)`.

    `g` is a scalar; `None` means 1. On a row whose norm is below
    `epsilon` (an all-zero row) the output is `g * x / epsilon`, finite, and
    the gradient is `g / epsilon` times the upstream gradient: 1e5 for the
    default epsilon, beyond float16's range when cast back to a float16
    input. Use float32 inputs, or a larger epsilon, where such rows meet a
    non-zero upstream gradient.
    """
    ndim = len(x.shape)
    axes = _as_axes(axis, ndim)
    xf = ops.cast(x, "float32")
    sum_sq = ops.sum(ops.square(xf), axis=axes, keepdims=True)
    # max(||x||, eps) without a sqrt of zero in the backward pass.
    y = xf * ops.rsqrt(ops.maximum(sum_sq, epsilon * epsilon))
    if g is not None:
        y = y * ops.cast(g, "float32")
    return ops.cast(y, _out_dtype(x, dtype))


def dynamic_tanh(x, alpha, gamma=None, beta=None, axis=-1, dtype=None):
    """Dynamic Tanh (Zhu et al., 2025): `gamma * tanh(alpha * x) + beta`."""
    ndim = len(x.shape)
    axes = _as_axes(axis, ndim)
    y = ops.tanh(ops.cast(alpha, "float32") * ops.cast(x, "float32"))
    gamma = _broadcast(gamma, axes, ndim, x.shape)
    beta = _broadcast(beta, axes, ndim, x.shape)
    if gamma is not None:
        y = y * gamma
    if beta is not None:
        y = y + beta
    return ops.cast(y, _out_dtype(x, dtype))


def fused_add_norm(
    x, residual=None, gamma=None, beta=None, axis=-1, epsilon=1e-3,
    use_mean=True, unit_offset=False, residual_in_float32=False, dtype=None,
    fused="auto",
):
    """Residual add followed by normalization, as one kernel.

    Returns `(normalized, new_residual)` with `new_residual = x + residual`
    (just `x` when `residual` is None) and `normalized` its LayerNorm
    (`use_mean=True`) or RMSNorm (`use_mean=False`). The add happens in
    float32, so the statistics see the exact sum; `new_residual` is
    returned in float32 when `residual_in_float32=True`, else in the dtype
    of `x`. This is the pre-norm step of flash-attention's
    `layer_norm(x, residual, prenorm=True)`.

    ```
    s = x + residual
    normalized = (s - mean(s)) / sqrt(var(s) + epsilon) * gamma + beta
    ```

    With `fused=True`, or `"auto"` inside a `tf.function` (as in `fit`), and
    normalization over the last axis on TensorFlow, a hand-written kernel
    computes it: row statistics as
    matrix-vector products (fast under XLA), and a custom gradient that
    keeps only the row mean and reciprocal standard deviation. `False`
    selects the composite reference path (same values within float32
    rounding).

    Example:

    >>> import numpy as np
    >>> from keras_resnorm import ops
    >>> y, r = ops.fused_add_norm(np.ones((2, 4)), np.arange(8.0).reshape(2, 4))
    >>> tuple(y.shape), np.asarray(r)[0].tolist()
    ((2, 4), [1.0, 2.0, 3.0, 4.0])
    """
    out_dtype = _out_dtype(x, dtype)
    res_dtype = "float32" if residual_in_float32 else out_dtype
    if _use_fused(fused, x, axis, residual):
        return _fused_last_axis(x, residual, gamma, beta, epsilon, use_mean,
                                unit_offset, out_dtype, res_dtype)
    xf = ops.cast(x, "float32")
    new_residual = xf if residual is None else xf + ops.cast(residual, "float32")
    y = _normalize(new_residual, gamma, beta, axis, epsilon, use_mean,
                   unit_offset)
    return ops.cast(y, out_dtype), ops.cast(new_residual, res_dtype)
