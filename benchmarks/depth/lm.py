"""The language-model task of the depth study: byte-level causal models of
our blocks (every placement, three norms) and of keras-hub's
`TransformerDecoder`, trained on the Python standard library's sources
(`examples/byte_lm.py`'s corpus and split), scored in held-out bits per
byte, and taken apart at the start and the end of each run: per-layer
residual-stream RMS and gradient norm, the loss change when each layer is
skipped, and for HC/mHC the gain of the stream-mixing matrices.

One `LMCell` per (config, depth): its model's training step is traced
once and reused for every learning rate, warm-up setting and seed."""

import importlib.util
import math
import os
import re
import time

import numpy as np

from benchmarks.depth.study import FINAL_STEPS, LOSS_EVERY

# Each config: the model family, the placement (a `keras_resnorm.placements`
# name or shortcut) and the norm. `hub-*` are keras-hub's TransformerDecoder
# (`normalize_first=True` is Pre-LN, `False` Post-LN).
CONFIGS = {
    "post": ("ours", "post", "layer"),
    "pre": ("ours", "pre", "layer"),
    "sandwich": ("ours", "sandwich", "layer"),
    "deepnorm": ("ours", "deepnorm", "layer"),
    "rezero": ("ours", "rezero", "layer"),
    "layerscale": ("ours", "layerscale", "layer"),
    "hyper": ("ours", "hyper", "layer"),
    "mhc": ("ours", "mhc", "layer"),
    "none": ("ours", "none", "layer"),
    "pre-rms": ("ours", "pre", "rms"),
    "pre-dyt": ("ours", "pre", "dyt"),
    "hub-pre": ("hub", "pre", "layer"),
    "hub-post": ("hub", "post", "layer"),
}

VOCABULARY = 256
_EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "examples", "byte_lm.py")


def _byte_lm():
    """examples/byte_lm.py as a module: its corpus and split are the
    study's, so the example and the study score the same held-out files."""
    spec = importlib.util.spec_from_file_location("byte_lm", _EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load(args):
    """Training stream, held-out evaluation windows, the diagnostic batch
    and the corpus's identity."""
    byte_lm = _byte_lm()
    texts, identity = byte_lm.load_corpus(args.corpus_dir)
    stream = np.frombuffer(b"\0".join(texts["train"]), np.uint8)
    # Held-out whole files (the test split), each cut at --eval-bytes so
    # that one evaluation costs seconds at depth 48; every kept byte but a
    # file's first is predicted from the bytes before it in its window.
    held_out = [t[:args.eval_bytes] for t in texts["test"]]
    inputs, targets, weights = [], [], []
    for data in held_out:
        array = np.frombuffer(data, np.uint8).astype("int32")
        for start in range(0, len(array) - 1, args.context):
            piece = array[start:start + args.context + 1]
            n = len(piece) - 1
            x, y, w = (np.zeros(args.context, "int32"),
                       np.zeros(args.context, "int32"),
                       np.zeros(args.context, "float32"))
            x[:n], y[:n], w[:n] = piece[:-1], piece[1:], 1.0
            inputs.append(x), targets.append(y), weights.append(w)
    rows = -(-len(inputs) // args.eval_batch) * args.eval_batch
    evaluation = [np.zeros((rows, args.context), "int32"),
                  np.zeros((rows, args.context), "int32"),
                  np.zeros((rows, args.context), "float32")]
    for array, values in zip(evaluation, (inputs, targets, weights)):
        array[:len(values)] = np.stack(values)
    # A byte-frequency model's score on the same bytes: what a model that
    # learned nothing from the context reaches ("stalled" below it + 0.1).
    counts = np.bincount(stream, minlength=VOCABULARY) + 1.0
    log_p = np.log2(counts / counts.sum())
    mask = evaluation[2] > 0
    unigram = float(-log_p[evaluation[1][mask]].mean())
    validation = np.frombuffer(b"\0".join(texts["validation"]), np.uint8)
    rng = np.random.default_rng(12345)
    starts = rng.integers(0, len(validation) - args.context - 1,
                          args.diagnostic_batch)
    windows = np.stack([validation[s:s + args.context + 1]
                        for s in starts]).astype("int32")
    identity = dict(identity, evaluated_bytes=int(mask.sum()),
                    eval_bytes_per_file=args.eval_bytes,
                    unigram_bits_per_byte=unigram)
    return {"stream": stream, "evaluation": evaluation,
            "diagnostic": (windows[:, :-1], windows[:, 1:]),
            "identity": identity, "unigram": unigram}


# ------------------------------------------------------------------ models
def build(args, config, depth, scan):
    """The model of `config` at `depth`: bytes in, next-byte logits out
    (no position embedding in any family, as in examples/byte_lm.py)."""
    import keras

    from keras_resnorm import TransformerEncoder, placements

    family, placement, norm = CONFIGS[config]
    inputs = keras.Input((args.context,), dtype="int32", name="bytes")
    h = keras.layers.Embedding(VOCABULARY, args.d_model,
                               name="embedding")(inputs)
    ff = args.expansion_ff * args.d_model
    if family == "hub":
        import keras_hub

        for i in range(depth):
            h = keras_hub.layers.TransformerDecoder(
                ff, args.heads, activation="gelu",
                normalize_first=placement == "pre", name=f"decoder_{i}")(h)
        if placement == "pre":
            h = keras.layers.LayerNormalization(epsilon=1e-5,
                                                name="final_norm")(h)
    else:
        options = placements.keyword_arguments(placement)
        if placements.widens_stream(options["placement"]):
            options["expansion"] = args.streams
        h = TransformerEncoder(
            depth, args.heads, ff, norm=norm, use_causal_mask=True,
            scan=scan, name="decoder", **options)(h)
    outputs = keras.layers.Dense(VOCABULARY, dtype="float32",
                                 name="next_byte")(h)
    return keras.Model(inputs, outputs, name=f"lm_{config}_{depth}")


def layer_of(path, depth):
    """The layer a variable's gradient counts for: an int, "stacked" (a
    scanned stack's `(depth, ...)` weight) or None (embedding, head, final
    norm)."""
    match = re.search(r"(?:block|decoder)_(\d+)", path)
    if match:
        return int(match.group(1))
    if path.startswith("decoder/") and "final_norm" not in path:
        return "stacked"
    return None


class LMCell:
    """One (config, depth): the model, its traced training step, held-out
    scoring and an eager, unrolled twin for the per-layer diagnostics.
    `reset(seed)` (for each of `seeds`, default `args.seeds`) gives it the
    initial weights a model built from scratch under that seed has, and a
    fresh optimizer."""

    def __init__(self, args, corpus, config, depth, seeds=None):
        import keras
        import tensorflow as tf

        self.args, self.corpus = args, corpus
        self.config, self.depth = config, depth
        family = CONFIGS[config][0]
        self.scan = family == "ours" and depth >= args.scan_from
        # Every seed's initial weights before anything is traced (setting
        # the seed clears TensorFlow's function caches).
        seeds = list(seeds if seeds is not None else args.seeds)
        self.initial = {}
        for seed in seeds:
            keras.utils.set_random_seed(seed)
            self.initial[seed] = build(args, config, depth,
                                       self.scan).get_weights()
        keras.utils.set_random_seed(seeds[0])
        self.model = build(args, config, depth, self.scan)
        self.twin = (build(args, config, depth, False) if self.scan
                     else self.model)
        self.variables = self.model.trainable_variables
        where = [layer_of(v.path, depth) for v in self.variables]
        self.optimizer = keras.optimizers.Adam(1.0)
        self.optimizer.build(self.variables)
        loss_fn = keras.losses.SparseCategoricalCrossentropy(
            from_logits=True)
        model, variables, optimizer = (self.model, self.variables,
                                       self.optimizer)

        def per_layer(grads):
            squares = tf.zeros(depth)
            for g, w in zip(grads, where):
                if g is None or w is None:
                    continue
                g = tf.cast(g, tf.float32)
                if w == "stacked":
                    squares += tf.reduce_sum(tf.square(g), axis=list(
                        range(1, len(g.shape))))
                else:
                    squares += tf.one_hot(w, depth) * tf.reduce_sum(
                        tf.square(g))
            return tf.sqrt(squares)

        def step(x, y, lr):
            with tf.GradientTape() as tape:
                loss = loss_fn(y, model(x, training=True))
            grads = tape.gradient(loss, variables)
            optimizer.learning_rate.assign(lr)
            optimizer.apply(grads, variables)
            return loss, per_layer(grads), tf.linalg.global_norm(grads)

        def nll_bits(x, y, w):
            logits = tf.cast(model(x, training=False), tf.float32)
            log_p = tf.nn.log_softmax(logits)
            picked = tf.gather(log_p, y, batch_dims=2)
            return -tf.reduce_sum(picked * w) / math.log(2.0)

        # No autograph: it rereads the source from disk at every trace.
        self.step = tf.function(step, jit_compile=args.xla,
                                autograph=False)
        self.nll_bits = tf.function(nll_bits, jit_compile=args.xla,
                                    autograph=False)
        self.trace_s = None
        self.parameters = self.model.count_params()

    def reset(self, seed):
        import keras

        self.model.set_weights(self.initial[seed])
        for v in self.optimizer.variables:
            v.assign(keras.ops.zeros(v.shape, v.dtype))

    def held_out_bits(self):
        import tensorflow as tf

        x, y, w = self.corpus["evaluation"]
        b = self.args.eval_batch
        total = sum(float(self.nll_bits(tf.constant(x[i:i + b]),
                                        tf.constant(y[i:i + b]),
                                        tf.constant(w[i:i + b])))
                    for i in range(0, len(x), b))
        return total / float(w.sum())

    # ---------------------------------------------------------- diagnostics
    def _sync_twin(self):
        if self.twin is self.model:
            return
        for layer in self.model.layers:
            twin = self.twin.get_layer(layer.name)
            if layer.name == "decoder":
                twin.set_weights(layer.get_unrolled_weights())
            else:
                twin.set_weights(layer.get_weights())

    def _pieces(self):
        """(embed, steps, head): the twin as a chain of per-layer calls."""
        from keras_resnorm.layers.hyper_connection import (
            collapse_stream,
            expand_stream,
        )

        twin = self.twin
        embed = twin.get_layer("embedding")
        dense = twin.get_layer("next_byte")
        family = CONFIGS[self.config][0]
        if family == "hub":
            steps = [twin.get_layer(f"decoder_{i}")
                     for i in range(self.depth)]
            names = [layer.name for layer in twin.layers]
            final = (twin.get_layer("final_norm") if "final_norm" in names
                     else None)
            widen = narrow = None
        else:
            encoder = twin.get_layer("decoder")
            steps = list(encoder.blocks)
            final = encoder.final_norm_layer
            widen = narrow = None
            if encoder._hyper:
                n = encoder.block_kwargs["expansion"]
                widen = lambda h: expand_stream(h, n)  # noqa: E731
                narrow = collapse_stream

        def head(h):
            if narrow is not None:
                h = narrow(h)
            if final is not None:
                h = final(h)
            return dense(h)

        def enter(x):
            h = embed(x)
            return widen(h) if widen is not None else h

        return enter, steps, head

    def diagnose(self, end):
        """Per-layer residual-stream RMS (after each layer), and at the end
        the loss change when each layer is skipped (replaced by the
        identity) and, for HC/mHC, the mixing matrices' gains."""
        import keras
        from keras import ops

        self._sync_twin()
        x, y = self.corpus["diagnostic"]
        enter, steps, head = self._pieces()
        loss_fn = keras.losses.SparseCategoricalCrossentropy(
            from_logits=True)

        def loss_of(h):
            return float(loss_fn(y, head(h))) / math.log(2.0)

        h = enter(x)
        states, rms = [h], []
        hyper = CONFIGS[self.config][1] in ("hyper", "mhc")
        mixes = []
        for block in steps:
            if hyper and end:
                for wrapper in block.residual_wrappers:
                    mixes.append(np.asarray(
                        wrapper.weights_for(h)[2], "float64"))
                    h = wrapper(h)
            elif CONFIGS[self.config][0] == "hub":
                h = block(h, use_causal_mask=True)
            else:
                h = block(h)
            states.append(h)
            rms.append(float(ops.sqrt(ops.mean(ops.square(
                ops.cast(h, "float32"))))))
        out = {"rms": rms}
        if not end:
            return out
        full = loss_of(h)
        skipped = []
        for i in range(self.depth):
            g = states[i]
            for block in steps[i + 1:]:
                g = (block(g, use_causal_mask=True)
                     if CONFIGS[self.config][0] == "hub" else block(g))
            skipped.append(loss_of(g) - full)
        out.update(diagnostic_bits=full, skip_delta=skipped)
        if mixes:
            out.update(mixing_gain(mixes))
        return out


def mixing_gain(mixes):
    """Gains of the stream-mixing matrices `M` (`[batch, time, n, n]` per
    residual step, `M[i, j]` the weight of stream `i` in stream `j`): for
    each step and for the product over all steps (the composite map the
    streams go through, Xie et al. 2025, Fig. 3), the largest absolute
    column sum (how much one new stream takes from all: forward gain) and
    row sum (how much one stream feeds: backward gain), maxima over
    tokens."""
    def gains(m):
        a = np.abs(m)
        return float(a.sum(-2).max()), float(a.sum(-1).max())

    per_step = [gains(m) for m in mixes]
    composite = mixes[0]
    for m in mixes[1:]:
        composite = composite @ m
    forward, backward = gains(composite)
    return {"gain_forward": [g[0] for g in per_step],
            "gain_backward": [g[1] for g in per_step],
            "composite_gain_forward": forward,
            "composite_gain_backward": backward}


# --------------------------------------------------------------------- run
def schedule(args, warmup, peak, step):
    """Linear warm-up over the first tenth (when on), then cosine decay
    to a tenth of the peak at the last step."""
    warm = max(1, args.steps // 10) if warmup == "on" else 0
    if step < warm:
        return peak * (step + 1) / warm
    progress = (step - warm) / max(1, args.steps - warm - 1)
    return peak * (0.1 + 0.45 * (1.0 + math.cos(math.pi * progress)))


def run(cell, lr, warmup, seed, writer_dir=None):
    import tensorflow as tf

    args = cell.args
    cell.reset(seed)
    stream = cell.corpus["stream"]
    start = cell.diagnose(end=False)
    rng = np.random.default_rng(seed)
    losses, times, diverged = [], [], False
    grad_init = grad_last = None
    grad_total = []
    writer = (tf.summary.create_file_writer(writer_dir)
              if writer_dir else None)
    began = time.perf_counter()
    for s in range(args.steps):
        starts = rng.integers(0, len(stream) - args.context - 1,
                              args.batch_size)
        windows = np.stack([stream[i:i + args.context + 1]
                            for i in starts]).astype("int32")
        t0 = time.perf_counter()
        loss, layers, total = cell.step(
            tf.constant(windows[:, :-1]), tf.constant(windows[:, 1:]),
            tf.constant(schedule(args, warmup, lr, s), tf.float32))
        loss = float(loss) / math.log(2.0)
        times.append(time.perf_counter() - t0)
        if cell.trace_s is None:
            cell.trace_s = times[-1]
        layers = np.asarray(layers).tolist()
        if s == 0:
            grad_init = layers
        grad_last = layers
        losses.append(loss)
        if s % LOSS_EVERY == 0:
            grad_total.append(float(total))
        if writer is not None and s % 20 == 0:
            with writer.as_default():
                tf.summary.scalar("bits_per_byte", loss, step=s)
                tf.summary.scalar("grad_norm", float(total), step=s)
        # Non-finite, or far above where it started (8 bits is a uniform
        # guess): diverged, stop.
        if not math.isfinite(loss) or loss > 3 * 8.0:
            diverged = True
            break
    train_s = time.perf_counter() - began
    final = (float(np.mean(losses[-FINAL_STEPS:])) if not diverged
             else float("inf"))
    held_out = cell.held_out_bits() if not diverged else float("nan")
    end = cell.diagnose(end=True) if not diverged else {}
    if not math.isfinite(held_out):
        diverged = True
    if writer is not None:
        with writer.as_default():
            tf.summary.scalar("held_out_bits_per_byte",
                              held_out if math.isfinite(held_out) else -1.0,
                              step=len(losses))
        writer.close()
    unigram = cell.corpus["unigram"]
    state = ("diverged" if diverged else
             "stalled" if held_out > unigram - 0.1 else "converged")
    step_s = float(np.median(times[1:] or times))
    return {
        "config": cell.config, "depth": cell.depth, "lr": lr,
        "warmup": warmup, "seed": seed, "end": state, "diverged": diverged,
        "held_out_bits": held_out, "final_loss": final,
        "steps": len(losses),
        # Means of each LOSS_EVERY steps: a sample of one batch in five
        # is too noisy to tell a flat curve from a falling one.
        "loss": [float(np.mean(losses[i:i + LOSS_EVERY]))
                 for i in range(0, len(losses), LOSS_EVERY)],
        "grad_norm_total": grad_total,
        "grad_norm_init": grad_init, "grad_norm_last": grad_last,
        "rms_init": start["rms"], "rms_last": end.get("rms"),
        "skip_delta": end.get("skip_delta"),
        "diagnostic_bits": end.get("diagnostic_bits"),
        **{k: end[k] for k in ("gain_forward", "gain_backward",
                               "composite_gain_forward",
                               "composite_gain_backward") if k in end},
        "step_ms": 1e3 * step_s,
        "tokens_per_s": args.batch_size * args.context / step_s,
        "first_step_s": times[0], "trace_s": cell.trace_s,
        "train_s": train_s, "parameters": cell.parameters,
        "scan": cell.scan,
    }


def interleaved_speed(args, corpus, depth, configs, rounds=7, steps=20):
    """Training steps per second of `configs` at `depth`, interleaved: each
    round times `steps` plain Adam steps (no diagnostics) of each config in
    turn on the same batches, after one untimed step that traces it.
    A config named `"<ours> unrolled"` is ours without `scan` at any depth.
    Returns `{config: {"step_ms": median over rounds, "rounds": [...],
    "tokens_per_s": ..., "scan": ...}}`."""
    import keras
    import tensorflow as tf

    rng = np.random.default_rng(0)
    stream = corpus["stream"]
    starts = rng.integers(0, len(stream) - args.context - 1,
                          (steps, args.batch_size))
    batches = [np.stack([stream[i:i + args.context + 1] for i in row])
               .astype("int32") for row in starts]
    batches = [(tf.constant(b[:, :-1]), tf.constant(b[:, 1:]))
               for b in batches]
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    timed = {}
    for label in configs:
        config = label.removesuffix(" unrolled")
        keras.utils.set_random_seed(0)
        scan = (CONFIGS[config][0] == "ours" and depth >= args.scan_from
                and label == config)
        model = build(args, config, depth, scan)
        optimizer = keras.optimizers.Adam(1e-3)
        variables = model.trainable_variables
        optimizer.build(variables)

        def make(model, optimizer, variables):
            def step(x, y):
                with tf.GradientTape() as tape:
                    loss = loss_fn(y, model(x, training=True))
                optimizer.apply(tape.gradient(loss, variables), variables)
                return loss
            return step

        fn = tf.function(make(model, optimizer, variables),
                         jit_compile=args.xla, autograph=False)
        float(fn(*batches[0]))
        timed[label] = {"fn": fn, "rounds": [], "scan": scan}
    for _ in range(rounds):
        for config in configs:
            fn = timed[config]["fn"]
            began = time.perf_counter()
            for x, y in batches:
                loss = fn(x, y)
            float(loss)
            timed[config]["rounds"].append(
                1000 * (time.perf_counter() - began) / steps)
    out = {}
    for config, t in timed.items():
        ms = float(np.median(t["rounds"]))
        out[config] = {"step_ms": ms, "rounds": t["rounds"],
                       "scan": t["scan"],
                       "tokens_per_s": args.batch_size * args.context
                       / (ms / 1000)}
    return out
