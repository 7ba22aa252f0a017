"""Depth study: what each residual placement does as the encoder gets deep.

    python -m benchmarks.depth --data-dir ../shared/data/conll2003
    python -m benchmarks.depth --from-json benchmarks/results/depth.json
    python -m benchmarks.depth --from-json A.json B.json --name depth

Trains the same small Transformer tagger (word embeddings, `depth`
encoder blocks, a tag layer) on a CoNLL-2003 subset for a fixed number of
steps, for every placement, depth, warm-up setting and seed, and records per
run: the gradient norm of each block's parameters at initialization and at
the last step (as Xiong et al. 2020 plot them), the training loss curve,
whether it diverged (a non-finite loss, or a loss above 3x the first one),
dev entity F1 (seqeval) after the fixed steps, the median step time, the
parameter count and the residual-stream size (HC and mHC carry `n` copies;
computed from the shapes, not measured). Deepest depth first, one
(placement, depth) at a time, in one process; nothing else should run.

Writes `benchmarks/results/depth.{json,md}` (rewritten after every run, so
a crash loses one run, and `--resume` runs only the missing ones), PNG
plots (matplotlib, the `bench` extra) and TensorBoard logs (`--logdir`).
`--from-json FILE...` redoes the tables, claims and plots from a study's
JSON without training, or merges several.
"""

import argparse
import math
import os
import sys
import time

import numpy as np

# The study's order; every name but "noresidual" (no skip path at all) is
# a `keras_resnorm.placements` name or shortcut.
PLACEMENTS = ("noresidual", "post", "pre", "sandwich", "deepnorm", "rezero",
              "layerscale", "hyper", "mhc")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.depth")
    parser.add_argument("--data-dir",
                        help="CoNLL-2003 folder (train/valid/test.txt)")
    parser.add_argument("--from-json", metavar="FILE", nargs="+",
                        help="no training: redo the tables, claims and "
                             "plots (as --name) from one study's JSON, or "
                             "merge several, each depth from one file")
    parser.add_argument("--depths", type=int, nargs="+",
                        default=[6, 12, 24, 48])
    parser.add_argument("--placements", nargs="+", default=list(PLACEMENTS),
                        choices=PLACEMENTS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--warmup", nargs="+", default=["on", "off"],
                        choices=("on", "off"))
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--d-model", type=int, default=32)
    parser.add_argument("--heads", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=32)
    parser.add_argument("--expansion", type=int, default=4)
    parser.add_argument("--fused", choices=("auto", "off"), default="auto",
                        help="the norms' fused kernel: 'auto' (the "
                             "library's default) or 'off' (composite ops)")
    parser.add_argument("--xla", action=argparse.BooleanOptionalAction,
                        default=False,
                        help="compile each training step with XLA (off by "
                             "default: on this 2-core CPU, XLA's compile "
                             "time and step time grew faster than linearly "
                             "with depth; see benchmarks/README.md)")
    parser.add_argument("--train-sentences", type=int, default=4000)
    parser.add_argument("--dev-sentences", type=int, default=1000)
    parser.add_argument("--name", default="depth")
    parser.add_argument("--logdir", default=os.path.join("runs", "depth"))
    parser.add_argument("--budget-minutes", type=float, default=None,
                        help="start no new run after this; the results say "
                             "which cells are missing")
    parser.add_argument("--resume", action="store_true",
                        help="keep the runs in results/<name>.json (same "
                             "settings) and run only the missing ones")
    parser.add_argument("--others", default="nothing else ran",
                        help="what else ran on the machine meanwhile")
    args = parser.parse_args(argv)
    if not args.data_dir and not args.from_json:
        parser.error("--data-dir is required (or --from-json FILE)")
    for name in ("steps", "batch_size", "d_model", "max_length",
                 "train_sentences", "dev_sentences"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    return args


# ------------------------------------------------------------------- data
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
        pieces = [p for tokens, labels in sentences
                  for p in pipeline.windows(tokens, labels, args.max_length)]
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
        "steps": len(losses), "loss": losses[::5], "final_loss": losses[-1],
        "grad_norm_init": grad_init, "grad_norm_last": grad_last,
        "step_ms": 1e3 * float(np.median(times[1:] or times)),
        "first_step_s": times[0], "trace_s": cell.trace_s,
        "reset_s": reset_s, "parameters": cell.model.count_params(),
        "stream_bytes_per_block": stream,
    }


# ---------------------------------------------------------------- results
def summarize(runs):
    groups = {}
    for r in runs:
        groups.setdefault((r["placement"], r["depth"], r["warmup"]),
                          []).append(r)
    rows = []
    for (placement, depth, warmup), items in sorted(groups.items()):
        f1 = [r["dev_entity_f1"] for r in items]
        rows.append({
            "placement": placement, "depth": depth, "warmup": warmup,
            "seeds": len(items),
            "dev F1 mean": float(np.mean(f1)),
            "dev F1 range": f"{min(f1):.2f}-{max(f1):.2f}",
            "final loss": _fmt(_stat(items, final_loss), 3),
            "diverged": sum(r["diverged"] for r in items),
            "step ms": float(np.median([r["step_ms"] for r in items])),
            "trace s": float(np.median([r["trace_s"] for r in items])),
            "parameters": items[0]["parameters"],
            "stream KiB": items[0]["stream_bytes_per_block"] / 1024,
            "grad at init, last/first quarter": _quarter_ratio(items),
        })
    return rows


def _cell(runs, placement, depth, warmup):
    return [r for r in runs if r["placement"] == placement
            and r["depth"] == depth and r["warmup"] == warmup]


def final_loss(run):
    """Mean training loss over the last 20 steps; inf when it diverged."""
    if run["diverged"]:
        return float("inf")
    return float(np.mean(run["loss"][-4:]))  # `loss` keeps every 5th step


def _stat(items, value):
    values = [value(r) for r in items]
    return (float(np.mean(values)), min(values), max(values), len(values)) \
        if values else None


def _compare(a, b, higher_is_better=True, margin=0.0):
    """'better' / 'worse' when the seed ranges of a and b do not overlap
    and lie more than `margin` apart; a single seed never decides."""
    if a is None or b is None:
        return "missing"
    if a[3] < 2 or b[3] < 2:
        return "overlap"
    if a[1] - b[2] > margin:
        return "better" if higher_is_better else "worse"
    if b[1] - a[2] > margin:
        return "worse" if higher_is_better else "better"
    return "overlap"


# Dev F1 ranges must lie this far apart to decide: a point or two of F1 is
# seed noise at this scale, and 1.2 against 0.0 says nothing.
F1_MARGIN = 2.0


VERDICTS = {"better": "confirmed", "worse": "contradicted",
            "overlap": "cannot tell", "missing": "cannot tell (missing)"}

# (source, claim, a, a's warm-up, b, b's warm-up): "a trains better than b".
PAIR_CLAIMS = [
    ("Xiong et al. 2020", "without warm-up, Pre-LN trains better than "
     "Post-LN", "pre", "off", "post", "off"),
    ("Xiong et al. 2020", "Post-LN needs warm-up (trains better with it)",
     "post", "on", "post", "off"),
    ("Wang et al. 2022 (DeepNet)", "DeepNorm trains deep post-norm stacks "
     "better than Post-LN", "deepnorm", "off", "post", "off"),
    ("Bachlechner et al. 2020 (ReZero)", "ReZero trains deep stacks better "
     "than Pre-LN", "rezero", "off", "pre", "off"),
    ("Touvron et al. 2021 (CaiT)", "LayerScale helps deep stacks over "
     "plain Pre-LN", "layerscale", "on", "pre", "on"),
    ("Kim et al. 2025 (Peri-LN)", "Peri-LN (sandwich) trains deep stacks "
     "better than Pre-LN", "sandwich", "on", "pre", "on"),
    ("Zhu et al. 2024 (Hyper-Connections)", "hyper-connections beat Pre-LN "
     "residuals", "hyper", "on", "pre", "on"),
    ("Xie et al. 2025 (mHC)", "mHC trains better than HC", "mhc", "on",
     "hyper", "on"),
    ("the article", "residual connections keep deep stacks trainable",
     "pre", "on", "noresidual", "on"),
]


# (source, claim, placement, its label): "the placement's gradient at
# initialization leans toward the last blocks more than Pre-LN's does".
GRADIENT_CLAIMS = [
    ("Xiong et al. 2020", "at initialization Post-LN's gradient grows toward "
     "the last block, Pre-LN's does not", "post", "post"),
    ("the article", "without residual connections the gradient vanishes "
     "toward the first block", "noresidual", "no residual"),
]


def _fmt(stat, digits=2):
    if stat is None:
        return "missing"
    mean, low, high, _ = stat
    if not math.isfinite(mean):
        return "diverged" if low == high else (
            f"diverged in some seeds ({low:.{digits}f}-{high:.{digits}f})")
    return f"{mean:.{digits}f} ({low:.{digits}f}-{high:.{digits}f})"


def _quarter_ratio(items):
    """Median over runs of the gradient norm at initialization of the last
    quarter of blocks over the first quarter's (medians within each),
    leaving out block 0: it takes the raw embeddings (std about 0.03), and
    in post-norm and no-residual stacks its gradient is 10-100x every other
    block's, which would decide any ratio it is part of. None without a
    block besides block 0."""
    def ratio(profile):
        profile = profile[1:]
        q = max(1, len(profile) // 4)
        return float(np.median(profile[-q:])
                     / max(np.median(profile[:q]), 1e-30))

    values = [ratio(r["grad_norm_init"]) for r in items
              if r["grad_norm_init"] and len(r["grad_norm_init"]) > 1]
    return float(np.median(values)) if values else None


def _grad_ratio(runs, placement, depth):
    """`_quarter_ratio` of a placement at a depth; warm-up cannot change the
    first step's gradient, so runs with and without it count."""
    return _quarter_ratio([r for r in runs if r["placement"] == placement
                           and r["depth"] == depth])


def claims(runs):
    """Each claim at each depth: what was measured (dev entity F1 and the
    final training loss, mean and seed range) and a verdict for each:
    confirmed / contradicted when the seed ranges do not overlap, 'cannot
    tell' otherwise (one seed never decides). Gradient claims (`kind`
    "gradient") compare the median last/first block gradient ratio at
    initialization: a factor of 2 decides."""
    out = []
    seeds = len({r["seed"] for r in runs})
    for depth in sorted({r["depth"] for r in runs}):
        for source, text, a, wa, b, wb in PAIR_CLAIMS:
            ca, cb = _cell(runs, a, depth, wa), _cell(runs, b, depth, wb)
            fa, fb = (_stat(c, lambda r: r["dev_entity_f1"])
                      for c in (ca, cb))
            la, lb = (_stat(c, final_loss) for c in (ca, cb))
            out.append({
                "source": source, "claim": text, "depth": depth,
                "kind": "training",
                "compared": f"{a} (warm-up {wa}) vs {b} (warm-up {wb})",
                "dev F1": f"{_fmt(fa)} vs {_fmt(fb)}",
                "by F1": VERDICTS[_compare(fa, fb, margin=F1_MARGIN)],
                "final loss": f"{_fmt(la, 3)} vs {_fmt(lb, 3)}",
                "by loss": VERDICTS[_compare(la, lb, higher_is_better=False)],
                "seeds": seeds})
        pre = _grad_ratio(runs, "pre", depth)
        for source, text, placement, label in GRADIENT_CLAIMS:
            ratio = _grad_ratio(runs, placement, depth)
            if ratio is None or pre is None:
                continue
            out.append({
                "source": source, "depth": depth, "claim": text,
                "kind": "gradient",
                "measured": f"gradient norm at init, last quarter of blocks "
                            f"over first (block 0 left out): {label} "
                            f"{ratio:.3g}, pre {pre:.3g}",
                "verdict": "confirmed" if ratio > 2 * pre else
                           "contradicted" if ratio < pre else "cannot tell",
                "seeds": seeds})
    return out


def plot(runs, out_base):
    """PNG plots; returns their paths (none without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[bench]'): "
              "no plots")
        return []
    paths = []
    depths = sorted({r["depth"] for r in runs})
    placements = [p for p in PLACEMENTS if any(r["placement"] == p
                                               for r in runs)]
    for key, title in (("grad_norm_init", "at initialization"),
                       ("grad_norm_last", "at the last step")):
        fig, axes = plt.subplots(1, len(depths), figsize=(4 * len(depths), 3.5),
                                 squeeze=False)
        for ax, depth in zip(axes[0], depths):
            for p in placements:
                chosen = [r for r in runs if r["placement"] == p and
                          r["depth"] == depth and r["warmup"] == "on"
                          and r[key]]
                if chosen:
                    ax.plot(np.median([r[key] for r in chosen], axis=0),
                            label=p)
            ax.set_yscale("log")
            ax.set_title(f"depth {depth}")
            ax.set_xlabel("block")
        axes[0][0].set_ylabel(f"gradient norm {title}")
        axes[0][-1].legend(fontsize=7)
        fig.tight_layout()
        path = f"{out_base}-{key.replace('_', '-')}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        paths.append(path)
    fig, axes = plt.subplots(2, 2, figsize=(10, 7), squeeze=False)
    for column, warmup in enumerate(("on", "off")):
        for row, (value, title) in enumerate((
                (lambda r: r["dev_entity_f1"], "dev entity F1"),
                (final_loss, "final training loss"))):
            ax = axes[row][column]
            for p in placements:
                means = []
                for d in depths:
                    cell = [value(r) for r in runs if r["placement"] == p
                            and r["depth"] == d and r["warmup"] == warmup]
                    finite = [v for v in cell if math.isfinite(v)]
                    means.append(np.mean(finite) if finite else np.nan)
                ax.plot(depths, means, marker="o", label=p)
            ax.set_xscale("log", base=2)
            ax.set_xticks(depths, [str(d) for d in depths])
            ax.set_title(f"{title}, warm-up {warmup}")
            ax.set_xlabel("depth (blocks)")
    axes[0][1].legend(fontsize=7)
    fig.tight_layout()
    path = f"{out_base}-f1.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    paths.append(path)
    deepest = depths[-1]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for p in placements:
        chosen = [r for r in runs if r["placement"] == p and
                  r["depth"] == deepest and r["warmup"] == "off"
                  and r["seed"] == min(x["seed"] for x in runs)]
        for r in chosen:
            ax.plot(np.arange(len(r["loss"])) * 5, r["loss"], label=p)
    ax.set_yscale("log")
    ax.set_title(f"training loss, depth {deepest}, no warm-up, first seed")
    ax.set_xlabel("step")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = f"{out_base}-loss.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    paths.append(path)
    return paths


def main(argv=None):
    from benchmarks import common

    if argv is None:
        argv = sys.argv[1:]
    args = parse_args(argv)
    if args.from_json:
        return rerender(args.from_json, args.name)
    previous = load_previous(args) if args.resume else None
    corpus = load(args)
    machine = common.machine()
    runs = list(previous["runs"]) if previous else []
    done = {(r["depth"], r["seed"], r["warmup"], r["placement"])
            for r in runs}
    started = time.time()
    planned = [(depth, seed, warmup, placement)
               for depth in sorted(args.depths, reverse=True)
               for placement in args.placements
               for seed in args.seeds for warmup in args.warmup]
    # Deepest first, so that a budget that runs out costs the shallow end.
    # One (placement, depth) at a time: its model is traced once and runs
    # every seed and warm-up setting in a row. (Interleaving placements
    # cost 20-30 s a run at depth 48: the first step of a model whose turn
    # came back after eight others ran took most of its first trace's time
    # again, with no retrace counted.) The F1, loss and gradients do not
    # depend on the machine's speed; the step times are medians.
    stopped_early = False
    cells = {}
    for index, (depth, seed, warmup, placement) in enumerate(planned):
        if (depth, seed, warmup, placement) in done:
            continue
        if args.budget_minutes is not None and (
                time.time() - started > 60 * args.budget_minutes):
            stopped_early = True
            break
        if placement not in cells or cells[placement].depth != depth:
            cells.clear()
            cells[placement] = Cell(args, corpus, placement, depth)
        name = f"{placement}-d{depth}-w{warmup}-s{seed}"
        result = run(cells[placement], warmup, seed,
                     os.path.join(args.logdir, name))
        result["invocation"] = len(previous["invocations"]) \
            if previous else 0
        runs.append(result)
        print(f"[{index + 1}/{len(planned)}] {name}: dev F1 "
              f"{result['dev_entity_f1']:.2f}"
              f"{' DIVERGED' if result['diverged'] else ''}, "
              f"{result['step_ms']:.1f} ms/step "
              f"({time.time() - started:.0f} s so far)",
              flush=True)
        # Written as it goes, so that a crash or a kill loses one run.
        write(args, argv, machine, runs, planned, started, False,
              plots=False, previous=previous)
    return write(args, argv, machine, runs, planned, started,
                 stopped_early, plots=True, previous=previous)


# Settings that change what a run measures: a resumed study must share them.
STUDY_SETTINGS = ("steps", "batch_size", "learning_rate", "d_model", "heads",
                  "max_length", "expansion", "train_sentences",
                  "dev_sentences", "fused", "xla")


def load_previous(args):
    """The study in results/<name>.json, for --resume; None when there is
    none. Its settings must equal this command's."""
    import json

    from benchmarks import common

    path = os.path.join(common.RESULTS, args.name + ".json")
    if not os.path.exists(path):
        print(f"--resume: no {path} yet; starting the study")
        return None
    with open(path) as f:
        previous = json.load(f)
    changed = [f"{k}: {previous['settings'].get(k)!r} -> "
               f"{getattr(args, k)!r}" for k in STUDY_SETTINGS
               if previous["settings"].get(k) != getattr(args, k)]
    if changed:
        raise SystemExit(
            f"--resume: {path} was made with other settings ("
            + "; ".join(changed) + "); use another --name")
    previous.setdefault("invocations", [{
        "command": previous["command"], "others": previous["others"],
        "wall_seconds": previous["wall_seconds"],
        "runs": len(previous["runs"])}])
    return previous


CLAIMS_TEXT = (
    "## Claims\n\nEach claim at each depth. Dev entity F1 and the final "
    "training loss (mean over the last 20 steps) are the mean and the "
    "range over seeds; a verdict is confirmed or contradicted only when "
    "the two seed ranges do not overlap (dev F1 ranges must also lie more "
    "than 2 points apart), otherwise it cannot tell. Gradient claims "
    "compare the median gradient norm at initialization of the last "
    "quarter of blocks over the first quarter's (block 0, which takes the "
    "raw embeddings, left out), medians over runs, and a factor of 2 "
    "decides.\n\n")


def write(args, argv, machine, runs, planned, started, stopped_early,
          plots, previous=None):
    from benchmarks import common

    earlier = previous["invocations"] if previous else []
    this = {"command": common.command("benchmarks.depth", argv),
            "others": args.others, "wall_seconds": time.time() - started,
            "runs": len(runs) - sum(i["runs"] for i in earlier)}
    payload = {"machine": machine, "command": this["command"],
        "argv": list(argv),
        "others": args.others,
        "settings": {k: v for k, v in vars(args).items()},
        "wall_seconds": sum(i["wall_seconds"] for i in earlier)
        + this["wall_seconds"], "planned_runs": len(planned),
        "invocations": earlier + [this],
        "finished": plots, "stopped_early": stopped_early, "runs": runs}
    return publish(payload, args.name, plots)


def publish(payload, name, plots):
    """Summary, claims, plots (when `plots`) and the markdown, from the
    runs in `payload`; writes `results/<name>.{json,md}`."""
    from benchmarks import common

    runs = payload["runs"]
    rows = summarize(runs)
    table = claims(runs)
    out_base = os.path.join(common.RESULTS, name)
    os.makedirs(common.RESULTS, exist_ok=True)
    paths = plot(runs, out_base) if plots else []
    payload.update(summary=rows, claims=table,
                   plots=[os.path.basename(p) for p in paths])
    columns = ["placement", "depth", "warmup", "seeds", "dev F1 mean",
               "dev F1 range", "final loss", "diverged", "step ms", "trace s",
               "parameters", "stream KiB", "grad at init, last/first quarter"]
    state = ("" if payload["finished"]
             else " (still running: partial results)")
    markdown = (common.header("Depth study", "benchmarks.depth",
                              payload["argv"], payload["machine"])
                + ("" if payload.get("sources") or len(
                    payload.get("invocations", [])) > 1 else
                   f"Also running: {payload['others']}. ")
                + "Wall time "
                f"{payload['wall_seconds'] / 60:.1f} min{state}; "
                f"{len(runs)} of {payload['planned_runs']} planned runs"
                + (" (the time budget ran out)"
                   if payload["stopped_early"] else "")
                + ".\n\n"
                + "".join(f"- depth {x['depth']}: {x['runs']} runs from "
                          f"`{x['command']}` (also running: {x['others']})\n"
                          for x in payload.get("sources", []))
                + ("\n" if payload.get("sources") else "")
                + ("".join(f"- run {i + 1}: `{x['command']}`, {x['runs']} "
                           f"runs in {x['wall_seconds'] / 60:.1f} min (also "
                           f"running: {x['others']})\n"
                           for i, x in enumerate(payload["invocations"]))
                   + "\n" if len(payload.get("invocations", [])) > 1
                   else "")
                + common.markdown_table(rows, columns) + "\n\n"
                + CLAIMS_TEXT
                + common.markdown_table(
                    [c for c in table if c["kind"] == "training"],
                    ["source", "claim", "depth", "compared", "dev F1",
                     "by F1", "final loss", "by loss"])
                + "\n\n"
                + common.markdown_table(
                    [c for c in table if c["kind"] == "gradient"],
                    ["source", "claim", "depth", "measured", "verdict"])
                + "\n\n"
                + "".join(f"![{os.path.basename(p)}]({os.path.basename(p)})\n"
                          for p in paths))
    common.write(name, payload, markdown, echo=plots)
    return payload


def rerender(paths, name):
    """Tables, claims and plots again from one or more studies' JSON, no
    training. With several files (a study continued by another command,
    e.g. for the depths a time budget left out), each depth's runs come
    whole from the one file holding the most runs at that depth, so runs
    compared at a depth were always interleaved in one process."""
    import json

    payloads = []
    for path in paths:
        with open(path) as f:
            payload = json.load(f)
        if "argv" not in payload:  # written before the argv was recorded
            payload["argv"] = payload["command"].split()[3:]
        payloads.append(payload)
    merged = dict(payloads[0])
    if len(payloads) > 1:
        chosen = {}
        for index, payload in enumerate(payloads):
            for depth in {r["depth"] for r in payload["runs"]}:
                count = sum(r["depth"] == depth for r in payload["runs"])
                if count >= chosen.get(depth, (0, None))[0]:
                    chosen[depth] = (count, index)
        runs = [r for depth, (_, index) in sorted(chosen.items(),
                                                  reverse=True)
                for r in payloads[index]["runs"] if r["depth"] == depth]
        settings = payloads[0]["settings"]
        planned = len(chosen) * len(settings["placements"]) * len(
            settings["seeds"]) * len(settings["warmup"])
        merged.update(
            runs=runs, planned_runs=planned,
            stopped_early=len(runs) < planned, finished=True,
            wall_seconds=sum(p["wall_seconds"] for p in payloads),
            sources=[{"command": payloads[index]["command"],
                      "others": payloads[index]["others"],
                      "depth": depth, "runs": count}
                     for depth, (count, index) in sorted(chosen.items())])
    return publish(merged, name, plots=True)


if __name__ == "__main__":
    main()
