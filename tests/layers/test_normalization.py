"""The norm lookup, and what every norm promises under every dtype policy."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_resnorm as kr

NAMES = {"layer": kr.LayerNormalization, "rms": kr.RMSNormalization,
         "scale": kr.ScaleNormalization, "dyt": kr.DynamicTanh}


@pytest.mark.parametrize("name,cls", NAMES.items())
def test_lookup_by_name(name, cls):
    layer = kr.normalization(name, name="n1", dtype="mixed_bfloat16")
    assert type(layer) is cls and layer.name == "n1"
    assert layer.dtype_policy.name == "mixed_bfloat16"


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"norm must be one of \('layer', "
                       r"'rms', 'scale', 'dyt'\). Received: norm='batch'"):
        kr.normalization("batch")


HARD_ROWS = np.stack([np.full(32, 6e4), np.zeros(32), np.full(32, -7.0),
                      np.linspace(-6e4, 6e4, 32)])


@pytest.mark.parametrize("policy", ["float32", "mixed_float16",
                                    "mixed_bfloat16", "bfloat16"])
@pytest.mark.parametrize("name", NAMES)
def test_hard_rows_stay_finite_with_float32_weights(name, policy):
    layer = kr.normalization(name, dtype=policy)
    inputs = keras.Input((32,))
    model = keras.Model(inputs, layer(inputs))
    x = tf.constant(HARD_ROWS, keras.dtype_policies.get(policy).compute_dtype)
    for fn in (model, tf.function(model), tf.function(model, jit_compile=True)):
        y = fn(x)
        assert keras.backend.standardize_dtype(y.dtype) == \
            layer.compute_dtype
        assert np.all(np.isfinite(np.asarray(tf.cast(y, tf.float32))))
    assert all(w.dtype == "float32" for w in layer.weights)
