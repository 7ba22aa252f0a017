"""The trainer's callbacks, one concern each: dev evaluation with early
stopping (`DevEntityF1`), model checkpoints (`ModelCheckpoints`), the
averaged weights in and out of the model around those two
(`SwapAveragedWeights`), the residual-stream diagnostics at the epochs dev
scored (`DiagnosticsAtEvaluations`), the learning rate
(`LearningRateSchedule`) and the wall-clock budget (`TimeBudget`).
`train.py` installs them, then the backup (`backup.py`) last, so it saves
what they updated."""

import json
import math
import os
import time

import keras
import tensorflow as tf

from keras_resnorm.callbacks import ResidualStreamDiagnostics
from keras_resnorm.ner import distribute, files
from keras_resnorm.ner.evaluate import entity_scores, make_forward
from keras_resnorm.ner.evaluate import predict_tags

__all__ = [
    "DECAY_HORIZONS",
    "DevEntityF1",
    "DiagnosticsAtEvaluations",
    "LearningRateSchedule",
    "ModelCheckpoints",
    "SwapAveragedWeights",
    "TimeBudget",
    "averaging_optimizer",
    "correct_average_bias",
    "json_copy",
    "keep_training_weights_after_fit",
    "learning_rate",
    "save_model_atomically",
    "swap_averaged_weights",
]


def save_model_atomically(model, path):
    """`model.save(path)` that leaves the old file whole if it fails."""
    files.atomic_write(path, model.save, suffix=".keras")


class DevEntityF1(keras.callbacks.Callback):
    """Dev entity F1 after every epoch: logs, TensorBoard, the best score,
    early stopping.

    Adds `val_entity_precision`, `val_entity_recall`, `val_entity_f1` and
    `tokens_per_second` to the epoch logs (the callbacks after it, such as
    `ModelCheckpoints`, see them), writes them to TensorBoard, and sets
    `evaluated` when this epoch's end scored dev and `improved` when that
    score beat the best dev F1 so far. After `patience` epochs without a
    gain it stops training; with `strategy` spanning
    several workers the decision is joint (`distribute.any_worker`).

    At small corpus sizes an epoch is a few dozen batches and the dev set
    can hold more tokens than the training set (CoNLL-2003's 51,362
    against 14,273 in 1,000 training sentences), so the dev evaluation
    after every epoch can take as long as the training. With
    `eval_interval` > 0 it evaluates only at the first epoch end after
    training has seen at least `eval_interval` times the dev set's tokens
    since the previous evaluation; with `eval_steps` > 0 (which takes
    precedence) at the first epoch end at least `eval_steps` batches after
    it. Either way it always evaluates after the last epoch and when
    training stops early (the time budget), and `patience` counts
    evaluations. Tokens and batches count what really ran, so the choice
    depends on the data and the seed only, never on the machine's speed,
    and a resumed run evaluates where an uninterrupted one would.

    Training tokens per second count the batches the epoch really ran
    (`train_tokens` per `steps_per_epoch` batches): a resumed epoch starts
    part-way, and the time budget may end one early. `dev_contexts` is the
    dev sentences' document context, for a tagger that reads one.

    Its state (best F1, its epoch, epochs without improvement, per-epoch
    scores) is saved and restored with the training backup
    (`get_state`/`set_state`), so a resumed run continues the same
    early-stopping count; `state_path` (`run_dir/state.json`) shows it to
    people.
    """

    def __init__(self, tagger, dev_sentences, state_path, patience, writer,
                 train_tokens, steps_per_epoch, strategy=None,
                 dev_contexts=None, eval_steps=0, eval_interval=0.0):
        super().__init__()
        self.tagger = tagger
        self.dev = dev_sentences
        self.dev_contexts = dev_contexts
        self.state_path = state_path
        self.patience = patience
        self.writer = writer
        self.train_tokens = train_tokens
        self.steps_per_epoch = steps_per_epoch
        self.eval_steps = eval_steps
        self.eval_interval = eval_interval
        self.dev_tokens = sum(len(tokens) for tokens, _ in dev_sentences)
        self.strategy = strategy or tf.distribute.get_strategy()
        self.state = {"best_f1": -1.0, "best_epoch": None, "wait": 0,
                      "finished": False, "epochs": [], "since_eval": 0,
                      "since_eval_tokens": 0.0}
        self.evaluated = False
        self.improved = False
        self._forward = None
        self._started = None
        self._batches = 0

    def get_state(self):
        return json_copy(self.state)

    def set_state(self, state):
        self.state = json_copy(state)

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()
        self._batches = 0

    def on_train_batch_end(self, batch, logs=None):
        self._batches += 1

    def _interval_reached(self):
        """Whether the training since the last evaluation reached
        `eval_steps` batches or, without it, `eval_interval` dev sets'
        tokens (True when neither is set)."""
        if self.eval_steps:
            return self.state["since_eval"] >= self.eval_steps
        if self.eval_interval:
            return (self.state["since_eval_tokens"]
                    >= self.eval_interval * self.dev_tokens)
        return True

    def _interval_text(self):
        if self.eval_steps:
            return (f"{self.state['since_eval']} of --eval-steps "
                    f"{self.eval_steps} batches since the last")
        return (f"{self.state['since_eval_tokens']:,.0f} training tokens "
                f"since the last, of --eval-interval {self.eval_interval:g} "
                f"x {self.dev_tokens:,} dev tokens")

    def _evaluation_due(self, epoch):
        """Whether this epoch's end evaluates (see `eval_interval`)."""
        if self._interval_reached():
            return True
        stopping = self.model is not None and self.model.stop_training
        last = epoch + 1 >= (self.params or {}).get("epochs", epoch + 1)
        return stopping or last

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self._started
        tokens_per_second = (self._batches / self.steps_per_epoch
                             * self.train_tokens / seconds)
        logs = logs if logs is not None else {}
        logs["tokens_per_second"] = tokens_per_second
        self.state["since_eval"] = (self.state.get("since_eval", 0)
                                    + self._batches)
        self.state["since_eval_tokens"] = (
            self.state.get("since_eval_tokens", 0.0)
            + self._batches / self.steps_per_epoch * self.train_tokens)
        self.evaluated = self._evaluation_due(epoch)
        if not self.evaluated:
            self.improved = False
            self._record(epoch, None, logs, seconds, tokens_per_second)
            print(f"epoch {epoch + 1}: {tokens_per_second:,.0f} training "
                  f"tokens/s; no dev evaluation ({self._interval_text()})",
                  flush=True)
            return
        self.state.update(since_eval=0, since_eval_tokens=0.0)
        if self._forward is None:
            self._forward = make_forward(self.tagger, confidence=False)
        pred = predict_tags(self.tagger, [t for t, _ in self.dev],
                            forward=self._forward,
                            contexts=self.dev_contexts)
        scores = entity_scores([g for _, g in self.dev], pred)
        logs.update({"val_entity_precision": scores["precision"],
                     "val_entity_recall": scores["recall"],
                     "val_entity_f1": scores["f1"]})
        self._write_summaries(epoch, scores, tokens_per_second)
        self.improved = scores["f1"] > self.state["best_f1"]
        if self.improved:
            self.state.update(best_f1=scores["f1"], best_epoch=epoch + 1,
                              wait=0)
        else:
            self.state["wait"] += 1
        self._record(epoch, scores["f1"], logs, seconds, tokens_per_second)
        print(f"epoch {epoch + 1}: dev entity F1 {scores['f1']:.4f} "
              f"(best {self.state['best_f1']:.4f} at epoch "
              f"{self.state['best_epoch']}), {tokens_per_second:,.0f} "
              "training tokens/s", flush=True)
        if distribute.any_worker(self.strategy,
                                 self.state["wait"] >= self.patience):
            print(f"early stopping: no dev F1 gain in {self.patience} "
                  "evaluations")
            self.model.stop_training = True

    def _record(self, epoch, f1, logs, seconds, tokens_per_second):
        """Add the epoch to the state (`f1` None: not evaluated) and write
        the state file."""
        self.state["epochs"].append({
            "epoch": epoch + 1, "dev_entity_f1": f1,
            "loss": float(logs.get("loss", math.nan)),
            "seconds": seconds, "tokens_per_second": tokens_per_second})
        files.atomic_write_json(self.state_path, self.state)

    def mark_finished(self):
        """Record in `state_path` that the run ended and was scored."""
        self.state["finished"] = True
        files.atomic_write_json(self.state_path, self.state)

    def _write_summaries(self, epoch, scores, tokens_per_second):
        with self.writer.as_default():
            for key in ("precision", "recall", "f1"):
                tf.summary.scalar(f"dev/entity_{key}", scores[key], step=epoch)
            tf.summary.scalar("train/tokens_per_second", tokens_per_second,
                              step=epoch)
        self.writer.flush()


class ModelCheckpoints(keras.callbacks.Callback):
    """Save the tagger (raw tokens in) as `checkpoints/epoch-NNN.keras`
    after every epoch that `evaluation` (the `DevEntityF1` before it in the
    callback list) scored on dev, and as `best.keras` when that score
    improved. Each file is written atomically.

    Epochs between evaluations (small corpora, `eval_interval`) get no
    file: a tagger no score was given for is not one to pick, and writing
    one took about a tenth of each such epoch (0.21 s of about 2.3 s at
    1,000 CoNLL-2003 sentences on a 2-core CPU, 2026-12-07). The training
    backup (`backup.py`) still saves every epoch, so a crash loses
    nothing."""

    def __init__(self, tagger, run_dir, evaluation):
        super().__init__()
        self.tagger = tagger
        self.run_dir = run_dir
        self.evaluation = evaluation

    def on_epoch_end(self, epoch, logs=None):
        if not self.evaluation.evaluated:
            return
        save_model_atomically(self.tagger, os.path.join(
            self.run_dir, "checkpoints", f"epoch-{epoch + 1:03d}.keras"))
        if self.evaluation.improved:
            save_model_atomically(self.tagger,
                                  os.path.join(self.run_dir, "best.keras"))


class DiagnosticsAtEvaluations(ResidualStreamDiagnostics):
    """`ResidualStreamDiagnostics` at the ends of the epochs that
    `evaluation` (a `DevEntityF1` before it in the callback list) scored on
    dev, not after every epoch: its eager batch with a gradient tape took
    0.18 s of each 2.3-second epoch at 1,000 CoNLL-2003 sentences on a
    2-core CPU (2026-12-07), where dev is scored every fourth epoch. Where
    dev is scored after every epoch (larger corpora) nothing changes. The
    TensorBoard steps stay epoch numbers.
    """

    def __init__(self, evaluation, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.evaluation = evaluation

    def on_epoch_end(self, epoch, logs=None):
        if self.evaluation.evaluated:
            super().on_epoch_end(epoch, logs)


def averaging_optimizer(model):
    """The optimizer of `model` that keeps the moving average of the
    weights (the inner one under a `LossScaleOptimizer`), or None when it
    keeps none (`use_ema=False`)."""
    optimizer = getattr(model.optimizer, "inner_optimizer", model.optimizer)
    return optimizer if getattr(optimizer, "use_ema", False) else None


def swap_averaged_weights(model):
    """Exchange `model`'s trainable weights with the optimizer's moving
    average of them (Keras's `use_ema`); doing it twice undoes it."""
    optimizer = averaging_optimizer(model)
    # Keras keeps the averages in this private list, in the order of the
    # trainable variables (keras.callbacks.SwapEMAWeights reads it too).
    for variable, average in zip(model.trainable_variables,
                                 optimizer._model_variables_moving_average):
        training = tf.identity(variable.value)
        variable.assign(average.value)
        average.assign(training)


class SwapAveragedWeights(keras.callbacks.Callback):
    """Swap the moving average of the weights and the training weights at
    every epoch's end (`swap_averaged_weights`).

    The trainer installs two: one before the dev evaluation and the
    checkpoints, so they score and save the averaged weights, and one after
    them, so training and the backup go on with the training weights (and
    a resumed run continues exactly). Each does nothing when the optimizer
    keeps no average.
    """

    def on_epoch_end(self, epoch, logs=None):
        if averaging_optimizer(self.model) is not None:
            swap_averaged_weights(self.model)


def correct_average_bias(model):
    """Make the optimizer's moving average of `model`'s weights an average
    of the weights training has visited, with no pull towards the first.

    Keras's `use_ema` starts the average at the first step's weights and
    then keeps `m * average + (1 - m) * weights`: after `t` steps the first
    step's weights still hold `m ** (t - 1)` of it (0.82 after 20 steps at
    `m` = 0.99), so a short run evaluates and exports weights close to where
    it started. This sets the momentum of step `t` to
    `m * (1 - m ** (t - 1)) / (1 - m ** t)`, which is the average started
    at zero and divided by `1 - m ** t` (the bias correction of Adam,
    Kingma & Ba 2015, section 3): the mean of the weights so far while
    `t` is small against `1 / (1 - m)`, Keras's average (to float32
    precision) once `m ** t` is negligible. The momentum depends on the
    optimizer's step counter only, so a resumed run averages exactly as an
    uninterrupted one. Does nothing when the optimizer keeps no average, or
    keeps the first step's weights for good (momentum 1, which the trainer's
    `--ema-momentum` refuses).
    """
    optimizer = averaging_optimizer(model)
    if optimizer is None or optimizer.ema_momentum >= 1:
        return
    momentum = float(optimizer.ema_momentum)

    def update(trainable_variables):
        m = keras.ops.convert_to_tensor(momentum, "float32")
        step = keras.ops.cast(optimizer.iterations + 1, "float32")
        # Step 1 copies the weights (rate exactly 1), as Keras does.
        rate = keras.ops.divide(1.0 - m, 1.0 - keras.ops.power(m, step))
        for variable, average in zip(
                trainable_variables, optimizer._model_variables_moving_average):
            if average is not None:
                r = keras.ops.cast(rate, variable.dtype)
                average.assign(average + r * (variable - average))

    optimizer._update_model_variables_moving_average = update


def keep_training_weights_after_fit(model):
    """Make `fit` end with the training weights, not the average.

    With `use_ema` Keras overwrites the weights with their average when a
    `fit` call ends (`finalize_variable_values`). The trainer saves the
    averaged weights itself (`SwapAveragedWeights`), and a resumed run
    fits twice (the rest of an epoch, then the other epochs): the second
    must start from the training weights, as an uninterrupted run does.
    """
    optimizer = averaging_optimizer(model)
    if optimizer is not None:
        optimizer.finalize_variable_values = lambda var_list: None


class TimeBudget(keras.callbacks.Callback):
    """Stop training once `seconds` of wall time have passed in this process.

    The clock starts at the first `fit` that uses the callback and keeps
    running across later ones (a resumed run's partial first epoch and the
    rest). With several workers the stop is joint (`distribute.any_worker`).
    """

    def __init__(self, seconds, strategy=None):
        super().__init__()
        self.seconds = seconds
        self.strategy = strategy or tf.distribute.get_strategy()
        self.start = None
        self.exhausted = False

    def on_train_begin(self, logs=None):
        if self.start is None:
            self.start = time.perf_counter()

    def fraction(self):
        """The part of the budget spent so far in this process (0 before
        the first `fit`; above 1 once it ran out)."""
        if self.start is None:
            return 0.0
        return (time.perf_counter() - self.start) / self.seconds

    def on_train_batch_end(self, batch, logs=None):
        if distribute.any_worker(self.strategy, self.fraction() > 1):
            self.exhausted = True
            self.model.stop_training = True


# What the learning rate's decay spans (`TrainConfig.decay_over`).
DECAY_HORIZONS = ("budget", "epochs")


def learning_rate(step, progress, peak, warmup_steps, alpha=0.05):
    """The learning rate at optimizer step `step` when `progress` (0 to 1)
    of the run is done: a linear warm-up over `warmup_steps` times a cosine
    decay from `peak` to `alpha * peak` over the progress (Loshchilov &
    Hutter 2017, SGDR, without restarts):

    ```
    lr = peak * min(1, (step + 1) / warmup_steps)
              * (alpha + (1 - alpha) * (1 + cos(pi * min(progress, 1))) / 2)
    ```
    """
    warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))
    return peak * warm * (alpha + (1.0 - alpha) * cosine)


class LearningRateSchedule(keras.callbacks.Callback):
    """Set the optimizer's learning rate before every batch
    (`learning_rate`), with the run's progress fitted to its budget.

    The progress is the larger of the steps done out of `total_steps` (the
    configured epochs) and, with a `budget` (`TimeBudget`), the budget's
    spent part, so the decay ends when the run does, whichever ends it. A
    run stopped by its budget at epoch 4 of 20 has thus finished its decay
    instead of stopping near the peak rate. A resumed run starts from the
    progress it had reached (saved with the backup: `get_state`/
    `set_state`) and fits the rest of the decay into the new call's budget.
    Without a budget the rate depends on the step alone, so a resumed run
    continues exactly; with one it depends on the machine's speed.
    """

    def __init__(self, peak, warmup_steps, total_steps, budget=None,
                 alpha=0.05):
        super().__init__()
        self.peak = peak
        self.warmup_steps = warmup_steps
        self.total_steps = max(1, total_steps)
        self.budget = budget
        self.alpha = alpha
        self.state = {"progress": 0.0}
        self._resumed_at = None

    def get_state(self):
        return json_copy(self.state)

    def set_state(self, state):
        self.state = json_copy(state)

    def on_train_begin(self, logs=None):
        if self._resumed_at is None:
            self._resumed_at = self.state["progress"]

    def progress(self, step):
        """The run's progress at optimizer step `step` (never decreasing)."""
        progress = step / self.total_steps
        if self.budget is not None:
            start = self._resumed_at or 0.0
            spent = distribute.worker_mean(self.budget.strategy,
                                           self.budget.fraction())
            progress = max(progress, start + (1.0 - start) * spent)
        return max(progress, self.state["progress"])

    def on_train_batch_begin(self, batch, logs=None):
        step = int(self.model.optimizer.iterations.numpy())
        self.state["progress"] = min(1.0, self.progress(step))
        self.model.optimizer.learning_rate = learning_rate(
            step, self.state["progress"], self.peak, self.warmup_steps,
            self.alpha)


def json_copy(value):
    """A deep copy through JSON: what a backup or a state file will hold."""
    return json.loads(json.dumps(value))
