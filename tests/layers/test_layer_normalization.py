import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_resnorm import LayerNormalization
from layer_check import check_layer

OPTIONS = [
    ({}, 2),
    ({"center": False}, 1),
    ({"scale": False}, 1),
    ({"unit_offset": True}, 2),
    ({"axis": [1, 2]}, 2),
    ({"axis": 1, "epsilon": 1e-5}, 2),
]


@pytest.mark.parametrize("options,n_weights", OPTIONS)
def test_generic_layer_check(options, n_weights):
    check_layer(lambda dtype=None: LayerNormalization(dtype=dtype, **options),
                (4, 5, 6), trainable_weights=n_weights, mask_tail=2,
                float32_weights=("gamma", "beta"))


@pytest.mark.parametrize("axis", [-1, 1, [1, 2], [-2, -1], [0, 2]])
@pytest.mark.parametrize("center,scale", [(True, True), (False, True),
                                          (True, False)])
def test_drop_in_equal_to_keras(axis, center, scale):
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(3, 4, 5)) * 4 + 2).astype("float32")
    ours = LayerNormalization(axis=axis, center=center, scale=scale)
    theirs = keras.layers.LayerNormalization(axis=axis, center=center,
                                             scale=scale)
    ours.build(x.shape)
    theirs.build(x.shape)
    assert [w.shape for w in ours.weights] == [w.shape for w in theirs.weights]
    assert [w.path.split("/")[-1] for w in ours.weights] == [
        w.path.split("/")[-1] for w in theirs.weights]
    weights = [rng.normal(size=w.shape) for w in theirs.weights]
    theirs.set_weights(weights)
    ours.set_weights(weights)
    np.testing.assert_allclose(np.asarray(ours(x)), np.asarray(theirs(x)),
                               rtol=1e-5, atol=1e-5)


def test_loads_a_keras_config():
    config = keras.layers.LayerNormalization(axis=-1, epsilon=1e-5).get_config()
    layer = LayerNormalization.from_config(config)
    assert layer.epsilon == 1e-5 and layer.center and layer.scale
    defaults = LayerNormalization().get_config()
    keras_defaults = keras.layers.LayerNormalization().get_config()
    for key in ("axis", "epsilon", "center", "scale", "beta_initializer",
                "gamma_initializer"):
        assert defaults[key] == keras_defaults[key], key


def test_unit_offset_stores_gain_minus_one():
    layer = LayerNormalization(unit_offset=True)
    x = np.random.default_rng(1).normal(size=(2, 8)).astype("float32")
    y = layer(x)
    np.testing.assert_array_equal(layer.gamma.numpy(), np.zeros(8))
    plain = LayerNormalization()
    np.testing.assert_allclose(np.asarray(y), np.asarray(plain(x)), rtol=1e-6)
    layer.gamma.assign(np.full(8, 1.0))
    np.testing.assert_allclose(np.asarray(layer(x)), 2 * np.asarray(plain(x)),
                               rtol=1e-6)


def test_bias_free_form_has_no_beta():
    layer = LayerNormalization(center=False)
    layer.build((None, 4))
    assert [w.path.split("/")[-1] for w in layer.weights] == ["gamma"]


def test_zero_size_and_length_one_rows():
    layer = LayerNormalization()
    empty = layer(np.zeros((0, 4), "float32"))
    assert tuple(empty.shape) == (0, 4)
    one = LayerNormalization(axis=-1)(np.full((3, 1), 5.0, "float32"))
    np.testing.assert_array_equal(np.asarray(one), np.zeros((3, 1)))


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match=r"axis 2 is out of bounds .* Received: axis=2"):
        LayerNormalization(axis=2).build((None, 4))
    with pytest.raises(TypeError, match=r"Received: axis='last'"):
        LayerNormalization(axis="last")
    with pytest.raises(ValueError, match=r"Received: epsilon=-1"):
        LayerNormalization(epsilon=-1)
    with pytest.raises(ValueError, match=r"rms_scaling=True"):
        LayerNormalization(rms_scaling=True)
    with pytest.raises(ValueError, match=r"must be known .* input_shape=\(2, None\)"):
        LayerNormalization().build((2, None))
    with pytest.raises(TypeError, match=r"Received: inputs.dtype=int32"):
        LayerNormalization()(np.ones((2, 3), "int32"))
    with pytest.raises((TypeError, ValueError), match=r"inputs.dtype=string|string"):
        LayerNormalization()(tf.constant([["a", "b"]]))
