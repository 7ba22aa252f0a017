"""The CRF against brute-force enumeration of every tag path, in float64."""

import itertools
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_resnorm.ner import crf as crf_lib
from keras_resnorm.ner.crf import CRF, CRFLoss

K = 3


def problem(seed=0, batch=4, time=4, lengths=(4, 2, 1, 3)):
    rng = np.random.default_rng(seed)
    emissions = rng.normal(size=(batch, time, K)).astype("float32")
    scores = [rng.normal(size=s).astype("float32")
              for s in ((K, K), (K,), (K,))]
    tags = rng.integers(0, K, size=(batch, time)).astype("int32")
    mask = np.arange(time)[None, :] < np.array(lengths)[:, None]
    return emissions, tags, scores, mask, lengths


def brute_force(emissions, scores, length):
    """Every path's score, in float64, by enumeration."""
    a, s, e = (np.float64(v) for v in scores)
    em = np.float64(emissions)
    paths = list(itertools.product(range(K), repeat=length))
    values = np.array([
        s[p[0]] + e[p[-1]] + sum(em[t, p[t]] for t in range(length))
        + sum(a[p[t - 1], p[t]] for t in range(1, length)) for p in paths])
    return paths, values


def test_log_likelihood_matches_enumeration():
    emissions, tags, scores, mask, lengths = problem()
    got = crf_lib.log_likelihood(emissions, tags, *scores, mask=mask).numpy()
    for b, n in enumerate(lengths):
        paths, values = brute_force(emissions[b], scores, n)
        log_z = np.logaddexp.reduce(values)
        gold = values[paths.index(tuple(tags[b, :n]))]
        np.testing.assert_allclose(got[b], gold - log_z, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(
            crf_lib.log_partition(emissions, *scores, mask=mask).numpy()[b],
            log_z, rtol=1e-5)


def test_viterbi_and_marginals_match_enumeration():
    emissions, _, scores, mask, lengths = problem(seed=1)
    path, best = crf_lib.viterbi_decode(emissions, *scores, mask=mask)
    probs = crf_lib.marginals(emissions, *scores, mask=mask).numpy()
    for b, n in enumerate(lengths):
        paths, values = brute_force(emissions[b], scores, n)
        assert tuple(path.numpy()[b, :n]) == paths[int(np.argmax(values))]
        np.testing.assert_allclose(best.numpy()[b], values.max(), rtol=1e-5)
        weights = np.exp(values - np.logaddexp.reduce(values))
        expected = np.zeros((n, K))
        for p, w in zip(paths, weights):
            expected[np.arange(n), p] += w
        np.testing.assert_allclose(probs[b, :n], expected, atol=1e-5)
        np.testing.assert_array_equal(probs[b, n:], 0.0)


def test_gradient_of_log_likelihood_matches_finite_differences():
    emissions, tags, scores, mask, _ = problem(seed=2)
    variables = [tf.Variable(np.float64(v)) for v in [emissions] + scores]

    def total(values):
        em, a, s, e = values
        return tf.reduce_sum(crf_lib.log_likelihood(
            tf.cast(em, tf.float32), tags, tf.cast(a, tf.float32),
            tf.cast(s, tf.float32), tf.cast(e, tf.float32), mask=mask))

    with tf.GradientTape() as tape:
        value = total(variables)
    grads = tape.gradient(value, variables)
    rng = np.random.default_rng(0)
    for i, grad in enumerate(grads):
        direction = rng.normal(size=variables[i].shape)
        step = 1e-2
        plus = [v.numpy() + (step * direction if j == i else 0)
                for j, v in enumerate(variables)]
        minus = [v.numpy() - (step * direction if j == i else 0)
                 for j, v in enumerate(variables)]
        numeric = (total(plus) - total(minus)).numpy() / (2 * step)
        np.testing.assert_allclose(np.sum(grad.numpy() * direction), numeric,
                                   rtol=2e-2, atol=2e-3)


def test_padding_never_changes_the_result():
    emissions, tags, scores, mask, _ = problem(seed=3)
    noisy = emissions + np.where(mask[:, :, None], 0.0, 50.0).astype("float32")
    for fn in (lambda e: crf_lib.log_likelihood(e, tags, *scores, mask=mask),
               lambda e: crf_lib.marginals(e, *scores, mask=mask),
               lambda e: crf_lib.viterbi_decode(e, *scores, mask=mask)[0]
               * tf.cast(mask, tf.int32)):
        np.testing.assert_allclose(fn(noisy), fn(emissions), atol=1e-5)


@pytest.mark.parametrize("time", [0, 1])
def test_short_and_empty_time_axes_in_a_graph_of_unknown_batch(time):
    _, _, scores, _, _ = problem()
    spec = [tf.TensorSpec([None, None, K]), tf.TensorSpec([None, None], tf.bool)]
    decode = tf.function(
        lambda e, m: crf_lib.viterbi_decode(e, *scores, mask=m)[0],
        input_signature=spec)
    margin = tf.function(lambda e, m: crf_lib.marginals(e, *scores, mask=m),
                         input_signature=spec, jit_compile=True)
    emissions = np.ones((2, time, K), "float32")
    mask = np.ones((2, time), bool)
    assert decode(emissions, mask).shape == (2, time)
    probs = margin(emissions, mask).numpy()
    assert probs.shape == (2, time, K)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-6)
    ll = crf_lib.log_likelihood(np.ones((2, 0, K), "float32"),
                                np.ones((2, 0), "int32"), *scores)
    np.testing.assert_array_equal(ll, [0.0, 0.0])


def test_xla_equals_eager():
    emissions, tags, scores, mask, _ = problem(seed=4)
    fn = lambda e: (crf_lib.log_likelihood(e, tags, *scores, mask=mask),  # noqa
                    crf_lib.viterbi_decode(e, *scores, mask=mask)[0])
    eager = fn(emissions)
    xla = tf.function(fn, jit_compile=True)(emissions)
    np.testing.assert_allclose(xla[0], eager[0], rtol=1e-5)
    np.testing.assert_array_equal(xla[1], eager[1])


def test_layer_passes_scores_through_and_round_trips(tmp_path):
    inputs = keras.Input((None, K))
    layer = CRF(K, name="crf")
    model = keras.Model(inputs, layer(keras.layers.Dense(K)(inputs)))
    assert [w.name for w in layer.weights] == ["transitions", "start", "end"]
    assert all(w.dtype == "float32" for w in layer.weights)
    x = np.random.default_rng(0).normal(size=(2, 5, K)).astype("float32")
    path = tmp_path / "m.keras"
    layer.transitions.assign(np.eye(K, dtype="float32"))
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(loaded(x), model(x), atol=1e-6)
    np.testing.assert_array_equal(loaded.get_layer("crf").transitions,
                                  np.eye(K))
    assert CRF.from_config(layer.get_config()).num_tags == K


def test_loss_trains_transitions_and_emissions():
    # Tag 1 always follows tag 0: only the transitions can learn it, since
    # the emissions see constant inputs.
    tags = np.tile([[0, 1, 0, 1, 2, 2]], (16, 1)).astype("int32")
    x = np.ones((16, 6, 4), "float32")
    inputs = keras.Input((None, 4))
    crf = CRF(K, name="crf")
    model = keras.Model(inputs, crf(keras.layers.Dense(K)(inputs)))
    model.compile(optimizer=keras.optimizers.Adam(0.1), loss=CRFLoss(crf))
    weights = np.ones((16, 6), "float32")
    weights[:, 5] = 0.0
    before = model.evaluate(x, tags, sample_weight=weights, verbose=0)
    model.fit(x, tags, sample_weight=weights, epochs=30, verbose=0)
    after = model.evaluate(x, tags, sample_weight=weights, verbose=0)
    assert after < 0.2 * before
    path, confidence = crf.decode(model(x[:1]), mask=weights[:1] > 0)
    np.testing.assert_array_equal(path.numpy()[0, :5], tags[0, :5])
    assert confidence.numpy()[0, :5].min() > 0.5


def test_loss_restored_without_its_layer_says_so():
    loss = CRFLoss.from_config(CRFLoss(CRF(K)).get_config())
    with pytest.raises(ValueError, match="CRFLoss needs the model's CRF"):
        loss(np.zeros((1, 2), "int32"), np.zeros((1, 2, K), "float32"))


@pytest.mark.parametrize("num_tags", [0, -1, 2.0, True])
def test_bad_num_tags(num_tags):
    with pytest.raises(ValueError, match="num_tags must be a positive int"):
        CRF(num_tags)


def test_wrong_emission_size_names_both():
    with pytest.raises(ValueError, match="num_tags=3"):
        CRF(3)(keras.Input((None, 4)))


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_low_precision_emissions_keep_float32_scores(policy):
    emissions, tags, scores, mask, _ = problem(seed=6)
    low = tf.cast(emissions, policy.split("_")[1])
    np.testing.assert_allclose(
        crf_lib.log_likelihood(low, tags, *scores, mask=mask),
        crf_lib.log_likelihood(tf.cast(low, tf.float32), tags, *scores,
                               mask=mask), rtol=1e-6)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        layer = CRF(K)
        layer.build((None, None, K))
    finally:
        keras.config.set_dtype_policy(previous)
    assert all(w.dtype == "float32" for w in layer.weights)


MIRRORED = textwrap.dedent("""
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from keras_resnorm.ner.crf import CRF, CRFLoss

    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 6, 4)).astype("float32")
    y = rng.integers(0, 3, size=(16, 6)).astype("int32")
    # Replica 0 gets the first 8 sentences (2 tokens each), replica 1 the
    # last 8 (6 tokens each): unequal token counts per replica.
    w = np.ones((16, 6), "float32")
    w[:8, 2:] = 0.0

    def train(strategy):
        keras.utils.set_random_seed(0)
        with strategy.scope():
            inputs = keras.Input((None, 4))
            crf = CRF(3, name="crf")
            model = keras.Model(inputs, crf(keras.layers.Dense(3)(inputs)))
            model.compile(keras.optimizers.SGD(0.5), CRFLoss(crf))
        model.fit(x, y, sample_weight=w, batch_size=16, epochs=3, verbose=0,
                  shuffle=False)
        return np.concatenate([v.ravel() for v in model.get_weights()])

    two = tf.distribute.MirroredStrategy(
        ["/cpu:0", "/cpu:1"],
        cross_device_ops=tf.distribute.ReductionToOneDevice())
    reference = train(tf.distribute.get_strategy())
    print("moved", np.abs(reference - train(tf.distribute.get_strategy())
                          ).max(), np.abs(reference).max())
    print("diff", np.abs(train(two) - reference).max())
""")


def test_two_replicas_with_unequal_token_counts_take_the_one_device_step():
    out = subprocess.run([sys.executable, "-c", MIRRORED], capture_output=True,
                         text=True, timeout=300,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert out.returncode == 0, out.stderr[-3000:]
    values = {line.split()[0]: [float(v) for v in line.split()[1:]]
              for line in out.stdout.splitlines()
              if line.startswith(("moved", "diff"))}
    # One device is deterministic here, and training moved the weights.
    assert values["moved"][0] == 0.0 and values["moved"][1] > 0.1, values
    assert values["diff"][0] < 1e-5, values


@pytest.mark.parametrize("time, scale", [(8, 1.0), (300, 1.0), (300, 8.0)])
def test_marginals_are_probabilities_at_any_length(time, scale):
    # exp(alpha + beta - log Z) took log Z from the forward scan alone and
    # reached 1.0022 on random scores; each token's row is normalized now.
    rng = np.random.default_rng(time)
    emissions = (scale * rng.normal(size=(3, time, 17))).astype("float32")
    scores = [(scale * rng.normal(size=s)).astype("float32")
              for s in ((17, 17), (17,), (17,))]
    lengths = np.array([time, time // 2, 1])
    mask = np.arange(time)[None, :] < lengths[:, None]
    probs = crf_lib.marginals(emissions, *scores, mask=mask).numpy()
    assert probs.max() <= 1.0
    sums = probs.sum(-1)
    np.testing.assert_allclose(sums[mask], 1.0, atol=1e-6)
    np.testing.assert_array_equal(sums[~mask], 0.0)
