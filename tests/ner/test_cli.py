import dataclasses
import json
import os

import pytest

from keras_resnorm.ner import cli, data

TINY = ["--epochs", "1", "--layers", "1", "--heads", "2", "--d-model", "16",
        "--intermediate-dim", "32", "--max-length", "32", "--batch-size", "16"]


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    return data.write_builtin_corpus(str(root / "corpus"),
                                     sentences=(200, 40, 40))


def test_demo_trains_evaluates_tags_and_exports(corpus_dir, tmp_path, capsys,
                                                monkeypatch):
    monkeypatch.setenv("KERAS_RESNORM_CACHE", str(tmp_path / "cache"))
    run_dir = tmp_path / "demo"
    assert cli.main(["ner", "demo", "--data-dir", corpus_dir, "--run-dir",
                     str(run_dir)] + TINY) == 0
    out = capsys.readouterr().out
    assert f"corpus: {corpus_dir}" in out
    assert "test entity-level micro F1:" in out
    assert "NOT the standard NER metric" in out
    assert "TensorBoard logs:" in out and cli.EXAMPLE in out
    assert os.path.exists(run_dir / "serving" / "ner" / "1" / "saved_model.pb")
    # The demo replaces its own finished run when run again.
    assert cli.main(["ner", "demo", "--data-dir", corpus_dir, "--run-dir",
                     str(run_dir)] + TINY) == 0


def test_predict_and_evaluate_commands(corpus_dir, tmp_path, capsys,
                                       monkeypatch):
    monkeypatch.setenv("KERAS_RESNORM_CACHE", str(tmp_path / "cache"))
    run_dir = tmp_path / "run"
    # Trained long enough to find the built-in corpus's names, so the
    # span checks below have spans to check.
    cli.main(["ner", "train", "--data-dir", corpus_dir, "--run-dir",
              str(run_dir), "--placement", "rezero", "--norm", "rms"] + TINY
             + ["--epochs", "4", "--learning-rate", "3e-3"])
    model = str(run_dir / "best.keras")
    # Each epoch: the bar, then the dev F1 line, and no second bar after it.
    lines = [x for x in capsys.readouterr().out.splitlines() if x.strip()]
    after = lines[lines.index(next(x for x in lines if x.startswith(
        "epoch 1: dev entity F1"))) + 1]
    assert after.startswith("Epoch 2/"), lines
    text = "Anna Kovacs visited Norvale ."
    cli.main(["ner", "predict", "--model", model, "--json", text])
    [spans] = json.loads(capsys.readouterr().out)
    assert spans, "the tagger found no entity to check"
    for span in spans:
        assert set(span) == {"text", "type", "start", "end", "char_start",
                             "char_end"}
        assert text[span["char_start"]:span["char_end"]] == span["text"]
    cli.main(["ner", "evaluate", "--model", model, "--data-dir", corpus_dir,
              "--split", "valid"])
    out = capsys.readouterr().out
    assert '"token_accuracy"' in out
    assert out.startswith("scoring the valid split of "), out
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["ner", "train", "--data-dir", corpus_dir, "--run-dir",
                  str(run_dir)] + TINY)
    assert exit_info.value.code == 2
    assert "holds a finished run" in capsys.readouterr().err


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
    assert (default.crf, default.recurrent_layers, default.layers) == (
        True, 1, 0)
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
