"""Each Keras internal that keras_resnorm._keras_workarounds relies on, and
each Keras behaviour it works around. These fail when Keras changes under
the workarounds: then review that module before widening the Keras pin."""

import inspect

import keras
import numpy as np
import tensorflow as tf

from keras_resnorm import _keras_workarounds as kw


def test_keras_is_the_version_the_workarounds_were_checked_against():
    assert keras.__version__.startswith(kw.KERAS_CHECKED + "."), (
        f"keras {keras.__version__}: review keras_resnorm/_keras_workarounds"
        f".py (checked against {kw.KERAS_CHECKED}) and this file")


def _nested_model():
    inner_input = keras.Input((4,))
    inner = keras.Model(inner_input, keras.layers.Dropout(
        0.5, seed=3, name="inner_dropout")(keras.layers.Dense(
            4, name="inner_dense")(inner_input)), name="inner")
    inputs = keras.Input((4,))
    outputs = keras.layers.Dense(2, name="head")(inner(inputs))
    return keras.Model(inputs, outputs)


def test_flatten_layers_walks_nested_models():
    model = _nested_model()
    names = [layer.name for layer in kw.flatten_layers(model)]
    assert "inner_dense" in names and "inner_dropout" in names
    # ... which Keras's public `layers` does not.
    assert "inner_dense" not in [layer.name for layer in model.layers]


def test_save_weights_still_leaves_out_seed_generator_states(tmp_path):
    model = _nested_model()
    [(name, generator)] = kw.seed_generators(model).items()
    assert name.endswith("Dropout/0")
    x = np.ones((2, 4), "float32")
    model(x, training=True)  # advances the generator
    path = str(tmp_path / "m.weights.h5")
    model.save_weights(path)
    fresh = _nested_model()
    fresh.load_weights(path)
    [fresh_generator] = kw.seed_generators(fresh).values()
    # If Keras starts saving these, backups need not store them apart.
    assert not np.array_equal(generator.state.numpy(),
                              fresh_generator.state.numpy())


def test_mask_attribute_internals_read_and_detach_a_mask():
    x = tf.ones((2, 3))
    mask = tf.constant([[True, True, False]] * 2)
    assert kw.get_keras_mask(x) is None
    kw.set_keras_mask(x, mask)
    assert kw.get_keras_mask(x) is mask
    kw.set_keras_mask(x, None)
    assert kw.get_keras_mask(x) is None


def test_symbolic_build_internals_exist():
    assert "data_batch" in inspect.signature(
        keras.Model._symbolic_build).parameters
    assert set(inspect.signature(
        keras.Model._maybe_symbolic_build).parameters) >= {"iterator",
                                                          "data_batch"}


def test_build_for_fit_builds_and_fit_skips_its_own_build():
    # Keras builds again inside `fit` only under a strategy; count its
    # `_symbolic_build` calls there, with and without the patch.
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    batch = (np.ones((4, 3), "float32"), np.zeros((4, 2), "float32"))

    def builds_during_fit(skip_fit_build):
        with strategy.scope():
            model = keras.Sequential([keras.Input((3,)),
                                      keras.layers.Dense(2)])
            model.compile(optimizer="adam", loss="mse")
        kw.build_for_fit(model, batch, strategy,
                         skip_fit_build=skip_fit_build)
        assert model.optimizer.built and model.compiled_loss is not None
        calls = []
        build = model._symbolic_build

        def counted(*args, **kwargs):
            calls.append(1)
            return build(*args, **kwargs)

        model._symbolic_build = counted
        model.fit(*batch, epochs=1, verbose=0)
        return len(calls)

    assert builds_during_fit(skip_fit_build=False) >= 1
    assert builds_during_fit(skip_fit_build=True) == 0


def test_vector_logs_train_step_makes_scalar_logs_vectors():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="adam", loss="mse")
    kw.vector_logs_train_step(model)
    x, y = np.ones((4, 3), "float32"), np.zeros((4, 2), "float32")
    logs = tf.function(model.train_step)((x, y))
    assert logs["loss"].shape == (1,)


def test_optimizer_internals_the_adamw_override_uses():
    base = keras.optimizers.AdamW
    for name in ("_clip_gradients", "_backend_update_step",
                 "_all_reduce_sum_gradients", "_distributed_tf_update_step"):
        assert callable(getattr(base, name, None)), name
    assert list(inspect.signature(base._backend_update_step).parameters) == [
        "self", "grads", "trainable_variables", "learning_rate"]


def test_the_sharing_scope_still_merges_configs_by_id():
    from keras.src.saving.serialization_lib import ObjectSharingScope

    layer = keras.layers.LayerNormalization()
    with ObjectSharingScope():
        plain = [keras.saving.serialize_keras_object(layer) for _ in "ab"]
        standalone = [kw.standalone_config(layer) for _ in "ab"]
        merged = [keras.saving.deserialize_keras_object(c) for c in plain]
        apart = [kw.from_standalone_config(c) for c in plain]
    # If Keras stops merging, standalone configs are no longer needed.
    assert all(kw.SHARED_OBJECT_KEY in c for c in plain)
    assert merged[0] is merged[1]
    assert not any(kw.SHARED_OBJECT_KEY in c for c in standalone)
    assert apart[0] is not apart[1]
