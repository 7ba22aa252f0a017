"""The trainer's averaged weights: evaluated and saved at epoch ends, out
of the way of training and of an exact resume; its learning rate, fitted
to the epochs or the time budget, whichever ends the run."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_resnorm.ner.backup import TrainingBackup
from keras_resnorm.ner.training_callbacks import (
    LearningRateSchedule,
    SwapAveragedWeights,
    correct_average_bias,
    keep_training_weights_after_fit,
    learning_rate,
)


def _model(seed=1, ema=True):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8),
                              keras.layers.Dropout(0.5),
                              keras.layers.Dense(1)])
    model.compile(keras.optimizers.AdamW(1e-2, use_ema=ema,
                                         ema_momentum=0.8), "mse")
    # As the trainer compiles (train.compile_for_training).
    correct_average_bias(model)
    keep_training_weights_after_fit(model)
    return model


class _Seen(keras.callbacks.Callback):
    """What a callback between the two swaps (the dev evaluation, the
    checkpoints) sees at each epoch's end."""

    def __init__(self):
        super().__init__()
        self.weights = []

    def on_epoch_end(self, epoch, logs=None):
        self.weights.append([w.numpy() for w in self.model.trainable_weights])


def _fit(model, callbacks, first, last):
    rng = np.random.default_rng(0)
    x = rng.random((32, 4), dtype=np.float32)
    y = rng.random((32, 1), dtype=np.float32)
    seen = _Seen()
    model.fit(x, y, batch_size=8, initial_epoch=first, epochs=last,
              shuffle=False, verbose=0,
              callbacks=[SwapAveragedWeights(), seen, SwapAveragedWeights()]
              + list(callbacks))
    return seen.weights


def _averages(model):
    return [a.numpy() for a in
            model.optimizer._model_variables_moving_average]


class _Steps(keras.callbacks.Callback):
    """The training weights after every step."""

    def __init__(self):
        super().__init__()
        self.weights = []

    def on_train_batch_end(self, batch, logs=None):
        self.weights.append([w.numpy() for w in self.model.trainable_weights])


@pytest.mark.parametrize("epochs", [1, 2])
def test_the_average_is_the_bias_corrected_mean_of_the_steps(epochs):
    """After t steps the average is sum_k (1-m) m^(t-k) w_k / (1 - m^t)
    over the weights w_k after each step: no extra weight on the first
    step's weights, which Keras's own average keeps (m^(t-1))."""
    m, model, steps = 0.8, _model(), _Steps()
    _fit(model, [steps], 0, epochs)
    t = len(steps.weights)
    assert t == 4 * epochs
    shares = np.array([(1 - m) * m ** (t - k) for k in range(1, t + 1)])
    shares /= 1 - m ** t
    for i, average in enumerate(_averages(model)):
        visited = np.stack([w[i] for w in steps.weights])
        expected = np.tensordot(shares, visited, axes=1)
        np.testing.assert_allclose(average, expected, rtol=1e-5, atol=1e-6)
        keras_average = visited[0] * m ** (t - 1) + np.tensordot(
            shares[1:] * (1 - m ** t), visited[1:], axes=1)
        assert not np.allclose(average, keras_average, rtol=1e-5, atol=1e-6)


def test_the_first_step_copies_the_weights():
    model, steps = _model(), _Steps()
    rng = np.random.default_rng(0)
    model.fit(rng.random((8, 4), dtype=np.float32),
              rng.random((8, 1), dtype=np.float32), batch_size=8, epochs=1,
              verbose=0, callbacks=[steps])
    for average, weights in zip(_averages(model), steps.weights[0]):
        np.testing.assert_array_equal(average, weights)


def test_momentum_one_keeps_the_first_steps_weights_not_nan():
    """m = 1 would make the correction 0/0; Keras's own average (the first
    step's weights for good) is left in place."""
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.AdamW(1e-2, use_ema=True,
                                         ema_momentum=1.0), "mse")
    correct_average_bias(model)
    steps = _Steps()
    rng = np.random.default_rng(0)
    model.fit(rng.random((16, 4), dtype=np.float32),
              rng.random((16, 1), dtype=np.float32), batch_size=8,
              epochs=1, verbose=0, callbacks=[steps])
    for average, first in zip(_averages(model), steps.weights[0]):
        np.testing.assert_array_equal(average, first)


def test_epoch_ends_see_the_average_and_training_resumes_exactly(tmp_path):
    model = _model()
    seen = _fit(model, [], 0, 4)
    training = [w.numpy() for w in model.trainable_weights]
    # Between the swaps: the average; after fit: the training weights.
    for a, b in zip(seen[-1], _averages(model)):
        np.testing.assert_array_equal(a, b)
    assert not all(np.array_equal(a, b) for a, b in zip(seen[-1], training))

    # Two epochs, a backup, then a fresh process's model resumes from it.
    first = _model()
    _fit(first, [TrainingBackup(str(tmp_path), steps_per_epoch=4)], 0, 2)
    resumed = _model(seed=2)
    assert TrainingBackup(str(tmp_path), 4).restore(resumed) == (2, 0)
    seen_resumed = _fit(resumed, [], 2, 4)
    for a, b in zip(training, resumed.trainable_weights):
        np.testing.assert_array_equal(a, b.numpy())
    for a, b in zip(seen[-1], seen_resumed[-1]):
        np.testing.assert_array_equal(a, b)


def test_without_an_average_nothing_is_swapped():
    model = _model(ema=False)
    seen = _fit(model, [], 0, 2)
    for a, b in zip(seen[-1], model.trainable_weights):
        np.testing.assert_array_equal(a, b.numpy())


def test_learning_rate_warms_up_then_decays_to_alpha_over_the_progress():
    peak = 1e-3
    # Linear warm-up over the first 4 steps, whatever the progress.
    assert [learning_rate(s, 0.0, peak, 4) for s in range(5)] == pytest.approx(
        [peak / 4, peak / 2, 3 * peak / 4, peak, peak])
    # Then the cosine: halfway is the mean of peak and alpha * peak.
    assert learning_rate(10, 0.5, peak, 4) == pytest.approx(
        peak * (0.05 + 0.95 / 2))
    assert learning_rate(10, 1.0, peak, 4) == pytest.approx(0.05 * peak)
    assert learning_rate(10, 3.0, peak, 4) == pytest.approx(0.05 * peak)
    rates = [learning_rate(10, p / 10, peak, 4) for p in range(11)]
    assert all(a > b for a, b in zip(rates, rates[1:]))
    assert learning_rate(0, 0.0, peak, 0) == peak


class _Budget:
    """A `TimeBudget` whose spent part the test sets."""

    strategy = tf.distribute.get_strategy()

    def __init__(self):
        self.spent = 0.0

    def fraction(self):
        return self.spent


class _Rates(keras.callbacks.Callback):
    """The learning rate each batch ran with; spends `per_batch` of a
    `_Budget` after each."""

    def __init__(self, budget=None, per_batch=0.0):
        super().__init__()
        self.budget, self.per_batch, self.rates = budget, per_batch, []

    def on_train_batch_begin(self, batch, logs=None):
        self.rates.append(float(self.model.optimizer.learning_rate.numpy()))

    def on_train_batch_end(self, batch, logs=None):
        if self.budget is not None:
            self.budget.spent += self.per_batch


def test_the_budget_ends_the_decay_when_it_ends_the_run():
    # 8 epochs of 4 batches configured, but the budget runs out after 8:
    # the decay follows the budget and ends at alpha * peak.
    budget = _Budget()
    schedule = LearningRateSchedule(1e-2, warmup_steps=2, total_steps=32,
                                    budget=budget)
    rates = _Rates(budget, per_batch=1 / 7)
    _fit(_model(ema=False), [schedule, rates], 0, 2)
    assert rates.rates == pytest.approx(
        [learning_rate(s, min(1.0, s / 7), 1e-2, 2) for s in range(8)])
    assert rates.rates[-1] == pytest.approx(0.05 * 1e-2)
    assert schedule.get_state()["progress"] == pytest.approx(1.0)

    # A resumed call fits the rest of the decay into its own budget.
    resumed = LearningRateSchedule(1e-2, 2, 32, budget=_Budget())
    resumed.set_state({"progress": 0.5})
    resumed.on_train_begin()
    resumed.budget.spent = 0.5
    assert resumed.progress(step=8) == pytest.approx(0.75)
    # The steps still count when they are ahead of the clock.
    assert resumed.progress(step=30) == pytest.approx(30 / 32)


def test_without_a_budget_the_rate_depends_on_the_step_and_resumes_exactly(
        tmp_path):
    def schedule():
        return LearningRateSchedule(1e-2, warmup_steps=2, total_steps=16)

    uninterrupted = _Rates()
    _fit(_model(ema=False), [schedule(), uninterrupted], 0, 4)
    assert uninterrupted.rates == pytest.approx(
        [learning_rate(s, s / 16, 1e-2, 2) for s in range(16)])

    first, rates = schedule(), _Rates()
    _fit(_model(ema=False), [first, rates, TrainingBackup(
        str(tmp_path), 4, states={"learning_rate": first})], 0, 2)
    resumed, model = schedule(), _model(seed=2, ema=False)
    assert TrainingBackup(str(tmp_path), 4, states={
        "learning_rate": resumed}).restore(model) == (2, 0)
    assert resumed.get_state()["progress"] == pytest.approx(7 / 16)
    _fit(model, [resumed, rates], 2, 4)
    assert rates.rates == uninterrupted.rates
    assert not math.isclose(rates.rates[0], rates.rates[-1])
