"""benchmarks/depth.py at a tiny scale: every cell runs and is recorded."""

import json

from benchmarks import common, depth
from keras_resnorm.ner import data


def test_depth_study_runs_every_cell_and_writes_results(tmp_path,
                                                        monkeypatch):
    corpus = data.write_builtin_corpus(str(tmp_path / "corpus"),
                                       sentences=(80, 30, 30))
    monkeypatch.setattr(common, "RESULTS", str(tmp_path / "results"))
    payload = depth.main([
        "--data-dir", corpus, "--depths", "1", "2", "--placements", "pre",
        "noresidual", "mhc", "--seeds", "0", "1", "--warmup", "off",
        "--steps", "4",
        "--batch-size", "8", "--d-model", "8", "--max-length", "16",
        "--expansion", "2", "--logdir", str(tmp_path / "logs"),
        "--name", "tiny"])
    runs = payload["runs"]
    assert len(runs) == payload["planned_runs"] == 2 * 2 * 3
    for run in runs:
        assert len(run["grad_norm_init"]) == run["depth"]
        assert all(g >= 0 for g in run["grad_norm_init"])
        assert 0.0 <= run["dev_entity_f1"] <= 100.0
        assert run["steps"] == 4 or run["diverged"]
        assert run["trace_s"] > 0 and run["reset_s"] >= 0
    assert {r["placement"] for r in runs} == {"pre", "noresidual", "mhc"}
    # HC/mHC carry `expansion` copies of the stream.
    by = {r["placement"]: r["stream_bytes_per_block"] for r in runs}
    assert by["mhc"] == 2 * by["pre"]
    written = json.loads((tmp_path / "results" / "tiny.json").read_text())
    assert len(written["runs"]) == len(runs)
    verdicts = {c["verdict"] for c in written["claims"]}
    assert verdicts <= {"confirmed", "contradicted", "cannot tell"}
    assert (tmp_path / "results" / "tiny.md").read_text().startswith(
        "# Depth study")
    assert list((tmp_path / "logs").iterdir())  # TensorBoard runs


def test_a_reset_cell_repeats_a_fresh_models_run(tmp_path):
    """Reusing one traced model across seeds must not leak weights or
    optimizer state from one run into the next."""
    corpus_dir = data.write_builtin_corpus(str(tmp_path / "corpus"),
                                           sentences=(60, 20, 20))
    args = depth.parse_args([
        "--data-dir", corpus_dir, "--steps", "5", "--batch-size", "8",
        "--d-model", "8", "--max-length", "16", "--expansion", "2",
        "--seeds", "3", "--no-xla"])
    corpus = depth.load(args)
    reused = depth.Cell(args, corpus, "mhc", 2)
    first = depth.run(reused, "off", 3, str(tmp_path / "a"))
    depth.run(reused, "on", 4, str(tmp_path / "b"))  # moves every weight
    again = depth.run(reused, "off", 3, str(tmp_path / "c"))
    fresh = depth.run(depth.Cell(args, corpus, "mhc", 2), "off", 3,
                      str(tmp_path / "d"))
    for other in (again, fresh):
        assert other["loss"] == first["loss"]
        assert other["final_loss"] == first["final_loss"]
        assert other["grad_norm_last"] == first["grad_norm_last"]
    assert first["grad_norm_last"] != first["grad_norm_init"]
