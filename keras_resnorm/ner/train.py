"""Train the NER tagger with `model.fit`: checkpoints, resume, TensorBoard.

A run directory holds everything a run writes:

```
run_dir/config.json        the configuration (a resumed run reuses it)
run_dir/vocab.json         word and character vocabularies, tag set
run_dir/backup/            BackupAndRestore state: a killed run resumes here
run_dir/checkpoints/       epoch-NNN.keras after every epoch
run_dir/best.keras         the model with the best dev entity F1 so far
run_dir/state.json         best F1, its epoch, early-stopping counter
run_dir/logs/              TensorBoard: train/ (loss, learning rate),
                           ner/ (dev entity P/R/F1, tokens per second,
                           hparams, residual-stream diagnostics)
run_dir/metrics.json       test scores of best.keras when the run ends
```
"""

import dataclasses
import json
import math
import os
import shutil
import time

import keras
import numpy as np
import tensorflow as tf

from keras_resnorm.callbacks import ResidualStreamDiagnostics
from keras_resnorm.ner import data as data_lib
from keras_resnorm.ner.evaluate import entity_scores, evaluate, make_forward
from keras_resnorm.ner.evaluate import predict_tags
from keras_resnorm.ner.model import ModelConfig, build_model


@dataclasses.dataclass
class TrainConfig:
    """Everything a training run needs; every field is a CLI flag."""

    run_dir: str = os.path.join("runs", "ner")
    data_dir: str = None
    download: bool = False
    scheme: str = "iob2"
    cache_dir: str = None
    epochs: int = 30
    batch_size: int = 32
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    warmup_epochs: float = 1.0
    min_count: int = 2
    word_dropout: float = 0.1
    patience: int = 6
    max_minutes: float = None
    max_train_sentences: int = None
    seed: int = 0
    jit_compile: bool = False
    overwrite: bool = False
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)

    @classmethod
    def from_dict(cls, values):
        values = dict(values)
        values["model"] = ModelConfig(**values.get("model", {}))
        return cls(**values)


def _atomic_write_json(path, value):
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(value, f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _atomic_save_model(model, path):
    tmp = path + ".tmp.keras"
    model.save(tmp)
    os.replace(tmp, path)


class EntityF1Checkpoint(keras.callbacks.Callback):
    """Dev entity F1 each epoch: checkpoints, best model, early stopping, logs.

    Saves the tagger (raw tokens in) as `checkpoints/epoch-NNN.keras` after
    every epoch and as `best.keras` when dev entity F1 improves.

    State (best F1, its epoch, epochs without improvement) lives in
    `run_dir/state.json`, written atomically, so a resumed run continues the
    same early-stopping count and keeps the same best model.
    """

    def __init__(self, tagger, dev_sentences, run_dir, patience, writer,
                 train_tokens):
        super().__init__()
        self.tagger = tagger
        self.dev = dev_sentences
        self.run_dir = run_dir
        self.patience = patience
        self.writer = writer
        self.train_tokens = train_tokens
        self.state_path = os.path.join(run_dir, "state.json")
        self.state = {"best_f1": -1.0, "best_epoch": None, "wait": 0,
                      "finished": False, "epochs": []}
        if os.path.exists(self.state_path):
            with open(self.state_path) as f:
                self.state.update(json.load(f))
        self._forward = None
        self._started = None

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self._started
        if self._forward is None:
            self._forward = make_forward(self.tagger)
        pred = predict_tags(self.tagger, [t for t, _ in self.dev],
                            forward=self._forward)
        scores = entity_scores([g for _, g in self.dev], pred)
        tokens_per_second = self.train_tokens / seconds
        logs = logs if logs is not None else {}
        logs.update({"val_entity_precision": scores["precision"],
                     "val_entity_recall": scores["recall"],
                     "val_entity_f1": scores["f1"],
                     "tokens_per_second": tokens_per_second})
        with self.writer.as_default():
            for key in ("precision", "recall", "f1"):
                tf.summary.scalar(f"dev/entity_{key}", scores[key], step=epoch)
            tf.summary.scalar("train/tokens_per_second", tokens_per_second,
                              step=epoch)
        self.writer.flush()
        _atomic_save_model(self.tagger, os.path.join(
            self.run_dir, "checkpoints", f"epoch-{epoch + 1:03d}.keras"))
        improved = scores["f1"] > self.state["best_f1"]
        if improved:
            _atomic_save_model(self.tagger, os.path.join(self.run_dir,
                                                         "best.keras"))
            self.state.update(best_f1=scores["f1"], best_epoch=epoch + 1,
                              wait=0)
        else:
            self.state["wait"] += 1
        self.state["epochs"].append({
            "epoch": epoch + 1, "dev_entity_f1": scores["f1"],
            "loss": float(logs.get("loss", math.nan)),
            "seconds": seconds, "tokens_per_second": tokens_per_second})
        _atomic_write_json(self.state_path, self.state)
        print(f"\nepoch {epoch + 1}: dev entity F1 {scores['f1']:.4f} "
              f"(best {self.state['best_f1']:.4f} at epoch "
              f"{self.state['best_epoch']}), {tokens_per_second:,.0f} "
              "training tokens/s", flush=True)
        if self.state["wait"] >= self.patience:
            print(f"early stopping: no dev F1 gain in {self.patience} epochs")
            self.model.stop_training = True


class TimeBudget(keras.callbacks.Callback):
    """Stop training once `seconds` of wall time have passed in this call."""

    def __init__(self, seconds):
        super().__init__()
        self.seconds = seconds
        self.start = None
        self.exhausted = False

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if time.perf_counter() - self.start > self.seconds:
            self.exhausted = True
            self.model.stop_training = True


def _log_hparams(writer, config):
    from tensorboard.plugins.hparams import api as hp

    flat = {k: v for k, v in dataclasses.asdict(config).items()
            if k != "model"}
    flat.update({f"model.{k}": v
                 for k, v in dataclasses.asdict(config.model).items()})
    flat = {k: (v if isinstance(v, (bool, int, float, str)) else str(v))
            for k, v in flat.items()}
    with writer.as_default():
        hp.hparams(flat, trial_id=os.path.basename(
            os.path.abspath(config.run_dir)))
    writer.flush()


def _prepare_run_dir(config):
    run_dir = config.run_dir
    state_path = os.path.join(run_dir, "state.json")
    config_path = os.path.join(run_dir, "config.json")
    if os.path.exists(state_path):
        with open(state_path) as f:
            finished = json.load(f).get("finished")
        if finished and not config.overwrite:
            raise FileExistsError(
                f"{run_dir} holds a finished run. Pass overwrite=True "
                f"(--overwrite) or another run_dir. Received: run_dir={run_dir!r}"
            )
        if finished:
            shutil.rmtree(run_dir)
    if os.path.exists(config_path):
        with open(config_path) as f:
            saved = TrainConfig.from_dict(json.load(f))
        print(f"resuming the run in {run_dir}")
        saved.run_dir = run_dir
        return saved, True
    os.makedirs(run_dir, exist_ok=True)
    _atomic_write_json(config_path, dataclasses.asdict(config))
    return config, False


def build_vocabulary(sentences, min_count):
    counts = {}
    chars = set()
    for tokens, _ in sentences:
        for token in tokens:
            word = "".join("0" if c.isdigit() and c.isascii() else c
                           for c in token.lower())
            counts[word] = counts.get(word, 0) + 1
            chars.update(token)
    words = sorted(w for w, n in counts.items() if n >= min_count)
    return words, sorted(chars)


def train(config, corpus=None, extra_callbacks=()):
    """Train (or resume) a run; return `(tagger, metrics)`.

    `corpus` overrides the corpus search (tests pass a small one);
    `extra_callbacks` are appended to the fit callbacks.
    """
    config, resumed = _prepare_run_dir(config)
    run_dir = config.run_dir
    keras.utils.set_random_seed(config.seed)
    if corpus is None:
        corpus = data_lib.find_corpus(config.data_dir, config.download,
                                      config.cache_dir, config.scheme)
    data_lib.check_tags(corpus)
    train_sentences = corpus.sentences("train")
    if config.max_train_sentences:
        train_sentences = train_sentences[: config.max_train_sentences]
    print(f"corpus: {corpus.source} ({len(train_sentences)} training "
          f"sentences, tags {corpus.tags})")

    vocab_path = os.path.join(run_dir, "vocab.json")
    if resumed and os.path.exists(vocab_path):
        with open(vocab_path) as f:
            vocab = json.load(f)
    else:
        words, chars = build_vocabulary(train_sentences, config.min_count)
        vocab = {"words": words, "chars": chars, "tags": corpus.tags}
        _atomic_write_json(vocab_path, vocab)

    tagger, features, model = build_model(config.model, vocab["words"],
                                          vocab["chars"], vocab["tags"])
    limit = config.model.max_length
    steps = data_lib.num_batches(train_sentences, config.batch_size, limit)
    total = max(1, steps * config.epochs)
    warmup = min(total - 1, int(steps * config.warmup_epochs))
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=max(1, total - warmup), alpha=0.05,
        warmup_target=config.learning_rate, warmup_steps=warmup)
    model.compile(
        optimizer=keras.optimizers.AdamW(schedule,
                                         weight_decay=config.weight_decay,
                                         clipnorm=1.0),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        weighted_metrics=["accuracy"],
        jit_compile=config.jit_compile,
    )

    def featurize(tokens, tags, weights):
        return tuple(features(tokens)), tags, weights

    def word_dropout(inputs, tags, weights):
        # Replace real words by the out-of-vocabulary id (1) at random, so
        # the OOV embedding learns to tag from characters and context.
        word_ids, case_ids, char_ids, mask = inputs
        drop = tf.random.uniform(tf.shape(word_ids)) < config.word_dropout
        word_ids = tf.where(drop & mask, 1, word_ids)
        return (word_ids, case_ids, char_ids, mask), tags, weights

    train_ds = data_lib.make_dataset(
        train_sentences, vocab["tags"], config.batch_size, limit,
        shuffle=True, seed=config.seed,
    ).map(featurize, num_parallel_calls=tf.data.AUTOTUNE)
    if config.word_dropout:
        train_ds = train_ds.map(word_dropout)
    log_dir = os.path.join(run_dir, "logs")
    writer = tf.summary.create_file_writer(os.path.join(log_dir, "ner"))
    if not resumed:
        _log_hparams(writer, config)
    sample = next(iter(data_lib.make_dataset(
        corpus.sentences("valid")[:64], vocab["tags"], 64, limit
    ).map(featurize)))
    train_tokens = int(sum(len(t) for t, _ in train_sentences))
    f1_callback = EntityF1Checkpoint(tagger, corpus.sentences("valid"),
                                     run_dir, config.patience, writer,
                                     train_tokens)
    callbacks = [
        keras.callbacks.BackupAndRestore(os.path.join(run_dir, "backup"),
                                         double_checkpoint=True),
        keras.callbacks.TensorBoard(log_dir, write_graph=False),
        ResidualStreamDiagnostics(list(sample[0]), os.path.join(log_dir, "ner"),
                                  targets=sample[1], sample_weight=sample[2]),
        f1_callback,
    ]
    if config.max_minutes:
        callbacks.append(TimeBudget(config.max_minutes * 60))
    callbacks.extend(extra_callbacks)
    os.makedirs(os.path.join(run_dir, "checkpoints"), exist_ok=True)
    started = time.perf_counter()
    model.fit(train_ds, epochs=config.epochs, callbacks=callbacks,
              verbose="auto")
    train_seconds = time.perf_counter() - started

    best_path = os.path.join(run_dir, "best.keras")
    best = keras.saving.load_model(best_path, safe_mode=True)
    test = evaluate(best, corpus.sentences("test"))
    dev = evaluate(best, corpus.sentences("valid"))
    metrics = {
        "corpus": corpus.source,
        "test_entity": test["entity"],
        "test_token_accuracy": test["token_accuracy"],
        "dev_entity": dev["entity"],
        "best_epoch": f1_callback.state["best_epoch"],
        "epochs_run": len(f1_callback.state["epochs"]),
        "train_seconds_this_call": train_seconds,
        "tokens_per_second": float(np.median(
            [e["tokens_per_second"] for e in f1_callback.state["epochs"]]
            or [0.0])),
        "report": test["report"],
        "config": dataclasses.asdict(config),
    }
    _atomic_write_json(os.path.join(run_dir, "metrics.json"), metrics)
    f1_callback.state["finished"] = True
    _atomic_write_json(f1_callback.state_path, f1_callback.state)
    writer.close()
    return best, metrics
