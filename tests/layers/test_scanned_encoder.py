"""TransformerEncoder(scan=True): one block body in a loop over stacked
weights gives the unrolled stack's numbers, and draws its own randomness
at every depth."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_resnorm import DropPath, TransformerEncoder
from layer_check import check_layer

SHAPE = (2, 5, 8)
LAYERS = 3


def pair(**options):
    """An unrolled and a scanned encoder of one config, same weights."""
    kwargs = dict(num_layers=LAYERS, num_heads=2, intermediate_dim=16,
                  **options)
    unrolled, scanned = TransformerEncoder(**kwargs), \
        TransformerEncoder(scan=True, **kwargs)
    x = np.zeros(SHAPE, "float32")
    unrolled(x), scanned(x)
    scanned.set_unrolled_weights(unrolled.get_weights())
    return unrolled, scanned


def inputs():
    rng = np.random.default_rng(0)
    x = rng.normal(size=SHAPE).astype("float32")
    mask = np.ones(SHAPE[:2], bool)
    mask[:, -2:] = False
    return tf.constant(x), tf.constant(mask)


@pytest.mark.parametrize("options", [
    {"placement": "pre"},
    {"placement": "post", "norm": "rms"},
    {"placement": "sandwich", "norm": "scale", "fused": False},
    {"placement": "deepnorm"},
    {"placement": "none", "branch_scale": "rezero"},
    {"placement": "pre", "norm": "dyt", "branch_scale": "layerscale"},
    {"placement": "hyper", "expansion": 2},
    {"placement": "mhc", "expansion": 2},
])
def test_scanned_equals_unrolled_outputs_and_gradients(options):
    unrolled, scanned = pair(**options)
    x, mask = inputs()
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        out_u = unrolled(x, mask=mask)
        out_s = scanned(x, mask=mask)
        loss_u = tf.reduce_sum(tf.sin(out_u))
        loss_s = tf.reduce_sum(tf.sin(out_s))
    np.testing.assert_allclose(out_s, out_u, atol=1e-5, rtol=1e-5)
    grads_u = tape.gradient(loss_u, [x] + unrolled.trainable_weights)
    grads_s = tape.gradient(loss_s, [x] + scanned.trainable_weights)
    np.testing.assert_allclose(grads_s[0], grads_u[0], atol=1e-5, rtol=1e-5)
    # The scanned gradients, unstacked, are the unrolled ones in order.
    per_block = len(scanned.trainable_weights) - len(
        scanned.final_norm_layer.trainable_weights
        if scanned.final_norm_layer is not None else [])
    stacked = [np.asarray(g) for g in grads_s[1:1 + per_block]]
    unstacked = [g[i] for i in range(LAYERS) for g in stacked]
    unstacked += grads_s[1 + per_block:]
    assert len(unstacked) == len(grads_u) - 1
    for got, want in zip(unstacked, grads_u[1:]):
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)
    # Weights convert back: an unrolled encoder from the scanned weights.
    back = TransformerEncoder(num_layers=LAYERS, num_heads=2,
                              intermediate_dim=16, **options)
    back(x)
    back.set_weights(scanned.get_unrolled_weights())
    np.testing.assert_allclose(back(x, mask=mask), out_u, atol=1e-6)


def test_scanned_equals_unrolled_under_xla_and_trains_the_same():
    unrolled, scanned = pair(placement="pre", norm="rms")
    x, mask = inputs()
    for jit in (False, True):
        run_u = tf.function(lambda a: unrolled(a, mask=mask), jit_compile=jit)
        run_s = tf.function(lambda a: scanned(a, mask=mask), jit_compile=jit)
        np.testing.assert_allclose(run_s(x), run_u(x), atol=1e-5)
    # Three SGD steps under XLA from the same weights: same weights after.
    target = np.random.default_rng(1).normal(size=SHAPE).astype("float32")
    for encoder in (unrolled, scanned):
        model = keras.Sequential([keras.Input(SHAPE[1:]), encoder])
        model.compile(keras.optimizers.SGD(0.1), "mse", jit_compile=True)
        model.fit(x, target, epochs=3, batch_size=SHAPE[0], verbose=0)
    for got, want in zip(scanned.get_unrolled_weights(),
                         unrolled.get_weights()):
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_scanned_generic_check():
    # One seed generator: the encoder's own, which drives every depth.
    check_layer(lambda dtype=None: TransformerEncoder(
        num_layers=3, num_heads=2, intermediate_dim=16, norm="rms",
        dropout=0.1, drop_path=0.2, seed=4, scan=True, dtype=dtype),
        SHAPE, mask_tail=1, float32_weights="*", seed_generators=1)


def test_stacked_weights_have_a_depth_axis_and_readable_names():
    _, scanned = pair(placement="pre")
    kernels = [w for w in scanned.weights if w.path.endswith(
        "feed_forward_residual-feed_forward-hidden-kernel")]
    assert kernels, [w.path for w in scanned.weights]
    assert tuple(kernels[0].shape) == (LAYERS, 8, 16)
    # 3 blocks x 16 block weights + the final norm's 2, as arrays.
    assert len(scanned.get_unrolled_weights()) == 3 * 16 + 2
    assert len(scanned.weights) == 16 + 2


def record(monkeypatch, encoder):
    """Record the seed each template generator returns, and the rate each
    DropPath is called with, in call order (eager calls only)."""
    seeds, rates = [], []
    for generator in encoder._stack.generators:
        original = generator.next

        def next_(ordered=True, original=original):
            value = original(ordered)
            seeds.append(tuple(np.asarray(value).tolist()))
            return value
        monkeypatch.setattr(generator, "next", next_)
    call = DropPath.call

    def drop_path_call(self, inputs, training=None):
        rates.append(float(self._rate_for_call))
        return call(self, inputs, training=training)
    monkeypatch.setattr(DropPath, "call", drop_path_call)
    return seeds, rates


def test_every_depth_draws_its_own_randomness_reproducibly(monkeypatch):
    x, mask = inputs()
    options = dict(num_layers=4, num_heads=2, intermediate_dim=16,
                   dropout=0.3, drop_path=0.3, seed=11, scan=True)
    first = TransformerEncoder(**options)
    first(x)
    seeds, rates = record(monkeypatch, first)
    y1 = first(x, mask=mask, training=True)
    y2 = first(x, mask=mask, training=True)
    # 4 depths x (2 dropouts + 2 drop paths) per call, all different, and
    # a second call draws new ones.
    assert len(seeds) == 2 * 4 * 4
    assert len(set(seeds)) == len(seeds)
    assert not np.allclose(y1, y2)
    # Drop path grows linearly over depth, as in the unrolled stack.
    assert rates[:8] == pytest.approx([0.0, 0.0, 0.1, 0.1, 0.2, 0.2,
                                       0.3, 0.3])
    # Same seed, same weights: the same draws and outputs.
    second = TransformerEncoder(**options)
    second(x)
    second.set_weights(first.get_weights())
    seeds_again, _ = record(monkeypatch, second)
    np.testing.assert_allclose(second(x, mask=mask, training=True), y1,
                               atol=1e-6)
    assert seeds_again == seeds[:16]
    # Inference draws nothing and equals the unrolled encoder.
    seeds.clear()
    first(x, mask=mask, training=False)
    assert seeds == []


def test_scan_arguments_are_checked():
    with pytest.raises(ValueError, match=r"scan must be one of \(False, "
                                         r"True\)\. Received: scan=1"):
        TransformerEncoder(num_layers=2, num_heads=2, intermediate_dim=8,
                           scan=1)
    scanned = TransformerEncoder(num_layers=2, num_heads=2,
                                 intermediate_dim=8, scan=True)
    with pytest.raises(ValueError, match="get_unrolled_weights needs a "
                                         "built encoder"):
        scanned.get_unrolled_weights()
    with pytest.raises(ValueError, match="set_unrolled_weights needs a "
                                         "built encoder"):
        scanned.set_unrolled_weights([])
    scanned(np.zeros(SHAPE, "float32"))
    with pytest.raises(ValueError, match="Expected 34 arrays .* Received: "
                                         "3 arrays"):
        scanned.set_unrolled_weights([np.zeros(1)] * 3)


class CallCounter(keras.layers.Layer):
    """A stateful norm of the user's own: counts its calls in training."""

    def build(self, input_shape):
        self.calls = self.add_weight(shape=(), initializer="zeros",
                                     trainable=False, name="calls")

    def call(self, x, training=None):
        if training:
            self.calls.assign_add(1.0)
        return x


@pytest.mark.parametrize("norm", [keras.layers.BatchNormalization,
                                  CallCounter],
                         ids=["batch_norm", "call_counter"])
@pytest.mark.parametrize("mode", ["eager", "tf_function"])
def test_state_a_block_assigns_is_carried_through_the_loop(norm, mode):
    # A scanned stack dropped every state update of its blocks (0 of 4
    # BatchNormalization statistics changed): each depth's now lands in its
    # slice, with the unrolled stack's values.
    unrolled, scanned = pair(norm=norm, placement="post")
    x, _ = inputs()
    for encoder in (unrolled, scanned):
        call = encoder if mode == "eager" else tf.function(encoder)
        call(x, training=True)
        call(x * 2.0, training=True)
        call(x, training=False)
    expected = unrolled.get_weights()
    got = scanned.get_unrolled_weights()
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    fresh, _ = pair(norm=norm, placement="post")
    moved = [not np.allclose(a, b) for a, b in zip(
        scanned.get_unrolled_weights(), fresh.get_weights())]
    state = [w for block in unrolled.blocks for w in block.weights]
    changed = {w.path for w, m in zip(state, moved) if not w.trainable and m}
    assert len(changed) == len([w for w in state if not w.trainable])


def test_state_is_carried_by_fit():
    inputs_ = keras.Input(SHAPE[1:])
    encoder = TransformerEncoder(num_layers=LAYERS, num_heads=2,
                                 intermediate_dim=16, placement="post",
                                 norm=keras.layers.BatchNormalization,
                                 scan=True)
    model = keras.Model(inputs_, encoder(inputs_))
    model.compile("sgd", "mse")
    stacked = [w for w in encoder.non_trainable_weights
               if len(w.shape) > 1 and w.shape[0] == LAYERS]
    before = [np.asarray(w) for w in stacked]
    x, _ = inputs()
    model.fit(x, x, epochs=1, verbose=0)
    for a, w in zip(before, stacked):
        for depth in range(LAYERS):
            assert not np.allclose(a[depth], np.asarray(w)[depth]), w.path
