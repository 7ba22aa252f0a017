"""The trainer's averaged weights: evaluated and saved at epoch ends, out
of the way of training and of an exact resume."""

import keras
import numpy as np

from keras_resnorm.ner.backup import TrainingBackup
from keras_resnorm.ner.training_callbacks import (
    SwapAveragedWeights,
    keep_training_weights_after_fit,
)


def _model(seed=1, ema=True):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8),
                              keras.layers.Dropout(0.5),
                              keras.layers.Dense(1)])
    model.compile(keras.optimizers.AdamW(1e-2, use_ema=ema,
                                         ema_momentum=0.8), "mse")
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
