"""XLA's cost against depth: unrolled and scanned encoders, traced and compiled.

    python -m benchmarks.xla_depth [--depths 6 12 24 48] [--widths 32 256]

For every depth, width, stack (`unrolled`, `scanned` = `scan=True`), mode
(`graph` = plain `tf.function`, `xla` = `jit_compile=True`) and norm path
(`fused`, `composite` = `fused=False`), one subprocess builds a pre-norm
`TransformerEncoder` and an Adam training step on a batch of 8 x 16 tokens
(mean-square loss of the output), and measures:

- `first_step_s`: the first call of the step, i.e. tracing plus (under
  XLA) compiling plus one step;
- `peak_rss_gb`: the process's peak resident memory (VmHWM) after that
  first call, and `compile_rss_gb`, its rise over the resident memory just
  before it (the model and TensorFlow already loaded);
- `step_ms`: the median of later steps (at least 5, up to `--steps`, within
  `--step-seconds`).

One configuration per process, so neither compile caches nor memory carry
over. A configuration that runs past `--timeout` seconds or `--max-rss-gb`
resident is killed and recorded as such. The configurations run one after
the other, interleaved (every variant at one depth before the next depth).
`--post` adds post-norm at depth 24, d=32 (the depth study's slow case);
`--placements` sets the grid's placements (default pre-norm).

`--hlo` counts instead of timing: the XLA step's HLO instructions before
and after XLA's optimizations, and the fusions among them
(`experimental_get_compiler_ir`), to see how the compiled program grows
with depth.

Writes results/xla-depth-<machine>.json, .md and, with matplotlib (the
`bench` extra), xla-depth-<machine>.png.
"""

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import time

from benchmarks import common

FFN = {32: 64, 256: 1024}
HEADS = {32: 2, 256: 4}
VARIANTS = list(itertools.product(("unrolled", "scanned"), ("graph", "xla"),
                                  ("fused", "composite")))


def _status_kb(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def build_step(config):
    """The configuration's encoder and its Adam training step (a
    `tf.function`, under XLA when `mode` is `xla`), with its input batch;
    returns `(step, x, model, build_s)`."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np
    import tensorflow as tf

    import keras_resnorm as kr

    d, depth = config["width"], config["depth"]
    keras.utils.set_random_seed(0)
    start = time.perf_counter()
    encoder = kr.TransformerEncoder(
        num_layers=depth, num_heads=HEADS.get(d, 2),
        intermediate_dim=FFN.get(d, 4 * d), placement=config["placement"],
        fused="auto" if config["norm"] == "fused" else False,
        scan=config["stack"] == "scanned")
    inputs = keras.Input((config["length"], d))
    model = keras.Model(inputs, encoder(inputs))
    optimizer = keras.optimizers.Adam(1e-3)
    optimizer.build(model.trainable_variables)
    build_s = time.perf_counter() - start
    x = tf.constant(np.random.default_rng(0).normal(
        size=(config["batch"], config["length"], d)), tf.float32)

    @tf.function(jit_compile=config["mode"] == "xla")
    def step(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(x, training=True)))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return step, x, model, build_s


def measure(config):
    """Run one configuration in this process; return its measurements."""
    step, x, model, build_s = build_step(config)
    if config.get("hlo"):
        return hlo_counts(step, x)
    rss_before = _status_kb("self", "VmRSS")
    start = time.perf_counter()
    loss = float(step(x))
    first = time.perf_counter() - start
    peak = _status_kb("self", "VmHWM")
    times = []
    deadline = time.perf_counter() + config["step_seconds"]
    while len(times) < 5 or (len(times) < config["steps"]
                             and time.perf_counter() < deadline):
        start = time.perf_counter()
        step(x).numpy()
        times.append(time.perf_counter() - start)
    return {
        "build_s": build_s, "first_step_s": first,
        "peak_rss_gb": peak / 2**20,
        "compile_rss_gb": (peak - rss_before) / 2**20,
        "step_ms": 1e3 * statistics.median(times),
        "step_samples_ms": [1e3 * t for t in times],
        "parameters": model.count_params(), "first_loss": loss,
    }


def hlo_counts(step, x):
    """Instructions of the XLA step before and after XLA's optimizations
    (`experimental_get_compiler_ir`), with the fusions among them."""
    import re

    compiler_ir = step.experimental_get_compiler_ir(x)
    before = compiler_ir(stage="hlo")
    after = compiler_ir(stage="optimized_hlo")

    def instructions(text):
        return len(re.findall(r"^\s*(ROOT )?%[\w.\-]+ = ", text, re.M))

    return {"hlo_instructions": instructions(before),
            "optimized_instructions": instructions(after),
            "fusions": len(re.findall(r"\bfusion\(", after))}


def run_one(config, timeout, max_rss_gb, xla_flags=""):
    """`measure(config)` in a subprocess, watched for time and memory."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    if xla_flags:
        env["XLA_FLAGS"] = xla_flags
    child = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.xla_depth", "--one",
         json.dumps(config)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=env)
    start, watched_peak, killed = time.perf_counter(), 0, None
    while child.poll() is None:
        rss = _status_kb(child.pid, "VmRSS") or 0
        watched_peak = max(watched_peak, rss)
        if rss > max_rss_gb * 2**20:
            killed = f"over {max_rss_gb} GB resident"
        elif time.perf_counter() - start > timeout:
            killed = f"over {timeout} s"
        if killed:
            child.kill()
            break
        time.sleep(0.2)
    out, err = child.communicate()
    row = dict(config, wall_s=time.perf_counter() - start)
    if killed:
        row.update(status="killed: " + killed,
                   peak_rss_gb=watched_peak / 2**20)
    elif child.returncode != 0:
        row.update(status=f"failed ({child.returncode})",
                   error=err.strip().splitlines()[-1:])
    else:
        row.update(json.loads(out.strip().splitlines()[-1]), status="ok")
    return row


def _ratio(rows, key, where_a, where_b):
    a = [r for r in rows if all(r[k] == v for k, v in where_a.items())]
    b = [r for r in rows if all(r[k] == v for k, v in where_b.items())]
    if a and b and a[0].get(key) and b[0].get(key):
        return a[0][key] / b[0][key]
    return None


def targets(rows, widths):
    """The issue's targets, judged on the scanned XLA rows (fused norms)."""
    lines = []
    for d in widths:
        scanned = {r["depth"]: r for r in rows if r["width"] == d
                   and r["stack"] == "scanned" and r["mode"] == "xla"
                   and r["norm"] == "fused" and r["placement"] == "pre"
                   and r["status"] == "ok"}
        if not scanned:
            continue
        lo, hi = min(scanned), max(scanned)
        growth = scanned[hi]["first_step_s"] / scanned[lo]["first_step_s"]
        lines.append(
            f"- d={d}: scanned XLA first step at depth {hi} is "
            f"{growth:.2f}x depth {lo}'s (target at most 2x: "
            f"{'met' if growth <= 2 else 'missed'}); peak resident "
            f"{scanned[hi]['peak_rss_gb']:.2f} GB (target under 3 GB: "
            f"{'met' if scanned[hi]['peak_rss_gb'] < 3 else 'missed'}).")
        for norm in ("fused", "composite"):
            slower = []
            for depth in sorted(scanned):
                pick = dict(width=d, depth=depth, mode="xla", norm=norm,
                            placement="pre")
                ratio = _ratio(rows, "step_ms", dict(pick, stack="scanned"),
                               dict(pick, stack="unrolled"))
                if ratio is None:
                    slower.append(f"{depth}: no unrolled number")
                elif ratio > 1:
                    slower.append(f"{depth}: {ratio:.2f}x")
            lines.append(
                f"- d={d}, {norm}: scanned XLA step no slower than unrolled "
                f"XLA at every depth: "
                + ("met" if not slower else "missed (" + ", ".join(slower)
                   + ")") + ".")
    return "\n".join(lines)


def plot(rows, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    widths = sorted({r["width"] for r in rows})
    fig, axes = plt.subplots(len(widths), 3, figsize=(15, 4 * len(widths)),
                             squeeze=False)
    for row_axes, d in zip(axes, widths):
        for ax, key, label in zip(
                row_axes, ("first_step_s", "peak_rss_gb", "step_ms"),
                ("first step: trace + compile (s)", "peak resident (GB)",
                 "train step (ms, median)")):
            for stack, mode, norm in VARIANTS:
                pts = sorted((r["depth"], r[key]) for r in rows
                             if r["width"] == d and r["stack"] == stack
                             and r["mode"] == mode and r["norm"] == norm
                             and r["placement"] == "pre" and r.get(key))
                if pts:
                    ax.plot(*zip(*pts), marker="o",
                            linestyle="-" if stack == "scanned" else "--",
                            label=f"{stack} {mode} {norm}")
            ax.set_xlabel("depth (blocks)")
            ax.set_title(f"d={d}: {label}")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
        row_axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def render(payload, argv):
    rows = payload["rows"]
    settings = payload["settings"]
    columns = ["depth", "width", "placement", "stack", "mode", "norm",
               "status"] + (
        ["hlo_instructions", "optimized_instructions", "fusions"]
        if settings.get("hlo") else
        ["first_step_s", "peak_rss_gb", "compile_rss_gb", "step_ms",
         "parameters"])
    md = (common.header("XLA's cost against depth: unrolled and scanned "
                        f"encoders ({payload['tag']})", "benchmarks.xla_depth",
                        argv, payload["machine"])
          + f"`TransformerEncoder`, Adam step on {settings['batch']}"
          f" x {settings['length']} tokens, one configuration per process; "
          f"XLA_FLAGS: `{settings['xla_flags'] or '(none)'}`; "
          f"{settings['others']}. Wall time {payload['wall_minutes']:.1f} "
          "min.\n\n" + common.markdown_table(rows, columns) + "\n")
    if not settings.get("hlo"):
        md += ("\n## Targets (issue 21)\n\n"
               + targets(rows, settings["widths"]) + "\n")
    return md


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--depths", type=int, nargs="+",
                        default=[6, 12, 24, 48])
    parser.add_argument("--widths", type=int, nargs="+", default=[32, 256])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=16)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--step-seconds", type=float, default=5.0)
    parser.add_argument("--timeout", type=float, default=420.0)
    parser.add_argument("--max-rss-gb", type=float, default=16.0)
    parser.add_argument("--placements", nargs="+", default=["pre"])
    parser.add_argument("--post", action="store_true",
                        help="also post-norm at depth 24, d=32")
    parser.add_argument("--only", nargs="+", default=[],
                        help="keep the variants naming all of these words "
                        "(e.g. unrolled xla)")
    parser.add_argument("--xla-flags", default="",
                        help="XLA_FLAGS for every configuration's process")
    parser.add_argument("--hlo", action="store_true",
                        help="count the XLA step's HLO instructions before "
                        "and after optimization instead of timing")
    parser.add_argument("--name", default=None)
    parser.add_argument("--others", default="nothing else ran",
                        help="what else ran on the machine, for the record")
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure(json.loads(args.one))))
        return
    base = dict(batch=args.batch, length=args.length, steps=args.steps,
                step_seconds=args.step_seconds, hlo=args.hlo)
    configs = [dict(base, depth=depth, width=d, placement=p, stack=s,
                    mode=m, norm=n)
               for depth in args.depths for d in args.widths
               for p in args.placements for s, m, n in VARIANTS]
    if args.post:
        configs += [dict(base, depth=24, width=32, placement="post", stack=s,
                         mode=m, norm=n) for s, m, n in VARIANTS]
    configs = [c for c in configs if set(args.only) <= {
        c["stack"], c["mode"], c["norm"]}]
    import tensorflow as tf  # noqa: F401  (machine description)

    machine, tag = common.machine(), common.machine_tag()
    name = args.name or f"xla-depth-{tag}"
    rows, start = [], time.perf_counter()
    settings = dict(vars(args), others=args.others)
    settings.pop("one")
    for k, config in enumerate(configs, 1):
        row = run_one(config, args.timeout, args.max_rss_gb, args.xla_flags)
        rows.append(row)
        shown = {k: row[k] for k in (
            "first_step_s", "step_ms", "peak_rss_gb", "hlo_instructions",
            "optimized_instructions", "fusions") if k in row}
        print(f"[{k}/{len(configs)}] depth {row['depth']} d={row['width']} "
              f"{row['placement']} {row['stack']} {row['mode']} "
              f"{row['norm']}: {row['status']}, {shown}", flush=True)
        payload = dict(machine=machine, tag=tag, settings=settings,
                       rows=rows,
                       wall_minutes=(time.perf_counter() - start) / 60)
        # Rewritten after every configuration: a kill loses one row.
        common.write(name, payload, render(payload, argv), echo=False)
    png = None if args.hlo else plot(
        rows, os.path.join(common.RESULTS, name + ".png"))
    print(render(payload, argv))
    print(f"wrote results/{name}.json, .md" + (", .png" if png else ""))


if __name__ == "__main__":
    main()
