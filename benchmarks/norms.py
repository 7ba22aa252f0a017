"""Normalization speed against Keras, keras-nlp and the copy bandwidth.

    python -m benchmarks.norms                 # the full grid (about 10 min on 2 cores)
    python -m benchmarks.norms --quick         # one shape, for a smoke run

For every (shape, dtype, mode, pass) case, each implementation is timed in
the same process with interleaved repetitions (one call of each in turn,
`--repeats` rounds) and the median is reported with its ratio to the
Keras baseline of that case, its effective GB/s (bytes that must move, see
`bytes_moved`) and its share of the copy bandwidth measured in the same run
(`np.copyto` of an array of the same size, also interleaved).

`fused=auto` takes the hand-written kernel inside tf.function and XLA and
the composite path when executing eagerly (where the kernel measured
slower); `fused=False` is always the composite path.

Writes results/norms-<machine>.json and .md. Measurements, not tests.
"""

import argparse
import os
import statistics
import time

import numpy as np

from benchmarks import common

SHAPES = ((8192, 512), (16384, 1024), (4096, 4096))
DTYPES = ("float32", "bfloat16")
MODES = ("eager", "function", "xla")
PASSES = ("forward", "forward+backward")


def implementations():
    """name -> (kind, factory); kind 'norm' takes x, 'add' takes x and r."""
    import keras
    import keras_nlp

    import keras_resnorm as kr
    from keras_resnorm import ops as rn_ops

    def layer(make):
        def build(dtype, d):
            obj = make(dtype, d)
            obj.build((None, d))
            return lambda x, r=None: obj(x), obj.trainable_weights
        return build

    def keras_add_ln(dtype, d):
        ln = keras.layers.LayerNormalization(epsilon=1e-3, dtype=dtype)
        ln.build((None, d))
        return (lambda x, r: ln(x + r)), ln.trainable_weights

    def fused_add(use_mean, fused):
        def build(dtype, d):
            import tensorflow as tf

            gamma = tf.Variable(np.ones(d, "float32"))
            beta = tf.Variable(np.zeros(d, "float32")) if use_mean else None
            weights = [gamma] + ([beta] if use_mean else [])

            def fn(x, r):
                return rn_ops.fused_add_norm(x, r, gamma, beta,
                                             use_mean=use_mean, fused=fused)
            return fn, weights
        return build

    return {
        "keras LayerNormalization": ("norm", layer(
            lambda dt, d: keras.layers.LayerNormalization(dtype=dt))),
        "keras RMSNormalization": ("norm", layer(
            lambda dt, d: keras.layers.RMSNormalization(dtype=dt))),
        # keras-nlp's takes no dtype argument (it computes in float32).
        "keras-nlp RMSNormalization": ("norm", layer(
            lambda dt, d: keras_nlp.layers.RMSNormalization(d))),
        "ours LayerNormalization (fused=auto)": ("norm", layer(
            lambda dt, d: kr.LayerNormalization(dtype=dt))),
        "ours LayerNormalization (fused=False)": ("norm", layer(
            lambda dt, d: kr.LayerNormalization(dtype=dt, fused=False))),
        "ours RMSNormalization (fused=auto)": ("norm", layer(
            lambda dt, d: kr.RMSNormalization(dtype=dt))),
        "x + r, keras LayerNormalization": ("add", keras_add_ln),
        "ours fused_add_norm (layer, fused=auto)": ("add", fused_add(True, "auto")),
        "ours fused_add_norm (layer, fused=False)": ("add", fused_add(True, False)),
        "ours fused_add_norm (rms, fused=auto)": ("add", fused_add(False, "auto")),
    }


BASELINE = {"norm": "keras LayerNormalization",
            "add": "x + r, keras LayerNormalization"}


def bytes_moved(kind, pass_, n, itemsize):
    """The least traffic a kernel needs: each array read or written once.

    norm forward: read x, write y (2 arrays). add forward: read x and r,
    write y and the new residual (4). Backward adds: norm, read dy and x,
    write dx (3); add, read dy, x, r and d(new residual), write dx and dr
    (6). Norm weights are negligible.
    """
    arrays = {("norm", "forward"): 2, ("norm", "forward+backward"): 5,
              ("add", "forward"): 4, ("add", "forward+backward"): 10}
    return arrays[(kind, pass_)] * n * itemsize


def make_step(fn, weights, kind, pass_, mode):
    """One pass of `fn` on `(x, r)`: eager, `tf.function` or XLA."""
    import tensorflow as tf

    def forward(x, r):
        out = fn(x, r) if kind == "add" else fn(x)
        return out[0] if isinstance(out, tuple) else out

    if pass_ == "forward":
        step = forward
    else:
        def step(x, r):
            with tf.GradientTape() as tape:
                tape.watch(x)
                if kind == "add":
                    tape.watch(r)
                y = forward(x, r)
                loss = tf.reduce_sum(tf.cast(y, tf.float32))
            sources = [x] + ([r] if kind == "add" else []) + list(weights)
            return tape.gradient(loss, sources)
    if mode == "function":
        step = tf.function(step)
    elif mode == "xla":
        step = tf.function(step, jit_compile=True)
    return step


def make_callable(fn, weights, kind, pass_, mode):
    import tensorflow as tf

    step = make_step(fn, weights, kind, pass_, mode)

    def run(x, r):
        out = step(x, r)
        leaves = tf.nest.flatten(out)
        # Block until the result exists: touch one element of each output.
        for leaf in leaves:
            if leaf is not None:
                _ = leaf.numpy().flat[0] if leaf.shape.rank == 0 else \
                    tf.reshape(leaf, [-1])[0].numpy()
    return run


def time_case(shape, dtype, mode, pass_, impls, repeats):
    import tensorflow as tf

    n = shape[0] * shape[1]
    rng = np.random.default_rng(0)
    x = tf.cast(rng.normal(size=shape).astype("float32"), dtype)
    r = tf.cast(rng.normal(size=shape).astype("float32"), dtype)
    src = np.asarray(x)
    dst = np.empty_like(src)
    runners = {}
    for name, (kind, build) in impls.items():
        fn, weights = build(dtype, shape[1])
        runner = make_callable(fn, weights, kind, pass_, mode)
        runner(x, r)  # Trace / compile / warm up.
        runner(x, r)
        runners[name] = (kind, runner)
    times = {name: [] for name in runners}
    copies = []
    for _ in range(repeats):
        start = time.perf_counter()
        np.copyto(dst, src)
        copies.append(time.perf_counter() - start)
        for name, (kind, runner) in runners.items():
            start = time.perf_counter()
            runner(x, r)
            times[name].append(time.perf_counter() - start)
    itemsize = src.dtype.itemsize
    copy_s = statistics.median(copies)
    copy_gbs = 2 * n * itemsize / copy_s / 1e9
    rows = []
    for name, samples in times.items():
        kind = runners[name][0]
        median = statistics.median(samples)
        base = statistics.median(times[BASELINE[kind]])
        gbs = bytes_moved(kind, pass_, n, itemsize) / median / 1e9
        rows.append({
            "shape": f"{shape[0]}x{shape[1]}", "dtype": dtype, "mode": mode,
            "pass": pass_, "implementation": name, "kind": kind,
            "median_ms": 1e3 * median,
            "speedup_vs_keras": base / median,
            "effective_GBps": gbs,
            "pct_of_copy_bandwidth": 100 * gbs / copy_gbs,
            "copy_GBps": copy_gbs,
            "samples_ms": [1e3 * s for s in samples],
        })
    return rows


TARGETS = """Targets (issue 3, this 2-core CPU): fused_add_norm forward+backward
>= 1.5x faster than x + r then keras LayerNormalization under XLA and >= 3x
without XLA (tf.function); float32 forward >= 50% of the copy bandwidth."""


def summarize(rows):
    lines = []
    for mode, need in (("xla", 1.5), ("function", 3.0), ("eager", 3.0)):
        for row in rows:
            if (row["implementation"] == "ours fused_add_norm (layer, fused=auto)"
                    and row["pass"] == "forward+backward"
                    and row["mode"] == mode and row["dtype"] == "float32"):
                got = row["speedup_vs_keras"]
                verdict = "met" if got >= need else f"missed ({got / need:.0%} of target)"
                lines.append(f"- fused_add_norm fwd+bwd, {mode}, {row['shape']}"
                             f" float32: {got:.2f}x vs {need}x target: {verdict}")
    for row in rows:
        if (row["implementation"] == "ours LayerNormalization (fused=auto)"
                and row["pass"] == "forward" and row["dtype"] == "float32"
                and row["mode"] == "xla"):
            pct = row["pct_of_copy_bandwidth"]
            lines.append(f"- LayerNormalization forward, xla, {row['shape']}"
                         f" float32: {pct:.0f}% of copy bandwidth vs 50% "
                         f"target: {'met' if pct >= 50 else 'missed'}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true",
                        help="one shape, float32, for a smoke run")
    parser.add_argument("--shapes", default=None,
                        help="comma list like 8192x512,16384x4096")
    parser.add_argument("--tag", default=None,
                        help="file tag (default cpu<N> or gpu)")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    shapes = SHAPES
    dtypes = DTYPES
    if args.shapes:
        shapes = tuple(tuple(int(v) for v in s.split("x"))
                       for s in args.shapes.split(","))
    if args.quick:
        shapes, dtypes = ((2048, 512),), ("float32",)
    impls = implementations()
    machine = common.machine()
    rows = []
    for shape in shapes:
        for dtype in dtypes:
            for mode in MODES:
                for pass_ in PASSES:
                    started = time.perf_counter()
                    case = time_case(shape, dtype, mode, pass_, impls,
                                     args.repeats)
                    rows.extend(case)
                    print(f"{shape} {dtype} {mode} {pass_}: "
                          f"{time.perf_counter() - started:.1f}s", flush=True)
    columns = ["shape", "dtype", "mode", "pass", "implementation",
               "median_ms", "speedup_vs_keras", "effective_GBps",
               "pct_of_copy_bandwidth"]
    tag = args.tag or common.machine_tag()
    md = (common.header(f"Normalization speed ({tag})", "benchmarks.norms",
                        argv, machine)
          + f"Medians of {args.repeats} interleaved repetitions. "
          "speedup_vs_keras: against keras LayerNormalization (norm rows) or "
          "x + r then keras LayerNormalization (add rows) in the same case. "
          "Copy bandwidth: np.copyto in the same case.\n\n"
          f"{TARGETS}\n\n{summarize(rows)}\n\n"
          + common.markdown_table(rows, columns))
    common.write(f"norms-{tag}", {"machine": machine, "rows": rows}, md)


if __name__ == "__main__":
    main()
