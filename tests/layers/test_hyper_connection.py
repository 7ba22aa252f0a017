import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_resnorm import HyperConnection, ResidualWrapper, TransformerEncoder
from keras_resnorm.layers.hyper_connection import (
    collapse_stream,
    expand_stream,
    sinkhorn_knopp,
)
from layer_check import POLICIES, check_layer

FORMS = [(False, False), (True, False), (False, True), (True, True)]
HC_WEIGHTS = ("read_bias", "write_bias", "mix_bias", "read_proj",
              "write_proj", "mix_proj", "read_scale", "write_scale",
              "mix_scale", "gamma", "beta", "scale")


def make_hc(dynamic, manifold, d=8, **options):
    def make(dtype=None):
        return HyperConnection(
            keras.layers.Dense(d, activation="tanh", dtype=dtype),
            expansion=4, dynamic=dynamic, manifold=manifold, dtype=dtype,
            **options)
    return make


@pytest.mark.parametrize("dynamic,manifold", FORMS)
def test_generic_layer_check(dynamic, manifold):
    # A larger dynamic scale than the 0.01 default, so that two fit steps
    # move every weight (at 0.01 the stream norm's gain moves by less than
    # float32 resolves in two steps of mHC).
    check_layer(make_hc(dynamic, manifold, dynamic_scale_init=0.5),
                (3, 5, 4, 8), mask_tail=2, float32_weights=HC_WEIGHTS)


def test_generic_layer_check_with_dropout_and_a_mask_taking_branch():
    from keras_resnorm import SelfAttention

    check_layer(lambda dtype=None: HyperConnection(
        SelfAttention(num_heads=2, dtype=dtype), expansion=2, dropout=0.1,
        seed=4, manifold=True, dynamic_scale_init=0.5, dtype=dtype),
        (3, 5, 2, 8), mask_tail=2,
        float32_weights=HC_WEIGHTS, seed_generators=1)


def _randomize(layer, seed=0, scale=0.5):
    rng = np.random.default_rng(seed)
    layer.set_weights([rng.normal(size=w.shape).astype("float32") * scale
                       + (1.0 if w.path.endswith("gamma") else 0.0)
                       for w in layer.weights])


def test_one_stream_static_equals_a_pre_norm_residual_exactly():
    x = np.random.default_rng(0).normal(size=(3, 5, 8)).astype("float32")
    hc = HyperConnection(keras.layers.Dense(8, activation="tanh"),
                         expansion=1, dynamic=False)
    pre = ResidualWrapper(keras.layers.Dense(8, activation="tanh"),
                          placement="pre", fused=False)
    hc(expand_stream(x, 1))
    pre(x)
    _randomize(pre)
    hc.layer.set_weights(pre.layer.get_weights())
    hc.norm_layer.set_weights(pre.norm_layer.get_weights())
    got = np.asarray(hc(expand_stream(x, 1)))[..., 0, :]
    np.testing.assert_array_equal(got, np.asarray(pre(x)))


def _copy_branches(source, target):
    for a, b in zip(source.blocks, target.blocks):
        for wa, wb in zip(a.residual_wrappers, b.residual_wrappers):
            wb.layer.set_weights(wa.layer.get_weights())
            wb.norm_layer.set_weights(wa.norm_layer.get_weights())
    target.final_norm_layer.set_weights(source.final_norm_layer.get_weights())


@pytest.mark.parametrize("placement", ["hyper", "mhc"])
def test_the_initial_network_is_a_pre_norm_network(placement):
    x = np.random.default_rng(1).normal(size=(2, 6, 8)).astype("float32")
    options = dict(num_layers=3, num_heads=2, intermediate_dim=16)
    pre = TransformerEncoder(placement="pre", fused=False, **options)
    hyper = TransformerEncoder(placement=placement, expansion=4, **options)
    pre(x)
    hyper(x)
    _randomize(pre, seed=2, scale=0.3)
    _copy_branches(pre, hyper)
    np.testing.assert_allclose(np.asarray(hyper(x)), np.asarray(pre(x)),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("policy", POLICIES)
def test_mhc_mixing_is_doubly_stochastic_under_every_policy(policy):
    layer = make_hc(True, True)(dtype=policy)
    x = np.random.default_rng(3).normal(size=(3, 5, 4, 8)) * 2
    layer(tf.constant(x, layer.compute_dtype))
    # Trained-looking weights: the biases and projections moved away from
    # their initial values, logits of spread about 1. (Sinkhorn-Knopp's 20
    # iterations leave rows off by up to 3% for logits of spread 2 and
    # more; columns always sum to 1.)
    _randomize(layer, seed=4, scale=0.2)
    read, write, mix = layer.weights_for(tf.constant(x, layer.compute_dtype))
    for value in (read, write, mix):
        assert keras.backend.standardize_dtype(value.dtype) == "float32"
    mix = np.asarray(mix)
    np.testing.assert_allclose(mix.sum(axis=-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(mix.sum(axis=-2), 1.0, atol=1e-5)
    assert mix.min() >= 0
    read, write = np.asarray(read), np.asarray(write)
    assert 0 <= read.min() and read.max() <= 1
    assert 0 <= write.min() and write.max() <= 2


def test_sinkhorn_knopp_against_float64():
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(6, 4, 4)) * 2
    m = np.exp(logits - logits.max(axis=(-1, -2), keepdims=True))
    for _ in range(20):
        m = m / m.sum(axis=-1, keepdims=True)
        m = m / m.sum(axis=-2, keepdims=True)
    got = np.asarray(sinkhorn_knopp(logits.astype("float32")))
    np.testing.assert_allclose(got, m, rtol=1e-5, atol=1e-6)
    big = np.asarray(sinkhorn_knopp(np.float32(500) * np.eye(3)))
    assert np.all(np.isfinite(big))
    np.testing.assert_allclose(big.sum(axis=0), 1.0, atol=1e-5)


def test_sinkhorn_iterations_are_a_loop_that_xla_differentiates():
    """The graph does not grow with the iterations (unrolled, XLA's
    optimized gradient grew with their square, and an H200 did not finish
    compiling an mHC step), and XLA takes its gradient."""
    logits = tf.constant(np.random.default_rng(0).normal(size=(2, 4, 4)),
                         tf.float32)

    def graph_size(iterations):
        fn = tf.function(lambda l: sinkhorn_knopp(l, iterations))
        return len(fn.get_concrete_function(logits).graph.get_operations())

    assert graph_size(40) == graph_size(5)

    @tf.function(jit_compile=True)
    def gradient(l):
        with tf.GradientTape() as tape:
            tape.watch(l)
            loss = tf.reduce_sum(sinkhorn_knopp(l) ** 2)
        return tape.gradient(loss, l)

    with tf.GradientTape() as tape:
        tape.watch(logits)
        loss = tf.reduce_sum(sinkhorn_knopp(logits) ** 2)
    np.testing.assert_allclose(gradient(logits), tape.gradient(loss, logits),
                               rtol=1e-5, atol=1e-6)


def _layer_norm(x, gamma, beta, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def _reference(layer, x):
    """Zhu et al. / Xie et al. in float64 NumPy, from the layer's weights."""
    w = {v.path.split("/")[-1]: np.asarray(v, "float64")
         for v in layer.weights if "dense" not in v.path
         and "norm" not in v.path.split("/")[-2]}
    kernel, bias = [np.asarray(v, "float64") for v in layer.layer.weights]
    norm_gamma, norm_beta = [np.asarray(v, "float64")
                             for v in layer.norm_layer.weights]
    n = layer.expansion
    H = x.astype("float64")
    if layer.manifold:
        flat = H.reshape(H.shape[:-2] + (-1,))
        (gain,) = [np.asarray(v, "float64") for v in layer.stream_norm.weights]
        xt = flat / np.sqrt((flat ** 2).mean(-1, keepdims=True) + 1e-6) * gain
        a = 1 / (1 + np.exp(-(w["read_scale"] * xt @ w["read_proj"]
                              + w["read_bias"])))
        b = 2 / (1 + np.exp(-(w["write_scale"] * xt @ w["write_proj"]
                              + w["write_bias"])))
        logits = w["mix_scale"] * (xt @ w["mix_proj"]).reshape(
            xt.shape[:-1] + (n, n)) + w["mix_bias"]
        M = np.exp(logits)
        for _ in range(layer.sinkhorn_iterations):
            M = M / M.sum(-1, keepdims=True)
            M = M / M.sum(-2, keepdims=True)
    else:
        g, be = [np.asarray(v, "float64") for v in layer.stream_norm.weights]
        Hn = _layer_norm(H, g, be, 1e-3)
        a = w["read_scale"] * np.tanh(Hn @ w["read_proj"])[..., 0] \
            + w["read_bias"]
        b = w["write_scale"] * np.tanh(Hn @ w["write_proj"])[..., 0] \
            + w["write_bias"]
        M = w["read_scale"] * np.tanh(Hn @ w["mix_proj"]) + w["mix_bias"]
    h = np.einsum("...i,...id->...d", a, H)
    y = np.tanh(_layer_norm(h, norm_gamma, norm_beta, 1e-3) @ kernel + bias)
    return np.einsum("...ij,...id->...jd", M, H) + b[..., None] * y[..., None, :]


@pytest.mark.parametrize("manifold", [False, True])
def test_float64_reference_of_the_papers_formulas(manifold):
    layer = make_hc(True, manifold)()
    x = np.random.default_rng(6).normal(size=(2, 3, 4, 8)).astype("float32")
    layer(x)
    _randomize(layer, seed=7, scale=0.5)
    np.testing.assert_allclose(np.asarray(layer(x), "float64"),
                               _reference(layer, x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("placement", ["hyper", "mhc"])
def test_encoder_generic_check_and_keras_round_trip(placement, tmp_path):
    # fit=False: test_encoder_training_moves_the_connections checks which
    # weights training moves.
    check_layer(lambda dtype=None: TransformerEncoder(
        num_layers=2, num_heads=2, intermediate_dim=16, placement=placement,
        expansion=2, dtype=dtype), (3, 5, 8), mask_tail=2,
        float32_weights=HC_WEIGHTS, fit=False)
    inputs = keras.Input((None, 8))
    model = keras.Model(inputs, TransformerEncoder(
        num_layers=2, num_heads=2, intermediate_dim=16, placement=placement,
        expansion=3)(inputs))
    x = np.random.default_rng(8).normal(size=(2, 4, 8)).astype("float32")
    path = str(tmp_path / "hyper.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(model(x)),
                               rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("placement", ["hyper", "mhc"])
def test_encoder_training_moves_the_connections(placement):
    x = np.random.default_rng(9).normal(size=(8, 5, 8)).astype("float32")
    target = np.random.default_rng(10).normal(size=(8, 5, 8))
    inputs = keras.Input((5, 8))
    encoder = TransformerEncoder(num_layers=2, num_heads=2,
                                 intermediate_dim=16, placement=placement,
                                 expansion=3)
    model = keras.Model(inputs, encoder(inputs))
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
    before = {w.path: np.array(w) for w in model.trainable_weights}
    model.fit(x, target, epochs=6, batch_size=8, verbose=0)
    unchanged = sorted(w.path for w in model.trainable_weights
                       if np.array_equal(before[w.path], np.array(w)))
    if placement == "mhc":
        # The first step sees three identical copies of its input, which
        # every doubly stochastic M maps to themselves, and the last step's
        # streams are averaged, which every doubly stochastic M preserves:
        # neither M gets a gradient.
        assert unchanged == sorted(
            f"{encoder.name}/{step}/{name}"
            for step in ("block_0/attention_residual",
                         "block_1/feed_forward_residual")
            for name in ("mix_bias", "mix_proj", "mix_scale")), unchanged
    else:
        assert unchanged == [], unchanged


def test_stream_helpers():
    x = np.arange(6.0, dtype="float32").reshape(1, 2, 3)
    h = expand_stream(x, 4)
    assert tuple(h.shape) == (1, 2, 4, 3)
    np.testing.assert_array_equal(np.asarray(collapse_stream(h)), x)


@pytest.mark.parametrize("kwargs,error,message", [
    ({"expansion": 0}, ValueError, r"Received: expansion=0"),
    ({"layer_index": -1}, ValueError, r"Received: layer_index=-1"),
    ({"norm": "batch"}, ValueError, r"Received: norm='batch'"),
    ({"dropout": 1.0}, ValueError, r"Received: dropout=1.0"),
    ({"dynamic_scale_init": "small"}, TypeError,
     r"Received: dynamic_scale_init='small'"),
])
def test_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        HyperConnection(keras.layers.Dense(4), **kwargs)


def test_bad_inputs_name_the_shape():
    hc = HyperConnection(keras.layers.Dense(8), expansion=4)
    with pytest.raises(ValueError, match=r"expansion=4 .* Received: "
                       r"input_shape=\(2, 5, 8\)"):
        hc(np.zeros((2, 5, 8), "float32"))
    with pytest.raises(ValueError, match=r"must keep the feature size 8"):
        HyperConnection(keras.layers.Dense(3), expansion=2)(
            np.zeros((2, 2, 8), "float32"))
    with pytest.raises(ValueError, match=r"takes no branch_scale"):
        TransformerEncoder(num_layers=1, num_heads=2, intermediate_dim=8,
                           placement="hyper", branch_scale="rezero")
