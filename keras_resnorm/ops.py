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

__all__ = [
    "layer_norm",
    "rms_norm",
    "scale_norm",
    "dynamic_tanh",
    "fused_add_norm",
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


def _out_dtype(x, dtype):
    return dtype or keras.backend.standardize_dtype(x.dtype)


def layer_norm(
    x, gamma=None, beta=None, axis=-1, epsilon=1e-3, unit_offset=False,
    dtype=None,
):
    """Layer normalization (Ba et al., 2016), statistics in float32.

    ```
    y = (x - mean(x)) / sqrt(var(x) + epsilon) * gamma + beta
    ```
    With `unit_offset=True` the scale applied is `1 + gamma`.

    Example:

    >>> import numpy as np
    >>> from keras_resnorm import ops
    >>> y = ops.layer_norm(np.array([[1.0, 2.0, 3.0]]), epsilon=0.0)
    >>> np.round(np.asarray(y, "float64"), 4).tolist()
    [[-1.2247, 0.0, 1.2247]]
    """
    y = _normalize(x, gamma, beta, axis, epsilon, True, unit_offset)
    return ops.cast(y, _out_dtype(x, dtype))


def rms_norm(x, gamma=None, axis=-1, epsilon=1e-6, unit_offset=False,
             dtype=None):
    """Root-mean-square normalization (Zhang & Sennrich, 2019).

    ```
    y = x / sqrt(mean(x ** 2) + epsilon) * gamma
    ```
    """
    y = _normalize(x, gamma, None, axis, epsilon, False, unit_offset)
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
):
    """Residual add followed by normalization, as one expression.

    Returns `(normalized, new_residual)` with `new_residual = x + residual`
    (just `x` when `residual` is None) and `normalized` its LayerNorm
    (`use_mean=True`) or RMSNorm (`use_mean=False`). The add happens in
    float32, so the statistics see the exact sum; `new_residual` is
    returned in float32 when `residual_in_float32=True`, else in the dtype
    of `x`. This is the pre-norm step of flash-attention's
    `layer_norm(x, residual, prenorm=True)`.

    Example:

    >>> import numpy as np
    >>> from keras_resnorm import ops
    >>> y, r = ops.fused_add_norm(np.ones((2, 4)), np.arange(8.0).reshape(2, 4))
    >>> tuple(y.shape), np.asarray(r)[0].tolist()
    ((2, 4), [1.0, 2.0, 3.0, 4.0])
    """
    xf = ops.cast(x, "float32")
    new_residual = xf if residual is None else xf + ops.cast(residual, "float32")
    y = _normalize(new_residual, gamma, beta, axis, epsilon, use_mean,
                   unit_offset)
    out_dtype = _out_dtype(x, dtype)
    res_dtype = "float32" if residual_in_float32 else out_dtype
    return ops.cast(y, out_dtype), ops.cast(new_residual, res_dtype)
