"""benchmarks/depth.py at a tiny scale: every cell runs and is recorded."""

import json

import pytest

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
    allowed = {"confirmed", "contradicted", "cannot tell",
               "cannot tell (missing)"}
    for claim in written["claims"]:
        verdicts = ({claim["verdict"]} if claim["kind"] == "gradient"
                    else {claim["by F1"], claim["by loss"]})
        assert verdicts <= allowed, claim
    # Every depth gets its rows, and the gradient claim on residuals is
    # measured (pre and noresidual ran).
    assert {c["depth"] for c in written["claims"]} == {1, 2}
    vanishing = [c for c in written["claims"] if c["kind"] == "gradient"
                 and c["claim"].startswith("without residual connections")]
    # Block 0 is left out of gradient ratios, so depth 1 has none.
    assert [c["depth"] for c in vanishing] == [2]
    assert "no residual" in vanishing[0]["measured"]
    assert (tmp_path / "results" / "tiny.md").read_text().startswith(
        "# Depth study")
    assert list((tmp_path / "logs").iterdir())  # TensorBoard runs
    # Redone from the JSON alone: the same claims, and the plots again.
    for plot in written["plots"]:
        (tmp_path / "results" / plot).unlink()
    again = depth.main(["--from-json", str(tmp_path / "results" /
                                           "tiny.json"), "--name", "tiny"])
    assert again["claims"] == written["claims"]
    assert again["runs"] == written["runs"]
    # matplotlib comes with the test extra: the plots are drawn again.
    assert len(again["plots"]) == 4
    assert all((tmp_path / "results" / p).exists() for p in again["plots"])


def test_a_reset_cell_repeats_a_fresh_models_run(tmp_path):
    """Reusing one traced model across seeds must not leak weights or
    optimizer state from one run into the next."""
    corpus_dir = data.write_builtin_corpus(str(tmp_path / "corpus"),
                                           sentences=(60, 20, 20))
    args = depth.parse_args([
        "--data-dir", corpus_dir, "--steps", "5", "--batch-size", "8",
        "--d-model", "8", "--max-length", "16", "--expansion", "2",
        "--seeds", "3", "4", "--no-xla"])
    corpus = depth.load(args)
    reused = depth.Cell(args, corpus, "mhc", 2)
    first = depth.run(reused, "off", 3, str(tmp_path / "a"))
    depth.run(reused, "on", 4, str(tmp_path / "b"))  # moves every weight
    again = depth.run(reused, "off", 3, str(tmp_path / "c"))
    args.seeds = [3]
    fresh = depth.run(depth.Cell(args, corpus, "mhc", 2), "off", 3,
                      str(tmp_path / "d"))
    for other in (again, fresh):
        assert other["loss"] == first["loss"]
        assert other["final_loss"] == first["final_loss"]
        assert other["grad_norm_last"] == first["grad_norm_last"]
    assert first["grad_norm_last"] != first["grad_norm_init"]


def test_merging_studies_takes_each_depth_whole_from_one_file(tmp_path,
                                                              monkeypatch):
    """A study continued by a second command: each depth's runs come from
    the file with the most runs at that depth, never mixed."""
    monkeypatch.setattr(common, "RESULTS", str(tmp_path))

    def run(depth, seed, placement):
        return {"placement": placement, "depth": depth, "warmup": "off",
                "seed": seed, "diverged": False, "dev_entity_f1": 10.0 + seed,
                "loss": [2.0, 1.0], "final_loss": 1.0,
                "grad_norm_init": [1.0] * depth,
                "grad_norm_last": [1.0] * depth, "step_ms": 1.0,
                "trace_s": 1.0, "parameters": 10,
                "stream_bytes_per_block": 4}

    settings = {"placements": ["pre", "post"], "seeds": [0, 1],
                "warmup": ["off"]}
    machine = {"cpu": "x", "cores": 2, "gpus": [], "tensorflow": "t",
               "keras": "k", "date": "d"}
    first = {"runs": [run(4, s, p) for s in (0, 1) for p in ("pre", "post")]
             + [run(2, 0, "pre")],  # the budget ran out in depth 2
             "command": "python -m benchmarks.depth --depths 4 2",
             "machine": machine, "settings": settings, "others": "none",
             "wall_seconds": 60.0, "planned_runs": 8, "stopped_early": True,
             "finished": True}
    second = dict(first, runs=[run(2, s, p) for s in (0, 1)
                               for p in ("pre", "post")],
                  command="python -m benchmarks.depth --depths 2",
                  stopped_early=False, wall_seconds=30.0)
    paths = []
    for name, payload in (("a", first), ("b", second)):
        (tmp_path / f"{name}.json").write_text(json.dumps(payload))
        paths.append(str(tmp_path / f"{name}.json"))
    merged = depth.main(["--from-json", *paths, "--name", "merged"])
    assert len(merged["runs"]) == 8 and not merged["stopped_early"]
    assert [x["command"] for x in merged["sources"]] == [
        second["command"], first["command"]]  # depth 2, then depth 4
    assert merged["wall_seconds"] == 90.0
    markdown = (tmp_path / "merged.md").read_text()
    assert "depth 2: 4 runs from `python -m benchmarks.depth --depths 2`" \
        in markdown


def test_resume_runs_only_what_is_missing(tmp_path, monkeypatch):
    corpus = data.write_builtin_corpus(str(tmp_path / "corpus"),
                                       sentences=(60, 20, 20))
    monkeypatch.setattr(common, "RESULTS", str(tmp_path / "results"))
    base = ["--data-dir", corpus, "--depths", "1", "--seeds", "0",
            "--warmup", "off", "--steps", "2", "--batch-size", "8",
            "--d-model", "8", "--max-length", "16", "--name", "r",
            "--logdir", str(tmp_path / "logs")]
    first = depth.main(base + ["--placements", "pre"])
    again = depth.main(base + ["--placements", "pre", "noresidual",
                               "--resume", "--others", "a test"])
    assert [r["placement"] for r in again["runs"]] == ["pre", "noresidual"]
    assert again["runs"][0] == first["runs"][0]  # kept, not rerun
    assert [i["runs"] for i in again["invocations"]] == [1, 1]
    assert again["invocations"][1]["others"] == "a test"
    markdown = (tmp_path / "results" / "r.md").read_text()
    assert "- run 2: `python -m benchmarks.depth" in markdown
    with pytest.raises(SystemExit, match=r"steps: 2 -> 3"):
        depth.main(base + ["--steps", "3", "--resume"])
