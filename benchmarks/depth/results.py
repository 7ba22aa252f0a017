"""The depth study's results: resuming a study, writing its JSON and
markdown after every run, and redoing (or merging) them from JSON."""

import os
import time

from benchmarks.depth.plots import plot
from benchmarks.depth.report import claims, summarize


STUDY_SETTINGS = ("steps", "batch_size", "learning_rate", "d_model", "heads",
                  "max_length", "expansion", "train_sentences",
                  "dev_sentences", "fused", "xla")


def load_previous(args, settings=STUDY_SETTINGS):
    """The study in results/<name>.json, for --resume; None when there is
    none. Its `settings` (the names of the flags that change what a run
    measures) must equal this command's."""
    import json

    from benchmarks import common

    path = os.path.join(common.RESULTS, args.name + ".json")
    if not os.path.exists(path):
        print(f"--resume: no {path} yet; starting the study")
        return None
    with open(path) as f:
        previous = json.load(f)
    changed = [f"{k}: {previous['settings'].get(k)!r} -> "
               f"{getattr(args, k)!r}" for k in settings
               if previous["settings"].get(k) != getattr(args, k)]
    if changed:
        raise SystemExit(
            f"--resume: {path} was made with other settings ("
            + "; ".join(changed) + "); use another --name")
    if "invocations" not in previous:  # written before they were kept
        previous["invocations"] = [{
            "command": previous["command"], "others": previous["others"],
            "wall_seconds": previous["wall_seconds"],
            "runs": len(previous["runs"])}]
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
