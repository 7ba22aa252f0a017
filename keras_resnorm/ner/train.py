"""Train the NER tagger with `model.fit`: the orchestration of a run and
its final scoring.

The pieces it puts together live in their own modules: the settings
(`config.py`), the corpus (`data.py`), the batches (`pipeline.py`), the
model (`model.py`), the run directory's resume policy (`resume.py`), the
callbacks (`training_callbacks.py`: dev evaluation, checkpoints, time
budget) and the exact-resume backup (`backup.py`).

A run directory holds everything a run writes:

```
run_dir/config.json        the configuration (a resumed run reuses it)
run_dir/vocab.json         word and character vocabularies, tag set
run_dir/backup/            the training state, saved atomically every epoch
                           (and every --backup-steps batches): a killed run
                           resumes here, exactly (see backup.py)
run_dir/checkpoints/       epoch-NNN.keras after every epoch dev scored
run_dir/best.keras         the model with the best dev entity F1 so far
run_dir/state.json         best F1, its epoch, early-stopping counter
run_dir/logs/              TensorBoard: train/ (loss, learning rate),
                           ner/ (dev entity P/R/F1, tokens per second,
                           hparams, residual-stream diagnostics)
run_dir/metrics.json       test scores of best.keras when the run ends
```

With several workers (`strategy="multiworker"`) only the chief writes into
`run_dir`, which must be storage every worker can read (the others resume
from its backup); the other workers write to temporary directories that
they remove.
"""

import dataclasses
import json
import os
import shutil
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from keras_resnorm import _keras_workarounds, optimizers
from keras_resnorm.ner import context, distribute, files, pipeline, resume
from keras_resnorm.ner import tags as tags_lib
from keras_resnorm.ner.backup import TrainingBackup
from keras_resnorm.ner.data import (
    BUILTIN_NOTE,
    check_tags,
    find_corpus,
    unseen_tags,
    untrained_types,
)
from keras_resnorm.ner.errors import ConfigError
from keras_resnorm.ner.evaluate import evaluate, make_forward
from keras_resnorm.ner.features import vocabulary
from keras_resnorm.ner.model import build_model, loss
from keras_resnorm.ner.training_callbacks import (
    DevEntityF1,
    DiagnosticsAtEvaluations,
    LearningRateSchedule,
    ModelCheckpoints,
    SwapAveragedWeights,
    TimeBudget,
    correct_average_bias,
    keep_training_weights_after_fit,
)

__all__ = [
    "build_tagger",
    "build_vocabulary",
    "compile_for_training",
    "schedule",
    "train",
]


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


def build_vocabulary(sentences, min_count):
    """Words (normalized as the graph does) and characters of `sentences`."""
    return vocabulary([t for t, _ in sentences], min_count)


def build_tagger(config, vocab, strategy=None):
    """`(tagger, features, model)` for `config` (a `TrainConfig`) and `vocab`
    (`{"words", "chars", "tags"}`), built under the config's precision
    policy and in `strategy`'s scope (default: the current strategy)."""
    strategy = strategy or tf.distribute.get_strategy()
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(config.precision)
    try:
        with strategy.scope():
            tagger, features, model = build_model(
                config.model, vocab["words"], vocab["chars"], vocab["tags"])
    finally:
        keras.config.set_dtype_policy(previous)
    return tagger, features, model


def compile_for_training(model, config, strategy=None):
    """Compile `model` as the trainer does: AdamW with decoupled weight
    decay and gradient clipping (keeping a bias-corrected moving average of
    the weights, `correct_average_bias`, when `ema_momentum` > 0), the tag
    loss. The learning rate starts at the peak; `schedule` sets it before
    every batch."""
    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():
        # Under mixed_float16 Keras wraps the optimizer in a
        # LossScaleOptimizer (dynamic loss scaling) by itself.
        model.compile(
            optimizer=optimizers.AdamW(
                config.learning_rate, weight_decay=config.weight_decay,
                clipnorm=1.0, use_ema=config.ema_momentum > 0,
                ema_momentum=config.ema_momentum or 0.99),
            loss=loss(model),
            weighted_metrics=["accuracy"],
            jit_compile=config.jit_compile,
        )
    correct_average_bias(model)
    keep_training_weights_after_fit(model)
    if distribute.is_multi_worker(strategy):
        _keras_workarounds.vector_logs_train_step(model)


def schedule(config, steps, budget=None):
    """The trainer's learning rate (`LearningRateSchedule`): a linear
    warm-up over `warmup_epochs` of `steps` batches, then cosine decay over
    `epochs`, or with `decay_over="budget"` over the time `budget`
    (`TimeBudget`) when that ends the run first."""
    total = max(1, steps * config.epochs)
    return LearningRateSchedule(
        config.learning_rate,
        warmup_steps=min(total - 1, int(steps * config.warmup_epochs)),
        total_steps=total,
        budget=budget if config.decay_over == "budget" else None)


def _build_for_fit(model, batch, strategy):
    """Build what `fit` would build from one local batch; under a strategy
    `fit` skips its own build, which fails on our int and bool inputs
    (`keras_resnorm._keras_workarounds`, item 4)."""
    _keras_workarounds.build_for_fit(
        model, batch, strategy,
        skip_fit_build=strategy.num_replicas_in_sync > 1
        or distribute.is_multi_worker(strategy))


def train(config, corpus=None, extra_callbacks=()):
    """Train (or resume) a run; return `(tagger, metrics)`.

    `corpus` overrides the corpus search (tests pass a small one);
    `extra_callbacks` go after the trainer's own, before the backup.
    On a non-chief worker of a multi-worker run the result is
    `(None, None)`: the chief writes and scores the run.
    """
    config.validate()
    strategy = distribute.make_strategy(config.strategy, config.cpu_devices,
                                        config.cluster_timeout)
    chief = distribute.is_chief(strategy)
    distribute.check_batch_size(config.batch_size, strategy)
    config, resumed = resume.prepare(config, chief)
    # A resumed run trains with its saved batch size: it must split too.
    distribute.check_batch_size(config.batch_size, strategy)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    write_dir = config.run_dir if chief else tempfile.mkdtemp(
        prefix="keras-resnorm-worker-")
    try:
        return _train(config, corpus, extra_callbacks, strategy, chief,
                      resumed, write_dir)
    finally:
        if not chief:
            shutil.rmtree(write_dir, ignore_errors=True)


def _train(config, corpus, extra_callbacks, strategy, chief, resumed,
           write_dir):
    """The run, as the steps a reader can follow one by one."""
    corpus, train_sentences, train_contexts = _load_corpus(config, corpus,
                                                           strategy)
    vocab = _vocabulary(config, train_sentences, corpus.tags, resumed,
                        write_dir)
    # Seeded here, not earlier: preparing a corpus through TFDS the first
    # time draws random numbers that a cached run does not.
    keras.utils.set_random_seed(config.seed)
    tagger, features, model = build_tagger(config, vocab, strategy)
    steps = _steps_per_epoch(config, train_sentences, train_contexts)
    compile_for_training(model, config, strategy)
    writer = tf.summary.create_file_writer(
        os.path.join(write_dir, "logs", "ner"))
    if not resumed:
        _log_hparams(writer, config)
    sample = _sample_batch(config, corpus, vocab, features)
    dev_sentences, dev_contexts = _split(config, corpus, "valid")
    f1_callback = DevEntityF1(
        tagger, dev_sentences, os.path.join(write_dir, "state.json"),
        config.patience, writer, sum(len(t) for t, _ in train_sentences),
        steps, strategy, dev_contexts=dev_contexts,
        eval_steps=config.eval_steps, eval_interval=config.eval_interval)
    budget = (TimeBudget(config.max_minutes * 60, strategy)
              if config.max_minutes else None)
    learning_rate = schedule(config, steps, budget)
    backup = TrainingBackup(
        os.path.join(write_dir, "backup"), steps, config.backup_steps,
        states={"entity_f1": f1_callback, "learning_rate": learning_rate},
        restore_directory=os.path.join(config.run_dir, "backup"))
    if chief:
        backup.clean()
    _build_for_fit(model, sample, strategy)
    with strategy.scope():
        epoch, skip = backup.restore(model)
    callbacks = _callbacks(write_dir, sample, tagger, f1_callback,
                           learning_rate, budget, backup, extra_callbacks)
    train_seconds = _fit(model, config, train_sentences, train_contexts,
                         vocab["tags"], features, steps, epoch, skip,
                         callbacks, backup)
    writer.close()
    if not chief:
        return None, None
    return _finish(config, corpus, f1_callback, train_seconds, strategy)


def _load_corpus(config, corpus, strategy):
    """The corpus (searched unless given), the training sentences and their
    document contexts (`_split`)."""
    if corpus is None:
        corpus = find_corpus(config.data_dir, config.download,
                             config.cache_dir, config.scheme,
                             encoding=config.encoding)
    check_tags(corpus)
    train_sentences, train_contexts = _split(
        config, corpus, "train", limit=config.max_train_sentences,
        subset=config.train_subset)
    # The tags the model learns (IOB2, or IOBES: tags.py).
    train_sentences = tags_lib.model_sentences(train_sentences,
                                           config.model.model_tags)
    if corpus.source == "builtin":
        print(f"NOTE: {BUILTIN_NOTE}")
    print(f"corpus: {corpus.source} ({len(train_sentences)} training "
          f"sentences, tags {corpus.tags}); strategy {config.strategy} "
          f"({strategy.num_replicas_in_sync} replicas), precision "
          f"{config.precision}")
    return corpus, train_sentences, train_contexts


def _split(config, corpus, split, limit=None, subset="spread"):
    """`(sentences, contexts)` of a split as the configured tagger reads it
    (`context.split_with_contexts`; contexts None without context)."""
    return context.split_with_contexts(
        corpus, split, config.model.document_context,
        config.model.context_tokens, limit=limit, subset=subset)


def _vocabulary(config, train_sentences, corpus_tags, resumed, write_dir):
    """The run's vocabularies: saved ones when resuming, else built here."""
    vocab_path = os.path.join(config.run_dir, "vocab.json")
    if resumed and os.path.exists(vocab_path):
        with open(vocab_path) as f:
            return json.load(f)
    words, chars = build_vocabulary(train_sentences, config.min_count)
    vocab = {"words": words, "chars": chars,
             "tags": tags_lib.model_tag_set(corpus_tags,
                                            config.model.model_tags)}
    files.atomic_write_json(os.path.join(write_dir, "vocab.json"), vocab)
    return vocab


def _steps_per_epoch(config, train_sentences, train_contexts):
    steps = pipeline.num_batches(train_sentences, config.batch_size,
                                 config.model.max_length, train_contexts)
    if steps < 1:
        raise ConfigError(
            f"no training batch: the training split has no tokens. "
            f"Received: {len(train_sentences)} sentences")
    return steps


def _sample_batch(config, corpus, vocab, features):
    """64 featurized dev sentences: they build the model and feed the
    residual-stream diagnostics."""
    known = set(vocab["tags"])
    sample = tags_lib.model_sentences(corpus.sentences("valid")[:64],
                                      config.model.model_tags)
    # A tag the training split lacks (data.check_tags) is no target of the
    # model: the sample's targets read it as O.
    sample = [(tokens, [t if t in known else "O" for t in tags])
              for tokens, tags in sample]
    dataset = pipeline.make_dataset(sample, vocab["tags"], 64,
                                    config.model.max_length)
    return next(iter(dataset.map(tf.autograph.experimental.do_not_convert(
        lambda t, g, w: (tuple(features(t)), g, w)))))


def _callbacks(write_dir, sample, tagger, f1_callback, learning_rate, budget,
               backup, extra_callbacks):
    log_dir = os.path.join(write_dir, "logs")
    callbacks = [
        # Ours, first: Keras appends its own bar last, which then printed
        # the epoch's bar again after the dev F1 line.
        keras.callbacks.ProgbarLogger(),
        learning_rate,
        keras.callbacks.TensorBoard(log_dir, write_graph=False),
        # The averaged weights (--ema-momentum) in for the evaluation and
        # the checkpoints, then out again for training and the backup.
        SwapAveragedWeights(),
        f1_callback,
        # After the evaluation, whose `evaluated` and `improved` they read;
        # the diagnostics measure the training weights, swapped back.
        ModelCheckpoints(tagger, write_dir, f1_callback),
        SwapAveragedWeights(),
        DiagnosticsAtEvaluations(
            f1_callback, list(sample[0]), os.path.join(log_dir, "ner"),
            targets=sample[1], sample_weight=sample[2]),
    ]
    if budget is not None:
        callbacks.append(budget)
    callbacks.extend(extra_callbacks)
    # Last, so it saves what the callbacks before it have updated.
    callbacks.append(backup)
    os.makedirs(os.path.join(write_dir, "checkpoints"), exist_ok=True)
    return callbacks


def _fit(model, config, train_sentences, train_contexts, tags, features,
         steps, epoch, skip, callbacks, backup):
    """Train from (epoch, skip); return the seconds it took.

    A backup taken inside an epoch resumes with the rest of that epoch as
    one fit call, then the remaining epochs as another.
    """
    segments = []
    if skip:
        segments.append((epoch, epoch + 1, skip))
        epoch += 1
    if epoch < config.epochs:
        segments.append((epoch, config.epochs, 0))
    started = time.perf_counter()
    for first, last, skip in segments:
        backup.step_offset = skip
        model.fit(
            pipeline.training_dataset(train_sentences, tags, features,
                                      config, first, last, skip,
                                      train_contexts),
            initial_epoch=first, epochs=last, steps_per_epoch=steps - skip,
            callbacks=callbacks, shuffle=False, verbose="auto")
        if model.stop_training:
            break
    return time.perf_counter() - started


def _finish(config, corpus, f1_callback, train_seconds, strategy):
    """Score best.keras on test and dev, write metrics, mark the run done."""
    run_dir = config.run_dir
    best = keras.saving.load_model(os.path.join(run_dir, "best.keras"),
                                   safe_mode=True)
    # One traced decoder for both splits: a second one cost 2.8 s of the
    # 10.9 s that scoring CoNLL-2003's test and dev took (medians of 3
    # interleaved rounds, slow AMD EPYC, 2026-12-07).
    forward = make_forward(best, confidence=False)
    scores = {}
    for split in ("test", "valid"):
        sentences, contexts = _split(config, corpus, split)
        scores[split] = evaluate(best, sentences, forward=forward,
                                 contexts=contexts)
    test, dev = scores["test"], scores["valid"]
    metrics = {
        "corpus": corpus.source,
        # Types of valid/test that no training sentence has: never
        # predicted, their mentions count as misses (data.check_tags).
        "untrained_types": untrained_types(unseen_tags(corpus)),
        "test_entity": test["entity"],
        "test_token_accuracy": test["token_accuracy"],
        "dev_entity": dev["entity"],
        "best_epoch": f1_callback.state["best_epoch"],
        "epochs_run": len(f1_callback.state["epochs"]),
        "train_seconds_this_call": train_seconds,
        "tokens_per_second": float(np.median(
            [e["tokens_per_second"] for e in f1_callback.state["epochs"]]
            or [0.0])),
        "replicas": strategy.num_replicas_in_sync,
        "report": test["report"],
        "config": dataclasses.asdict(config),
    }
    files.atomic_write_json(os.path.join(run_dir, "metrics.json"), metrics)
    f1_callback.mark_finished()
    shutil.rmtree(os.path.join(run_dir, "backup"), ignore_errors=True)
    return best, metrics
