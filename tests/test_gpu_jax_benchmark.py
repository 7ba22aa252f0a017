"""`python -m benchmarks.gpu_jax --quick`: every section of the GPU
benchmark at toy sizes on the CPU, so the full run cannot break unseen
(about 50 s). Its numbers are not checked: only that each section ran,
the device checks passed and TensorFlow stayed out."""

import json
import os
import subprocess
import sys

import pytest

from benchmarks import gpu_jax

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_jax")
    env = dict(os.environ, KERAS_BACKEND="tensorflow")  # it must switch
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_jax", "--quick", "--out",
         str(out), "--note", "the test suite"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    base = out / "gpu-jax-quick-cpu"
    return json.loads(base.with_suffix(".json").read_text()), base


def test_quick_runs_every_section_without_tensorflow(quick_run):
    results, base = quick_run
    assert results["quick"] is True
    assert results["tensorflow_imported"] is False
    assert results["skipped_sections"] == []
    assert set(results["section_s"]) == set(gpu_jax.SECTIONS)
    checks = results["correctness"]
    assert {c["check"].split(":")[0] for c in checks} >= {
        "layer norm vs float64 reference", "rms norm vs float64 reference",
        "ours vs keras layer norm", "ours vs keras rms norm",
        "scanned vs unrolled encoder (3 blocks)", "jit forward+backward"}
    assert all(c["passed"] for c in checks), checks
    for section in ("bandwidth", "train", "depth"):
        rows = results[section]["rows"]
        assert rows and not any("skipped" in r for r in rows), rows
    models = {r["model"] for r in results["train"]["rows"]}
    assert models == {"keras-hub TransformerEncoder", "ours, unrolled",
                      "ours, scanned"}
    # The same sizes: ours and keras-hub's stacks have equal weights.
    for placement in gpu_jax.SIZES["quick"]["train_placements"]:
        params = {r["params"] for r in results["train"]["rows"]
                  if r["placement"] == placement}
        assert len(params) == 1, results["train"]["rows"]
    assert {(r["depth"], r["scan"]) for r in results["depth"]["rows"]} == {
        (d, s) for d in gpu_jax.SIZES["quick"]["depth"]["depths"]
        for s in (False, True)}
    markdown = base.with_suffix(".md").read_text()
    assert "quick mode: toy sizes, not a measurement" in markdown
    assert "Also running: the test suite" in markdown
    assert base.with_suffix(".png").stat().st_size > 1000


def test_model_flops_count_the_matrix_products():
    # One block, d=2, ff=4, 3 tokens, batch 1: per token 2*(4*4 + 2*8)
    # projection and feed-forward FLOPs and 2*2*3*2 for attention, x3.
    t = {"d": 2, "ff": 4, "length": 3, "batch": 1, "blocks": 1}
    assert gpu_jax.train_flops(t) == 3 * (64 + 24) * 3


def _bandwidth_row(norm, impl, forward_ms, of_copy=0.9, shape="16384x4096"):
    return {"shape": shape, "dtype": "bfloat16", "norm": norm, "impl": impl,
            "forward_ms": forward_ms, "forward_of_copy": of_copy}


@pytest.mark.parametrize("keras_ms, of_copy, met", [
    (1.0, 0.9, True),     # as fast as Keras, 90% of copy
    (0.9, 0.9, False),    # Keras faster
    (1.0, 0.8, False),    # under 85% of copy
])
def test_targets_read_the_measurements(keras_ms, of_copy, met):
    results = {"bandwidth": {"rows": [
        _bandwidth_row("layer", "ours", 1.0, of_copy),
        _bandwidth_row("layer", "keras", keras_ms)]}}
    verdicts = {t: ok for t, _, ok in gpu_jax.targets(results)}
    assert all(verdicts.values()) is met, verdicts


def test_compile_target_compares_deepest_with_shallowest_scanned():
    rows = [{"depth": d, "scan": True, "trace_s": 1.0, "compile_s": c}
            for d, c in ((6, 1.0), (48, 4.0))]
    rows.append({"depth": 48, "scan": False, "trace_s": 9.0,
                 "compile_s": 90.0})
    [(target, value, met)] = gpu_jax.targets({"depth": {"rows": rows}})
    assert "depth 48 <= 2x depth 6" in target
    assert value == "2.50x" and met is False
