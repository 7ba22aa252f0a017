"""TrainingBackup: whole-or-nothing backups that restore everything."""

import json
import os

import keras
import numpy as np
import pytest

from keras_resnorm.ner.backup import TrainingBackup, backups, seed_generators


class _State:
    def __init__(self, value=None):
        self.value = value

    def get_state(self):
        return {"value": self.value}

    def set_state(self, state):
        self.value = state["value"]


def _model(seed=1):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8),
                              keras.layers.Dropout(0.5),
                              keras.layers.Dense(1)])
    model.compile(keras.optimizers.AdamW(1e-2), "mse")
    return model


def _data():
    rng = np.random.default_rng(0)
    return (rng.random((32, 4), dtype=np.float32),
            rng.random((32, 1), dtype=np.float32))


def _fit(model, callbacks=(), epochs=2):
    x, y = _data()
    model.fit(x, y, batch_size=8, epochs=epochs, shuffle=False, verbose=0,
              callbacks=list(callbacks))


def test_restore_brings_back_weights_optimizer_seeds_and_states(tmp_path):
    model = _model()
    state = _State("after two epochs")
    backup = TrainingBackup(str(tmp_path), steps_per_epoch=4,
                            states={"s": state})
    _fit(model, [backup])
    assert [(e, s) for e, s, _ in backups(str(tmp_path))] == [(2, 0), (1, 0)]
    fresh, fresh_state = _model(seed=2), _State()
    restorer = TrainingBackup(str(tmp_path), 4, states={"s": fresh_state})
    assert restorer.restore(fresh) == (2, 0)
    for a, b in zip(model.weights, fresh.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    for a, b in zip(model.optimizer.variables, fresh.optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    [(name, generator)] = seed_generators(model).items()
    # save_weights leaves the dropout seed state out; the backup keeps it,
    # so a resumed run draws the same dropout masks.
    np.testing.assert_array_equal(
        generator.state.numpy(), seed_generators(fresh)[name].state.numpy())
    assert generator.state.numpy()[1] == 8
    assert fresh_state.value == "after two epochs"
    # Training on from the restored state equals training on from the
    # original, bit for bit.
    _fit(model, epochs=1)
    _fit(fresh, epochs=1)
    for a, b in zip(model.weights, fresh.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_mid_epoch_saves_record_the_step(tmp_path):
    model = _model()
    _fit(model, [TrainingBackup(str(tmp_path), 4, save_steps=3, keep=10)])
    found = sorted((e, s) for e, s, _ in backups(str(tmp_path)))
    assert found == [(0, 3), (1, 0), (1, 3), (2, 0)]


def test_stopped_inside_an_epoch_resumes_there(tmp_path):
    class StopAfterTwo(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 1:
                self.model.stop_training = True

    model = _model()
    _fit(model, [StopAfterTwo(), TrainingBackup(str(tmp_path), 4)])
    [(epoch, step, _)] = backups(str(tmp_path))
    assert (epoch, step) == (0, 2)


def test_broken_newest_backup_falls_back_to_the_one_before(tmp_path):
    model = _model()
    _fit(model, [TrainingBackup(str(tmp_path), 4)])
    newest = backups(str(tmp_path))[0][2]
    weights = os.path.join(newest, "model.weights.h5")
    with open(weights, "r+b") as f:
        f.truncate(100)
    with pytest.warns(UserWarning, match="did not load"):
        assert TrainingBackup(str(tmp_path), 4).restore(_model()) == (1, 0)


def test_a_backup_without_a_state_is_skipped_and_the_model_left_fresh(
        tmp_path):
    # A backup written before the trainer saved the learning-rate schedule:
    # resuming it would drop the schedule's progress, so it is not loaded,
    # and the weights it would have brought are not half-applied either.
    _fit(_model(), [TrainingBackup(str(tmp_path), 4, states={"s": _State(1)})])
    fresh = _model(seed=3)
    expected = [v.numpy() for v in fresh.variables]
    schedule = _State("untouched")
    restorer = TrainingBackup(str(tmp_path), 4,
                              states={"s": _State(), "schedule": schedule})
    with pytest.warns(UserWarning) as caught:
        assert restorer.restore(fresh) == (0, 0)
    messages = [str(w.message) for w in caught]
    assert sum("holds no state of ['schedule']" in m for m in messages) == 2
    assert "training starts from the beginning" in messages[-1]
    for want, variable in zip(expected, fresh.variables):
        np.testing.assert_array_equal(want, variable.numpy())
    assert schedule.value == "untouched"


def test_weights_of_a_backup_that_fails_late_are_put_back(tmp_path):
    # The weights load, then a state refuses its saved value: the model
    # must not keep the weights of a backup that did not load.
    class Refuses(_State):
        def set_state(self, state):
            raise ValueError("not this state")

    _fit(_model(), [TrainingBackup(str(tmp_path), 4, states={"s": _State(1)})],
         epochs=1)
    fresh = _model(seed=3)
    expected = [v.numpy() for v in fresh.variables]
    restorer = TrainingBackup(str(tmp_path), 4, states={"s": Refuses()})
    with pytest.warns(UserWarning, match="not this state"):
        assert restorer.restore(fresh) == (0, 0)
    for want, variable in zip(expected, fresh.variables):
        np.testing.assert_array_equal(want, variable.numpy())


def test_unfinished_save_is_invisible_and_cleaned(tmp_path):
    model = _model()
    _fit(model, [TrainingBackup(str(tmp_path), 4)], epochs=1)
    leftover = tmp_path / ".tmp-epoch-0002-step-000000-123"
    leftover.mkdir()
    (leftover / "state.json").write_text(json.dumps({"epoch": 2}))
    backup = TrainingBackup(str(tmp_path), 4)
    assert backup.restore(_model()) == (1, 0)
    backup.clean()
    assert not leftover.exists()


def test_no_backup_starts_at_zero(tmp_path):
    assert TrainingBackup(str(tmp_path / "none"), 4).restore(_model()) == (
        0, 0)


def test_bad_save_steps_are_named(tmp_path):
    with pytest.raises(ValueError, match="Received: save_steps=0"):
        TrainingBackup(str(tmp_path), 4, save_steps=0)
