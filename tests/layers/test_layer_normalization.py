import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_resnorm import LayerNormalization, RMSNormalization
from layer_check import check_layer, check_weight_options

OPTIONS = [
    ({}, 2),
    ({"center": False}, 1),
    ({"scale": False}, 1),
    ({"unit_offset": True}, 2),
    ({"axis": [1, 2]}, 2),
    ({"axis": 1, "epsilon": 1e-5}, 2),
    ({"rms_scaling": True}, 1),
    ({"rms_scaling": True, "scale": False, "axis": [1, 2]}, 1),
]


@pytest.mark.filterwarnings("ignore:.*rms_scaling")
@pytest.mark.parametrize("options,n_weights", OPTIONS)
def test_generic_layer_check(options, n_weights):
    check_layer(lambda dtype=None: LayerNormalization(dtype=dtype, **options),
                (4, 5, 6), trainable_weights=n_weights, mask_tail=2,
                float32_weights=("gamma", "beta"))


KERAS_AXES = [-1, 1, [1, 2], [-2, -1], [0, 2]]


def _keras_pair(options, shape):
    """Our layer made from the Keras layer's own config, both built, with
    random weights given to Keras's and copied into ours by set_weights."""
    theirs = keras.layers.LayerNormalization(**options)
    ours = LayerNormalization.from_config(theirs.get_config())
    theirs.build(shape)
    ours.build(shape)
    rng = np.random.default_rng(0)
    theirs.set_weights([rng.normal(size=w.shape) for w in theirs.weights])
    ours.set_weights(theirs.get_weights())
    return ours, theirs


@pytest.mark.filterwarnings("ignore:.*rms_scaling")
@pytest.mark.parametrize("axis", KERAS_AXES)
@pytest.mark.parametrize("center", [True, False])
@pytest.mark.parametrize("scale", [True, False])
@pytest.mark.parametrize("rms_scaling", [False, True])
@pytest.mark.parametrize("epsilon", [1e-3, 1e-6])
def test_drop_in_equal_to_keras(axis, center, scale, rms_scaling, epsilon):
    options = dict(axis=axis, center=center, scale=scale, epsilon=epsilon,
                   rms_scaling=rms_scaling)
    x = (np.random.default_rng(1).normal(size=(3, 4, 5)) * 4 + 2).astype(
        "float32")
    ours, theirs = _keras_pair(options, x.shape)
    assert [w.shape for w in ours.weights] == [w.shape for w in theirs.weights]
    assert [w.path.split("/")[-1] for w in ours.weights] == [
        w.path.split("/")[-1] for w in theirs.weights]
    want = np.asarray(theirs(x))
    np.testing.assert_allclose(np.asarray(ours(x)), want, rtol=1e-5,
                               atol=1e-5)
    np.testing.assert_allclose(np.asarray(tf.function(ours)(x)), want,
                               rtol=1e-5, atol=1e-5)


@pytest.mark.filterwarnings("ignore:.*rms_scaling")
def test_rms_scaling_is_keras_definition_not_rmsnorm():
    x = np.array([[1.0, 2.0, 3.0, 6.0]], "float32")
    y = LayerNormalization(rms_scaling=True, epsilon=0.0)(x)
    np.testing.assert_allclose(np.asarray(y), x / x.std(), rtol=1e-6)
    rms = RMSNormalization(epsilon=0.0)(x)
    assert np.abs(np.asarray(y) - np.asarray(rms)).max() > 0.1
    with pytest.warns(UserWarning, match="RMSNormalization"):
        LayerNormalization(rms_scaling=True)
    with pytest.raises(ValueError, match=r"rms_scaling=True.* "
                       r"Received: fused=True"):
        LayerNormalization(rms_scaling=True, fused=True)


@pytest.mark.filterwarnings("ignore:.*rms_scaling")
@pytest.mark.parametrize("rms_scaling", [False, True])
def test_weights_load_from_a_keras_weights_h5(tmp_path, rms_scaling):
    def model(norm):
        inputs = keras.Input((4, 5))
        outputs = keras.layers.Dense(3)(norm(inputs))
        return keras.Model(inputs, outputs)

    theirs = model(keras.layers.LayerNormalization(rms_scaling=rms_scaling))
    rng = np.random.default_rng(2)
    for w in theirs.weights:
        w.assign(rng.normal(size=w.shape))
    path = str(tmp_path / "keras.weights.h5")
    theirs.save_weights(path)
    ours = model(LayerNormalization(rms_scaling=rms_scaling))
    ours.load_weights(path)
    x = rng.normal(size=(2, 4, 5)).astype("float32")
    np.testing.assert_allclose(np.asarray(ours(x)), np.asarray(theirs(x)),
                               rtol=1e-5, atol=1e-5)


def test_loads_a_keras_config():
    config = keras.layers.LayerNormalization(axis=-1, epsilon=1e-5).get_config()
    layer = LayerNormalization.from_config(config)
    assert layer.epsilon == 1e-5 and layer.center and layer.scale
    defaults = LayerNormalization().get_config()
    keras_defaults = keras.layers.LayerNormalization().get_config()
    assert set(keras_defaults) <= set(defaults)
    for key in keras_defaults:
        if key not in ("name", "dtype"):
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
    with pytest.raises(ValueError, match=r"must be known .* input_shape=\(2, None\)"):
        LayerNormalization().build((2, None))
    with pytest.raises(TypeError, match=r"Received: inputs.dtype=int32"):
        LayerNormalization()(np.ones((2, 3), "int32"))
    with pytest.raises((TypeError, ValueError), match=r"inputs.dtype=string|string"):
        LayerNormalization()(tf.constant([["a", "b"]]))


@pytest.mark.parametrize("options", [{}, {"axis": [1, 2]},
                                     {"unit_offset": True}])
def test_regularizers_and_constraints(options):
    check_weight_options(
        lambda **extra: LayerNormalization(**options, **extra), (4, 5, 6),
        ["gamma", "beta"])
