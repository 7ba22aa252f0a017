"""Every place keras_resnorm leans on Keras 3.15 internals, and why.

Keras 3.15 (`keras>=3.15,<3.16` in setup.cfg) lacks a public way to do each
of these, or does something that breaks our training under
`tf.distribute`. They live here, each with the Keras behaviour it works
around, so that a Keras upgrade is reviewed in one file;
`tests/test_keras_workarounds.py` checks every internal used here and each
behaviour that is still worked around, and fails when Keras changes under
them.

1. `flatten_layers`: no public recursive walk over nested layers (Keras's
   `Model.layers` lists the top level only); uses `Layer._flatten_layers`.
2. `seed_generators`: `save_weights` leaves out `SeedGenerator` states
   (dropout and drop path draw from them), so an exact resume saves them
   apart; they are found in `Layer._seed_generators`.
3. `vector_logs_train_step`: under `MultiWorkerMirroredStrategy`, Keras
   reduces each step's logs with MEAN over axis 0, which fails for scalar
   logs ("Invalid reduction dimension 0 for input with 0 dimensions",
   tensorflow#72388).
4. `build_for_fit`: under a strategy, `fit` builds from the first batch
   reduced across replicas with MEAN, which fails on bool inputs
   (MirroredStrategy: no AddN kernel for bool) and int inputs
   (MultiWorkerMirroredStrategy). Uses `Model._symbolic_build` and replaces
   `Model._maybe_symbolic_build`.
5. `sum_then_clip_update_step`: the TensorFlow backend's optimizer clips
   each replica's share of the gradient before the all-reduce adds them,
   so a clipped step under a strategy is not the step one device takes.
   Overrides `Optimizer._clip_gradients` / `_backend_update_step` (see
   `keras_resnorm.optimizers.AdamW`).
6. `get_keras_mask` / `set_keras_mask`: no public way to read or detach the
   mask Keras attaches to a tensor; a residual wrapper detaches it for a
   wrapped layer that does not support masking (see
   `layers/_residual_core.py`). Uses `keras.src.backend.common.masking`.
7. `standalone_config` / `from_standalone_config`: inside Keras's object
   sharing scope (every `.keras` save and load), `serialize_keras_object`
   keys each config by `id(obj)` and marks a second config with the same
   id as `shared_object_id`; `deserialize_keras_object` then returns the
   first object for both. A norm template serialized twice, or two
   short-lived copies whose ids recur while a model loads, came back as
   one layer built twice. These keep a config out of that bookkeeping.

Nothing here imports TensorFlow at module level.
"""

import copy

import keras

KERAS_CHECKED = "3.15"

# The key Keras's object sharing scope adds to a config it saw twice.
SHARED_OBJECT_KEY = "shared_object_id"


def flatten_layers(model, include_self=False):
    """Every layer inside `model`, recursively, in a fixed order."""
    return list(model._flatten_layers(include_self=include_self,
                                      recursive=True))


def seed_generators(model):
    """`{name: SeedGenerator}` of every layer inside `model`, fixed order."""
    found = {}
    for index, layer in enumerate(flatten_layers(model, include_self=True)):
        for i, generator in enumerate(getattr(layer, "_seed_generators", ())):
            found[f"{index:03d}-{type(layer).__name__}/{i}"] = generator
    return found


def vector_logs_train_step(model):
    """Make `model.train_step` return its scalar logs as 1-element vectors.

    They reduce to the mean over replicas, which for these synchronized
    values is the value itself.
    """
    import tensorflow as tf

    train_step = model.train_step

    def vector_logs_step(data):
        return {k: tf.reshape(v, [1]) if v.shape.rank == 0 else v
                for k, v in train_step(data).items()}

    model.train_step = vector_logs_step


def build_for_fit(model, batch, strategy, skip_fit_build):
    """Build model, loss, metrics and optimizer from one local `batch`; with
    `skip_fit_build`, make `fit` skip its own (distributed) build."""
    with strategy.scope():
        model._symbolic_build(data_batch=batch)
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
    if skip_fit_build:
        def already_built(iterator=None, data_batch=None):
            return None

        model._maybe_symbolic_build = already_built


def sum_then_clip_update_step(optimizer, grads, trainable_variables,
                              learning_rate, clip):
    """The TensorFlow backend's update step with the replica sum first,
    then `clip(grads)`, then the distributed update."""
    import tensorflow as tf

    variables = [v.value if isinstance(v, keras.Variable) else v
                 for v in trainable_variables]
    pairs = optimizer._all_reduce_sum_gradients(list(zip(grads, variables)))
    clipped = clip([g for g, _ in pairs])
    tf.__internal__.distribute.interim.maybe_merge_call(
        optimizer._distributed_tf_update_step,
        optimizer._distribution_strategy, list(zip(clipped, variables)),
        learning_rate)


def get_keras_mask(x):
    """The mask Keras attached to `x`, or `None`."""
    from keras.src.backend.common import masking

    return masking.get_keras_mask(x)


def set_keras_mask(x, mask):
    """Attach `mask` to `x` in place (`None` detaches it)."""
    from keras.src.backend.common import masking

    masking.set_keras_mask(x, mask)


def _unshared(config):
    if isinstance(config, dict):
        return {k: _unshared(v) for k, v in config.items()
                if k != SHARED_OBJECT_KEY}
    if isinstance(config, (list, tuple)):
        return type(config)(_unshared(v) for v in config)
    return config


def standalone_config(obj):
    """`keras.saving.serialize_keras_object(obj)`, copied so that no
    sharing scope marks it later, and without any sharing mark."""
    return _unshared(copy.deepcopy(keras.saving.serialize_keras_object(obj)))


def from_standalone_config(config):
    """`keras.saving.deserialize_keras_object(config)` that makes a new
    object even inside a sharing scope."""
    return keras.saving.deserialize_keras_object(_unshared(config))
