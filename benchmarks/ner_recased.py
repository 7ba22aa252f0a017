"""How the taggers of a `benchmarks.ner_corpora` run hold up when the
casing of the text changes: each saved tagger (ours and its variants)
scored on its corpus's test file as it is, all in lower case and all in
capitals. Text in capitals (contracts, headlines, telegrams) and text
without capitals (chat, speech transcripts, tweets) are what a tagger
that leans on casing gets wrong; `--case-augmentation` trains for them.

    python -m benchmarks.ner_recased --name ner-corpora-case-1000

reads `results/<name>.json` for the runs (corpus directories, sizes,
seeds, systems), loads each run's `best.keras` from `--run-root` (the
`ner_corpora` run directories; a run whose directory is gone is skipped
and named), and writes
`results/<name>-recased.{json,md}`. The test file is recased token by
token (the first column; `-DOCSTART-` lines and the tags are kept) into a
temporary corpus directory beside links to the other splits.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile

from benchmarks import common, ner_corpora

CASINGS = ("as is", "lower", "upper")
DOCSTART = "-DOCSTART-"


def recase_file(source, target, casing, encoding="utf-8"):
    """Copy the CoNLL file `source` to `target` with each token (the first
    column) in `casing` ("lower" or "upper"); tags, blank lines and
    `-DOCSTART-` lines are kept."""
    if casing not in ("lower", "upper"):
        raise ValueError(f"`casing` must be 'lower' or 'upper'. Received: "
                         f"casing={casing!r}")
    with open(source, encoding=encoding) as f, \
            open(target, "w", encoding=encoding) as out:
        for line in f:
            token, sep, rest = line.partition(" ")
            if token.strip() and token != DOCSTART:
                token = token.lower() if casing == "lower" else token.upper()
            out.write(token + sep + rest)


def recased_corpus(directory, casing, root, encoding="utf-8"):
    """A corpus directory under `root` whose test file is `directory`'s in
    `casing`, its other files linked; `directory` itself for "as is"."""
    if casing == "as is":
        return directory
    target = os.path.join(root, casing)
    os.makedirs(target, exist_ok=True)
    for name in os.listdir(directory):
        if name != "test.txt":
            os.symlink(os.path.abspath(os.path.join(directory, name)),
                       os.path.join(target, name))
    recase_file(os.path.join(directory, "test.txt"),
                os.path.join(target, "test.txt"), casing, encoding)
    return target


def score(model_path, directory, scheme, encoding):
    """Test entity F1 (x100) of a saved tagger on a corpus directory, as
    `keras-resnorm ner evaluate` computes it."""
    from keras_resnorm.ner import data
    from keras_resnorm.ner.context import split_with_contexts
    from keras_resnorm.ner.errors import load_keras_archive
    from keras_resnorm.ner.evaluate import evaluate
    from keras_resnorm.ner.model import context_settings

    model = load_keras_archive(model_path)
    corpus = data.find_corpus(directory, scheme=scheme, encoding=encoding)
    mode, budget = context_settings(model)
    sentences, contexts = split_with_contexts(corpus, "test", mode, budget)
    return 100 * evaluate(model, sentences, contexts=contexts)["entity"]["f1"]


def run_directory(run_root, row):
    """Where `benchmarks.ner_corpora` trained a row's run."""
    return ner_corpora.run_directory(run_root, row["corpus_name"],
                                     row["size"], row["seed"], row["system"])


def summarize(rows):
    """Mean (min-max) test F1 per corpus, size and system for each
    casing, and each casing's mean minus the text as is."""
    groups = {}
    for r in rows:
        groups.setdefault((r["corpus_name"], r["size"], r["system"]),
                          []).append(r)
    table = []
    for (corpus, size, system), items in groups.items():
        line = {"corpus": corpus, "size": size, "system": system,
                "seeds": len(items)}
        means = {}
        for casing in CASINGS:
            values = [i["f1"][casing] for i in items]
            means[casing] = statistics.fmean(values)
            line[casing] = (f"{means[casing]:.2f} ({min(values):.2f}-"
                            f"{max(values):.2f})")
        for casing in CASINGS[1:]:
            line[f"{casing} - as is"] = f"{means[casing] - means['as is']:+.2f}"
        table.append(line)
    return table


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", required=True,
                        help="the ner_corpora results to read "
                             "(results/<name>.json)")
    parser.add_argument("--run-root", default=os.path.join("runs",
                                                           "ner-corpora"),
                        help="where that run's run directories are "
                             "(default: %(default)s)")
    parser.add_argument("--others", default="nothing",
                        help="what else ran on the machine, for the record")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    source = os.path.join(common.RESULTS, f"{args.name}.json")
    if not os.path.exists(source):
        raise SystemExit(f"--name: no results file {source}. Received: "
                         f"--name {args.name}")
    with open(source) as f:
        benchmark = json.load(f)
    settings = benchmark["settings"]
    directories = {c["name"]: c["directory"] for c in benchmark["corpora"]}
    runs = [r for r in benchmark["runs"] if r["system"].startswith("ours")]
    if not runs:
        raise SystemExit(f"--name: {source} has no runs of ours. Received: "
                         f"--name {args.name}")
    missing = [r for r in runs if not os.path.exists(os.path.join(
        run_directory(args.run_root, r), "best.keras"))]
    if len(missing) == len(runs):
        raise SystemExit(f"--run-root: no best.keras in "
                         f"{run_directory(args.run_root, runs[0])} nor in any "
                         f"other run directory of {source}. Received: "
                         f"--run-root {args.run_root}")
    # A run directory removed since is skipped, and the tables say so.
    skipped = [f"{r['corpus_name']} {r['size']} seed {r['seed']} "
               f"{r['system']}" for r in missing]
    runs = [r for r in runs if r not in missing]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        corpora = {(name, casing): recased_corpus(
                       directory, casing, os.path.join(tmp, name),
                       settings["encoding"])
                   for name, directory in directories.items()
                   for casing in CASINGS}
        for index, r in enumerate(runs):
            model = os.path.join(run_directory(args.run_root, r),
                                 "best.keras")
            f1 = {}
            for casing in CASINGS:
                f1[casing] = score(model, corpora[(r["corpus_name"], casing)],
                                   settings["scheme"], settings["encoding"])
                # The text as it is (scored first) must score what the
                # benchmark recorded: a run directory trained again since
                # (the same --run-root for another invocation) holds
                # another tagger.
                if casing == "as is" and \
                        abs(f1[casing] - r["test_entity_f1"]) > 0.01:
                    raise SystemExit(
                        f"{model} scores {f1['as is']:.2f} on the test file "
                        f"as it is, not the {r['test_entity_f1']:.2f} that "
                        f"{source} records: it was trained again since. "
                        f"Received: --run-root {args.run_root}")
            print(f"[{index + 1}/{len(runs)}] {r['corpus_name']} {r['size']} "
                  f"seed {r['seed']} {r['system']}: " + ", ".join(
                      f"{c} {v:.2f}" for c, v in f1.items()), flush=True)
            rows.append({k: r[k] for k in ("corpus_name", "size", "seed",
                                           "system", "test_entity_f1")}
                        | {"f1": f1, "model": model})
    machine = common.machine()
    summary = summarize(rows)
    payload = {"machine": machine,
               "argv": sys.argv[1:] if argv is None else list(argv),
               "command": common.command("benchmarks.ner_recased", argv),
               "others": args.others, "source": f"{args.name}.json",
               "runs": rows, "skipped": skipped, "summary": summary}
    variants = "".join(f" `ours-{n}`: ours with `{f}`."
                       for n, f in settings.get("variants", []))
    markdown = (
        common.header("NER taggers on recased text", "benchmarks.ner_recased",
                      argv, machine)
        + f"Also running: {args.others}.\n\n"
        "Test entity-level micro F1 (seqeval) of each saved tagger of "
        f"`{args.name}` on its corpus's test file as it is, with every token "
        "in lower case and with every token in capitals; mean (min-max) "
        f"over seeds.{variants} The taggers were trained and chosen on the "
        "files as they are.\n\n"
        + common.markdown_table(summary, ["corpus", "size", "system", "seeds",
                                          *CASINGS, "lower - as is",
                                          "upper - as is"])
        + ("\n\nSkipped (no saved tagger in its run directory any more): "
           + "; ".join(skipped) + "." if skipped else ""))
    common.write(f"{args.name}-recased", payload, markdown)
    return payload


if __name__ == "__main__":
    main()
