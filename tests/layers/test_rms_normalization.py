import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_resnorm import RMSNormalization
from layer_check import check_layer, check_weight_options


@pytest.mark.parametrize("options,n_weights", [
    ({}, 1), ({"scale": False}, 0), ({"unit_offset": True}, 1),
    ({"axis": [1, 2], "epsilon": 1e-5}, 1),
])
def test_generic_layer_check(options, n_weights):
    check_layer(lambda dtype=None: RMSNormalization(dtype=dtype, **options),
                (4, 5, 6), trainable_weights=n_weights, mask_tail=2,
                float32_weights=("scale",), fit=n_weights > 0)


# Keras multiplies by its `scale` without reshaping it, so it is only right
# for trailing axes; parity is checked where Keras's own layer is right.
@pytest.mark.parametrize("axis", [-1, 2, [-2, -1], [1, 2]])
@pytest.mark.parametrize("epsilon", [1e-6, 1e-3])
def test_drop_in_equal_to_keras(axis, epsilon):
    x = (np.random.default_rng(0).normal(size=(3, 4, 5)) * 3 + 1).astype(
        "float32")
    theirs = keras.layers.RMSNormalization(axis=axis, epsilon=epsilon)
    ours = RMSNormalization.from_config(theirs.get_config())
    theirs.build(x.shape)
    ours.build(x.shape)
    rng = np.random.default_rng(1)
    theirs.set_weights([rng.normal(size=w.shape) for w in theirs.weights])
    ours.set_weights(theirs.get_weights())
    want = np.asarray(theirs(x))
    np.testing.assert_allclose(np.asarray(ours(x)), want, rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(np.asarray(tf.function(ours)(x)), want,
                               rtol=1e-5, atol=1e-6)


def test_defaults_and_config_keys_match_keras():
    ours = RMSNormalization().get_config()
    theirs = keras.layers.RMSNormalization().get_config()
    assert set(theirs) <= set(ours)
    for key in theirs:
        if key not in ("name", "dtype"):
            assert ours[key] == theirs[key], key


def test_weights_load_from_a_keras_weights_h5(tmp_path):
    def model(norm):
        inputs = keras.Input((4, 5))
        return keras.Model(inputs, keras.layers.Dense(3)(norm(inputs)))

    theirs = model(keras.layers.RMSNormalization())
    rng = np.random.default_rng(2)
    for w in theirs.weights:
        w.assign(rng.normal(size=w.shape))
    path = str(tmp_path / "keras.weights.h5")
    theirs.save_weights(path)
    ours = model(RMSNormalization())
    ours.load_weights(path)
    x = rng.normal(size=(2, 4, 5)).astype("float32")
    np.testing.assert_allclose(np.asarray(ours(x)), np.asarray(theirs(x)),
                               rtol=1e-5, atol=1e-5)


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


@pytest.mark.parametrize("options", [{}, {"axis": [1, 2]}])
def test_regularizers_and_constraints(options):
    check_weight_options(
        lambda **extra: RMSNormalization(**options, **extra), (4, 5, 6),
        {"scale": "gamma"})
