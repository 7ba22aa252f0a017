"""The recased-text benchmark: the recasing of a CoNLL file, and scores
of a saved tagger on its test file as is, in lower case and in capitals."""

import json
import os

import pytest

from benchmarks import common, ner_recased


def test_recase_file_changes_tokens_only(tmp_path):
    source = tmp_path / "test.txt"
    source.write_text("-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\n"
                      "rejects VBZ B-VP O\nStraße NN I-NP B-LOC\n\n",
                      encoding="utf-8")
    ner_recased.recase_file(source, tmp_path / "lower.txt", "lower")
    ner_recased.recase_file(source, tmp_path / "upper.txt", "upper")
    assert (tmp_path / "lower.txt").read_text(encoding="utf-8") == (
        "-DOCSTART- -X- -X- O\n\neu NNP B-NP B-ORG\nrejects VBZ B-VP O\n"
        "straße NN I-NP B-LOC\n\n")
    assert (tmp_path / "upper.txt").read_text(encoding="utf-8") == (
        "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nREJECTS VBZ B-VP O\n"
        "STRASSE NN I-NP B-LOC\n\n")
    with pytest.raises(ValueError, match="casing='title'"):
        ner_recased.recase_file(source, tmp_path / "x.txt", "title")


def test_scores_each_run_on_recased_test_text(
        trained_run, builtin_corpus, tmp_path, monkeypatch):
    run_dir, _, metrics = trained_run
    monkeypatch.setattr(common, "RESULTS", str(tmp_path / "results"))
    os.makedirs(tmp_path / "results")
    os.makedirs(tmp_path / "runs")
    # The ner_corpora layout: <run-root>/<corpus>-<size>-seed<seed><variant>.
    os.symlink(run_dir, tmp_path / "runs" / "tiny-1000-seed0")
    recorded = 100 * metrics["test_entity"]["f1"]
    row = {"corpus_name": "tiny", "size": "1000", "seed": 0,
           "system": "ours", "test_entity_f1": recorded}
    results = {"settings": {"scheme": "iob2", "encoding": "utf-8",
                            "variants": []},
               "corpora": [{"name": "tiny",
                            "directory": builtin_corpus.source}],
               "runs": [row, dict(row, system="spacy")]}
    (tmp_path / "results" / "bench.json").write_text(json.dumps(results))
    argv = ["--name", "bench", "--run-root", str(tmp_path / "runs")]
    payload = ner_recased.main(argv)

    (scored,) = payload["runs"]  # spaCy's rows have no saved tagger
    assert scored["f1"]["as is"] == pytest.approx(recorded, abs=0.01)
    # The built-in corpus's names are capitalized: the tagger finds fewer
    # entities without capitals.
    assert scored["f1"]["lower"] < scored["f1"]["as is"]
    assert set(payload["summary"][0]) >= {"as is", "lower", "upper",
                                          "lower - as is"}
    assert "| tiny | 1000 | ours | 1 |" in (
        tmp_path / "results" / "bench-recased.md").read_text()

    # A run directory that holds another tagger than the one recorded
    # is refused, as is a missing one.
    row["test_entity_f1"] = recorded + 1
    (tmp_path / "results" / "bench.json").write_text(json.dumps(results))
    with pytest.raises(SystemExit, match="trained again"):
        ner_recased.main(argv)
    # A run whose directory is gone is skipped and named; none at all is
    # refused.
    row["test_entity_f1"] = recorded
    results["runs"].append(dict(row, seed=1))
    (tmp_path / "results" / "bench.json").write_text(json.dumps(results))
    payload = ner_recased.main(argv)
    assert [r["seed"] for r in payload["runs"]] == [0]
    assert payload["skipped"] == ["tiny 1000 seed 1 ours"]
    assert "Skipped (no saved tagger in its run directory any more): tiny " \
        "1000 seed 1 ours." in (tmp_path / "results" /
                                "bench-recased.md").read_text()
    with pytest.raises(SystemExit, match="no best.keras"):
        ner_recased.main(["--name", "bench", "--run-root",
                          str(tmp_path / "nowhere")])
    with pytest.raises(SystemExit, match="--name"):
        ner_recased.main(["--name", "absent"])
