"""Several seeds in one budget: the spread of a score, not one draw.

On a small corpus one training run's test F1 depends on its seed by
several points (on 1,000 tweets of the Broad Twitter Corpus three seeds
spread over 4 to 5), and its dev F1 does not say which draw it was.
`train_seeds` trains `count` runs of one configuration with consecutive
seeds, each in its own directory with its share of the budget, and
reports the mean and range of their scores; the run best on dev becomes
the run directory's `best.keras`. `keras-resnorm ner train --seeds N`
calls it.

    run_dir/seed-<s>/          each run, as `train.py` documents a run
    run_dir/seeds.json         each run's scores, their mean and range,
                               and which run is best on dev
    run_dir/best.keras         a copy of that run's best.keras
"""

import dataclasses
import json
import os
import shutil
import statistics

from keras_resnorm._checks import check_int
from keras_resnorm.ner import files
from keras_resnorm.ner.errors import ConfigError, RunDirError

__all__ = ["seed_config", "summarize", "train_seeds"]


def seed_config(config, count, index):
    """The configuration of run `index` of `count`: seed `config.seed +
    index`, directory `run_dir/seed-<seed>`, and `max_minutes / count` of
    the budget (the runs share it)."""
    seed = config.seed + index
    minutes = (None if config.max_minutes is None
               else config.max_minutes / count)
    return dataclasses.replace(
        config, seed=seed, max_minutes=minutes,
        run_dir=os.path.join(config.run_dir, f"seed-{seed}"))


def _finished(config):
    """`(model, metrics)` of a run already finished in `config.run_dir`
    with these settings, else None. A finished run with other settings is
    refused, as `train` refuses it, unless `config.overwrite`."""
    import keras

    from keras_resnorm.ner.resume import changed_settings, is_finished

    metrics_path = os.path.join(config.run_dir, "metrics.json")
    if (config.overwrite or not os.path.exists(metrics_path)
            or not is_finished(config.run_dir)):
        return None
    with open(os.path.join(config.run_dir, "config.json")) as f:
        changed = changed_settings(json.load(f), config)
    if changed:
        raise RunDirError(
            f"{config.run_dir} holds a finished run with other settings "
            f"({'; '.join(changed)}). Pass overwrite=True (--overwrite) or "
            f"another run_dir. Received: run_dir={config.run_dir!r}")
    with open(metrics_path) as f:
        metrics = json.load(f)
    model = keras.saving.load_model(
        os.path.join(config.run_dir, "best.keras"), safe_mode=True)
    return model, metrics


def summarize(runs):
    """Mean, range and spread (max - min) of test and dev entity F1 (in
    %) over `runs` (`[(seed, metrics)]`), and the seed best on dev."""
    def stats(split):
        values = [100 * m[f"{split}_entity"]["f1"] for _, m in runs]
        return {"mean": statistics.fmean(values), "min": min(values),
                "max": max(values), "spread": max(values) - min(values),
                "values": values}

    best_seed, _ = max(runs, key=lambda r: r[1]["dev_entity"]["f1"])
    return {"seeds": [s for s, _ in runs], "test_entity_f1": stats("test"),
            "dev_entity_f1": stats("dev"), "best_on_dev": best_seed}


def train_seeds(config, count, corpus=None):
    """Train `count` runs of `config` with seeds `config.seed` to
    `config.seed + count - 1` (`seed_config`); return `(model, summary)`:
    the run best on dev F1 and `summarize`'s summary, also written to
    `run_dir/seeds.json`.

    A run already finished in its directory with the same settings is
    read, not trained again, so the same call after a crash trains only
    what is missing (an interrupted run resumes from its backup);
    `overwrite=True` trains every run again.
    """
    from keras_resnorm.ner.train import train

    check_int("seeds", count, 1, error=ConfigError)
    if (os.path.exists(os.path.join(config.run_dir, "state.json"))
            and not config.overwrite):
        raise RunDirError(
            f"{config.run_dir} holds a single run; the runs of several "
            "seeds go in a directory of their own. Pass another run_dir or "
            f"overwrite=True (--overwrite). Received: run_dir="
            f"{config.run_dir!r}")
    runs, models = [], {}
    for index in range(count):
        one = seed_config(config, count, index)
        print(f"seed {one.seed} ({index + 1} of {count}) in {one.run_dir}"
              + (f", {one.max_minutes:g} minutes"
                 if one.max_minutes is not None else ""), flush=True)
        done = _finished(one)
        model, metrics = done if done else train(one, corpus)
        if metrics is None:  # a worker of a multi-worker run
            continue
        runs.append((one.seed, metrics))
        models[one.seed] = model
    if not runs:
        return None, None
    summary = summarize(runs)
    best = summary["best_on_dev"]
    source = os.path.join(config.run_dir, f"seed-{best}", "best.keras")
    files.atomic_write(os.path.join(config.run_dir, "best.keras"),
                       lambda tmp: shutil.copyfile(source, tmp),
                       suffix=".keras")
    files.atomic_write_json(os.path.join(config.run_dir, "seeds.json"),
                            summary)
    return models[best], summary
