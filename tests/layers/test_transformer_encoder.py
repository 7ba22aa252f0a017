import keras
import numpy as np
import pytest

from keras_resnorm import (
    FeedForward,
    SelfAttention,
    TransformerEncoder,
    TransformerEncoderBlock,
)
from layer_check import check_layer


@pytest.mark.parametrize("options", [
    {"placement": "pre"},
    {"placement": "post", "norm": "rms"},
    {"placement": "sandwich", "norm": "scale"},
    {"placement": "deepnorm", "depth": 6},
    {"placement": "none", "branch_scale": "rezero"},
    {"placement": "pre", "norm": "dyt", "branch_scale": "layerscale",
     "dropout": 0.1, "drop_path": 0.1, "seed": 2},
])
def test_block_generic_check(options):
    # Each of the two wrappers has a dropout and a drop-path generator.
    generators = 2 * ((options.get("dropout", 0) > 0)
                      + (options.get("drop_path", 0) > 0))
    check_layer(lambda dtype=None: TransformerEncoderBlock(
        num_heads=2, intermediate_dim=16, dtype=dtype, **options),
        (3, 5, 8), mask_tail=2, float32_weights="*",
        seed_generators=generators)


@pytest.mark.parametrize("placement,has_final", [
    ("pre", True), ("sandwich", True), ("post", False), ("deepnorm", False),
    ("none", False),
])
def test_stack_final_norm_rules(placement, has_final):
    enc = TransformerEncoder(num_layers=3, num_heads=2, intermediate_dim=16,
                             placement=placement, norm="rms")
    assert (enc.final_norm_layer is not None) is has_final
    assert all(b.depth == 3 for b in enc.blocks)
    forced = TransformerEncoder(num_layers=1, num_heads=2, intermediate_dim=16,
                                placement=placement, final_norm=True)
    assert forced.final_norm_layer is not None


def test_stack_generic_check_and_linear_drop_path():
    enc = check_layer(lambda dtype=None: TransformerEncoder(
        num_layers=3, num_heads=2, intermediate_dim=16, drop_path=0.2,
        norm="rms", seed=5, dtype=dtype), (3, 5, 8), mask_tail=1,
        float32_weights="*", seed_generators=4)  # drop path in blocks 1, 2
    rates = [b.drop_path for b in enc.blocks]
    assert rates == pytest.approx([0.0, 0.1, 0.2])


def test_deepnorm_stack_uses_depth_for_alpha():
    enc = TransformerEncoder(num_layers=4, num_heads=2, intermediate_dim=16,
                             placement="deepnorm")
    alpha = enc.blocks[0].attention_block.deepnorm_alpha
    assert alpha == pytest.approx(8 ** 0.25)


def test_padding_does_not_change_unpadded_outputs():
    enc = TransformerEncoder(num_layers=2, num_heads=2, intermediate_dim=16)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, 6, 8)).astype("float32")
    mask = np.array([[True] * 4 + [False] * 2])
    x2 = x.copy()
    x2[:, 4:] = rng.normal(size=(1, 2, 8)) * 50
    np.testing.assert_allclose(np.asarray(enc(x, mask=mask))[:, :4],
                               np.asarray(enc(x2, mask=mask))[:, :4],
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("make,generators", [
    (lambda dtype=None: SelfAttention(num_heads=2, dtype=dtype), 0),
    (lambda dtype=None: SelfAttention(num_heads=2, key_dim=3, dropout=0.1,
                                      use_causal_mask=True, dtype=dtype), 1),
    (lambda dtype=None: FeedForward(16, dropout=0.1, dtype=dtype), 1),
    (lambda dtype=None: FeedForward(16, output_dim=4, activation="relu",
                                    dtype=dtype), 0),
])
def test_sublayers_generic_check(make, generators):
    check_layer(make, (3, 5, 8), mask_tail=1, seed_generators=generators)


def test_causal_self_attention_does_not_look_ahead():
    layer = SelfAttention(num_heads=2, use_causal_mask=True)
    x = np.random.default_rng(0).normal(size=(1, 5, 8)).astype("float32")
    y1 = np.asarray(layer(x))
    x2 = x.copy()
    x2[:, 3:] += 10
    np.testing.assert_allclose(np.asarray(layer(x2))[:, :3], y1[:, :3],
                               rtol=1e-5, atol=1e-5)


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"Received: num_heads=0"):
        SelfAttention(num_heads=0)
    with pytest.raises(ValueError, match=r"Received: intermediate_dim=-4"):
        FeedForward(-4)
    with pytest.raises(ValueError, match=r"Received: num_layers=0"):
        TransformerEncoder(0, 2, 8)
    with pytest.raises(ValueError, match=r"Received: final_norm='yes'"):
        TransformerEncoder(1, 2, 8, final_norm="yes")
    with pytest.raises(ValueError, match=r"Received: placement='middle'"):
        TransformerEncoderBlock(2, 8, placement="middle")
    with pytest.raises(ValueError, match=r"rank 3 .* input_shape=\(2, 8\)"):
        SelfAttention(num_heads=2).build((2, 8))


@pytest.mark.parametrize("placement", ["pre", "sandwich"])
@pytest.mark.parametrize("norm", ["layer", "rms", "scale"])
def test_fused_chain_equals_layer_by_layer(placement, norm):
    import tensorflow as tf

    x = tf.constant(np.random.default_rng(0).normal(size=(2, 6, 8)) * 2,
                    tf.float32)
    mask = np.array([[True] * 6, [True] * 4 + [False] * 2])
    results = {}
    for fused in (True, False):
        keras.utils.set_random_seed(5)
        enc = TransformerEncoder(num_layers=2, num_heads=2,
                                 intermediate_dim=16, placement=placement,
                                 norm=norm, fused=fused)
        enc.build(x.shape)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = enc(x, mask=mask)
            loss = tf.reduce_sum(y * tf.cos(y))
        results[fused] = [y] + tape.gradient(loss, [x] + enc.trainable_weights)
        # Layer by layer, through each wrapper's own call:
        z = x
        for block in enc.blocks:
            z = block.attention_block(z, mask=mask)
            z = block.feed_forward_block(z, mask=mask)
        z = enc.final_norm_layer(z)
        np.testing.assert_allclose(np.asarray(y), np.asarray(z), rtol=1e-4,
                                   atol=1e-4)
    for a, b in zip(results[True], results[False]):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4,
                                   atol=1e-4)


def test_pre_norm_stack_fuses_every_add_with_the_next_norm(monkeypatch):
    from keras_resnorm import ops as rn_ops

    calls = []
    original = rn_ops.fused_add_norm

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(rn_ops, "fused_add_norm", counting)
    enc = TransformerEncoder(num_layers=3, num_heads=2, intermediate_dim=16,
                             placement="pre", norm="layer")
    enc(np.zeros((1, 4, 8), "float32"))
    # 3 blocks x 2 adds, each fused with the next norm or the final norm.
    assert len(calls) == 6
    calls.clear()
    TransformerEncoder(num_layers=3, num_heads=2, intermediate_dim=16,
                       placement="pre", fused=False)(np.zeros((1, 4, 8),
                                                              "float32"))
    assert not calls
