"""keras_resnorm.optimizers.AdamW: Keras's AdamW, clipping after the sum."""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np

from keras_resnorm import optimizers


def _train(optimizer, steps=3):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5),
                              keras.layers.Dense(1)])
    model.compile(optimizer, "mse")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 6)).astype("float32")
    y = rng.normal(size=(16, 1)).astype("float32")
    model.fit(x, y, batch_size=16, epochs=steps, verbose=0, shuffle=False)
    return model.get_weights()


def test_one_device_equals_keras_adamw():
    for clip in ({"clipnorm": 0.01}, {"global_clipnorm": 0.01},
                 {"clipvalue": 0.001}, {}):
        ours = _train(optimizers.AdamW(1e-2, **clip))
        theirs = _train(keras.optimizers.AdamW(1e-2, **clip))
        for a, b in zip(ours, theirs):
            np.testing.assert_array_equal(a, b)


def test_config_round_trip_and_registration():
    optimizer = optimizers.AdamW(3e-4, weight_decay=0.05, clipnorm=1.0)
    config = keras.optimizers.serialize(optimizer)
    assert config["registered_name"] == "keras_resnorm>AdamW"
    again = keras.optimizers.deserialize(config)
    assert type(again) is optimizers.AdamW
    assert again.get_config() == optimizer.get_config()


MIRRORED = textwrap.dedent("""
    import os, sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from keras_resnorm import optimizers

    def train(make, strategy):
        keras.utils.set_random_seed(0)
        with strategy.scope():
            model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5),
                                      keras.layers.Dense(1)])
            model.compile(make(), "mse")
        rng = np.random.default_rng(0)
        x = rng.normal(size=(16, 6)).astype("float32")
        y = rng.normal(size=(16, 1)).astype("float32")
        model.fit(x, y, batch_size=16, epochs=3, verbose=0, shuffle=False)
        return np.concatenate([w.ravel() for w in model.get_weights()])

    two = tf.distribute.MirroredStrategy(
        ["/cpu:0", "/cpu:1"],
        cross_device_ops=tf.distribute.ReductionToOneDevice())
    one = tf.distribute.get_strategy()
    ours = lambda: optimizers.AdamW(1e-2, clipnorm=0.01)
    theirs = lambda: keras.optimizers.AdamW(1e-2, clipnorm=0.01)
    reference = train(ours, one)
    print("ours", np.abs(train(ours, two) - reference).max())
    print("keras", np.abs(train(theirs, two) - reference).max())
""")


def test_two_replicas_take_the_one_device_step():
    out = subprocess.run([sys.executable, "-c", MIRRORED], capture_output=True,
                         text=True, timeout=300,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert out.returncode == 0, out.stderr[-3000:]
    diffs = dict(line.split() for line in out.stdout.splitlines()
                 if line.startswith(("ours", "keras")))
    # Summing then clipping matches one device up to float rounding; Keras's
    # own AdamW clips each replica's half and lands visibly elsewhere (this
    # second check says when a Keras release makes the subclass unneeded).
    assert float(diffs["ours"]) < 1e-6, diffs
    assert float(diffs["keras"]) > 1e-3, diffs
