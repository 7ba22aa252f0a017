"""`use_causal_mask`: a decoder-only stack of our blocks. Changing the tokens
after position i leaves every output up to i exactly as it was, for every
placement, unrolled and scanned, eager and under XLA, with a padding mask,
in mixed precision and after a `.keras` round trip."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_resnorm import (
    TransformerEncoder,
    TransformerEncoderBlock,
    placements,
)

SHAPE = (2, 7, 8)
CUT = 3  # positions 0..3 must not see 4..6


def inputs():
    rng = np.random.default_rng(0)
    x = rng.normal(size=SHAPE).astype("float32")
    later = x.copy()
    later[:, CUT + 1:] = rng.normal(size=later[:, CUT + 1:].shape) * 10
    mask = np.ones(SHAPE[:2], bool)
    mask[1, -2:] = False  # padding too
    return x, later, mask


def encoder(placement, scan, **options):
    return TransformerEncoder(
        num_layers=2, num_heads=2, intermediate_dim=16, placement=placement,
        scan=scan, use_causal_mask=True, **options)


def assert_no_leak(call):
    x, later, mask = inputs()
    a = np.asarray(call(x, mask), "float32")
    b = np.asarray(call(later, mask), "float32")
    # Exactly 0: a masked key's weight is exactly 0 after the softmax.
    np.testing.assert_array_equal(a[:, :CUT + 1], b[:, :CUT + 1])
    assert not np.array_equal(a[:, CUT + 1:], b[:, CUT + 1:])


@pytest.mark.parametrize("scan", [False, True], ids=["unrolled", "scanned"])
@pytest.mark.parametrize("placement", placements.ENCODER)
def test_no_position_sees_a_later_one(placement, scan):
    layer = encoder(placement, scan)
    assert_no_leak(lambda x, mask: layer(x, mask=mask))


@pytest.mark.parametrize("scan", [False, True], ids=["unrolled", "scanned"])
@pytest.mark.parametrize("placement", ["pre", "post", "mhc"])
def test_no_leak_under_xla_and_in_training(placement, scan):
    layer = encoder(placement, scan, dropout=0.0, drop_path=0.0)
    layer(inputs()[0])  # a scanned stack builds eagerly (_scan.py)
    compiled = tf.function(lambda x, mask: layer(x, mask=mask, training=True),
                           jit_compile=True)
    assert_no_leak(compiled)


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_no_leak_in_mixed_precision(policy):
    layer = encoder("pre", True, dtype=policy)
    assert_no_leak(lambda x, mask: layer(x, mask=mask))


def test_without_the_flag_positions_do_see_later_ones():
    layer = TransformerEncoder(num_layers=1, num_heads=2, intermediate_dim=16)
    x, later, mask = inputs()
    assert not np.array_equal(np.asarray(layer(x))[:, :CUT + 1],
                              np.asarray(layer(later))[:, :CUT + 1])


@pytest.mark.parametrize("scan", [False, True], ids=["unrolled", "scanned"])
def test_the_flag_survives_a_keras_file(tmp_path, scan):
    tokens = keras.Input(SHAPE[1:])
    model = keras.Model(tokens, encoder("sandwich", scan)(tokens))
    model.save(tmp_path / "causal.keras")
    loaded = keras.saving.load_model(tmp_path / "causal.keras",
                                     safe_mode=True)
    assert loaded.layers[-1].get_config()["use_causal_mask"] is True
    assert_no_leak(lambda x, mask: loaded(x))


def test_the_block_takes_the_flag_and_checks_it():
    block = TransformerEncoderBlock(2, 16, use_causal_mask=True)
    assert block.get_config()["use_causal_mask"] is True
    assert_no_leak(lambda x, mask: block(x, mask=mask))
    with pytest.raises(ValueError, match=r"use_causal_mask must be one of "
                       r"\(False, True\)\. Received: use_causal_mask='yes'"):
        TransformerEncoderBlock(2, 16, use_causal_mask="yes")
