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


def prepare(config, chief=True):
    """Return `(config, resumed)`: the saved configuration when resuming.

    Only the chief creates, writes or deletes anything here.
    """
    run_dir = config.run_dir
    state_path = os.path.join(run_dir, "state.json")
    config_path = os.path.join(run_dir, "config.json")
    if os.path.exists(state_path):
        with open(state_path) as f:
            finished = json.load(f).get("finished")
        if finished and not config.overwrite:
            raise RunDirError(
                f"{run_dir} holds a finished run. Pass overwrite=True "
                f"(--overwrite) or another run_dir. Received: run_dir={run_dir!r}"
            )
        if finished and chief:
            shutil.rmtree(run_dir)
        elif finished:
            return config, False
    if os.path.exists(config_path):
        with open(config_path) as f:
            saved = TrainConfig.from_dict(json.load(f))
        changed = changed_settings(saved, config)
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
            saved.run_dir = run_dir
            for name in TrainConfig.RUNTIME:
                setattr(saved, name, getattr(config, name))
            saved.validate()
            return saved, True
    if chief:
        os.makedirs(run_dir, exist_ok=True)
        files.atomic_write_json(config_path, dataclasses.asdict(config))
    return config, False


def changed_settings(saved, config):
    """`field: saved -> given` for each setting (not RUNTIME) that differs."""
    def flat(c):
        values = json.loads(json.dumps(dataclasses.asdict(c)))
        model = values.pop("model")
        values.update({f"model.{k}": v for k, v in model.items()})
        for name in TrainConfig.RUNTIME + ("run_dir",):
            values.pop(name, None)
        return values

    old, new = flat(saved), flat(config)
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}"
            for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
