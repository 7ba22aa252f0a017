import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import keras
import pytest
import tensorflow as tf

from keras_resnorm.ner.tagger import Tagger
from keras_resnorm.ner.train import train
from ner_helpers import tiny_config


def test_run_writes_checkpoints_best_model_and_metrics(trained_run):
    run_dir, tagger, metrics = trained_run
    names = sorted(os.listdir(run_dir / "checkpoints"))
    assert names == [f"epoch-00{i}.keras" for i in range(1, 6)]
    state = json.loads((run_dir / "state.json").read_text())
    assert state["finished"] and len(state["epochs"]) == 5
    assert state["best_f1"] == max(e["dev_entity_f1"] for e in state["epochs"])
    assert metrics["dev_entity"]["f1"] == pytest.approx(state["best_f1"])
    assert 0.0 <= metrics["test_entity"]["f1"] <= 1.0
    assert "NOT the standard NER metric" in metrics["report"]
    # The built-in corpus is easy: five tiny epochs already find entities
    # (a tagger that finds none scores 0).
    assert metrics["test_entity"]["f1"] > 0.3


def test_epochs_dev_did_not_score_get_no_checkpoint_nor_diagnostics(
        tmp_path, builtin_corpus):
    # Between dev evaluations (--eval-interval on a small corpus) the epoch
    # writes only the backup (tests/ner/test_fault_tolerance.py resumes
    # from it): a checkpoint no score picks and an eager diagnostics batch
    # took a sixth of each epoch at 1,000 CoNLL-2003 sentences.
    _, metrics = train(tiny_config(tmp_path, epochs=2, eval_interval=50.0),
                       builtin_corpus)
    state = json.loads((tmp_path / "state.json").read_text())
    scored = [e["epoch"] for e in state["epochs"]
              if e["dev_entity_f1"] is not None]
    assert [e["epoch"] for e in state["epochs"]] == [1, 2] and scored == [2]
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["epoch-002.keras"]
    steps = set()
    for name in os.listdir(tmp_path / "logs" / "ner"):
        for event in tf.compat.v1.train.summary_iterator(
                str(tmp_path / "logs" / "ner" / name)):
            steps.update(event.step for value in event.summary.value
                         if value.tag.startswith("residual/"))
    # TensorBoard steps are 0-based epochs: the second epoch's end.
    assert steps == {1}
    assert metrics["dev_entity"]["f1"] == state["best_f1"]


def test_tagger_api_returns_typed_spans_with_offsets(trained_run):
    run_dir, _, _ = trained_run
    tagger = Tagger.load(str(run_dir / "best.keras"))
    text = "Anna Kovacs visited Norvale on Monday ."
    [spans] = tagger.predict([text])
    # Names of the built-in corpus: a tagger that finds none would leave
    # the offset checks below with nothing to check.
    assert spans, "the tagger found no entity to check"
    for span in spans:
        assert text[span["char_start"]:span["char_end"]] == span["text"]
        assert span["type"] in {"PER", "LOC", "ORG", "MISC"}
    assert tagger.predict([""]) == [[]]
    with pytest.raises(TypeError, match="Received: texts='a b'"):
        tagger.predict("a b")


def test_finished_run_is_not_overwritten_silently(trained_run, builtin_corpus):
    run_dir, _, _ = trained_run
    with pytest.raises(FileExistsError, match="holds a finished run"):
        train(tiny_config(run_dir), builtin_corpus)


class _Crash(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            raise RuntimeError("simulated crash")


def test_killed_run_resumes_from_its_backup(tmp_path, builtin_corpus, capsys):
    # 64 sentences, 4 batches an epoch: what is checked is the epochs.
    config = tiny_config(tmp_path / "run", epochs=4, max_train_sentences=64)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(config, builtin_corpus, extra_callbacks=[_Crash()])
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert [e["epoch"] for e in state["epochs"]] == [1, 2]
    _, metrics = train(tiny_config(tmp_path / "run", epochs=4,
                                   max_train_sentences=64), builtin_corpus)
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    # The crash came at the end of epoch 2, before the backup (last in the
    # callback list) saved it: the resumed run redoes epoch 2 from the
    # epoch-1 backup, whose early-stopping state knows epoch 1 only.
    out = capsys.readouterr().out
    assert "resuming the run" in out
    assert "epoch-0001-step-000000 (epoch 2, 0 batches into it)" in out
    epochs = [e["epoch"] for e in state["epochs"]]
    assert epochs == [1, 2, 3, 4]
    assert metrics["epochs_run"] == len(epochs)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def test_tensorboard_serves_the_logged_scalars(trained_run):
    run_dir, _, _ = trained_run
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir",
         str(run_dir / "logs"), "--host", "127.0.0.1", "--port", str(port),
         "--load_fast", "false"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 90
        tags = None
        while time.time() < deadline:
            try:
                tags = _get(f"{base}/data/plugin/scalars/tags")
                if "ner" in tags and "dev/entity_f1" in tags["ner"]:
                    break
            except OSError:
                pass
            time.sleep(1)
        assert tags and "dev/entity_f1" in tags.get("ner", {}), tags
        assert "train/tokens_per_second" in tags["ner"]
        assert any("branch_to_residual_rms" in t for t in tags["ner"])
        assert any("gradient_norm" in t for t in tags["ner"])
        assert "epoch_loss" in tags["train"]
        assert "epoch_learning_rate" in tags["train"]
        points = _get(f"{base}/data/plugin/scalars/scalars?run=ner"
                      "&tag=dev%2Fentity_f1")
        state = json.loads((run_dir / "state.json").read_text())
        logged = [round(p[2], 5) for p in points]
        assert logged == [round(e["dev_entity_f1"], 5)
                          for e in state["epochs"]]
        request = urllib.request.Request(
            f"{base}/data/plugin/hparams/experiment",
            data=json.dumps({"experimentName": ""}).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            experiment = json.loads(response.read())
        names = {h["name"] for h in experiment["hparamInfos"]}
        assert {"model.norm", "model.placement", "learning_rate"} <= names
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_tokens_per_second_count_the_batches_an_epoch_ran(monkeypatch,
                                                          tmp_path):
    # A time budget can end an epoch after a few batches (the demo's third
    # epoch once reported 224,898 tokens/s, a full epoch's tokens over a few
    # batches' seconds).
    from keras_resnorm.ner import training_callbacks

    monkeypatch.setattr(training_callbacks, "predict_tags",
                        lambda tagger, tokens, forward, contexts:
                        [["O"]] * len(tokens))
    writer = tf.summary.create_file_writer(str(tmp_path / "logs"))
    callback = training_callbacks.DevEntityF1(
        tagger=None, dev_sentences=[(["EU"], ["B-ORG"])],
        state_path=str(tmp_path / "state.json"), patience=5, writer=writer,
        train_tokens=10_000, steps_per_epoch=100)
    callback._forward = object()
    callback.on_epoch_begin(0)
    for batch in range(5):  # 5 of 100 batches, then the budget ran out
        callback.on_train_batch_end(batch)
    callback._started -= 2.0  # about 2 s of training
    logs = {}
    callback.on_epoch_end(0, logs)
    assert 20 < logs["tokens_per_second"] <= 250, logs  # 500 tokens / ~2 s


@pytest.mark.parametrize("decay_over", ["budget", "epochs"])
def test_the_decay_spans_the_budget_only_when_asked(decay_over):
    from keras_resnorm.ner.config import TrainConfig
    from keras_resnorm.ner.train import schedule
    from keras_resnorm.ner.training_callbacks import TimeBudget

    config = TrainConfig(epochs=4, warmup_epochs=0.5, max_minutes=1.0,
                         decay_over=decay_over)
    budget = TimeBudget(60.0)
    rate = schedule(config, steps=10, budget=budget)
    assert (rate.total_steps, rate.warmup_steps) == (40, 5)
    assert rate.budget is (budget if decay_over == "budget" else None)


@pytest.mark.parametrize("interval", [
    {"eval_steps": 10},
    # 10 dev tokens, 100 training tokens an epoch: 250 between evaluations.
    {"eval_interval": 25.0},
    # --eval-steps replaces --eval-interval.
    {"eval_steps": 10, "eval_interval": 0.5}])
def test_evaluates_after_enough_training_and_at_the_end(tmp_path, monkeypatch,
                                                        interval):
    from keras_resnorm.ner import training_callbacks

    calls = []
    monkeypatch.setattr(training_callbacks, "predict_tags",
                        lambda tagger, tokens, forward, contexts:
                        calls.append(1) or [["B-ORG"] * len(t)
                                            for t in tokens])
    writer = tf.summary.create_file_writer(str(tmp_path / "logs"))

    def callback(**kwargs):
        made = training_callbacks.DevEntityF1(
            tagger=None, dev_sentences=[(["EU"] * 10, ["B-ORG"] * 10)],
            state_path=str(tmp_path / "state.json"), patience=5,
            writer=writer, train_tokens=100, steps_per_epoch=4,
            **(kwargs or interval))
        made._forward = object()
        made.set_params({"epochs": 6})
        return made

    def epoch(made, number, batches=4):
        made.on_epoch_begin(number)
        for batch in range(batches):
            made.on_train_batch_end(batch)
        made.on_epoch_end(number, {})
        return made.state["epochs"][-1]["dev_entity_f1"]

    made = callback()
    # 4 batches (100 tokens) an epoch, 10 batches (250 tokens) between
    # evaluations: epochs 3 and 6 (the last).
    assert [epoch(made, e) for e in range(6)] == [None, None, 1.0, None,
                                                  None, 1.0]
    assert len(calls) == 2 and made.state["best_epoch"] == 3
    # A resumed run keeps counting from the backup's state; a stop (the
    # time budget) evaluates at once.
    resumed = callback()
    resumed.set_state({**made.state, "epochs": [], "since_eval": 4,
                       "since_eval_tokens": 100.0})
    assert epoch(resumed, 1) is None
    resumed.set_model(keras.Sequential())
    resumed.model.stop_training = True
    assert epoch(resumed, 2, batches=1) == 1.0
    assert resumed.state["since_eval"] == 0
    assert resumed.state["since_eval_tokens"] == 0.0
    # An interval of at most an epoch's tokens evaluates after every epoch,
    # as does 0.
    for every in ({"eval_interval": 10.0}, {"eval_interval": 0.0}):
        each = callback(**every)
        assert [epoch(each, e) for e in range(3)] == [1.0, 1.0, 1.0]


def test_a_type_the_training_split_lacks_is_trained_around(tmp_path,
                                                          recwarn):
    # A rare type that fell only in dev and test made training refuse to
    # start; spaCy and Flair train, and so do we, with a warning that names
    # the tag, its split and its count, and the scores say so.
    from keras_resnorm.ner import data

    directory = data.write_builtin_corpus(str(tmp_path / "corpus"),
                                          sentences=(120, 30, 30))
    train_file = os.path.join(directory, "train.txt")
    with open(train_file) as f:
        text = f.read()
    with open(train_file, "w") as f:
        f.write(text.replace("B-MISC", "O").replace("I-MISC", "O"))
    corpus = data.load_conll_dir(directory, cache_dir=str(tmp_path / "c"))
    assert "B-MISC" not in corpus.tags
    _, metrics = train(tiny_config(tmp_path / "run", epochs=1), corpus)
    messages = [str(w.message) for w in recwarn
                if "occurs in no training sentence" in str(w.message)]
    assert any("tag 'B-MISC'" in m and " in valid" in m and " in test" in m
               for m in messages), messages
    assert metrics["untrained_types"] == ["MISC"]
    assert "MISC" in metrics["report"]


def test_the_builtin_corpus_says_its_scores_mean_nothing(builtin_corpus,
                                                         capsys, monkeypatch):
    import copy

    from keras_resnorm.ner import cli
    from keras_resnorm.ner import train as train_module

    builtin = copy.copy(builtin_corpus)
    builtin.source = "builtin"
    config = tiny_config("unused")
    train_module._load_corpus(config, builtin, tf.distribute.get_strategy())
    started = capsys.readouterr().out
    assert started.index("NOTE: the built-in corpus is generated for a "
                         "smoke test") < started.index("corpus: builtin")
    entity = {"f1": 1.0, "precision": 1.0, "recall": 1.0}
    metrics = {"test_entity": entity, "report": "", "corpus": "builtin",
               "test_token_accuracy": 1.0, "untrained_types": [],
               "train_seconds_this_call": 0.0}
    monkeypatch.setattr(train_module, "train", lambda config: (None, metrics))
    cli.main(["ner", "train", "--run-dir", str(builtin_corpus.source)])
    scored = capsys.readouterr().out
    assert "test entity-level micro F1: 100.00" in scored
    for words in ("its scores mean nothing", "--download", "--data-dir",
                  "KERAS_RESNORM_CONLL_DIR"):
        assert words in scored.split("test entity-level")[1], words
