"""The run directory's resume policy: a new run, a resumed one, or a
refusal that says why (a finished run, or an unfinished one with other
settings, is replaced only with `overwrite`). `train.py` documents what a
run directory holds."""

import dataclasses
import json
import os
import shutil

from keras_resnorm.ner import files
from keras_resnorm.ner.config import TrainConfig
from keras_resnorm.ner.errors import RunDirError

__all__ = ["changed_settings", "is_finished", "prepare"]


def prepare(config, chief=True):
    """Return `(config, resumed)`: the saved configuration when resuming.

    Only the chief creates, writes or deletes anything here.
    """
    run_dir = config.run_dir
    config_path = os.path.join(run_dir, "config.json")
    if is_finished(run_dir):
        if not config.overwrite:
            raise RunDirError(
                f"{run_dir} holds a finished run. Pass overwrite=True "
                f"(--overwrite) or another run_dir. Received: run_dir={run_dir!r}"
            )
        if not chief:
            return config, False
        shutil.rmtree(run_dir)
    if os.path.exists(config_path):
        with open(config_path) as f:
            saved_values = json.load(f)
        changed = changed_settings(saved_values, config)
        if changed and not config.overwrite:
            raise RunDirError(
                f"{run_dir} holds an unfinished run with other settings "
                f"({'; '.join(changed)}). Rerun it with its own settings to "
                "resume, or pass overwrite=True (--overwrite) or another "
                f"run_dir. Received: run_dir={run_dir!r}")
        if changed and chief:
            shutil.rmtree(run_dir)
        elif changed:
            return config, False
        else:
            print(f"resuming the run in {run_dir}")
            saved = TrainConfig.from_dict(saved_values)
            saved.run_dir = run_dir
            for name in TrainConfig.RUNTIME:
                setattr(saved, name, getattr(config, name))
            saved.validate()
            return saved, True
    if chief:
        os.makedirs(run_dir, exist_ok=True)
        files.atomic_write_json(config_path, dataclasses.asdict(config))
    return config, False


def is_finished(run_dir):
    """Whether `run_dir` holds a run that ended and was scored (its
    `state.json` says so)."""
    state_path = os.path.join(run_dir, "state.json")
    if not os.path.exists(state_path):
        return False
    with open(state_path) as f:
        return bool(json.load(f).get("finished"))


def changed_settings(saved_values, config):
    """`field: saved -> given` for each setting (not RUNTIME) that differs
    between a run's saved `config.json` (`saved_values`) and `config`.

    A setting the saved file does not record (it was written before the
    setting existed, when its default may have been another value) or
    records but this version does not have counts as changed: the run
    cannot be resumed as it was started."""
    def flat(values):
        values = json.loads(json.dumps(values))
        model = values.pop("model", {})
        values.update({f"model.{k}": v for k, v in model.items()})
        for name in TrainConfig.RUNTIME + ("run_dir",):
            values.pop(name, None)
        return values

    old = flat(saved_values)
    new = flat(dataclasses.asdict(config))

    def shown(values, key, absent):
        return repr(values[key]) if key in values else absent

    return [f"{k}: {shown(old, k, '(not recorded)')} -> "
            f"{shown(new, k, '(no longer a setting)')}"
            for k in sorted(set(old) | set(new))
            if k not in old or k not in new or old[k] != new[k]]
