"""The depth study's runs: the corpus (through the NER package's parser,
windows and vocabulary), the model for a placement and depth (through the
placement registry), and one training run of a `Cell`."""

import math
import time

import numpy as np

# The study's order; every name but "noresidual" (no skip path at all) is
# a `keras_resnorm.placements` name or shortcut.
PLACEMENTS = ("noresidual", "post", "pre", "sandwich", "deepnorm", "rezero",
              "layerscale", "hyper", "mhc")

# The one sampling rule of the recorded loss curve: every LOSS_EVERY-th step
# is kept, and the final loss is the mean over the last FINAL_STEPS steps.
LOSS_EVERY = 5
FINAL_STEPS = 20


def final_loss(run):
    """Mean training loss over the last FINAL_STEPS steps; inf when it
    diverged."""
    if run["diverged"]:
        return float("inf")
    return float(np.mean(run["loss"][-(FINAL_STEPS // LOSS_EVERY):]))


def load(args):
    from keras_resnorm.ner import data, features, pipeline

    train = list(data.parse_conll(data.split_path(args.data_dir, "train")))
    dev = list(data.parse_conll(data.split_path(args.data_dir, "valid")))
    train = train[:args.train_sentences]
    dev = dev[:args.dev_sentences]
    words, _ = features.vocabulary([t for t, _ in train], 2)
    tags = data.tag_set(train)
    word_index = {w: i + 2 for i, w in enumerate(words)}  # 0 pad, 1 OOV
    tag_index = {t: i for i, t in enumerate(tags)}
    normalized = _normalized(train + dev)

    def encode(sentences):
        pieces = [(tokens, labels) for tokens, labels, _ in
                  pipeline.rows(sentences, args.max_length)]
        ids = np.zeros((len(pieces), args.max_length), "int32")
        labels = np.zeros_like(ids)
        for row, (tokens, piece_tags) in enumerate(pieces):
            for col, (token, tag) in enumerate(zip(tokens, piece_tags)):
                ids[row, col] = word_index.get(normalized[token], 1)
                labels[row, col] = tag_index.get(tag, 0)
        return ids, labels, pieces

    return {"train": encode(train), "dev": encode(dev), "tags": tags,
            "vocabulary": len(words) + 2}


def _normalized(sentences):
    """`{token: vocabulary key}` by the graph's rule, in one call."""
    import tensorflow as tf

    from keras_resnorm.ner.features import normalize_words

    tokens = sorted({t for sentence, _ in sentences for t in sentence})
    keys = normalize_words(tf.constant(tokens, tf.string)).numpy()
    return {t: k.decode("utf-8") for t, k in zip(tokens, keys)}


# ------------------------------------------------------------------ model
def build(args, placement, depth, vocabulary, n_tags):
    import keras

    from keras_resnorm import (
        FeedForward,
        SelfAttention,
        TransformerEncoder,
        normalization,
        placements,
    )

    inputs = keras.Input((args.max_length,), dtype="int32")
    h = keras.layers.Embedding(vocabulary, args.d_model, mask_zero=True,
                               name="embedding")(inputs)
    mask = keras.ops.not_equal(inputs, 0)
    common = dict(num_layers=depth, num_heads=args.heads,
                  intermediate_dim=2 * args.d_model, name="encoder")
    fused = {} if args.fused == "auto" else {"fused": False}
    if placement == "noresidual":
        # The same sub-layers with no skip path at all: x = N(F(x)).
        for i in range(depth):
            for kind in ("attention", "feed_forward"):
                sub = (SelfAttention(args.heads, name=f"block_{i}_{kind}")
                       if kind == "attention" else
                       FeedForward(2 * args.d_model, name=f"block_{i}_{kind}"))
                h = normalization("layer", name=f"block_{i}_{kind}_norm",
                                  **fused)(
                    sub(h, mask=mask) if kind == "attention" else sub(h))
    else:
        options = dict(placements.keyword_arguments(placement), **fused)
        if placements.widens_stream(options["placement"]):
            options["expansion"] = args.expansion
        h = TransformerEncoder(**common, **options)(h, mask=mask)
    outputs = keras.layers.Dense(n_tags, dtype="float32", name="tags")(h)
    return keras.Model(inputs, outputs)


def block_of(path):
    """The encoder block a variable belongs to, or None."""
    for part in path.split("/"):
        if part.startswith("block_"):
            return int(part.split("_")[1])
    return None


# ------------------------------------------------------------------ a run
class Cell:
    """One (placement, depth): a model whose training step and inference
    are traced (and, with `--xla`, compiled) once and reused for every seed
    and warm-up setting; `reset(seed)` gives it the initial weights a model
    built from scratch with that seed would have (`seed` one of
    `args.seeds`), and a fresh optimizer.
    Tracing a depth-48 stack costs as much as a hundred or more of its
    steps, so this is what lets the whole grid fit in the hour."""

    def __init__(self, args, corpus, placement, depth):
        import keras
        import tensorflow as tf

        self.args, self.corpus = args, corpus
        self.placement, self.depth = placement, depth
        # Every seed's initial weights, made before anything is traced:
        # setting the seed clears TensorFlow's kernel and function caches,
        # after which a depth-48 step spent about 20 s being set up again.
        self.initial = {}
        for seed in args.seeds:
            keras.utils.set_random_seed(seed)
            self.initial[seed] = build(
                args, placement, depth, corpus["vocabulary"],
                len(corpus["tags"])).get_weights()
        keras.utils.set_random_seed(args.seeds[0])
        self.model = build(args, placement, depth, corpus["vocabulary"],
                           len(corpus["tags"]))
        self.variables = self.model.trainable_variables
        self.blocks = [block_of(v.path) for v in self.variables]
        self.optimizer = keras.optimizers.Adam(args.learning_rate)
        # Built now, so that the first call does not create variables (a
        # tf.function that creates variables is traced twice).
        self.optimizer.build(self.variables)
        loss_fn = keras.losses.SparseCategoricalCrossentropy(
            from_logits=True)
        model, variables, optimizer = (self.model, self.variables,
                                       self.optimizer)

        def step(x, y, lr):
            with tf.GradientTape() as tape:
                logits = model(x, training=True)
                weights = tf.cast(tf.not_equal(x, 0), tf.float32)
                loss = loss_fn(y, logits, sample_weight=weights)
            grads = tape.gradient(loss, variables)
            optimizer.learning_rate.assign(lr)
            optimizer.apply(grads, variables)
            norms = tf.stack([tf.norm(g) if g is not None else 0.0
                              for g in grads])
            return loss, norms

        def infer(x):
            return tf.argmax(model(x, training=False), -1)

        self.step = tf.function(step, jit_compile=args.xla)
        self.infer = tf.function(infer, jit_compile=args.xla)
        self.trace_s = None

    def reset(self, seed):
        import keras

        self.model.set_weights(self.initial[seed])
        for v in self.optimizer.variables:
            v.assign(keras.ops.zeros(v.shape, v.dtype))

    def per_block(self, norms):
        out = np.zeros(self.depth)
        for b, value in zip(self.blocks, np.asarray(norms)):
            if b is not None:
                out[b] += float(value) ** 2
        return np.sqrt(out).tolist()

    def dev_f1(self):
        from keras_resnorm.ner.evaluate import entity_scores

        ids, _, pieces = self.corpus["dev"]
        batch = 256
        rows = -(-len(ids) // batch) * batch  # one shape, one trace
        padded = np.zeros((rows, ids.shape[1]), ids.dtype)
        padded[:len(ids)] = ids
        predicted = np.concatenate([
            self.infer(padded[i:i + batch]).numpy()
            for i in range(0, rows, batch)])
        tags = self.corpus["tags"]
        true, pred = [], []
        for row, (tokens, piece_tags) in enumerate(pieces):
            true.append(list(piece_tags))
            pred.append([tags[i] for i in predicted[row, :len(tokens)]])
        return 100 * entity_scores(true, pred)["f1"]


def run(cell, warmup, seed, writer_dir):
    import tensorflow as tf

    args = cell.args
    started = time.perf_counter()
    cell.reset(seed)
    reset_s = time.perf_counter() - started
    ids, labels, _ = cell.corpus["train"]
    warm = max(1, args.steps // 10) if warmup == "on" else 0

    def schedule(step):
        if warm and step < warm:
            return args.learning_rate * (step + 1) / warm
        return args.learning_rate

    rng = np.random.default_rng(seed)
    losses, times, first_loss, diverged = [], [], None, False
    grad_init = grad_last = None
    writer = tf.summary.create_file_writer(writer_dir)
    for s in range(args.steps):
        rows = rng.integers(0, len(ids), args.batch_size)
        started = time.perf_counter()
        loss, norms = cell.step(tf.constant(ids[rows]),
                                tf.constant(labels[rows]),
                                tf.constant(schedule(s), tf.float32))
        loss = float(loss)
        times.append(time.perf_counter() - started)
        if cell.trace_s is None:
            cell.trace_s = times[-1]
        if s == 0:
            grad_init, first_loss = cell.per_block(norms), loss
        grad_last = cell.per_block(norms)
        losses.append(loss)
        if s % 10 == 0:
            with writer.as_default():
                tf.summary.scalar("loss", loss, step=s)
                for b, g in enumerate(grad_last):
                    tf.summary.scalar(f"grad_norm/block_{b:02d}", g, step=s)
        if not math.isfinite(loss) or loss > 3 * first_loss:
            diverged = True
            break
    f1 = 0.0 if diverged else cell.dev_f1()
    with writer.as_default():
        tf.summary.scalar("dev_entity_f1", f1, step=len(losses))
    writer.close()
    placement = cell.placement
    stream = args.max_length * args.batch_size * args.d_model * 4 * (
        args.expansion if placement in ("hyper", "mhc") else 1)
    return {
        "placement": placement, "depth": cell.depth, "warmup": warmup,
        "seed": seed, "diverged": diverged, "dev_entity_f1": f1,
        "steps": len(losses), "loss": losses[::LOSS_EVERY], "final_loss": losses[-1],
        "grad_norm_init": grad_init, "grad_norm_last": grad_last,
        "step_ms": 1e3 * float(np.median(times[1:] or times)),
        "first_step_s": times[0], "trace_s": cell.trace_s,
        "reset_s": reset_s, "parameters": cell.model.count_params(),
        "stream_bytes_per_block": stream,
    }
