"""`python -m benchmarks.depth`: the study's flags and its run loop."""

import argparse
import os
import sys
import time

from benchmarks.depth.results import load_previous, rerender, write
from benchmarks.depth.study import PLACEMENTS, Cell, load, run


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
