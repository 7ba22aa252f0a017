import dataclasses
import json
import os
import re

import keras
import pytest

from keras_resnorm.ner import cli

def test_demo_trains_evaluates_tags_and_exports(demo_run, builtin_corpus,
                                                monkeypatch):
    # The session's one demo run (conftest), shared with the export tests.
    run_dir, out = demo_run
    assert f"corpus: {builtin_corpus.source}" in out
    assert "test entity-level micro F1:" in out
    assert "NOT the standard NER metric" in out
    assert "TensorBoard logs:" in out and cli.EXAMPLE in out
    assert "TF Serving export:" in out
    # Where the time went: the parts add up to the whole, each positive.
    total, training, rest, exporting = map(int, re.fullmatch(
        r"time: (\d+) s in all \(after start-up\): training (\d+) s "
        r"\(XLA compiling and dev evaluation included\), the rest "
        r"\(loading, building, scoring\) (\d+) s, export (\d+) s",
        out.strip().splitlines()[-1]).groups())
    assert training > 0 and exporting > 0 and rest >= 0
    assert abs(training + rest + exporting - total) <= 2
    # Each epoch: the bar, then the dev F1 line, and no second bar after it.
    lines = [x for x in out.splitlines() if x.strip()]
    after = lines[lines.index(next(x for x in lines if x.startswith(
        "epoch 1: dev entity F1"))) + 1]
    assert after.startswith("Epoch 2/"), lines
    # The demo fixture's model learns IOBES (--model-tags iobes) and tags
    # in IOB2.
    vocab = json.loads((run_dir / "vocab.json").read_text())
    assert {"S-PER", "E-PER", "B-PER", "I-PER"} <= set(vocab["tags"])
    from keras_resnorm.ner.evaluate import predict_tags
    from keras_resnorm.ner.model import tag_names

    best = keras.saving.load_model(str(run_dir / "best.keras"),
                                   safe_mode=True)
    assert set(tag_names(best)) == set(builtin_corpus.tags)
    predicted = predict_tags(best, [t for t, _ in
                                    builtin_corpus.sentences("valid")[:40]])
    found = {t for tags in predicted for t in tags}
    assert found <= set(builtin_corpus.tags) and found != {"O"}, found
    assert os.path.exists(run_dir / "serving" / "ner" / "1" / "saved_model.pb")
    # The demo replaces its own finished run when run again (train would
    # refuse: see test_predict_and_evaluate_commands).
    seen = []
    monkeypatch.setattr(cli, "cmd_train",
                        lambda args, demo=False: seen.append((args, demo)))
    assert cli.main(["ner", "demo", "--run-dir", str(run_dir)]) == 0
    [(args, demo)] = seen
    assert demo and args.overwrite and args.run_dir == str(run_dir)


def test_predict_and_evaluate_commands(demo_run, builtin_corpus, capsys):
    # The demo's tagger (5 epochs, enough to find the built-in corpus's
    # names, so the span checks below have spans to check).
    run_dir, _ = demo_run
    model = str(run_dir / "best.keras")
    capsys.readouterr()
    text = "Anna Kovacs visited Norvale ."
    cli.main(["ner", "predict", "--model", model, "--json", text])
    [spans] = json.loads(capsys.readouterr().out)
    assert spans, "the tagger found no entity to check"
    for span in spans:
        assert set(span) == {"text", "type", "start", "end", "char_start",
                             "char_end"}
        assert text[span["char_start"]:span["char_end"]] == span["text"]
    # A document: sentences found, offsets into the whole text.
    document = "EU rejects it .\n" + text
    cli.main(["ner", "predict", "--model", model, "--json", "--documents",
              document])
    [[first, second]] = json.loads(capsys.readouterr().out)
    assert [s["text"] for s in second] == [s["text"] for s in spans]
    for span in first + second:
        assert document[span["char_start"]:span["char_end"]] == span["text"]
    cli.main(["ner", "predict", "--model", model, "--documents", document])
    printed = capsys.readouterr().out
    assert printed.startswith("document 1:\n  EU rejects it .\n")
    assert f"  {text}\n" in printed
    cli.main(["ner", "evaluate", "--model", model, "--data-dir",
              builtin_corpus.source, "--split", "valid"])
    out = capsys.readouterr().out
    assert '"token_accuracy"' in out
    assert any(line.startswith("scoring the valid split of ")
               for line in out.splitlines()), out
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["ner", "train", "--data-dir", builtin_corpus.source,
                  "--run-dir", str(run_dir)])
    assert exit_info.value.code == 2
    assert "holds a finished run" in capsys.readouterr().err
    assert os.path.exists(model)  # refused, so nothing was removed


def test_bad_flags_exit_with_usage():
    with pytest.raises(SystemExit):
        cli.main(["ner", "train", "--norm", "batch"])
    with pytest.raises(SystemExit):
        cli.main(["ner", "train", "--placement", "middle"])


def test_model_flags_reach_the_config():
    from keras_resnorm.ner.config import ModelConfig, TrainConfig

    default = TrainConfig.from_argv([]).model
    # --dropout sets the attention dropout too, as the dataclass does.
    assert default == ModelConfig()
    assert default.attention_dropout == default.dropout
    assert TrainConfig.from_argv(["--dropout", "0.2"]).model \
        .attention_dropout == 0.2
    assert TrainConfig.from_argv(["--dropout", "0.2", "--attention-dropout",
                                  "0.05"]).model.attention_dropout == 0.05
    assert (default.crf, default.conv_layers, default.recurrent_layers,
            default.layers) == (True, 4, 0, 0)
    model = TrainConfig.from_argv([
        "--no-crf", "--hash-buckets", "0", "--recurrent-layers", "2",
        "--layers", "3", "--hash-dim", "16"]).model
    assert (model.crf, model.hash_buckets, model.recurrent_layers,
            model.layers, model.hash_dim) == (False, 0, 2, 3, 16)


@pytest.mark.parametrize("flags, message", [
    (["--recurrent-layers", "-1"], "recurrent_layers must be an int >= 0. "
     "Received: recurrent_layers=-1"),
    (["--layers", "-2"], "layers must be an int >= 0. Received: layers=-2"),
    (["--hash-buckets", "-5"], "hash_buckets must be an int >= 0"),
    (["--hash-dim", "0"], "hash_dim must be a positive int when "
     "hash_buckets > 0. Received: hash_dim=0"),
])
def test_bad_model_flags_fail_in_one_line(flags, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["ner", "train", "--run-dir", str(tmp_path / "run")]
                 + flags)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_every_config_field_has_a_flag():
    # The flags are generated from the fields, so a new field is a new flag:
    # every field but branch_scale (set through --placement) has one, with
    # the dataclass's default.
    from keras_resnorm.ner.config import ModelConfig, TrainConfig, flag_name

    parser = cli.build_parser()
    ner = parser._subparsers._group_actions[0].choices["ner"]
    train = ner._subparsers._group_actions[0].choices["train"]
    flags = {s for action in train._actions for s in action.option_strings}
    for cls in (TrainConfig, ModelConfig):
        for field in dataclasses.fields(cls):
            if field.name in ("model", "branch_scale"):
                continue
            assert flag_name(field) in flags, (cls.__name__, field.name)
    assert "--xla" in flags and "--no-crf" in flags
    # ... and help text for every flag.
    assert all(action.help for action in train._actions), [
        action.dest for action in train._actions if not action.help]
    args = parser.parse_args(["ner", "train"])
    assert TrainConfig.from_flags(args) == TrainConfig()
    demo_args = parser.parse_args(["ner", "demo"])
    demo = TrainConfig.from_flags(demo_args, demo_args.defaults)
    assert (demo.run_dir, demo.max_minutes) == (os.path.join(
        "runs", "ner-demo"), 3.0)
