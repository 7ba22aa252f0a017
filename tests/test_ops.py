"""Values and gradients of keras_resnorm.ops against float64 NumPy."""

import numpy as np
import pytest
import tensorflow as tf

from keras_resnorm import ops


def ref_layer_norm(x, gamma, beta, axes, eps):
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def ref_rms_norm(x, gamma, axes, eps):
    return x / np.sqrt((x**2).mean(axis=axes, keepdims=True) + eps) * gamma


def ref_scale_norm(x, g, axes, eps):
    norm = np.sqrt((x**2).sum(axis=axes, keepdims=True))
    return g * x / np.maximum(norm, eps)


def ref_dyt(x, alpha, gamma, beta):
    return gamma * np.tanh(alpha * x) + beta


def numeric_grad(f, x, upstream, h=1e-6):
    """Central differences of sum(f(x) * upstream) in float64."""
    grad = np.zeros_like(x)
    flat = grad.reshape(-1)
    for i in range(x.size):
        xp, xm = x.copy(), x.copy()
        xp.reshape(-1)[i] += h
        xm.reshape(-1)[i] -= h
        flat[i] = ((f(xp) - f(xm)) * upstream).sum() / (2 * h)
    return grad


def case(name, shape=(3, 6), axis=-1):
    rng = np.random.default_rng(7)
    x = rng.normal(size=shape) * 3 + 1
    axes = tuple(sorted(a % len(shape) for a in np.atleast_1d(axis)))
    pshape = tuple(shape[a] for a in axes)
    bshape = [1] * len(shape)
    for a in axes:
        bshape[a] = shape[a]
    gamma = rng.normal(size=pshape) + 1
    beta = rng.normal(size=pshape)
    gb, bb = gamma.reshape(bshape), beta.reshape(bshape)
    axis_arg = axis if isinstance(axis, int) else list(axis)
    if name == "layer":
        return x, (gamma, beta), (
            lambda x, g, b: ops.layer_norm(x, g, b, axis=axis_arg, epsilon=1e-3),
            lambda x: ref_layer_norm(x, gb, bb, axes, 1e-3))
    if name == "layer_unit_offset":
        return x, (gamma, beta), (
            lambda x, g, b: ops.layer_norm(x, g, b, axis=axis_arg, epsilon=1e-3,
                                           unit_offset=True),
            lambda x: ref_layer_norm(x, gb + 1, bb, axes, 1e-3))
    if name == "rms":
        return x, (gamma,), (
            lambda x, g: ops.rms_norm(x, g, axis=axis_arg, epsilon=1e-6),
            lambda x: ref_rms_norm(x, gb, axes, 1e-6))
    if name == "scale":
        g = np.float64(2.5)
        return x, (g,), (
            lambda x, g: ops.scale_norm(x, g, axis=axis_arg, epsilon=1e-5),
            lambda x: ref_scale_norm(x, g, axes, 1e-5))
    if name == "dyt":
        alpha = np.float64(0.7)
        return x, (alpha, gamma, beta), (
            lambda x, a, g, b: ops.dynamic_tanh(x, a, g, b, axis=axis_arg),
            lambda x: ref_dyt(x, alpha, gb, bb))
    raise AssertionError(name)


NAMES = ["layer", "layer_unit_offset", "rms", "scale", "dyt"]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape,axis", [((3, 6), -1), ((2, 3, 4), [1, 2]),
                                        ((2, 5, 3), 1)])
def test_values_and_input_gradients_match_float64(name, shape, axis):
    x, params, (ours, ref) = case(name, shape, axis)
    xt = tf.constant(x, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = ours(xt, *[tf.constant(p, tf.float32) for p in params])
        upstream = np.random.default_rng(3).normal(size=x.shape)
        loss = tf.reduce_sum(y * upstream)
    np.testing.assert_allclose(y.numpy(), ref(x), rtol=1e-5, atol=1e-5)
    grad = tape.gradient(loss, xt).numpy()
    np.testing.assert_allclose(grad, numeric_grad(ref, x, upstream),
                               rtol=1e-3, atol=1e-4)


def test_layer_norm_parameter_gradients_match_float64():
    x, (gamma, beta), _ = case("layer")
    upstream = np.random.default_rng(3).normal(size=x.shape)
    g, b = tf.Variable(gamma, dtype=tf.float32), tf.Variable(beta, dtype=tf.float32)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(ops.layer_norm(tf.constant(x, tf.float32), g, b,
                                            epsilon=1e-3) * upstream)
    dg, db = tape.gradient(loss, [g, b])
    normalized = ref_layer_norm(x, 1.0, 0.0, (1,), 1e-3)
    np.testing.assert_allclose(dg.numpy(), (normalized * upstream).sum(0),
                               rtol=1e-4)
    np.testing.assert_allclose(db.numpy(), upstream.sum(0), rtol=1e-5)


def test_layer_norm_golden_values():
    y = ops.layer_norm(np.array([[1.0, 2.0, 3.0, 4.0]], "float32"), epsilon=0)
    np.testing.assert_allclose(np.asarray(y),
                               [[-1.3416408, -0.4472136, 0.4472136, 1.3416408]],
                               rtol=1e-6)


@pytest.mark.parametrize("fn,finite_fp16_grad", [
    (lambda x: ops.layer_norm(x), True),
    (lambda x: ops.rms_norm(x), True),
    # ScaleNorm's gradient on an all-zero row is g / epsilon = 1e5, past
    # float16's range by construction (documented): outputs only.
    (lambda x: ops.scale_norm(x), False),
    (lambda x: ops.fused_add_norm(x, x)[0], True),
    (lambda x: ops.fused_add_norm(x, x, use_mean=False)[0], True),
])
def test_float16_safety_constant_zero_and_large_rows(fn, finite_fp16_grad):
    rows = np.stack([
        np.full(64, 6e4), np.zeros(64), np.full(64, -3.0),
        np.linspace(-6e4, 6e4, 64), np.random.default_rng(0).normal(size=64),
    ]).astype("float16")
    x = tf.constant(rows)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = fn(x)
        loss = tf.reduce_sum(tf.cast(y, tf.float32))
    assert y.dtype == tf.float16
    assert np.all(np.isfinite(y.numpy().astype("float32")))
    grad = tape.gradient(loss, x).numpy().astype("float32")
    if finite_fp16_grad:
        assert np.all(np.isfinite(grad))
    # In float32 every gradient is finite.
    x32 = tf.constant(rows.astype("float32"))
    with tf.GradientTape() as tape:
        tape.watch(x32)
        loss = tf.reduce_sum(fn(x32))
    assert np.all(np.isfinite(tape.gradient(loss, x32).numpy()))


def test_float16_large_row_matches_float64():
    row = np.linspace(-6e4, 6e4, 64).astype("float16")
    y = ops.layer_norm(row[None], epsilon=1e-3)
    ref = ref_layer_norm(row[None].astype("float64"), 1.0, 0.0, (1,), 1e-3)
    np.testing.assert_allclose(np.asarray(y, "float32"), ref, atol=2e-3)


@pytest.mark.parametrize("use_mean", [True, False])
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_fused_add_norm_equals_add_then_norm(use_mean, dtype):
    rng = np.random.default_rng(5)
    x = tf.cast(rng.normal(size=(4, 16)), dtype)
    r = tf.cast(rng.normal(size=(4, 16)), dtype)
    gamma = rng.normal(size=16)
    y, new_r = ops.fused_add_norm(x, r, gamma, None, epsilon=1e-5,
                                  use_mean=use_mean)
    s = tf.cast(x, tf.float64).numpy() + tf.cast(r, tf.float64).numpy()
    ref = (ref_layer_norm(s, gamma, 0.0, (1,), 1e-5) if use_mean
           else ref_rms_norm(s, gamma, (1,), 1e-5))
    tol = {"float32": 1e-5, "float16": 2e-3, "bfloat16": 2e-2}[dtype]
    assert y.dtype == dtype and new_r.dtype == dtype
    np.testing.assert_allclose(tf.cast(y, tf.float32).numpy(), ref,
                               rtol=tol, atol=tol * 4)
    np.testing.assert_allclose(tf.cast(new_r, tf.float32).numpy(), s,
                               rtol=tol, atol=tol)


def test_fused_add_norm_keeps_residual_in_float32():
    x = tf.constant(np.full((1, 8), 1000.0), tf.float16)
    r = tf.constant(np.full((1, 8), 0.25), tf.float16)
    y, new_r = ops.fused_add_norm(x, r, residual_in_float32=True)
    assert y.dtype == tf.float16 and new_r.dtype == tf.float32
    # 1000.25 is not representable in float16 (spacing 0.5 there).
    np.testing.assert_array_equal(new_r.numpy(), np.full((1, 8), 1000.25))


def test_fused_add_norm_without_residual_is_plain_norm():
    x = np.random.default_rng(2).normal(size=(3, 8)).astype("float32")
    y, r = ops.fused_add_norm(x)
    np.testing.assert_allclose(np.asarray(y), np.asarray(ops.layer_norm(x)),
                               rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(r), x)


def _grads(fn, fused, x, r, gamma, beta, upstream, jit=False):
    def run(x, r, gamma, beta):
        with tf.GradientTape() as tape:
            tape.watch([x, r, gamma, beta])
            y, new_r = fn(x, r, gamma, beta, fused)
            loss = (tf.reduce_sum(tf.cast(y, tf.float32) * upstream)
                    + tf.reduce_sum(tf.cast(new_r, tf.float32) * upstream**2))
        return [y, new_r] + tape.gradient(loss, [x, r, gamma, beta])
    if jit:
        run = tf.function(run, jit_compile=True)
    return [None if t is None else tf.cast(t, tf.float32).numpy()
            for t in run(x, r, gamma, beta)]


@pytest.mark.parametrize("use_mean", [True, False])
@pytest.mark.parametrize("unit_offset", [False, True])
@pytest.mark.parametrize("jit", [False, True])
def test_fused_kernel_matches_composite_values_and_all_gradients(
        use_mean, unit_offset, jit):
    rng = np.random.default_rng(11)
    x = tf.constant(rng.normal(size=(3, 5, 16)) * 2 + 3, tf.float32)
    r = tf.constant(rng.normal(size=(3, 5, 16)), tf.float32)
    gamma = tf.constant(rng.normal(size=16), tf.float32)
    beta = tf.constant(rng.normal(size=16), tf.float32)
    upstream = rng.normal(size=(3, 5, 16)).astype("float32")

    def fn(x, r, gamma, beta, fused):
        return ops.fused_add_norm(x, r, gamma, beta if use_mean else None,
                                  epsilon=1e-5, use_mean=use_mean,
                                  unit_offset=unit_offset, fused=fused)

    fused = _grads(fn, True, x, r, gamma, beta, upstream, jit)
    reference = _grads(fn, False, x, r, gamma, beta, upstream, jit)
    for name, a, b in zip(["y", "new_r", "dx", "dr", "dgamma", "dbeta"],
                          fused, reference):
        if not use_mean and name == "dbeta":
            continue
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4, err_msg=name)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_fused_kernel_half_precision_matches_composite(dtype):
    rng = np.random.default_rng(12)
    x = tf.cast(rng.normal(size=(4, 32)) * 100, dtype)
    r = tf.cast(rng.normal(size=(4, 32)), dtype)
    a, ra = ops.fused_add_norm(x, r, fused=True)
    b, rb = ops.fused_add_norm(x, r, fused=False)
    assert a.dtype == dtype and ra.dtype == dtype
    np.testing.assert_allclose(tf.cast(a, tf.float32).numpy(),
                               tf.cast(b, tf.float32).numpy(), atol=2e-2)
    np.testing.assert_array_equal(tf.cast(ra, tf.float32).numpy(),
                                  tf.cast(rb, tf.float32).numpy())


def test_fused_variance_is_exact_for_constant_and_offset_rows():
    rows = tf.constant([[6e4] * 8, [1e4 + v for v in range(8)]], tf.float32)
    y = ops.layer_norm(rows, epsilon=1e-6, fused=True).numpy()
    np.testing.assert_array_equal(y[0], np.zeros(8))
    ref = ref_layer_norm(rows.numpy().astype("float64")[1:], 1.0, 0.0, (1,),
                         1e-6)
    np.testing.assert_allclose(y[1:], ref, atol=1e-5)


def test_fused_argument_validation():
    x = np.ones((2, 3, 4), "float32")
    with pytest.raises(ValueError, match=r"Received: axis=1"):
        ops.layer_norm(x, axis=1, fused=True)
    with pytest.raises(ValueError, match=r"Received: fused='yes'"):
        ops.layer_norm(x, fused="yes")
    # "auto" falls back to the composite path where the kernel cannot go.
    assert ops.layer_norm(x, axis=1).shape == (2, 3, 4)


def test_auto_uses_the_kernel_in_graphs_and_the_reference_eagerly(monkeypatch):
    used = []
    original = ops._fused_last_axis

    def spy(*args, **kwargs):
        used.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(ops, "_fused_last_axis", spy)
    x = tf.ones((2, 8))
    ops.fused_add_norm(x, x)
    assert not used
    tf.function(lambda a: ops.fused_add_norm(a, a))(x)
    assert used
    used.clear()
    ops.fused_add_norm(x, x, fused=True)
    assert used
