"""One residual contract (issue 20): each rule has one home, so the copies
that used to disagree cannot. One test per defect found on the old main."""

import argparse
import warnings

import keras
import numpy as np
import pytest

import keras_resnorm as kr
from keras_resnorm import _checks, callbacks, placements
from keras_resnorm import ops as rn_ops
from keras_resnorm._keras_workarounds import flatten_layers


def test_peri_builds_the_sandwich_tagger():
    from keras_resnorm.ner import model as ner_model
    from keras_resnorm.ner.config import ModelConfig

    def shapes(placement):
        config = ModelConfig(
            placement=placement, d_model=8, word_dim=4, char_dim=4,
            char_filters=4, hash_buckets=0, crf=False)
        _, _, core = ner_model.build_model(config, ["eu", "rejects"],
                                           ["e", "u"], ["O", "B-ORG"])
        return [tuple(w.shape) for w in core.weights]

    # The old model tested a literal ("pre", "sandwich") and left "peri"
    # without its final norm: 23 weights against 25 at full size.
    assert shapes("peri") == shapes("sandwich")


def test_hyper_encoder_norms_honour_fused_false():
    encoder = kr.TransformerEncoder(num_layers=1, num_heads=2,
                                    intermediate_dim=8, placement="hyper",
                                    expansion=2, fused=False)
    encoder.build((None, 3, 8))
    norms = [layer for layer in flatten_layers(encoder)
             if isinstance(layer, (kr.LayerNormalization,
                                   kr.RMSNormalization))]
    assert len(norms) >= 3  # two branch norms and the final norm at least
    assert all(norm.fused is False for norm in norms), [
        (norm.path, norm.fused) for norm in norms]
    config = encoder.get_config()
    assert config["fused"] is False
    again = kr.TransformerEncoder.from_config(config)
    again.build((None, 3, 8))
    assert all(layer.fused is False for layer in flatten_layers(again)
               if isinstance(layer, kr.LayerNormalization))


@pytest.mark.parametrize("placement", ["hyper", "mhc"])
def test_diagnostics_measure_hyper_connections(placement, tmp_path):
    inputs = keras.Input((5, 8))
    h = kr.TransformerEncoder(num_layers=2, num_heads=2, intermediate_dim=8,
                              placement=placement, expansion=2)(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3)(h))
    model.compile("sgd", "mse")
    x = np.random.default_rng(0).normal(size=(4, 5, 8)).astype("float32")
    y = np.zeros((4, 5, 3), "float32")
    diagnostics = callbacks.ResidualStreamDiagnostics(x, str(tmp_path), y)
    diagnostics.set_model(model)
    stats = diagnostics.measure()
    # Two blocks of two hyper-connections each, every one measured.
    assert len(stats) == 4, stats
    for values in stats.values():
        assert np.isfinite(values["branch_to_residual_rms"])
        assert values["branch_to_residual_rms"] > 0
        assert values["gradient_norm"] > 0


@pytest.mark.parametrize("fused", [1, 0, "yes", None])
def test_ops_reject_the_fused_values_the_layers_reject(fused):
    x = np.ones((2, 4), "float32")
    with pytest.raises(ValueError, match="fused must be one of"):
        kr.LayerNormalization(fused=fused)
    with pytest.raises(ValueError, match="fused must be one of"):
        rn_ops.layer_norm(x, fused=fused)
    with pytest.raises(ValueError, match="fused must be one of"):
        rn_ops.fused_add_norm(x, x, fused=fused)


def test_encoder_placement_error_lists_every_placement_it_accepts():
    with pytest.raises(ValueError) as error:
        kr.TransformerEncoder(num_layers=1, num_heads=2, intermediate_dim=8,
                              placement="mhcc")
    message = str(error.value)
    for name in ("pre", "post", "sandwich", "peri", "deepnorm", "none",
                 "hyper", "mhc"):
        assert repr(name) in message, message
    assert "Received: placement='mhcc'" in message
    with pytest.raises(ValueError) as error:
        kr.ResidualWrapper(keras.layers.Dense(4), placement="hyper")
    assert "'hyper'" not in str(error.value).split("Received")[0]


def test_the_registry_is_what_the_layers_and_the_cli_use():
    from keras_resnorm.ner import cli
    from keras_resnorm.ner.config import TrainConfig

    assert placements.canonical("peri") == "sandwich"
    assert placements.is_pre_norm("peri") and placements.is_pre_norm("pre")
    assert not placements.is_pre_norm("post")
    assert placements.widens_stream("mhc")
    assert not placements.widens_stream("sandwich")
    assert placements.keyword_arguments("rezero") == {
        "placement": "none", "branch_scale": "rezero"}
    assert placements.keyword_arguments("layerscale") == {
        "placement": "pre", "branch_scale": "layerscale"}
    assert placements.keyword_arguments("peri") == {"placement": "sandwich"}
    parser = cli.build_parser()
    train = parser
    for name in ("ner", "train"):
        [sub] = [a for a in train._actions
                 if isinstance(a, argparse._SubParsersAction)]
        train = sub.choices[name]
    [action] = [a for a in train._actions if a.dest == "placement"]
    assert tuple(action.choices) == placements.cli_choices()
    args = parser.parse_args(["ner", "train", "--placement", "rezero"])
    assert TrainConfig.from_flags(args).model.branch_scale == "rezero"


def test_checks_have_one_home_that_takes_the_error_class():
    from keras_resnorm.ner import distribute
    from keras_resnorm.ner.errors import ConfigError

    assert distribute.check_choice is _checks.check_choice  # no copy
    with pytest.raises(ConfigError, match="strategy must be one of"):
        distribute.make_strategy("mirror")
    with pytest.raises(ConfigError, match=r"Received: x=True"):
        _checks.check_choice("x", True, (1, 2), error=ConfigError)
    assert _checks.check_choice("x", 1, (1, 2)) == 1
    with pytest.raises(ValueError, match=r"Received: n=2.5"):
        _checks.check_int("n", 2.5, 1)


def test_wrapped_layer_without_masking_gets_no_mask():
    inputs = keras.Input((6,), dtype="int32")
    h = keras.layers.Embedding(10, 4, mask_zero=True)(inputs)
    h = kr.ResidualWrapper(keras.layers.Conv1D(4, 3, padding="same"))(h)
    model = keras.Model(inputs, keras.layers.Dense(2)(h))
    model.compile("adam", "mse")
    x = np.array([[1, 2, 3, 0, 0, 0]] * 4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, np.zeros((4, 6, 2)), epochs=1, verbose=0)
    assert not [w for w in caught if "mask" in str(w.message)], [
        str(w.message) for w in caught]
    # The wrapper still hands the mask on to the layers after it.
    wrapper = model.layers[2]
    mask = wrapper.compute_mask(None, keras.ops.convert_to_tensor(x != 0))
    assert np.array_equal(np.asarray(mask), x != 0)


NORM_GIVEN = {
    "instance": lambda: keras.layers.LayerNormalization(epsilon=1e-5),
    "class": lambda: kr.RMSNormalization,
    "factory": lambda: (lambda: kr.ScaleNormalization()),
}


@pytest.mark.parametrize("given", sorted(NORM_GIVEN))
def test_norm_takes_a_layer_or_a_callable_and_serializes_it(given):
    from layer_check import check_layer

    def make(dtype=None):
        return kr.ResidualWrapper(keras.layers.Dense(6), placement="sandwich",
                                  norm=NORM_GIVEN[given](), dtype=dtype)

    wrapper = check_layer(make, (4, 5, 6), mask_tail=2, policies=(
        "mixed_float16",))
    # Two fresh copies: their own names and weights, not the template's.
    norms = (wrapper.norm_layer, wrapper.branch_norm_layer)
    assert [n.name for n in norms] == ["norm", "branch_norm"]
    assert norms[0] is not norms[1]
    assert norms[0].weights[0] is not norms[1].weights[0]
    expected = {"instance": keras.layers.LayerNormalization,
                "class": kr.RMSNormalization,
                "factory": kr.ScaleNormalization}[given]
    assert type(norms[0]) is expected
    if given == "instance":
        assert norms[0].epsilon == 1e-5


def test_a_given_norm_survives_a_keras_file_in_every_residual_layer(
        tmp_path):
    given = keras.layers.LayerNormalization(epsilon=1e-4)
    inputs = keras.Input((5, 8))
    h = kr.ResidualWrapper(keras.layers.Dense(8), norm=given)(inputs)
    h = kr.TransformerEncoder(1, 2, 8, norm=given)(h)
    stream = kr.layers.hyper_connection.expand_stream(h, 2)
    h = kr.HyperConnection(keras.layers.Dense(8), expansion=2,
                           norm=given)(stream)
    model = keras.Model(inputs, h)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    x = np.random.default_rng(0).normal(size=(2, 5, 8)).astype("float32")
    np.testing.assert_allclose(loaded(x), model(x), atol=1e-6)
    norms = [layer for layer in flatten_layers(loaded)
             if type(layer) is keras.layers.LayerNormalization]
    # Wrapper 1, two block wrappers and the final norm, the hyper-connection.
    assert len(norms) == 5 and {n.epsilon for n in norms} == {1e-4}
    assert not given.built  # the template itself is never used


def test_norms_from_one_template_stay_apart_while_keras_loads():
    # Keras tags configs it serializes inside a loading scope by id(); one
    # template serialized twice (or two short-lived copies whose ids recur)
    # came back as one shared norm, built twice: CI's flaky failure of the
    # test above ("cannot add new elements of state").
    from keras.src.saving.serialization_lib import ObjectSharingScope
    from keras_resnorm.layers._norm_registry import check_norm, make_norm

    given = keras.layers.LayerNormalization(epsilon=1e-4)
    with ObjectSharingScope():
        configs = [check_norm(given), check_norm(given)]
        made = [make_norm(c, name=f"n{i}") for i, c in enumerate(configs)]
    assert made[0] is not made[1]
    assert [n.name for n in made] == ["n0", "n1"]
    assert all("shared_object_id" not in c for c in configs)


def test_a_given_norm_fails_clearly():
    with pytest.raises(TypeError, match=r"norm must be one of \('layer', "
                       r"'rms', 'scale', 'dyt'\), a Keras layer, or a "
                       r"callable that returns one. Received: norm=3"):
        kr.ResidualWrapper(keras.layers.Dense(4), norm=3)
    with pytest.raises(ValueError, match="norm_kwargs applies to a norm "
                       "given by name"):
        kr.HyperConnection(keras.layers.Dense(4),
                           norm=keras.layers.LayerNormalization(),
                           norm_kwargs={"epsilon": 1e-3})


@pytest.mark.parametrize("field, value, message", [
    ("epochs", True, "epochs must be a positive int. Received: epochs=True"),
    ("max_minutes", float("inf"), "max_minutes must be a positive number "
     "or None"),
    ("word_dropout", "0.1", "word_dropout must be a float in [0, 1)"),
    ("deterministic", 1, "deterministic must be one of (True, False)"),
    ("scheme", "bio", "scheme must be one of ('iob2', 'iob1')"),
    ("model.norm", "batch", "norm must be one of ('layer', 'rms', 'scale', "
     "'dyt')"),
    ("model.crf", "yes", "crf must be one of (True, False)"),
    ("model.heads", 2.0, "heads must be a positive int"),
])
def test_config_checks_come_from_the_schema(field, value, message):
    import dataclasses

    from keras_resnorm.ner.config import TrainConfig
    from keras_resnorm.ner.errors import ConfigError

    config = TrainConfig()
    if field.startswith("model."):
        config = dataclasses.replace(config, model=dataclasses.replace(
            config.model, **{field[6:]: value}))
    else:
        config = dataclasses.replace(config, **{field: value})
    with pytest.raises(ConfigError) as error:
        config.validate()
    assert message in str(error.value)
