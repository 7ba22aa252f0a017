"""`benchmarks.ner_decode` times tagging with and without the CRF's
confidences on a saved tagger and counts the tags on which they differ."""

import json

import pytest

from benchmarks import common, ner_decode


def test_times_both_ways_and_finds_the_same_tags(trained_run, builtin_corpus,
                                                 tmp_path, monkeypatch):
    run_dir, _, metrics = trained_run
    monkeypatch.setattr(common, "RESULTS", str(tmp_path))
    assert ner_decode.main([
        "--model", str(run_dir / "best.keras"), "--data-dir",
        builtin_corpus.source, "--cache-dir", str(tmp_path / "tfds"),
        "--repeats", "2", "--name", "decode", "--others", "the tests"]) == 0
    result = json.loads((tmp_path / "decode.json").read_text())
    assert [row["decoding"] for row in result["rows"]] == list(
        ner_decode.WAYS)
    assert all(row["median s"] > 0 and len(row["rounds s"].split()) == 2
               for row in result["rows"])
    assert result["differing_tags"] == 0
    assert result["sentences"] == 80
    # Its score is the run's own dev score of the same weights.
    assert result["entity_f1"] == pytest.approx(metrics["dev_entity"]["f1"])
    assert "Also running: the tests" in (tmp_path / "decode.md").read_text()


def test_refuses_no_rounds(capsys):
    with pytest.raises(SystemExit):
        ner_decode.main(["--model", "m.keras", "--data-dir", "d",
                         "--repeats", "0"])
    assert "--repeats must be at least 1. Received: 0" in \
        capsys.readouterr().err
