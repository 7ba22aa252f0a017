"""The multi-corpus NER benchmark's plumbing: arguments, budgets, resume
and tables (ours only: spaCy is the `bench` extra's)."""

import json
import shlex

import pytest

from benchmarks import common, ner_corpora


def test_arguments_budgets_and_plan(tmp_path):
    with pytest.raises(SystemExit):
        ner_corpora.parse_args(["--corpus", "nodir"])
    with pytest.raises(SystemExit):
        ner_corpora.parse_args(["--corpus", f"x={tmp_path / 'missing'}"])
    with pytest.raises(SystemExit):
        ner_corpora.parse_args(["--corpus", f"x={tmp_path}",
                                "--corpus", f"x={tmp_path}"])
    args = ner_corpora.parse_args(["--corpus", f"mine={tmp_path}",
                                   "--sizes", "1000", "--seeds", "0", "1"])
    assert args.corpora == [("mine", str(tmp_path))]
    assert ner_corpora.plan(args) == [
        ("mine", "1000", 0, "ours"), ("mine", "1000", 0, "spacy"),
        ("mine", "1000", 1, "ours"), ("mine", "1000", 1, "spacy")]
    # A variant trains after ours with the same seed, before spaCy.
    args = ner_corpora.parse_args([
        "--corpus", f"mine={tmp_path}", "--sizes", "all", "--seeds", "3",
        "--variant", "ema=--ema-momentum 0.99", "--variant", "b=--x 1"])
    assert ner_corpora.plan(args) == [
        ("mine", "all", 3, s) for s in ("ours", "ours-ema", "ours-b",
                                        "spacy")]
    for bad in ("ema", "=--x", "ema=", "a b=--x"):
        with pytest.raises(SystemExit):
            ner_corpora.parse_args(["--corpus", f"mine={tmp_path}",
                                    "--variant", bad])
    with pytest.raises(SystemExit):
        ner_corpora.parse_args(["--corpus", f"mine={tmp_path}", "--variant",
                                "a=--x", "--variant", "a=--y"])
    assert [ner_corpora.budget_minutes(n) for n in
            (1000, 3000, 5199, 14041, 50000)] == [2.0, 2.0, 3.5, 10.0, 10.0]


def test_the_recorded_command_runs_again_as_it_ran():
    argv = ["--variant", "case=--case-augmentation 0.3",
            "--others", "the author's editor", "--sizes", "1000"]
    line = common.command("benchmarks.ner_corpora", argv)
    assert shlex.split(line) == ["python", "-m", "benchmarks.ner_corpora",
                                 *argv]
    # Plain arguments stay unquoted, as the committed results show them.
    assert common.command("benchmarks.x", ["--sizes", "1000"]) == \
        "python -m benchmarks.x --sizes 1000"


def test_runs_resumes_and_tabulates_on_a_small_corpus(
        builtin_corpus, tmp_path, monkeypatch):
    monkeypatch.setattr(common, "RESULTS", str(tmp_path / "results"))
    argv = ["--corpus", f"tiny={builtin_corpus.source}", "--sizes", "all",
            "--seeds", "0", "--systems", "ours", "--minutes", "0.05",
            "--epochs", "1", "--run-root", str(tmp_path / "runs"),
            "--flags", "--conv-layers 1 --d-model 32 --word-dim 16 "
            "--char-dim 8 --char-filters 16 --hash-buckets 200 --hash-dim 8 "
            "--no-xla",
            "--others", "the test suite",
            "--variant", "nocrf=--no-crf"]
    payload = ner_corpora.main(argv)
    assert payload["finished"]
    row, variant = payload["runs"]
    assert row["system"] == "ours" and row["corpus_name"] == "tiny"
    assert 0 <= row["test_entity_f1"] <= 100
    assert len(row["train_subset_sha256"]) == 64
    # The variant trained on the same sentences with its flag on top.
    assert variant["system"] == "ours-nocrf"
    assert variant["flags"][-1] == "--no-crf" and "--no-crf" not in row[
        "flags"]
    assert variant["train_subset_sha256"] == row["train_subset_sha256"]
    [line] = payload["summary"]
    # Only the systems that ran get columns; nothing to compare against.
    assert "spacy test F1" not in line and line["ours spread"] == "0.00"
    assert line["ours - spaCy"] == line["ours-nocrf - spaCy"] == "-"
    assert line["ours-nocrf test F1"] == (
        f"{variant['test_entity_f1']:.2f}")
    md = (tmp_path / "results" / "ner-corpora.md").read_text()
    assert "2 of 2 planned runs" in md and "| tiny | all |" in md
    assert "`ours-nocrf`: ours with `--no-crf`" in md
    # Resuming a finished study trains nothing; other settings refuse.
    again = ner_corpora.main(argv + ["--resume"])
    assert len(again["runs"]) == 2 and len(again["invocations"]) == 2
    with pytest.raises(SystemExit, match="other settings"):
        ner_corpora.main(argv + ["--resume", "--seeds", "1"])
    saved = json.loads((tmp_path / "results" / "ner-corpora.json")
                       .read_text())
    assert saved["runs"][0]["seed"] == 0
