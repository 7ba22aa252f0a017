"""benchmarks/lm_depth.py: the plan, the run records, the diagnostics and
the verdicts, at a tiny scale."""

import json
import math
import zlib

import numpy as np
import pytest

from benchmarks import common, lm_depth
from benchmarks.depth import lm, lm_report


def _corpus(tmp_path):
    """Small *.py files with every split of examples/byte_lm.py present."""
    folder = tmp_path / "corpus"
    folder.mkdir()
    wanted = {0: 2, 1: 2}  # test, validation buckets
    text = "def f(x):\n    return x + 1  # a line of Python\n" * 40
    made, i = 0, 0
    while wanted or made < 6:
        name = f"m{i}.py"
        bucket = zlib.crc32(name.encode()) % 20
        if bucket in wanted or (bucket > 1 and made < 6):
            (folder / name).write_text(text.replace("f(", f"f{i}("))
            if bucket in wanted:
                wanted[bucket] -= 1
                if not wanted[bucket]:
                    del wanted[bucket]
            else:
                made += 1
        i += 1
    return str(folder)


TINY = ["--steps", "6", "--d-model", "8", "--heads", "2", "--context", "16",
        "--batch-size", "4", "--eval-bytes", "200", "--eval-batch", "8",
        "--diagnostic-batch", "4", "--streams", "2"]


def test_plan_groups_runs_by_model_shallowest_first():
    args = lm_depth.parse_args([
        "--configs", "pre", "post", "mhc", "--depths", "12", "6",
        "--seeds", "0", "1", "--seed-depths", "6", "--sweep-depth", "6",
        "--sweep-lrs", "1e-3", "1e-2", "--sweep-configs", "pre", "post",
        "--no-warmup-configs", "post"])
    planned = lm_depth.plan(args)
    assert len(planned) == len(set(planned))
    # Each model's runs in a row, depth 6 first.
    models = [(c, d) for c, d, *_ in planned]
    order = list(dict.fromkeys(models))
    assert order == [("pre", 6), ("post", 6), ("mhc", 6), ("pre", 12),
                     ("post", 12), ("mhc", 12)]
    assert [m for m in models] == sorted(models, key=order.index)
    runs = set(planned)
    # Both seeds at the seed depth, one elsewhere; the sweep's base rate
    # is not run twice; warm-up off only for the configs that ask.
    assert ("mhc", 6, 1e-3, "on", 1) in runs
    assert ("mhc", 12, 1e-3, "on", 1) not in runs
    assert ("post", 6, 1e-2, "off", 0) in runs
    assert ("pre", 6, 1e-2, "off", 0) not in runs
    assert ("mhc", 6, 1e-2, "on", 0) not in runs
    assert len([p for p in planned if p[0] == "post" and p[1] == 6]) == 5


def test_schedule_warms_up_then_decays_to_a_tenth():
    args = lm_depth.parse_args(["--steps", "100"])
    on = [lm.schedule(args, "on", 1.0, s) for s in range(100)]
    off = [lm.schedule(args, "off", 1.0, s) for s in range(100)]
    assert on[0] == pytest.approx(0.1) and on[9] == pytest.approx(1.0)
    assert off[0] == pytest.approx(1.0)
    assert on[-1] == pytest.approx(0.1) and off[-1] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(off, off[1:]))


def test_mixing_gain_of_known_matrices():
    n = 3
    identity = np.broadcast_to(np.eye(n), (2, 4, n, n))
    gains = lm.mixing_gain([identity, identity])
    assert gains["composite_gain_forward"] == pytest.approx(1.0)
    # A matrix whose column 0 takes two streams at weight 1: gain 2 each
    # step, 4 after two steps (what HC can do and mHC cannot).
    m = np.eye(n)
    m[1, 0] = 1.0
    amplify = np.broadcast_to(m, (2, 4, n, n))
    gains = lm.mixing_gain([amplify, amplify])
    assert gains["gain_forward"] == [2.0, 2.0]
    assert gains["composite_gain_forward"] == pytest.approx(3.0)
    assert gains["composite_gain_backward"] == pytest.approx(3.0)


def _run(config, depth, bits, end="converged", lr=1e-3, warmup="on",
         seed=0, **extra):
    loss = list(np.linspace(8, bits, 40)) if end != "diverged" else [8.0]
    return dict({"config": config, "depth": depth, "lr": lr,
                 "warmup": warmup, "seed": seed, "end": end,
                 "diverged": end == "diverged", "held_out_bits": bits,
                 "final_loss": bits if end != "diverged" else math.inf,
                 "loss": loss, "rms_last": None, "skip_delta": None}, **extra)


def test_verdicts_follow_the_numbers_and_the_noise_floor():
    settings = {"learning_rate": 1e-3, "depths": [6, 24], "sweep_depth": 6,
                "sweep_lrs": [1e-3, 1e-2]}
    runs = [
        _run("pre", 6, 3.0), _run("pre", 6, 3.05, seed=1),
        _run("post", 6, 2.8), _run("post", 6, 2.85, seed=1),
        _run("pre", 24, 2.9), _run("post", 24, 5.9, end="stalled"),
        _run("deepnorm", 24, 2.95), _run("deepnorm", 6, 3.0),
        _run("pre-dyt", 6, 3.02), _run("pre-dyt", 24, 3.6),
    ]
    for config in ("post", "pre"):
        for lr in (1e-3, 1e-2):
            for warmup in ("on", "off"):
                bad = config == "post" and lr == 1e-2 and warmup == "off"
                if lr == 1e-3 and warmup == "on":
                    continue
                runs.append(_run(config, 6, 6.5 if bad else 3.0, lr=lr,
                                 warmup=warmup,
                                 end="stalled" if bad else "converged"))
    table = {c["claim"]: c for c in lm_report.claims(runs, settings, 6.0)}
    assert len(table) >= 8
    verdict = {k: c["verdict"] for k, c in table.items()}
    assert lm_report.noise_floor(runs) == pytest.approx(0.05)
    assert verdict["Post-LN needs learning-rate warm-up; Pre-LN trains as "
                   "well without it"] == lm_report.HOLDS
    assert verdict["Post-LN diverges or stalls as depth grows where Pre-LN "
                   "trains"] == lm_report.HOLDS
    # Post 2.8-2.85 against pre 3.0-3.05 at depth 6: apart by more than
    # the noise floor of 0.05.
    assert verdict["Post-LN ends better than Pre-LN where it trains"] == \
        lm_report.HOLDS
    assert verdict["DeepNorm keeps Post-LN trainable at depths where plain "
                   "Post-LN fails"] == lm_report.HOLDS
    assert verdict["Dynamic Tanh matches LayerNorm (at Pre-LN)"] == \
        lm_report.FAILS
    assert table["Dynamic Tanh matches LayerNorm (at Pre-LN)"][
        "ours"].startswith("held-out bits: depth 6: DyT 3.020, LN 3.025")
    assert verdict["HC's stream mixing can amplify the signal without "
                   "bound; mHC keeps its gain near 1"] == lm_report.MISSING


def test_study_runs_resumes_and_its_diagnostics_see_the_trained_weights(
        tmp_path, monkeypatch):
    import keras

    monkeypatch.setattr(common, "RESULTS", str(tmp_path / "results"))
    corpus = _corpus(tmp_path)
    argv = ["--corpus-dir", corpus, "--configs", "pre", "mhc", "hub-post",
            "--depths", "2", "--seeds", "0", "--sweep-configs",
            "--scan-from", "2", "--logdir", str(tmp_path / "logs"),
            "--name", "tiny", *TINY]
    payload = lm_depth.main(argv + ["--budget-minutes", "0"])
    # A budget of 0 still starts nothing after the first check.
    assert payload["runs"] == [] and len(payload["missing"]) == 3
    payload = lm_depth.main(argv + ["--resume"])
    assert payload["finished"] and len(payload["runs"]) == 3
    for run in payload["runs"]:
        assert run["end"] in ("converged", "stalled", "diverged")
        assert len(run["grad_norm_init"]) == len(run["skip_delta"]) == 2
        assert len(run["rms_init"]) == len(run["rms_last"]) == 2
        assert all(g > 0 for g in run["grad_norm_init"])
        assert 0 < run["held_out_bits"] < 10
        assert run["scan"] == (run["config"] != "hub-post")
    mhc = next(r for r in payload["runs"] if r["config"] == "mhc")
    assert len(mhc["gain_forward"]) == 4  # two residual steps a layer
    assert mhc["composite_gain_forward"] == pytest.approx(1.0, abs=1e-3)
    again = lm_depth.main(argv + ["--resume"])
    assert again["runs"] == payload["runs"]
    assert len(again["invocations"]) == 3
    written = json.loads((tmp_path / "results" / "tiny.json").read_text())
    assert written["corpus"]["file_count"]["test"] == 2
    assert len(written["corpus"]["sha256"]) == 64
    assert (tmp_path / "results" / "tiny.md").read_text().startswith(
        "# Causal LM depth study")
    # A scanned cell's eager twin (what the per-layer diagnostics run)
    # holds the scanned model's trained weights.
    args = lm_depth.parse_args(argv)
    data = lm.load(args)
    cell = lm.LMCell(args, data, "pre", 2)
    lm.run(cell, 1e-3, "on", 0)
    cell._sync_twin()
    x = data["diagnostic"][0]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(cell.twin(x)),
                               keras.ops.convert_to_numpy(cell.model(x)),
                               atol=1e-5)
    with pytest.raises(SystemExit):
        lm_depth.main(argv[:-len(TINY)] + ["--steps", "7"] + TINY[2:]
                      + ["--resume"])


def test_last_tenth_gain_compares_the_means_of_the_last_two_tenths():
    falling = _run("pre", 6, 3.0, loss=[5.0] * 80 + [4.0] * 10 + [3.5] * 10)
    assert lm_report.last_tenth_gain(falling) == pytest.approx(0.5)
    flat = _run("pre", 6, 3.0, loss=[4.0, 3.0] * 50)
    assert lm_report.last_tenth_gain(flat) == pytest.approx(0.0)
    assert lm_report.last_tenth_gain(_run("pre", 6, 3.0, end="diverged")) \
        is None


def test_speed_mode_times_ours_and_keras_hub_in_turn(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "RESULTS", str(tmp_path / "results"))
    payload = lm_depth.main(["--speed", "--corpus-dir", _corpus(tmp_path),
                             "--depths", "1", "2", "--scan-from", "2",
                             "--speed-rounds", "2", "--name", "tiny", *TINY])
    rows = payload["rows"]
    assert [(r["depth"], r["ours"], r["keras-hub"]) for r in rows] == [
        (1, "pre", "hub-pre"), (1, "post", "hub-post"),
        (2, "pre (scanned)", "hub-pre"), (2, "pre unrolled", "hub-pre"),
        (2, "post (scanned)", "hub-post"), (2, "post unrolled", "hub-post")]
    for r in rows:
        assert r["ours ms/step"] > 0 and r["keras-hub ms/step"] > 0
        assert r["ours / keras-hub tokens/s"] == pytest.approx(
            r["keras-hub ms/step"] / r["ours ms/step"])
    assert len(payload["rounds_ms"]["2"]["hub-pre"]) == 2
    assert payload["rounds_ms"]["2"].keys() == {
        "pre", "pre unrolled", "hub-pre", "post", "post unrolled",
        "hub-post"}
    assert (tmp_path / "results" / "tiny-speed.md").exists()
