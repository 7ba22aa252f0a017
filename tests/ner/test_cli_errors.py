"""Every expected failure of the command line: one line naming the file or
setting, exit status 2, no traceback, nothing lost; `--debug` and
`KERAS_RESNORM_DEBUG=1` show the traceback."""

import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from keras_resnorm.ner import cli, data
from keras_resnorm.ner.config import TrainConfig
from keras_resnorm.ner.errors import (
    ConfigError,
    CorpusError,
    ModelFileError,
    RunDirError,
    UsageError,
)


def fail(argv, capsys):
    """Run the CLI, expect an expected failure; return its one error line."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines()
             if line.startswith("keras-resnorm: error:")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
def corpus(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_RESNORM_CACHE", str(tmp_path / "cache"))
    return data.write_builtin_corpus(str(tmp_path / "corpus"),
                                     sentences=(60, 20, 20))


def train_argv(corpus_dir, run_dir, *flags):
    return ["ner", "train", "--data-dir", str(corpus_dir), "--run-dir",
            str(run_dir), "--epochs", "1", *flags]


def _append(path, raw):
    with open(path, "ab") as f:
        f.write(raw)


@pytest.mark.parametrize("damage, message", [
    (lambda d: _append(os.path.join(d, "valid.txt"), b"EU B-ORG\nrejects\n"),
     r"valid.txt:\d+: expected a token and a tag separated by spaces or "
     r"tabs. Received: 'rejects'"),
    (lambda d: _append(os.path.join(d, "train.txt"), b"\xff\xfe B-ORG\n"),
     r"train.txt:\d+: invalid UTF-8"),
    (lambda d: open(os.path.join(d, "test.txt"), "w").close(),
     r"test.txt: no sentence found \(empty split\)"),
    (lambda d: _append(os.path.join(d, "test.txt"), b"EU B-ORG\nis X-Y\n"),
     r"test.txt:\d+: tag must be 'O' or start with 'B-'/'I-'. "
     r"Received: 'X-Y'"),
    (lambda d: os.remove(os.path.join(d, "valid.txt")),
     r"no file for the 'valid' split"),
    (lambda d: shutil.rmtree(d), r"data directory not found"),
])
def test_corpus_errors(corpus, tmp_path, capsys, damage, message):
    import re

    damage(corpus)
    line = fail(train_argv(corpus, tmp_path / "run"), capsys)
    assert re.search(message, line), line


def test_tfds_does_not_claim_a_download(corpus, tmp_path, capsys):
    loaded = data.load_conll_dir(corpus, cache_dir=str(tmp_path / "c"))
    assert len(loaded.sentences("train")) == 60
    out = capsys.readouterr().out
    assert f"preparing the corpus in {corpus}" in out
    assert "Downloading" not in out and "downloaded" not in out


@pytest.fixture
def model_files(tmp_path):
    garbage = tmp_path / "garbage.keras"
    garbage.write_bytes(b"this is not a zip archive")
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(b"PK\x03\x04\x14\x00\x00\x00")
    empty_zip = tmp_path / "empty.keras"
    with zipfile.ZipFile(empty_zip, "w") as archive:
        archive.writestr("readme.txt", "no config.json here")
    wrong_suffix = tmp_path / "model.h5"
    wrong_suffix.write_bytes(b"\x89HDF\r\n")
    return {"garbage": garbage, "truncated": truncated,
            "empty_zip": empty_zip, "wrong_suffix": wrong_suffix,
            "directory": tmp_path, "missing": tmp_path / "nope.keras"}


MODEL_MESSAGES = {
    "garbage": "not a Keras model archive",
    "truncated": "not a Keras model archive",
    "empty_zip": "not a loadable Keras model archive",
    "wrong_suffix": "expected a .keras model archive",
    "directory": "is a directory; expected a .keras model archive",
    "missing": "model file not found",
}


@pytest.mark.parametrize("kind", MODEL_MESSAGES)
@pytest.mark.parametrize("command", ["predict", "evaluate", "export"])
def test_model_file_errors(model_files, tmp_path, capsys, kind, command):
    path = str(model_files[kind])
    argv = {"predict": ["ner", "predict", "--model", path, "EU rejects"],
            "evaluate": ["ner", "evaluate", "--model", path],
            "export": ["ner", "export", "--model", path, "--base",
                       str(tmp_path / "base")]}[command]
    line = fail(argv, capsys)
    assert f"{path}: {MODEL_MESSAGES[kind]}" in line
    assert not (tmp_path / "base").exists()


def test_export_base_that_cannot_be_written(exported, tmp_path, capsys):
    _, _, model = exported
    taken = tmp_path / "a-file"
    taken.write_text("not a directory")
    line = fail(["ner", "export", "--model", model, "--base", str(taken)],
                capsys)
    assert f"{taken}: cannot create the export base directory" in line
    line = fail(["ner", "export", "--model", model, "--base",
                 str(taken / "below")], capsys)
    assert "cannot create the export base directory" in line
    assert taken.read_text() == "not a directory"


def test_export_version_that_exists(exported, tmp_path, capsys):
    _, _, model = exported
    base = tmp_path / "base"
    (base / "3").mkdir(parents=True)
    (base / "3" / "keep").write_text("served")
    line = fail(["ner", "export", "--model", model, "--base", str(base),
                 "--version", "3", "--no-warmup"], capsys)
    assert "3 exists; versions are never overwritten" in line
    assert (base / "3" / "keep").read_text() == "served"


def _fake_run(argv, finished, **changes):
    """A run directory as `argv` would have left it, with `changes` made to
    its saved settings."""
    import dataclasses

    config = TrainConfig.from_argv(argv[2:])
    config = dataclasses.replace(config, **changes)
    os.makedirs(config.run_dir)
    with open(os.path.join(config.run_dir, "config.json"), "w") as f:
        json.dump(dataclasses.asdict(config), f)
    with open(os.path.join(config.run_dir, "state.json"), "w") as f:
        json.dump({"finished": finished}, f)
    with open(os.path.join(config.run_dir, "best.keras"), "w") as f:
        f.write("the earlier run's model")


def test_run_dir_that_holds_a_finished_run(corpus, tmp_path, capsys):
    run_dir = tmp_path / "run"
    _fake_run(train_argv(corpus, run_dir), finished=True)
    line = fail(train_argv(corpus, run_dir), capsys)
    assert f"{run_dir} holds a finished run. Pass overwrite=True " \
           "(--overwrite)" in line
    assert (run_dir / "best.keras").read_text() == "the earlier run's model"


def test_overwrite_replaces_a_finished_run(corpus, tmp_path):
    # What the demo does on its second run (it always passes overwrite).
    from keras_resnorm.ner import resume

    run_dir = tmp_path / "run"
    _fake_run(train_argv(corpus, run_dir), finished=True)
    config = TrainConfig.from_argv(
        train_argv(corpus, run_dir, "--overwrite")[2:])
    config, resumed = resume.prepare(config)
    assert not resumed and not (run_dir / "best.keras").exists()
    assert not (run_dir / "state.json").exists()
    assert json.loads((run_dir / "config.json").read_text())["overwrite"]


def test_run_dir_that_holds_a_different_run(corpus, tmp_path, capsys):
    run_dir = tmp_path / "run"
    _fake_run(train_argv(corpus, run_dir), finished=False, learning_rate=0.5)
    line = fail(train_argv(corpus, run_dir), capsys)
    assert f"{run_dir} holds an unfinished run with other settings " \
           "(learning_rate: 0.5 -> 0.001)" in line
    assert (run_dir / "best.keras").read_text() == "the earlier run's model"
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["learning_rate"] == 0.5


@pytest.mark.parametrize("edit, named", [
    # Written before model_tags existed (its default was IOB2 then).
    (lambda c: c["model"].pop("model_tags"),
     "model.model_tags: (not recorded) -> 'iobes'"),
    # Written by a version with a setting this one does not have.
    (lambda c: c.update(old_knob=3), "old_knob: 3 -> (no longer a setting)"),
], ids=["setting-not-recorded", "setting-gone"])
def test_run_dir_written_by_another_version_is_not_resumed(
        corpus, tmp_path, capsys, edit, named):
    run_dir = tmp_path / "run"
    _fake_run(train_argv(corpus, run_dir), finished=False)
    saved = json.loads((run_dir / "config.json").read_text())
    edit(saved)
    (run_dir / "config.json").write_text(json.dumps(saved))
    line = fail(train_argv(corpus, run_dir), capsys)
    assert f"holds an unfinished run with other settings ({named})" in line
    assert (run_dir / "best.keras").read_text() == "the earlier run's model"


@pytest.mark.parametrize("flags, message", [
    (["--epochs", "0"], "epochs must be a positive int. Received: epochs=0"),
    (["--batch-size", "-4"], "batch_size must be a positive int"),
    (["--learning-rate", "-1"], "learning_rate must be a positive number. "
     "Received: learning_rate=-1.0"),
    (["--learning-rate", "nan"], "learning_rate must be a positive number"),
    (["--max-minutes", "0"], "max_minutes must be a positive number"),
    (["--patience", "-1"], "patience must be an int >= 0"),
    (["--seed", "-3"], "seed must be an int >= 0. Received: seed=-3"),
    (["--seed", str(2 ** 32)], "seed must be below 4294967296"),
    (["--max-train-sentences", "0"], "max_train_sentences must be a "
     "positive int or None"),
    (["--word-dropout", "1"], "word_dropout must be in [0, 1)"),
    (["--dropout", "1.5"], "dropout must be in [0, 1). Received: "
     "dropout=1.5"),
    (["--attention-dropout", "-0.1"], "attention_dropout must be in [0, 1)"),
    (["--d-model", "0"], "d_model must be a positive int"),
    (["--max-length", "0"], "max_length must be a positive int"),
    (["--layers", "1", "--heads", "3", "--d-model", "16"],
     "d_model must be divisible by heads when layers > 0. "
     "Received: d_model=16, heads=3"),
    (["--min-count", "0"], "min_count must be an int >= 1"),
    (["--placement", "mhc", "--expansion", "0"],
     "expansion must be a positive int. Received: expansion=0"),
    (["--weight-decay", "-1"], "weight_decay must be a number >= 0"),
    (["--encoding", "latin-9000"], "encoding must be a text encoding Python "
     "knows"),
    (["--backup-steps", "0"], "backup_steps must be a positive int or None"),
    (["--strategy", "multiworker"], "TF_CONFIG"),
])
def test_bad_flag_values(flags, message, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    line = fail(["ner", "train", "--run-dir", str(tmp_path / "run")] + flags,
                capsys)
    assert message in line
    assert not (tmp_path / "run").exists()


def test_debug_shows_the_traceback(model_files, monkeypatch):
    path = str(model_files["garbage"])
    with pytest.raises(ModelFileError, match="not a Keras model archive"):
        cli.main(["ner", "predict", "--model", path, "x", "--debug"])
    with pytest.raises(ModelFileError):
        cli.main(["--debug", "ner", "predict", "--model", path, "x"])
    monkeypatch.setenv(cli.DEBUG_ENV, "1")
    with pytest.raises(ModelFileError):
        cli.main(["ner", "predict", "--model", path, "x"])


def test_the_installed_command_prints_one_line(model_files):
    # As a user runs it: TensorFlow's start-up lines (on this machine, a
    # failed cuInit) stay out; the failure is the one line printed.
    env = dict(os.environ)
    for name in ("TF_CPP_MIN_LOG_LEVEL", cli.DEBUG_ENV):
        env.pop(name, None)
    command = os.path.join(os.path.dirname(sys.executable), "keras-resnorm")
    argv = ["ner", "predict", "--model", str(model_files["truncated"]), "x"]
    run = subprocess.run([command] + argv, capture_output=True, text=True,
                         env=env, timeout=300)
    assert run.returncode == 2
    assert run.stdout == ""
    assert run.stderr.splitlines() == [
        f"keras-resnorm: error: {model_files['truncated']}: not a Keras "
        "model archive (a .keras file is a zip archive; this one is corrupt "
        "or truncated)"], run.stderr
    # --verbose lets TensorFlow's own lines through, the error still last.
    loud = subprocess.run([command, "--verbose"] + argv, capture_output=True,
                          text=True, env=env, timeout=300)
    assert loud.returncode == 2 and "Traceback" not in loud.stderr
    assert loud.stderr.splitlines()[-1] == run.stderr.strip()
    assert len(loud.stderr.splitlines()) > 1


def test_error_classes_are_usage_errors_and_builtin_ones():
    for cls, builtin in ((CorpusError, ValueError), (ConfigError, ValueError),
                         (ModelFileError, ValueError),
                         (RunDirError, FileExistsError)):
        assert issubclass(cls, UsageError) and issubclass(cls, builtin)
    assert data.CorpusError is CorpusError
