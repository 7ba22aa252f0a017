import keras
import numpy as np
import pytest

from keras_resnorm import RMSNormalization
from layer_check import check_layer


@pytest.mark.parametrize("options,n_weights", [
    ({}, 1), ({"scale": False}, 0), ({"unit_offset": True}, 1),
    ({"axis": [1, 2], "epsilon": 1e-5}, 1),
])
def test_generic_layer_check(options, n_weights):
    check_layer(lambda dtype=None: RMSNormalization(dtype=dtype, **options),
                (4, 5, 6), trainable_weights=n_weights, mask_tail=2,
                float32_weights=("gamma",), fit=n_weights > 0)


def test_matches_keras_rms_normalization_values():
    x = np.random.default_rng(0).normal(size=(3, 7)).astype("float32")
    ours = RMSNormalization(epsilon=1e-6)
    theirs = keras.layers.RMSNormalization(epsilon=1e-6)
    np.testing.assert_allclose(np.asarray(ours(x)), np.asarray(theirs(x)),
                               rtol=1e-5)


def test_keeps_the_keras_mask_through_a_functional_model():
    inputs = keras.Input((None,), dtype="int32")
    h = keras.layers.Embedding(10, 4, mask_zero=True)(inputs)
    h = RMSNormalization()(h)
    model = keras.Model(inputs, h)
    out_mask = model.layers[-1].compute_mask(h, np.array([[True, False]]))
    np.testing.assert_array_equal(np.asarray(out_mask), [[True, False]])
    assert h._keras_mask is not None


def test_unit_offset_default_gain_is_one():
    x = np.random.default_rng(1).normal(size=(2, 8)).astype("float32")
    np.testing.assert_allclose(np.asarray(RMSNormalization(unit_offset=True)(x)),
                               np.asarray(RMSNormalization()(x)), rtol=1e-6)


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"Received: axis=-3"):
        RMSNormalization(axis=-3).build((2, 4))
    with pytest.raises(TypeError, match=r"Received: inputs.dtype=int64"):
        RMSNormalization()(np.ones((2, 3), "int64"))
