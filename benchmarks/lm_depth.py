"""The article's claims where they were made: causal language models.

    python -m benchmarks.lm_depth --resume
    python -m benchmarks.lm_depth --from-json benchmarks/results/lm-depth.json

Trains byte-level causal language models (no position embedding) on the
Python standard library's own sources, the corpus and whole-file split of
`examples/byte_lm.py`, scored in bits per byte on held-out files:

- the grid: every config (`benchmarks.depth.lm.CONFIGS`: post, pre,
  sandwich, deepnorm, rezero, layerscale, hyper, mhc and none with
  LayerNorm; pre with RMSNorm and DyT; keras-hub's TransformerDecoder
  stack as Pre-LN and Post-LN) at every depth, at the base learning rate
  with warm-up;
- a learning-rate sweep at `--sweep-depth`, warm-up on for the sweep's
  configs and off too for post, pre and keras-hub's;
- every seed of every config at `--seed-depths` (the noise floor every
  verdict is held against); one seed elsewhere.

Each run: Adam, a linear warm-up over the first tenth (or none), then
cosine decay to a tenth of the peak; the same batches for every config
under one seed. Recorded per run: held-out bits per byte, how it ended
(converged; stalled: no better than a byte-frequency model + 0.1;
diverged: a non-finite loss), the training loss every LOSS_EVERY steps,
per-layer gradient norm and residual-stream RMS at the first and last
step, the loss rise when each layer is skipped at the end, for HC/mHC the
mixing matrices' gains, and step time and tokens per second.

One (config, depth) model at a time, shallowest first, its step traced
once for all its runs. Results are rewritten after every run, so a kill
loses one run; `--resume` runs only the missing ones (same settings), and
`--budget-minutes` starts no run after the budget: the study takes about
four hours here and is meant to be resumed across sittings. Writes
`benchmarks/results/<name>.{json,md}` and PNG plots (matplotlib, the
`bench` extra), TensorBoard logs under `--logdir`.
"""

import argparse
import os
import sys
import time

from benchmarks.depth.lm import CONFIGS

# Flags that change what a run measures: a resumed study must share them.
SETTINGS = ("steps", "batch_size", "context", "d_model", "heads",
            "expansion_ff", "streams", "learning_rate", "eval_bytes",
            "scan_from", "xla", "corpus_dir")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.lm_depth")
    parser.add_argument("--from-json", metavar="FILE",
                        help="no training: redo the tables, claims and "
                             "plots from a study's JSON")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS),
                        choices=list(CONFIGS))
    parser.add_argument("--depths", type=int, nargs="+",
                        default=[6, 12, 24, 48])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--seed-depths", type=int, nargs="*", default=[6],
                        help="depths where every config runs every seed "
                             "(elsewhere: the first seed)")
    parser.add_argument("--learning-rate", type=float, default=1e-3,
                        help="the grid's peak learning rate")
    parser.add_argument("--sweep-depth", type=int, default=6)
    parser.add_argument("--sweep-lrs", type=float, nargs="*",
                        default=[3e-4, 1e-3, 3e-3, 1e-2, 3e-2])
    parser.add_argument("--sweep-configs", nargs="*",
                        default=["post", "pre", "sandwich", "deepnorm",
                                 "rezero", "layerscale", "hyper", "mhc",
                                 "pre-dyt", "hub-pre", "hub-post"],
                        choices=list(CONFIGS))
    parser.add_argument("--no-warmup-configs", nargs="*",
                        default=["post", "pre", "hub-pre", "hub-post"],
                        choices=list(CONFIGS),
                        help="sweep configs also run without warm-up")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--context", type=int, default=64)
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--expansion-ff", type=int, default=4,
                        help="feed-forward width over d_model")
    parser.add_argument("--streams", type=int, default=4,
                        help="HC/mHC residual streams")
    parser.add_argument("--eval-bytes", type=int, default=8192,
                        help="held-out bytes kept from each test file")
    parser.add_argument("--eval-batch", type=int, default=256)
    parser.add_argument("--diagnostic-batch", type=int, default=32)
    parser.add_argument("--scan-from", type=int, default=12,
                        help="our stacks of this depth or deeper are "
                             "scanned (one traced block at any depth; "
                             "measured here, pre-norm: 56 ms a step "
                             "unrolled against 74 scanned at depth 6, "
                             "equal at 12, 398 against 342 at 48); "
                             "keras-hub's is always unrolled")
    parser.add_argument("--xla", action=argparse.BooleanOptionalAction,
                        default=False)
    parser.add_argument("--corpus-dir", default=None,
                        help="a folder of *.py files (default: this "
                             "Python's standard library)")
    parser.add_argument("--name", default="lm-depth")
    parser.add_argument("--logdir", default=os.path.join("runs", "lm-depth"))
    parser.add_argument("--budget-minutes", type=float, default=None,
                        help="start no new run after this")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--speed", action="store_true",
                        help="no study: ours against keras-hub's decoder "
                             "stack in training steps per second at each "
                             "of --depths, interleaved in one process "
                             "(results/<name>-speed.{json,md})")
    parser.add_argument("--speed-rounds", type=int, default=7)
    parser.add_argument("--others", default="nothing else ran",
                        help="what else ran on the machine meanwhile")
    args = parser.parse_args(argv)
    for name in ("steps", "batch_size", "context", "d_model", "heads",
                 "expansion_ff", "streams", "eval_bytes", "eval_batch",
                 "diagnostic_batch", "speed_rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be positive. "
                         f"Received: {getattr(args, name)}")
    if args.d_model % args.heads:
        parser.error(f"--d-model must be a multiple of --heads. Received: "
                     f"{args.d_model} and {args.heads}")
    for lr in [args.learning_rate] + args.sweep_lrs:
        if not lr > 0:
            parser.error(f"learning rates must be positive. Received: {lr}")
    return args


def plan(args):
    """Every run as (config, depth, lr, warmup, seed), grouped by (config,
    depth), shallowest depth first."""
    runs = []
    for depth in sorted(set(args.depths) | {args.sweep_depth}):
        for config in args.configs:
            these = []
            if depth in args.depths:
                seeds = (args.seeds if depth in args.seed_depths
                         else args.seeds[:1])
                these += [(args.learning_rate, "on", s) for s in seeds]
            if depth == args.sweep_depth and config in args.sweep_configs:
                warmups = ["on"] + (["off"] if config in
                                    args.no_warmup_configs else [])
                these += [(lr, w, args.seeds[0]) for lr in args.sweep_lrs
                          for w in warmups]
            for lr, warmup, seed in dict.fromkeys(these):
                runs.append((config, depth, lr, warmup, seed))
    return runs


def key(run):
    return (run["config"], run["depth"], run["lr"], run["warmup"],
            run["seed"])


def write(args, argv, machine, identity, runs, planned, started, previous,
          finished):
    from benchmarks import common
    from benchmarks.depth import lm_report

    earlier = previous["invocations"] if previous else []
    this = {"command": common.command("benchmarks.lm_depth", argv),
            "others": args.others, "wall_seconds": time.time() - started,
            "runs": len(runs) - sum(i["runs"] for i in earlier)}
    payload = {
        "machine": machine, "argv": list(argv), "corpus": identity,
        "settings": {k: v for k, v in vars(args).items()},
        "planned_runs": len(planned),
        "missing": [list(p) for p in planned
                    if p not in {key(r) for r in runs}],
        "invocations": earlier + [this],
        "wall_seconds": sum(i["wall_seconds"] for i in earlier)
        + this["wall_seconds"], "finished": finished, "runs": runs}
    return publish(payload, args.name, plots=True)


def publish(payload, name, plots):
    from benchmarks import common
    from benchmarks.depth import lm_report

    runs, settings = payload["runs"], payload["settings"]
    unigram = payload["corpus"]["unigram_bits_per_byte"]
    rows = lm_report.summarize(runs, settings["learning_rate"])
    table = lm_report.claims(runs, settings, unigram)
    peer = lm_report.peers(runs, settings["learning_rate"])
    base = os.path.join(common.RESULTS, name)
    os.makedirs(common.RESULTS, exist_ok=True)
    paths = lm_report.plot(runs, settings, base) if plots and runs else []
    payload.update(summary=rows, claims=table, peers=peer,
                   noise_floor=lm_report.noise_floor(runs),
                   plots=[os.path.basename(p) for p in paths])
    corpus = payload["corpus"]
    done = len(runs)
    markdown = (
        common.header("Causal LM depth study", "benchmarks.lm_depth",
                      payload["argv"], payload["machine"])
        + f"Corpus: {corpus['root']} (Python {corpus['python']}), "
        f"{corpus['file_count']['train']} training files "
        f"({corpus['bytes']['train']:,} bytes), held out: the first "
        f"{corpus['eval_bytes_per_file']:,} bytes of each of "
        f"{corpus['file_count']['test']} test files "
        f"({corpus['evaluated_bytes']:,} bytes scored); sha256 "
        f"{corpus['sha256'][:16]}. A byte-frequency model scores "
        f"{unigram:.3f} bits/byte there.\n\n"
        f"Model: d={settings['d_model']}, {settings['heads']} heads, "
        f"feed-forward {settings['expansion_ff'] * settings['d_model']}, "
        f"context {settings['context']} bytes, batch "
        f"{settings['batch_size']}, {settings['steps']} steps, Adam, peak "
        f"learning rate {settings['learning_rate']:g} (grid).\n\n"
        f"{done} of {payload['planned_runs']} planned runs"
        + ("" if payload["finished"] else
           " (not finished: resume with --resume)")
        + f"; {payload['wall_seconds'] / 3600:.2f} h of training so far.\n\n"
        + "".join(f"- `{x['command']}`: {x['runs']} runs in "
                  f"{x['wall_seconds'] / 60:.1f} min (also running: "
                  f"{x['others']})\n" for x in payload["invocations"])
        + "\n## Claims\n\n"
        + common.markdown_table(table, ["source", "claim", "paper's setup",
                                        "ours", "noise floor", "verdict"])
        + "\n\n## Ours against keras-hub\n\n"
        + (common.markdown_table(peer, list(peer[0])) if peer else
           "Not measured yet.")
        + "\n\n## Every cell\n\n"
        "Held-out bits per byte: mean over seeds (range when more than "
        "one). 'last-tenth gain': how much the smoothed training loss fell "
        "over the run's last tenth (the calibration's flatness measure).\n\n"
        + common.markdown_table(rows, list(rows[0]) if rows else ["config"])
        + "\n\n" + "".join(f"![{os.path.basename(p)}]"
                           f"({os.path.basename(p)})\n" for p in paths))
    common.write(name, payload, markdown, echo=False)
    return payload


SPEED_PAIRS = (("pre", "hub-pre"), ("post", "hub-post"))


def speed(args, argv):
    """Ours against keras-hub's at each depth, interleaved (see --speed)."""
    from benchmarks import common
    from benchmarks.depth import lm

    corpus = lm.load(args)
    rows, raw = [], {}
    for depth in args.depths:
        # Where the study scans ours, ours unrolled is timed too: a user
        # picks either, and keras-hub's stack has only the unrolled form.
        pairs = [(ours + suffix, hub) for ours, hub in SPEED_PAIRS
                 for suffix in ("", " unrolled")
                 if not suffix or depth >= args.scan_from]
        configs = list(dict.fromkeys(c for pair in pairs for c in pair))
        timed = lm.interleaved_speed(args, corpus, depth, configs,
                                     rounds=args.speed_rounds)
        raw[str(depth)] = timed
        for ours, hub in pairs:
            rows.append({
                "depth": depth, "ours": ours + (" (scanned)" if timed[ours][
                    "scan"] else ""), "keras-hub": hub,
                "ours ms/step": timed[ours]["step_ms"],
                "keras-hub ms/step": timed[hub]["step_ms"],
                "ours tokens/s": timed[ours]["tokens_per_s"],
                "keras-hub tokens/s": timed[hub]["tokens_per_s"],
                "ours / keras-hub tokens/s": timed[ours]["tokens_per_s"]
                / timed[hub]["tokens_per_s"]})
        print(common.markdown_table(rows[-len(pairs):], list(rows[0])),
              flush=True)
    machine = common.machine()
    markdown = (
        common.header("Causal LM training speed: ours against keras-hub",
                      "benchmarks.lm_depth", argv, machine)
        + f"Plain Adam training steps (no diagnostics) of the study's "
        f"models (d={args.d_model}, {args.heads} heads, feed-forward "
        f"{args.expansion_ff * args.d_model}, batch {args.batch_size} x "
        f"{args.context} bytes, XLA {'on' if args.xla else 'off'}): "
        f"{args.speed_rounds} rounds of 20 steps, the models in turn "
        "in each round on the same batches, after a step that traces each; "
        "medians over rounds. Ours is scanned from depth "
        f"{args.scan_from} as in the study, and timed unrolled there too; "
        "keras-hub's stack is unrolled. Also running: "
        f"{args.others}.\n\n"
        + common.markdown_table(rows, list(rows[0])) + "\n")
    payload = {"machine": machine, "argv": list(argv),
               "settings": {k: v for k, v in vars(args).items()},
               "others": args.others, "rows": rows,
               "rounds_ms": {d: {c: t["rounds"] for c, t in v.items()}
                             for d, v in raw.items()}}
    common.write(args.name + "-speed", payload, markdown, echo=False)
    return payload


def main(argv=None):
    import json

    from benchmarks import common
    from benchmarks.depth import lm
    from benchmarks.depth.results import load_previous

    if argv is None:
        argv = sys.argv[1:]
    args = parse_args(argv)
    if args.from_json:
        with open(args.from_json) as f:
            return publish(json.load(f), args.name, plots=True)
    if args.speed:
        return speed(args, argv)
    previous = load_previous(args, SETTINGS) if args.resume else None
    corpus = lm.load(args)
    machine = common.machine()
    runs = list(previous["runs"]) if previous else []
    done = {key(r) for r in runs}
    planned = plan(args)
    started = time.time()
    invocation = len(previous["invocations"]) if previous else 0
    cell = None
    for index, item in enumerate(planned):
        if item in done:
            continue
        if args.budget_minutes is not None and (
                time.time() - started > 60 * args.budget_minutes):
            break
        config, depth, lr, warmup, seed = item
        if cell is None or (cell.config, cell.depth) != (config, depth):
            cell = None
            seeds = sorted({p[4] for p in planned
                            if p[:2] == (config, depth)})
            cell = lm.LMCell(args, corpus, config, depth, seeds)
        name = f"{config}-d{depth}-lr{lr:g}-w{warmup}-s{seed}"
        result = lm.run(cell, lr, warmup, seed,
                        os.path.join(args.logdir, name))
        result["invocation"] = invocation
        runs.append(result)
        print(f"[{index + 1}/{len(planned)}] {name}: held-out "
              f"{result['held_out_bits']:.3f} bits/byte ({result['end']}), "
              f"{result['step_ms']:.0f} ms/step, "
              f"{time.time() - started:.0f} s so far", flush=True)
        write(args, argv, machine, corpus["identity"], runs, planned,
              started, previous, finished=False)
    finished = {key(r) for r in runs} >= set(planned)
    return write(args, argv, machine, corpus["identity"], runs, planned,
                 started, previous, finished)


if __name__ == "__main__":
    main()
