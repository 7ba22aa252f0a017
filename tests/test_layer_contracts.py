"""What a Keras user relies on in every public layer: a config that names
every argument and survives JSON, drop-ins with Keras's attribute names,
norms of the user's own, and a public surface without surprises."""

import importlib
import inspect
import json
import pathlib
import pkgutil
import re

import keras
import numpy as np
import pytest

import keras_resnorm as kr

# The arguments a layer cannot be made without.
REQUIRED = {
    "FeedForward": {"intermediate_dim": 8},
    "HyperConnection": {"layer": keras.layers.Dense(4)},
    "ResidualWrapper": {"layer": keras.layers.Dense(4)},
    "SelfAttention": {"num_heads": 2},
    "TransformerEncoder": {"num_layers": 2, "num_heads": 2,
                           "intermediate_dim": 8},
    "TransformerEncoderBlock": {"num_heads": 2, "intermediate_dim": 8},
}
LAYERS = sorted(name for name in kr.__all__
                if isinstance(getattr(kr, name), type)
                and issubclass(getattr(kr, name), keras.layers.Layer))


def make(name, **options):
    return getattr(kr, name)(**dict(REQUIRED.get(name, {}), **options))


def test_every_public_layer_is_checked_here():
    assert len(LAYERS) == 11, LAYERS


@pytest.mark.parametrize("name", LAYERS)
def test_config_names_every_argument_and_survives_json(name):
    cls = getattr(kr, name)
    config = make(name).get_config()
    arguments = [p.name for p in inspect.signature(cls.__init__)
                 .parameters.values()
                 if p.name != "self" and p.kind is p.POSITIONAL_OR_KEYWORD]
    missing = [a for a in arguments if a not in config]
    assert not missing, f"{name}.get_config() lacks {missing}"
    text = json.dumps(config)
    again = cls.from_config(json.loads(text)).get_config()
    assert json.dumps(again, sort_keys=True) == json.dumps(
        json.loads(text), sort_keys=True)


@pytest.mark.parametrize("name", ["TransformerEncoder",
                                  "TransformerEncoderBlock"])
def test_defaults_and_callable_activations_are_written(name):
    # Left at their defaults, placement, norm, dropout and fused were
    # missing from the encoder's config, and a callable activation made
    # json.dumps fail.
    config = make(name, activation=keras.activations.relu).get_config()
    assert config["activation"] == "relu"
    for key, value in {"placement": "pre", "norm": "layer", "dropout": 0.0,
                       "fused": "auto", "expansion": 4}.items():
        assert config[key] == value, key
    json.dumps(config)


def _public_attributes(layer):
    skip = set(dir(keras.layers.Layer))
    return {a for a in dir(layer) if not a.startswith("_") and a not in skip}


@pytest.mark.parametrize("name", ["LayerNormalization", "RMSNormalization"])
def test_drop_ins_keep_the_attributes_of_keras(name):
    ours, theirs = getattr(kr, name)(), getattr(keras.layers, name)()
    ours.build((2, 3, 6)), theirs.build((2, 3, 6))
    for attribute in _public_attributes(theirs):
        assert hasattr(ours, attribute), attribute
        want, got = getattr(theirs, attribute), getattr(ours, attribute)
        if isinstance(want, keras.Variable):
            assert isinstance(got, keras.Variable), attribute
            assert got.shape == want.shape and got.name == want.name
        elif attribute == "axis":
            assert np.atleast_1d(got).tolist() == np.atleast_1d(want).tolist()
        elif attribute in ("autocast", "name", "call_signature_parameters"):
            # Keras's LayerNormalization turns autocast off for the whole
            # layer; ours keeps each norm weight float32 by itself.
            continue
        elif isinstance(want, (bool, int, float, str, list, tuple)):
            assert got == want, attribute
    assert [w.name for w in ours.weights] == [w.name for w in theirs.weights]


def test_rms_scale_is_the_weight_and_weights_move_both_ways(tmp_path):
    ours, theirs = kr.RMSNormalization(), keras.layers.RMSNormalization()
    x = np.random.default_rng(0).normal(size=(2, 6)).astype("float32")
    ours(x), theirs(x)
    theirs.scale.assign(np.linspace(0.5, 2.0, 6))
    ours.set_weights(theirs.get_weights())
    np.testing.assert_allclose(ours(x), theirs(x), rtol=1e-5, atol=1e-6)
    ours.scale.assign(np.full(6, 3.0))
    assert ours.gamma is ours.scale  # the 0.1 name of the same weight
    np.testing.assert_allclose(
        np.asarray(ours(x)) / np.asarray(theirs(x)),
        np.broadcast_to(3.0 / np.linspace(0.5, 2.0, 6), x.shape), rtol=1e-4)
    # A Keras model's weight file loads into the same model of ours.
    inputs = keras.Input((6,))
    keras_model = keras.Model(inputs, keras.layers.RMSNormalization()(inputs))
    keras_model.layers[-1].scale.assign(np.full(6, 0.25))
    keras_model.save_weights(tmp_path / "keras.weights.h5")
    inputs = keras.Input((6,))
    ours_model = keras.Model(inputs, kr.RMSNormalization()(inputs))
    ours_model.load_weights(tmp_path / "keras.weights.h5")
    np.testing.assert_allclose(ours_model.layers[-1].scale, 0.25)
    assert kr.RMSNormalization(scale=False).get_config()["scale"] is False
    unscaled = kr.RMSNormalization(scale=False)
    unscaled.build((2, 6))
    assert unscaled.scale is None and unscaled.weights == []


def test_files_that_keras_resnorm_0_1_wrote_still_load():
    # Written by keras_resnorm 0.1 (main at 31040e5), when RMSNorm's weight
    # was named "gamma": a standalone RMSNormalization, and RMS-norm
    # encoders scanned and unrolled. Keras files keep weights by position,
    # so they load with the weight as `scale`, outputs unchanged.
    data = pathlib.Path(__file__).parent / "data"
    model = keras.saving.load_model(data / "keras_resnorm-0.1-rms.keras",
                                    safe_mode=True)
    x, y = np.load(data / "keras_resnorm-0.1-rms-io.npy")
    np.testing.assert_allclose(model(x), y, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(model.get_layer("rms").scale,
                               np.linspace(0.5, 2, 8), rtol=1e-6)


@pytest.mark.parametrize("heads, features", [(64, 16), (17, 16)])
def test_heads_that_leave_no_key_dim_are_refused(heads, features):
    block = kr.TransformerEncoderBlock(heads, 8)
    with pytest.raises(ValueError, match=rf"num_heads={heads} leaves key_dim "
                       rf".*Received: num_heads={heads}, features={features}"):
        block(np.zeros((1, 3, features), "float32"))
    # with key_dim given it is the user's choice
    kr.TransformerEncoderBlock(heads, 8, key_dim=2)(
        np.zeros((1, 3, features), "float32"))


class MyNorm(keras.layers.Layer):
    """A norm of the user's own, not registered with Keras."""

    def __init__(self, epsilon=1e-3, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def call(self, x):
        x = keras.ops.convert_to_tensor(x)
        mean = keras.ops.mean(x, axis=-1, keepdims=True)
        return (x - mean) / keras.ops.sqrt(
            keras.ops.var(x, axis=-1, keepdims=True) + self.epsilon)

    def get_config(self):
        return dict(super().get_config(), epsilon=self.epsilon)


@pytest.mark.parametrize("norm", [MyNorm(epsilon=1e-2), MyNorm],
                         ids=["instance", "class"])
@pytest.mark.parametrize("name", ["ResidualWrapper", "TransformerEncoder",
                                  "HyperConnection"])
def test_an_unregistered_norm_of_the_users_own_works(tmp_path, norm, name):
    # It failed at construction: "Could not locate class 'MyNorm'".
    layer = make(name, norm=norm)
    # A HyperConnection reads a stream of 4 copies.
    shape = (3, 4, 4) if name == "HyperConnection" else (3, 4)
    x = np.random.default_rng(0).normal(size=(2,) + shape).astype("float32")
    y = layer(x)
    norms = [l for l in layer._flatten_layers() if isinstance(l, MyNorm)]
    assert norms
    again = type(layer).from_config(layer.get_config())
    assert np.asarray(again(x)).shape == np.asarray(y).shape
    # As for any unregistered Keras layer, a saved model loads with
    # custom_objects.
    inputs = keras.Input(shape)
    model = keras.Model(inputs, layer(inputs))
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True,
                                     custom_objects={"MyNorm": MyNorm})
    np.testing.assert_allclose(loaded(x), model(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("norm_kwargs, message", [
    ({"dtype": "float16"}, r"norm_kwargs may not set \['dtype'\]"),
    ({"name": "n"}, r"norm_kwargs may not set \['name'\]"),
    ({"epsilon": 1e-5, "bogus": 1}, r"norm='layer' \(LayerNormalization\) "
     r"does not take: \['bogus'\]"),
])
@pytest.mark.parametrize("name", ["ResidualWrapper", "TransformerEncoder",
                                  "HyperConnection"])
def test_norm_kwargs_that_clash_are_refused_by_name(name, norm_kwargs,
                                                    message):
    with pytest.raises(ValueError, match=message + r".* Received: "
                       r"norm_kwargs="):
        make(name, norm_kwargs=norm_kwargs)


PUBLIC_MODULES = sorted(
    m.name for m in pkgutil.walk_packages(kr.__path__, "keras_resnorm.")
    if not any(part.startswith("_") for part in m.name.split(".")))


def test_the_public_surface():
    import keras_resnorm.layers as layers

    assert kr.callbacks.ResidualStreamDiagnostics
    assert "callbacks" in kr.__all__
    with pytest.raises(TypeError):
        kr.NORMALIZATIONS["mine"] = MyNorm
    assert "mine" not in kr.NORMALIZATIONS
    # No module is shadowed by a name of its package.
    assert callable(layers.normalization) and kr.normalization("rms")
    for name in PUBLIC_MODULES:
        package, _, leaf = name.rpartition(".")
        module = importlib.import_module(name)
        assert getattr(importlib.import_module(package), leaf) is module, name
    # CLI helpers are not part of placements' public names.
    assert "keyword_arguments" not in kr.placements.__all__


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_every_public_module_says_what_it_exports(name):
    module = importlib.import_module(name)
    if name.endswith("keras_resnorm.ner"):
        return  # a package of modules, each with its own __all__
    assert hasattr(module, "__all__"), name
    for item in module.__all__:
        assert hasattr(module, item), (name, item)


def _snake(name):
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_",
                  name).lower()


@pytest.mark.parametrize("name", [n for n in PUBLIC_MODULES
                                  if n.startswith("keras_resnorm.layers.")])
def test_one_public_layer_per_layers_module(name):
    module = importlib.import_module(name)
    layers = [v for v in vars(module).values()
              if isinstance(v, type) and issubclass(v, keras.layers.Layer)
              and v.__module__ == name and not v.__name__.startswith("_")]
    assert len(layers) == 1, (name, layers)
    assert name.rsplit(".", 1)[1] == _snake(layers[0].__name__)
