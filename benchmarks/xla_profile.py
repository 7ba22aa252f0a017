"""Where an XLA step's time goes: per-instruction times from the profiler.

    python -m benchmarks.xla_profile [--cases encoder add_norm]

Each case compares two variants in one process, with XLA's per-thunk
trace events on (`XLA_FLAGS=--xla_cpu_enable_xprof_traceme=true`). Both
steps are warmed up and timed unprofiled, interleaved (one call of each in
turn, `--steps` rounds, medians); then each runs `--steps` calls under its
own `tf.profiler` session, and every trace event named after an instruction
of that step's optimized HLO (`experimental_get_compiler_ir`) is summed per
step. Container instructions (`while`, `conditional`, `call`) are left out,
since their bodies' instructions are counted themselves. The instructions are
grouped by what they do, read from the optimized HLO:

- `matmul`: dots and fusions around a dot;
- `loop: zero-filled buffers`: the zero-initialized buffers that a
  `tf.while_loop`'s gradient stacks its per-iteration values into
  (`EmptyTensorList` lowered by XLA);
- `loop: slice / update`: dynamic slices out of, and updates into, those
  buffers and the stacked weights;
- `copy`, `reduction`, `transpose` and `elementwise` (the other fusions).

`--processes N` repeats every comparison in N fresh processes and reports
each one's ratio of unprofiled medians, with their median and range: on
this machine one process's ratio is not the kernel's (memory that the
allocator faults in afresh differs from process to process, and
`page_faults_per_step` counts it during the unprofiled timing).

The profiled total is not the unprofiled median: the profiler adds its own
cost, and dispatch and waiting between instructions are not in it. Read the
shares and the differences between variants, not the absolute times.

Cases:

- `encoder`: the Adam step of `benchmarks.xla_depth` (pre-norm, fused norms,
  XLA), unrolled and scanned, at `--depth` and `--width`;
- `add_norm`: forward and backward of residual add + LayerNorm under XLA at
  each of `--shapes`, our fused kernel and `x + r` then Keras's
  `LayerNormalization` (the `benchmarks.norms` implementations).

Writes results/xla-profile-<machine>.json and .md.
"""

import argparse
import collections
import glob
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time

from benchmarks import common

TRACE_FLAG = "--xla_cpu_enable_xprof_traceme=true"
CONTAINERS = {"while", "conditional", "call", "parameter", "tuple",
              "get-tuple-element", "constant", "bitcast"}
NORM_IMPLS = {"fused": "ours fused_add_norm (layer, fused=auto)",
              "keras": "x + r, keras LayerNormalization"}
INSTRUCTION = re.compile(
    r"^\s*(?:ROOT )?%(?P<name>[\w.\-]+) = (?P<shape>\(.*?\)|\S+) "
    r"(?P<opcode>[a-z\-]+)\((?P<rest>.*)$", re.M)


def instructions(hlo):
    """name -> (opcode, shape, TF op type) for every instruction."""
    table = {}
    for m in INSTRUCTION.finditer(hlo):
        op_type = re.search(r'op_type="(\w+)"', m.group("rest"))
        table[m.group("name")] = (m.group("opcode"), m.group("shape"),
                                  op_type.group(1) if op_type else "")
    return table


def category(name, opcode, op_type):
    """What an optimized-HLO instruction does, from its name and opcode."""
    if op_type == "EmptyTensorList":
        return "loop: zero-filled buffers"
    if "dynamic-update-slice" in name or "dynamic-slice" in name:
        return "loop: slice / update"
    if opcode == "dot" or "dot" in name or op_type in (
            "MatMul", "BatchMatMulV2", "Einsum"):
        return "matmul"
    if opcode == "copy" or name.startswith("copy"):
        return "copy"
    if "reduce" in name or opcode in ("reduce", "reduce-window") \
            or op_type in ("Sum", "Mean", "Max", "BiasAddGrad"):
        return "reduction"
    if "transpose" in name or opcode == "transpose":
        return "transpose"
    return "elementwise"


def traced_ms(logdir, table, steps):
    """Milliseconds per step of each instruction in `table`, from the
    profile written under `logdir`."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    [path] = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"),
                       recursive=True)
    space = xplane_pb2.XSpace()
    with open(path, "rb") as f:
        space.ParseFromString(f.read())
    totals = collections.Counter()
    for plane in space.planes:
        names = {k: v.name for k, v in plane.event_metadata.items()}
        for line in plane.lines:
            for event in line.events:
                name = names.get(event.metadata_id)
                if name in table and table[name][0] not in CONTAINERS:
                    totals[name] += event.duration_ps / 1e9 / steps
    return totals


def _caller(step, args):
    import tensorflow as tf

    def call():
        for leaf in tf.nest.flatten(step(*args)):
            if leaf is not None:
                tf.reshape(leaf, [-1])[0].numpy()
    return call


def compare(steps_by_variant, steps):
    """Median unprofiled step time of each variant, interleaved (one call of
    each in turn), then each variant's own profile."""
    import tensorflow as tf

    calls = {v: _caller(step, args)
             for v, (step, args) in steps_by_variant.items()}
    tables = {v: instructions(step.experimental_get_compiler_ir(*args)(
        stage="optimized_hlo")) for v, (step, args) in steps_by_variant.items()}
    for call in calls.values():
        for _ in range(3):
            call()
    times = {v: [] for v in calls}
    faults = collections.Counter()
    for _ in range(steps):
        for v, call in calls.items():
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            start = time.perf_counter()
            call()
            times[v].append(time.perf_counter() - start)
            faults[v] += (resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                          - before)
    results = {}
    for v, call in calls.items():
        with tempfile.TemporaryDirectory() as logdir:
            tf.profiler.experimental.start(logdir)
            for _ in range(steps):
                call()
            tf.profiler.experimental.stop()
            per_name = traced_ms(logdir, tables[v], steps)
        groups = collections.Counter()
        top = []
        for name, ms in per_name.most_common():
            opcode, shape, op_type = tables[v][name]
            group = category(name, opcode, op_type)
            groups[group] += ms
            top.append(dict(instruction=name, group=group, shape=shape,
                            ms=ms))
        results[v] = {"step_ms": 1e3 * statistics.median(times[v]),
                      "page_faults_per_step": faults[v] / steps,
                      "profiled_ms": sum(groups.values()),
                      "groups_ms": dict(groups.most_common()),
                      "top": top[:12], "instructions": len(tables[v])}
    return results


def run_case(case):
    """Profile one comparison in this process: `{variant: results}`."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if case["kind"] == "encoder":
        from benchmarks import xla_depth

        variants = {}
        for stack in ("unrolled", "scanned"):
            step, x, _, _ = xla_depth.build_step(dict(
                depth=case["depth"], width=case["width"], stack=stack,
                placement="pre", mode="xla", norm="fused", batch=8,
                length=16))
            variants[stack] = (step, (x,))
        return compare(variants, case["steps"])
    import numpy as np
    import tensorflow as tf

    from benchmarks import norms

    rows, depth = case["shape"]
    impls = norms.implementations()
    rng = np.random.default_rng(0)
    x, r = (tf.constant(rng.normal(size=(rows, depth)).astype("float32"))
            for _ in range(2))
    variants = {}
    for variant, impl in NORM_IMPLS.items():
        kind, build = impls[impl]
        fn, weights = build("float32", depth)
        variants[variant] = (norms.make_step(
            fn, weights, kind, "forward+backward", "xla"), (x, r))
    return compare(variants, case["steps"])


def run_one(case, timeout):
    """`run_case(case)` in a subprocess with XLA's trace events on; one row
    per variant."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
               XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") + " "
                          + TRACE_FLAG).strip())
    child = subprocess.run(
        [sys.executable, "-m", "benchmarks.xla_profile", "--one",
         json.dumps(case)], capture_output=True, text=True, env=env,
        timeout=timeout)
    if child.returncode != 0:
        tail = child.stderr.strip().splitlines()[-1:]
        return [dict(case, status=f"failed ({child.returncode}): {tail}")]
    results = json.loads(child.stdout.strip().splitlines()[-1])
    return [dict(case, variant=v, **r, status="ok")
            for v, r in results.items()]


def label(row):
    if row["kind"] == "encoder":
        case = f"encoder depth {row['depth']} d={row['width']}"
    else:
        case = f"add+norm {row['shape'][0]}x{row['shape'][1]}"
    return f"{case}, {row.get('variant', '?')}"


RATIOS = {"encoder": ("scanned", "unrolled", "scanned / unrolled step"),
          "add_norm": ("keras", "fused", "Keras / fused step (speedup)")}


def ratios(rows):
    """Each comparison's ratio of unprofiled medians, per process, with
    their median and range."""
    lines = []
    cases = {}
    for r in rows:
        key = label(r).rsplit(", ", 1)[0]
        cases.setdefault((key, r["kind"]), {}).setdefault(
            r["process"], {})[r["variant"]] = r["step_ms"]
    for (key, kind), by_process in cases.items():
        num, den, what = RATIOS[kind]
        values = [v[num] / v[den] for v in by_process.values()
                  if num in v and den in v]
        if values:
            lines.append(
                f"- {key}, {what}: median {statistics.median(values):.2f}x, "
                f"range {min(values):.2f}-{max(values):.2f}x over "
                f"{len(values)} process(es): "
                + ", ".join(f"{v:.2f}" for v in values))
    return "\n".join(lines)


def render(payload, argv):
    rows = [r for r in payload["rows"] if r["status"] == "ok"]
    groups = sorted({g for r in rows for g in r["groups_ms"]},
                    key=lambda g: -max(r["groups_ms"].get(g, 0)
                                       for r in rows))
    table = []
    for r in rows:
        line = {"case": label(r), "process": r["process"],
                "step_ms": r["step_ms"], "profiled_ms": r["profiled_ms"],
                "page_faults_per_step": r["page_faults_per_step"]}
        for g in groups:
            ms = r["groups_ms"].get(g, 0.0)
            line[g] = f"{ms:.2f} ({100 * ms / r['profiled_ms']:.0f}%)"
        table.append(line)
    md = (common.header(f"Where XLA's time goes ({payload['tag']})",
                        "benchmarks.xla_profile", argv, payload["machine"])
          + "Milliseconds per step of the optimized HLO's instructions, "
          "from `tf.profiler` with XLA's per-thunk trace events, grouped by "
          "what they do (see the module docstring); `step_ms` is the "
          "unprofiled median. "
          "Allocator environment: "
          f"`{payload['settings'].get('malloc_env') or '(glibc defaults)'}`; "
          f"{payload['settings']['others']}.\n\n"
          + common.markdown_table(table, ["case", "process", "step_ms",
                                          "profiled_ms",
                                          "page_faults_per_step"]
                                  + groups) + "\n\n" + ratios(rows) + "\n")
    for r in rows:
        if r["process"]:
            continue
        md += (f"\n### {label(r)}: the largest instructions\n\n"
               + common.markdown_table(
                   r["top"], ["instruction", "group", "shape", "ms"]) + "\n")
    failed = [r for r in payload["rows"] if r["status"] != "ok"]
    if failed:
        md += "\nFailed: " + "; ".join(
            f"{label(r)}: {r['status']}" for r in failed) + "\n"
    return md


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--cases", nargs="+", default=["encoder", "add_norm"],
                        choices=["encoder", "add_norm"])
    parser.add_argument("--depth", type=int, default=6)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--shapes", nargs="+", default=["8192x512",
                                                        "4096x4096"])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--processes", type=int, default=1,
                        help="repeat each comparison in this many fresh "
                        "processes (their ratios are summarized)")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--name", default=None)
    parser.add_argument("--others", default="nothing else ran",
                        help="what else ran on the machine, for the record")
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(run_case(json.loads(args.one))))
        return
    cases = []
    if "encoder" in args.cases:
        cases.append(dict(kind="encoder", depth=args.depth, width=args.width,
                          steps=args.steps))
    if "add_norm" in args.cases:
        cases += [dict(kind="add_norm", steps=args.steps,
                       shape=[int(v) for v in text.split("x")])
                  for text in args.shapes]
    import tensorflow as tf  # noqa: F401  (machine description)

    machine, tag = common.machine(), common.machine_tag()
    name = args.name or f"xla-profile-{tag}"
    settings = dict(vars(args))
    settings.pop("one")
    # glibc's allocator settings change how often XLA's temporaries are
    # faulted in afresh (see the README): recorded with the results.
    settings["malloc_env"] = {k: v for k, v in sorted(os.environ.items())
                              if k.startswith("MALLOC_")}
    rows = []
    cases = [dict(case, process=p) for case in cases
             for p in range(args.processes)]
    for k, case in enumerate(cases, 1):
        for row in run_one(case, args.timeout):
            rows.append(row)
            shown = (f"{row['step_ms']:.2f} ms, profiled "
                     f"{row['profiled_ms']:.2f}" if row["status"] == "ok"
                     else row["status"])
            print(f"[{k}/{len(cases)}] {label(row)}: {shown}", flush=True)
        payload = dict(machine=machine, tag=tag, settings=settings,
                       rows=rows)
        common.write(name, payload, render(payload, argv), echo=False)
    print(render(payload, argv))
    print(f"wrote results/{name}.json, .md")


if __name__ == "__main__":
    main()
