"""`train_seeds` / `ner train --seeds N`: several seeds in one budget,
their mean and range, the best on dev kept."""

import dataclasses
import filecmp
import json

import pytest

from keras_resnorm.ner import cli, seeds
from keras_resnorm.ner import train as train_module
from keras_resnorm.ner.errors import ConfigError, RunDirError
from ner_helpers import tiny_config


def test_the_runs_share_the_budget_and_take_consecutive_seeds(tmp_path):
    config = tiny_config(tmp_path / "run", seed=7, max_minutes=3.0)
    runs = [seeds.seed_config(config, 3, i) for i in range(3)]
    assert [r.seed for r in runs] == [7, 8, 9]
    assert [r.max_minutes for r in runs] == [1.0, 1.0, 1.0]
    assert runs[1].run_dir == str(tmp_path / "run" / "seed-8")
    assert seeds.seed_config(dataclasses.replace(config, max_minutes=None),
                             3, 0).max_minutes is None
    with pytest.raises(ConfigError, match=r"seeds must be an int >= 1. "
                                          r"Received: seeds=0"):
        seeds.train_seeds(config, 0)


def test_seeds_train_apart_report_the_spread_and_resume(
        builtin_corpus, tmp_path, monkeypatch):
    run = tmp_path / "run"
    config = tiny_config(run, epochs=1, seed=3)
    model, summary = seeds.train_seeds(config, 2, builtin_corpus)
    per = {s: json.loads((run / f"seed-{s}" / "metrics.json").read_text())
           for s in (3, 4)}
    assert summary["seeds"] == [3, 4]
    assert [per[s]["config"]["seed"] for s in (3, 4)] == [3, 4]
    test = [100 * per[s]["test_entity"]["f1"] for s in (3, 4)]
    assert summary["test_entity_f1"] == {
        "mean": (test[0] + test[1]) / 2, "min": min(test), "max": max(test),
        "spread": max(test) - min(test), "values": test}
    best = max((3, 4), key=lambda s: per[s]["dev_entity"]["f1"])
    assert summary["best_on_dev"] == best
    assert filecmp.cmp(run / "best.keras", run / f"seed-{best}" /
                       "best.keras", shallow=False)
    assert json.loads((run / "seeds.json").read_text()) == summary
    assert model.count_params() > 0

    # The same call again reads the finished runs and trains nothing.
    def refuse(*args, **kwargs):
        raise AssertionError("trained a finished run again")

    monkeypatch.setattr(train_module, "train", refuse)
    assert seeds.train_seeds(config, 2, builtin_corpus)[1] == summary
    # Finished runs with other settings are refused, not mixed in.
    with pytest.raises(RunDirError, match="other settings"):
        seeds.train_seeds(dataclasses.replace(config, learning_rate=0.01),
                          2, builtin_corpus)
    # A single run's directory is not reused for several seeds.
    with pytest.raises(RunDirError, match="holds a single run"):
        seeds.train_seeds(dataclasses.replace(
            config, run_dir=str(run / "seed-3")), 2, builtin_corpus)


def test_the_flag_reaches_train_seeds_and_bad_counts_exit(
        tmp_path, monkeypatch, capsys):
    seen = {}

    def fake(config, count):
        seen.update(config=config, count=count)
        stats = {"mean": 50.0, "min": 49.0, "max": 51.0, "spread": 2.0,
                 "values": [49.0, 51.0]}
        return None, {"seeds": [0, 1], "test_entity_f1": stats,
                      "dev_entity_f1": stats, "best_on_dev": 1}

    monkeypatch.setattr(seeds, "train_seeds", fake)
    run_dir = str(tmp_path / "run")
    cli.main(["ner", "train", "--seeds", "2", "--run-dir", run_dir,
              "--max-minutes", "4"])
    assert seen["count"] == 2 and seen["config"].max_minutes == 4.0
    assert seen["config"].run_dir == run_dir
    printed = capsys.readouterr().out
    assert ("test entity-level micro F1 over seeds 0, 1: mean 50.00 "
            "(range 49.00-51.00, spread 2.00)") in printed
    assert "best on dev: seed 1" in printed
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["ner", "train", "--seeds", "0"])
    assert exit_info.value.code == 2
    assert "--seeds: must be an int >= 1. Received: '0'" in \
        capsys.readouterr().err
