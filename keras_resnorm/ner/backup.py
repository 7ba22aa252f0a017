"""Crash-safe training state: write it atomically, resume exactly.

`TrainingBackup` replaces `keras.callbacks.BackupAndRestore` in the trainer.
That callback writes its weights file and its epoch counter in place, one
after the other, so a kill between the two resumes from mismatched state; it
restores neither the random-number states of the layers nor the position
inside an epoch; and every worker of a multi-worker run writes to the same
files. Here each backup is one directory:

```
backup/epoch-0003-step-000040/   weights (model and optimizer, .weights.h5)
                                 state.json: epoch, step in the epoch, the
                                 layers' random-seed states, callback state
```

written under a temporary name, flushed to disk, then renamed, so a backup
either exists whole or not at all; the newest `keep` of them stay. Resuming
loads the newest one that reads back (falling back to the one before it),
and the trainer restarts its data pipeline at the recorded epoch and step.
With deterministic ops (`--deterministic`) a resumed run then ends with the
same weights, bit for bit, as a run that was never stopped.
"""

import json
import os
import re
import shutil
import warnings

import keras

from keras_resnorm._keras_workarounds import seed_generators
from keras_resnorm.ner import files

__all__ = [
    "NAME",
    "STATE",
    "TrainingBackup",
    "WEIGHTS",
    "backups",
]

NAME = re.compile(r"^epoch-(\d+)-step-(\d+)$")
WEIGHTS = "model.weights.h5"
STATE = "state.json"


def backups(directory):
    """Complete backups in `directory`, newest first, as (epoch, step, path)."""
    if not os.path.isdir(directory):
        return []
    found = []
    for name in os.listdir(directory):
        match = NAME.match(name)
        if match:
            found.append((int(match[1]), int(match[2]),
                          os.path.join(directory, name)))
    return sorted(found, reverse=True)


class TrainingBackup(keras.callbacks.Callback):
    """Save the whole training state every epoch (and every `save_steps`).

    Args:
        directory: where this process writes backups.
        steps_per_epoch: batches in a full epoch.
        save_steps: also save every this many batches inside an epoch.
            Defaults to `None` (at epoch ends only).
        keep: complete backups to keep. Defaults to 2.
        states: `{name: object}` whose `get_state()` / `set_state(dict)` are
            saved and restored with the weights (the trainer passes the
            early-stopping and best-score state).
        restore_directory: where to look for a backup to resume from;
            defaults to `directory` (a non-chief worker reads the chief's).

    The callback must come last in the callback list, so the states it saves
    at an epoch's end include what the other callbacks did at that end.
    """

    def __init__(self, directory, steps_per_epoch, save_steps=None, keep=2,
                 states=None, restore_directory=None):
        super().__init__()
        if save_steps is not None and save_steps < 1:
            raise ValueError("save_steps must be a positive int or None. "
                             f"Received: save_steps={save_steps!r}")
        self.directory = directory
        self.restore_directory = restore_directory or directory
        self.steps_per_epoch = steps_per_epoch
        self.save_steps = save_steps
        self.keep = keep
        self.states = dict(states or {})
        self.step_offset = 0
        self.epoch = 0
        self.step = 0

    # ----------------------------------------------------------- restore
    def restore(self, model):
        """Load the newest usable backup into `model` and the states.

        Returns `(epoch, step)` to resume from, `(0, 0)` when there is none.
        A backup that does not load (a damaged file, or one written for
        another model or by a version without one of `states`) is skipped
        with a warning; when none loads, the model's weights are put back
        as they were, so the run starts fresh for real.
        """
        found = backups(self.restore_directory)
        if not found:
            return 0, 0
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        before = [v.numpy() for v in _variables(model)]
        for epoch, step, path in found:
            try:
                self._load(model, path)
            except (OSError, ValueError, KeyError) as error:
                warnings.warn(f"backup {path} did not load ({error}); "
                              "trying the one before it", stacklevel=2)
                continue
            print(f"resuming from backup {path} (epoch {epoch + 1}, "
                  f"{step} batches into it)", flush=True)
            return epoch, step
        for variable, value in zip(_variables(model), before):
            variable.assign(value)
        warnings.warn(f"no backup in {self.restore_directory} loaded; "
                      "training starts from the beginning", stacklevel=2)
        return 0, 0

    def _load(self, model, path):
        with open(os.path.join(path, STATE)) as f:
            state = json.load(f)
        # Everything that can be checked before the weights change.
        generators = seed_generators(model)
        if set(generators) != set(state["seeds"]):
            raise ValueError("the backup's random-seed states do not match "
                             "this model's layers")
        lacking = sorted(set(self.states) - set(state["states"]))
        if lacking:
            raise ValueError(f"the backup holds no state of {lacking} "
                             "(written by another version)")
        model.load_weights(os.path.join(path, WEIGHTS))
        for name, generator in generators.items():
            generator.state.assign(state["seeds"][name])
        for name, obj in self.states.items():
            obj.set_state(state["states"][name])

    # -------------------------------------------------------------- save
    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self.step = self.step_offset

    def on_train_batch_end(self, batch, logs=None):
        self.step = self.step_offset + batch + 1
        if (self.save_steps and self.step % self.save_steps == 0
                and self.step < self.steps_per_epoch):
            self.save(self.epoch, self.step)

    def on_epoch_end(self, epoch, logs=None):
        self.step_offset = 0
        if self.step >= self.steps_per_epoch:
            self.save(epoch + 1, 0)
        else:
            # Training stopped inside the epoch (time budget): resume there.
            self.save(epoch, self.step)

    def save(self, epoch, step):
        os.makedirs(self.directory, exist_ok=True)
        name = f"epoch-{epoch:04d}-step-{step:06d}"
        final = os.path.join(self.directory, name)
        tmp = files.tmp_directory(self.directory, name)
        weights = os.path.join(tmp, WEIGHTS)
        self.model.save_weights(weights)
        state = {
            "epoch": epoch, "step": step,
            "seeds": {k: [int(v) for v in g.state.numpy()]
                      for k, g in seed_generators(self.model).items()},
            "states": {k: obj.get_state() for k, obj in self.states.items()},
        }
        with open(os.path.join(tmp, STATE), "w") as f:
            json.dump(state, f, indent=1, sort_keys=True)
        if os.path.exists(final):
            # Only after a resume that replays the same step; same content.
            shutil.rmtree(final)
        files.publish_directory(tmp, final)
        for _, _, old in backups(self.directory)[self.keep:]:
            shutil.rmtree(old, ignore_errors=True)

    def clean(self):
        """Remove leftovers of saves that a kill interrupted."""
        files.remove_leftovers(self.directory)


def _variables(model):
    """The model's and its optimizer's variables: what a backup restores."""
    optimizer = model.optimizer.variables if model.optimizer else []
    return list(model.variables) + list(optimizer)
