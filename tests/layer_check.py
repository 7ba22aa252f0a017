"""One generic check of a Keras layer, run on every keras_resnorm layer.

`check_layer(make, input_shape)` takes a factory `make(dtype=None)` that
returns a fresh layer, and checks: config round trip, serialize/deserialize,
weight counts after build, symbolic and eager call, eager = tf.function =
XLA, two `fit` steps that change every trainable weight, and the four dtype
policies (output in the compute dtype, norm weights float32, finite values
close to float32).
"""

import inspect

import keras
import numpy as np
import tensorflow as tf

from keras_resnorm._keras_workarounds import seed_generators as _generators

POLICIES = ("float32", "mixed_float16", "mixed_bfloat16", "bfloat16")
_TOLERANCE = {"float32": 1e-5, "mixed_float16": 2e-2, "mixed_bfloat16": 1e-1,
              "bfloat16": 1e-1}


def seed_generator_names(layer):
    return sorted(_generators(layer))


def check_weight_options(make, input_shape, weights):
    """Regularizers and constraints given to a layer do their job.

    `make(**options)` builds the layer with extra constructor options;
    `weights` names the weights (last path part) that take
    `<name>_regularizer` and `<name>_constraint`, or maps each weight to the
    prefix of its arguments (RMSNormalization's `scale` takes
    `gamma_regularizer`). Checks: one loss per
    regularized weight, equal to 0.01 * sum(w ** 2), counted in a model's
    losses and kept through a config round trip; a NonNeg constraint holds
    after `fit` steps that push the weights below zero.
    """
    x, _ = random_inputs(input_shape)
    prefix = weights if isinstance(weights, dict) else {w: w for w in weights}
    options = {f"{prefix[w]}_regularizer": keras.regularizers.L2(0.01)
               for w in weights}
    layer = make(**options)
    layer(x)
    assert len(layer.losses) == len(weights), layer.losses
    by_name = by_name_of(layer)
    expected = sum(0.01 * float(np.sum(np.square(by_name[w].numpy())))
                   for w in weights)
    np.testing.assert_allclose(float(sum(layer.losses)), expected,
                               rtol=1e-5)
    clone = type(layer).from_config(layer.get_config())
    clone(x)
    assert len(clone.losses) == len(weights)

    def trained(**options):
        layer = make(**options)
        inputs = keras.Input(shape=input_shape[1:])
        model = keras.Model(inputs, layer(inputs))
        model.compile(optimizer=keras.optimizers.SGD(10.0), loss="mse")
        # Targets of the opposite sign to the normalized inputs drive the
        # gains (and offsets) below zero.
        target = -100.0 * np.sign(np.asarray(layer(x)))
        model.fit(x, target, epochs=3, batch_size=len(x), verbose=0)
        return layer

    free = by_name_of(trained())
    for w in weights:
        # Without the constraint the weights do go negative ...
        assert free[w].numpy().min() < 0, w
    layer = trained(**{f"{prefix[w]}_constraint":
                       keras.constraints.NonNeg() for w in weights})
    for w in weights:
        # ... and with it they stay >= 0.
        assert by_name_of(layer)[w].numpy().min() >= 0, w
    assert type(layer).from_config(layer.get_config()).get_config()[
        f"{prefix[list(weights)[0]]}_constraint"]["class_name"] == "NonNeg"


def by_name_of(layer):
    return {w.path.split("/")[-1]: w for w in layer.weights}


def random_inputs(input_shape, seed=0, mask_tail=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=input_shape).astype("float32")
    if mask_tail:
        mask = np.ones(input_shape[:2], bool)
        mask[:, -mask_tail:] = False
        return x, mask
    return x, None


def _call(layer, x, mask, training=False):
    parameters = inspect.signature(layer.call).parameters
    kwargs = {}
    if "training" in parameters:
        kwargs["training"] = training
    if mask is not None and "mask" in parameters:
        kwargs["mask"] = mask
    return layer(x, **kwargs)


def check_layer(make, input_shape, *, trainable_weights=None,
                non_trainable_weights=0, seed_generators=0, losses=0,
                mask_tail=0, float32_weights=(), fit=True,
                policies=POLICIES):
    """Run the generic checks; raise AssertionError on the first failure.

    Args:
        make: `make(dtype=None) -> keras.layers.Layer`, a fresh layer each
            call.
        input_shape: concrete input shape, batch first.
        trainable_weights: expected number of trainable weights after build,
            or None to skip that count.
        non_trainable_weights: expected number of non-trainable weights.
        seed_generators: expected number of `keras.random.SeedGenerator`s in
            the layer and its sublayers (dropout, drop path), as Keras's own
            layer test counts them.
        losses: expected number of losses the layer adds on a call
            (regularizers).
        mask_tail: when > 0, a `(batch, time)` mask hiding that many last
            steps is passed, and the output mask must equal it.
        float32_weights: names (last path part) of weights that must stay
            float32 under every policy; `"*"` means all of the layer's own
            norm weights found by name in ("gamma", "beta", "scale",
            "alpha").
        fit: whether to run the one-step `fit` check.
        policies: the dtype policies to check.
    """
    x, mask = random_inputs(input_shape, mask_tail=mask_tail)
    layer = make()

    # Eager call builds; weight counts; output shape agrees with the layer.
    y = _call(layer, x, mask)
    assert tuple(y.shape) == tuple(layer.compute_output_shape(x.shape)), (
        y.shape, layer.compute_output_shape(x.shape))
    if trainable_weights is not None:
        assert len(layer.trainable_weights) == trainable_weights, [
            w.path for w in layer.trainable_weights]
    assert len(layer.non_trainable_weights) == non_trainable_weights
    found = seed_generator_names(layer)
    assert len(found) == seed_generators, found
    assert len(layer.losses) == losses, layer.losses
    if mask is not None:
        out_mask = layer.compute_mask(x, tf.constant(mask))
        np.testing.assert_array_equal(np.asarray(out_mask), mask)

    # Config round trip, and serialize/deserialize through the registry.
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(layer)
    )
    assert type(restored) is type(layer)
    assert restored.get_config() == config
    _call(restored, x, mask)
    assert len(restored.weights) == len(layer.weights)
    restored.set_weights(layer.get_weights())
    np.testing.assert_allclose(
        np.asarray(_call(restored, x, mask)), np.asarray(y), atol=1e-6
    )

    # Symbolic call through the functional API.
    sym_in = keras.Input(shape=input_shape[1:], batch_size=input_shape[0])
    sym_out = layer(sym_in)
    assert tuple(sym_out.shape) == tuple(y.shape), (sym_out.shape, y.shape)

    # Eager = tf.function = XLA.
    graph = tf.function(lambda a: _call(layer, a, mask))(x)
    xla = tf.function(lambda a: _call(layer, a, mask), jit_compile=True)(x)
    np.testing.assert_allclose(np.asarray(graph), np.asarray(y), atol=1e-5,
                               rtol=1e-5)
    np.testing.assert_allclose(np.asarray(xla), np.asarray(y), atol=1e-4,
                               rtol=1e-4)

    if fit:
        _check_fit(make, x, input_shape)
    for policy in policies:
        _check_policy(make, policy, x, mask, float32_weights)
    return layer


def _check_fit(make, x, input_shape):
    layer = make()
    inputs = keras.Input(shape=input_shape[1:])
    model = keras.Model(inputs, layer(inputs))
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    before = [np.array(w) for w in layer.trainable_weights]
    target = np.random.default_rng(1).normal(size=model.output_shape[1:])
    target = np.broadcast_to(target, (len(x),) + target.shape)
    # Two steps: a ReZero branch's weights only get a gradient once alpha
    # has left 0.
    history = model.fit(x, target, epochs=2, batch_size=len(x), verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    after = [np.array(w) for w in layer.trainable_weights]
    unchanged = [w.path for w, b, a in
                 zip(layer.trainable_weights, before, after)
                 if np.array_equal(b, a)]
    assert not unchanged, f"fit did not update {unchanged}"


def _check_policy(make, policy, x, mask, float32_weights):
    layer = make(dtype=policy)
    policy_obj = keras.dtype_policies.get(policy)
    y = _call(layer, x, mask)
    assert keras.backend.standardize_dtype(y.dtype) == policy_obj.compute_dtype
    values = np.asarray(tf.cast(y, tf.float32))
    assert np.all(np.isfinite(values)), policy
    # Same weights as the float32 reference: copy them over, then compare.
    ref_layer = make()
    _call(ref_layer, x, mask)
    layer.set_weights(ref_layer.get_weights())
    values = np.asarray(tf.cast(_call(layer, x, mask), tf.float32))
    ref = np.asarray(_call(ref_layer, x, mask))
    tol = _TOLERANCE[policy]
    np.testing.assert_allclose(values, ref, atol=tol * 4, rtol=tol)
    names = set(float32_weights)
    if "*" in names:
        names = {"gamma", "beta", "scale", "alpha", "rezero_alpha",
                 "layerscale_gamma"}
    for w in layer.weights:
        if w.path.split("/")[-1] in names:
            assert w.dtype == "float32", (policy, w.path, w.dtype)
