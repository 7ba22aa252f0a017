"""Is it good on my data: ours against spaCy over corpora and sizes.

    python -m benchmarks.ner_corpora --resume
    python -m benchmarks.ner_corpora --corpus mine=path/to/dir --scheme iob1
    python -m benchmarks.ner_corpora --from-json benchmarks/results/ner-corpora.json

A learning curve over corpora. Each `--corpus NAME=DIR` (a CoNLL-style
directory as `keras-resnorm ner train --data-dir` reads it; default:
CoNLL-2003 and the Broad Twitter Corpus under `../shared/data` where they
are) is trained at each of `--sizes` (1,000 and 3,000 training sentences
and all of them): the subset spread evenly over the training file
(`--train-subset spread`, `keras_resnorm.ner.data.subset_indices`), the
same sentences for both systems and every seed. At each point every seed
trains our default tagger and then spaCy's NER (`-o efficiency`, from
scratch) with the same seed and the same wall-clock budget
(`budget_minutes`: it grows with the training sentences, 2 to 10
minutes), interleaved, so a slow stretch of the machine falls on both.
Each run's model is chosen on the corpus's dev file and scored once on its
test file (entity-level micro F1, seqeval's definition).

`--variant NAME=FLAGS` (repeatable) adds our tagger with `FLAGS` on top
of the defaults as one more system, `ours-NAME`, trained right after
`ours` with the same seed and sentences, so a candidate default is
compared in the same invocation, interleaved:

    python -m benchmarks.ner_corpora --name ner-corpora-raw --sizes 1000 \
        --systems ours --variant raw="--ema-momentum 0"

Results are rewritten after every run (`results/<name>.{json,md}`) and
`--resume` runs only what is missing, with the same settings. The markdown
gives, per corpus and size, each system's mean and range of test F1 over
the seeds, dev F1, per-type F1 and training tokens per second.
"""

import argparse
import hashlib
import json
import os
import statistics
import sys
import time

from benchmarks import common

SIZES = {"1000": 1000, "3000": 3000, "all": None}
SHARED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))), os.pardir, "shared", "data")
DEFAULT_CORPORA = (("conll2003", "conll2003"), ("btc", "btc"))
SYSTEMS = ("ours", "spacy")
# Flags that change what a run measures: a resumed study must share them.
SETTINGS = ("corpora", "sizes", "seeds", "minutes", "epochs", "scheme",
            "encoding", "train_subset", "variants")


def budget_minutes(sentences):
    """The training budget of a run on `sentences` sentences: 2 minutes up
    to 2,808 sentences, then 10 minutes per 14,041 (CoNLL-2003's training
    set) rounded to half minutes, at most 10."""
    return min(10.0, max(2.0, round(2 * 10.0 * sentences / 14041) / 2))


def parse_corpus(text):
    """`NAME=DIR` as `(name, dir)`."""
    name, sep, directory = text.partition("=")
    if not sep or not name or not directory:
        raise argparse.ArgumentTypeError(
            f"--corpus must be NAME=DIR. Received: {text!r}")
    if not os.path.isdir(directory):
        raise argparse.ArgumentTypeError(
            f"--corpus {name}: no directory at {directory!r}")
    return name, os.path.abspath(directory)


def parse_variant(text):
    """`NAME=FLAGS` as `(name, flags)`: the system `ours-NAME`."""
    name, sep, flags = text.partition("=")
    if not sep or not name or not flags.strip():
        raise argparse.ArgumentTypeError(
            f"--variant must be NAME=FLAGS. Received: {text!r}")
    if not name.replace("-", "").replace("_", "").isalnum():
        raise argparse.ArgumentTypeError(
            "--variant NAME must be letters, digits, '-' or '_'. "
            f"Received: {name!r}")
    return name, flags.strip()


def systems(args):
    """The systems each seed trains, in order: ours, its variants, spaCy
    (as `--systems` keeps them)."""
    variants = [f"ours-{name}" for name, _ in args.variants]
    return ([s for s in ("ours",) if s in args.systems] + variants
            + [s for s in ("spacy",) if s in args.systems])


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ner_corpora",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=parse_corpus, action="append",
                        dest="corpora", metavar="NAME=DIR",
                        help="a CoNLL-style corpus directory (repeat for "
                             "more; default: ../shared/data/conll2003 and "
                             "../shared/data/btc where present)")
    parser.add_argument("--scheme", default="iob2",
                        help="the corpora's tag scheme (iob2, iob1)")
    parser.add_argument("--encoding", default="utf-8",
                        help="the corpora's text encoding")
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES),
                        default=list(SIZES))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--minutes", type=float, default=None,
                        help="every run's training budget (default: "
                             "budget_minutes of its training sentences)")
    parser.add_argument("--epochs", type=int, default=60,
                        help="ours' most epochs: more than a budget holds, "
                             "so the budget ends each run")
    parser.add_argument("--train-subset", default="spread",
                        choices=["spread", "first"])
    parser.add_argument("--systems", nargs="+", choices=SYSTEMS,
                        default=list(SYSTEMS))
    parser.add_argument("--flags", default="",
                        help="extra `ner train` flags for ours and its "
                             "variants")
    parser.add_argument("--variant", type=parse_variant, action="append",
                        dest="variants", default=[], metavar="NAME=FLAGS",
                        help="also train ours with FLAGS as system "
                             "ours-NAME, after ours with the same seed "
                             "(repeat for more)")
    parser.add_argument("--name", default="ner-corpora")
    parser.add_argument("--run-root", default=os.path.join("runs",
                                                           "ner-corpora"))
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--from-json", metavar="FILE",
                        help="no training: redo the markdown from a JSON")
    parser.add_argument("--others", default="not recorded",
                        help="what else ran on the machine meanwhile")
    args = parser.parse_args(argv)
    if args.from_json:
        return args
    if not args.corpora:
        args.corpora = [(name, os.path.normpath(os.path.join(SHARED, sub)))
                        for name, sub in DEFAULT_CORPORA
                        if os.path.isdir(os.path.join(SHARED, sub))]
        if not args.corpora:
            parser.error("no corpus given and none under ../shared/data: "
                         "give --corpus NAME=DIR")
    variant_names = [n for n, _ in args.variants]
    if len(set(variant_names)) != len(variant_names):
        parser.error(f"--variant names must differ. Received: "
                     f"{variant_names}")
    names = [n for n, _ in args.corpora]
    if len(set(names)) != len(names):
        parser.error(f"--corpus names must differ. Received: {names}")
    if args.minutes is not None and not args.minutes > 0:
        parser.error(f"--minutes must be positive. Received: {args.minutes}")
    return args


def plan(args):
    """Every run as (corpus, size, seed, system): per corpus and size, each
    seed's ours then spaCy."""
    return [(name, size, seed, system) for name, _ in args.corpora
            for size in args.sizes for seed in args.seeds
            for system in systems(args)]


def key(row):
    return (row["corpus_name"], row["size"], row["seed"], row["system"])


def subset_identity(corpus, limit, subset):
    """How many sentences a point trains on and a hash of them."""
    sentences = corpus.sentences("train", limit, subset)
    digest = hashlib.sha256(json.dumps(sentences).encode()).hexdigest()
    return len(sentences), digest


def run_directory(run_root, corpus, size, seed, system):
    """Where ours (or its variant `system`, `ours-NAME`) trains one seed
    of a point: `RUN_ROOT/<corpus>-<size>-seed<seed>[-NAME]`."""
    return os.path.join(run_root, f"{corpus}-{size}-seed{seed}"
                        + system[len("ours"):])


def run_ours(args, directory, limit, minutes, seed, run_dir, extra=""):
    from benchmarks import ner_conll2003

    flags = ["--scheme", args.scheme, "--encoding", args.encoding,
             "--train-subset", args.train_subset] + args.flags.split() \
        + extra.split()
    point = argparse.Namespace(data_dir=directory, epochs=args.epochs,
                               max_train_sentences=limit)
    row = ner_conll2003.run(point, flags, minutes, seed, run_dir)
    row.pop("config", None)
    return row


def run_spacy(args, corpus, limit, minutes, seed):
    from benchmarks import peer_spacy

    row = peer_spacy.train_and_score(corpus, minutes, seed=seed,
                                     max_train_sentences=limit,
                                     subset=args.train_subset)
    row.pop("config", None)
    return row


def _stats(values):
    return ({"mean": statistics.fmean(values), "min": min(values),
             "max": max(values), "n": len(values)} if values else None)


def _spread(s):
    if s is None:
        return "-"
    return (f"{s['mean']:.2f}" if s["n"] == 1 else
            f"{s['mean']:.2f} ({s['min']:.2f}-{s['max']:.2f})")


def summarize(rows, names=SYSTEMS):
    """One row per (corpus, size): each system's test F1 mean and range
    and its spread (max - min), dev F1, tokens/s, and ours minus spaCy."""
    points = {}
    for r in rows:
        points.setdefault((r["corpus_name"], r["size"]), []).append(r)
    out = []
    for (name, size), items in points.items():
        line = {"corpus": name, "size": size,
                "training sentences": items[0]["train_sentences_used"],
                "budget min": items[0]["budget_minutes"]}
        means = {}
        for system in names:
            mine = [r for r in items if r["system"] == system]
            test = _stats([r["test_entity_f1"] for r in mine])
            means[system] = test
            line[f"{system} test F1"] = _spread(test)
            line[f"{system} spread"] = (
                f"{test['max'] - test['min']:.2f}" if test else "-")
            line[f"{system} dev F1"] = _spread(
                _stats([r["dev_entity_f1"] for r in mine]))
            line[f"{system} tokens/s"] = (statistics.fmean(
                r["train_tokens_per_second"] for r in mine) if mine else "-")
        for system in names:
            if system != "spacy":
                line[f"{system} - spaCy"] = (
                    f"{means[system]['mean'] - means['spacy']['mean']:+.2f}"
                    if means[system] and means.get("spacy") else "-")
        out.append(line)
    return out


def per_type(rows):
    """Mean test F1 of each entity type per (corpus, size, system)."""
    out = []
    groups = {}
    for r in rows:
        groups.setdefault((r["corpus_name"], r["size"], r["system"]),
                          []).append(r["per_type_f1"])
    for (name, size, system), items in groups.items():
        line = {"corpus": name, "size": size, "system": system}
        for kind in sorted({k for item in items for k in item}):
            line[kind] = statistics.fmean(i.get(kind, 0.0) for i in items)
        out.append(line)
    return out


def publish(payload, name):
    rows = payload["runs"]
    table = summarize(rows, payload.get("systems", SYSTEMS))
    types = per_type(rows)
    payload["summary"] = table
    done, planned = len(rows), payload["planned_runs"]
    markdown = (
        common.header("NER from scratch across corpora: ours against "
                      "spaCy", "benchmarks.ner_corpora", payload["argv"],
                      payload["machine"])
        + "Test entity-level micro F1 (seqeval, IOB2) of the model chosen "
        "on each corpus's dev file; mean (min-max) over seeds "
        f"{payload['settings']['seeds']}. Both systems from scratch (no "
        "pretrained vectors), on the same training sentences (spread over "
        "the training file: `--train-subset "
        f"{payload['settings']['train_subset']}`) with the same wall-clock "
        "budget, seed by seed, ours then spaCy."
        + "".join(f" `ours-{n}`: ours with `{f}`, trained after ours."
                  for n, f in payload["settings"].get("variants", []))
        + "\n\n"
        f"{done} of {planned} planned runs"
        + ("" if payload["finished"] else
           " (not finished: resume with --resume)") + ".\n\n"
        + "".join(f"- `{x['command']}`: {x['runs']} runs in "
                  f"{x['wall_seconds'] / 60:.1f} min (also running: "
                  f"{x['others']})\n" for x in payload["invocations"])
        + "\nCorpora: " + "; ".join(
            f"{c['name']}: {c['directory']} ({c['train_sentences']:,} "
            f"training sentences, tags {', '.join(c['types'])})"
            for c in payload["corpora"]) + "\n\n"
        + (common.markdown_table(table, list(table[0])) if table else
           "No runs yet.")
        + "\n\n## Per entity type (mean test F1 over seeds)\n\n"
        + "\n\n".join(common.markdown_table(
            [t for t in types if t["corpus"] == c["name"]],
            ["corpus", "size", "system"] + c["types"])
            for c in payload["corpora"]
            if any(t["corpus"] == c["name"] for t in types))
        + "\n")
    common.write(name, payload, markdown, echo=False)
    return payload


def main(argv=None):
    from keras_resnorm.ner import data

    if argv is None:
        argv = sys.argv[1:]
    args = parse_args(argv)
    if args.from_json:
        with open(args.from_json) as f:
            payload = json.load(f)
        return publish(payload, os.path.splitext(os.path.basename(
            args.from_json))[0])
    settings = {k: getattr(args, k) for k in SETTINGS}
    settings["corpora"] = [list(c) for c in args.corpora]
    settings["flags"] = args.flags
    settings["variants"] = [list(v) for v in args.variants]
    previous = None
    path = os.path.join(common.RESULTS, args.name + ".json")
    if args.resume and os.path.exists(path):
        with open(path) as f:
            previous = json.load(f)
        # A study from before --variant had none.
        before = dict({"variants": []}, **previous["settings"])
        changed = [f"{k}: {before.get(k)!r} -> {v!r}"
                   for k, v in settings.items() if before.get(k) != v]
        if changed:
            raise SystemExit(f"--resume: {path} was made with other "
                             "settings (" + "; ".join(changed)
                             + "); use another --name")
    corpora = {name: data.find_corpus(directory, scheme=args.scheme,
                                      encoding=args.encoding)
               for name, directory in args.corpora}
    described = [{"name": name, "directory": directory,
                  "train_sentences": len(corpora[name].sentences("train")),
                  "types": sorted({t[2:] for t in corpora[name].tags
                                   if t != "O"})}
                 for name, directory in args.corpora]
    rows = list(previous["runs"]) if previous else []
    done = {key(r) for r in rows}
    planned = plan(args)
    started = time.time()
    earlier = previous["invocations"] if previous else []
    machine = common.machine()

    def write(finished):
        this = {"command": common.command("benchmarks.ner_corpora", argv),
                "others": args.others,
                "wall_seconds": time.time() - started,
                "runs": len(rows) - sum(i["runs"] for i in earlier)}
        return publish({
            "machine": machine, "argv": list(argv), "settings": settings,
            "systems": systems(args),
            "corpora": described, "planned_runs": len(planned),
            "invocations": earlier + [this], "finished": finished,
            "runs": rows}, args.name)

    directories = dict(args.corpora)
    extra = {f"ours-{n}": f for n, f in args.variants}
    for index, item in enumerate(planned):
        if item in done:
            continue
        name, size, seed, system = item
        corpus, limit = corpora[name], SIZES[size]
        count, digest = subset_identity(corpus, limit, args.train_subset)
        minutes = args.minutes or budget_minutes(count)
        print(f"[{index + 1}/{len(planned)}] {name} {size} seed {seed} "
              f"{system}: {count} sentences, {minutes:g} min", flush=True)
        if system == "ours" or system in extra:
            row = run_ours(args, directories[name], limit, minutes, seed,
                           run_directory(args.run_root, name, size, seed,
                                         system),
                           extra.get(system, ""))
        else:
            row = run_spacy(args, corpus, limit, minutes, seed)
        row.update(corpus_name=name, size=size, seed=seed, system=system,
                   budget_minutes=minutes, train_sentences_used=count,
                   train_subset_sha256=digest)
        rows.append(row)
        print(f"    test F1 {row['test_entity_f1']:.2f}, dev "
              f"{row['dev_entity_f1']:.2f}", flush=True)
        write(finished=False)
    return write(finished={key(r) for r in rows} >= set(planned))


if __name__ == "__main__":
    main()
