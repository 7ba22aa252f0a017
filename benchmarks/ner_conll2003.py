"""CoNLL-2003 from scratch: ours over several seeds against spaCy, same budget.

    python -m benchmarks.ner_conll2003 --data-dir ../shared/data/conll2003
    python -m benchmarks.ner_conll2003 --sizes 1000 3000
    python -m benchmarks.ner_conll2003 --max-train-sentences 1000 --minutes 2
    python -m benchmarks.ner_conll2003 --ablation --max-train-sentences 1000
    python -m benchmarks.ner_conll2003 --variants --minutes 3

The first runs the learning curve (`CURVE`): at 1,000 and 3,000 training
sentences with a 2-minute budget and at all 14,041 with a 10-minute one
(`--sizes` picks some of them). At each size it trains our default tagger
(`keras-resnorm ner train` with its default model) once per `--seeds` for
the size's budget of training time each,
selects each run's epoch by dev entity F1, scores test.txt, and in the same
invocation, interleaved after the first seed, trains spaCy's NER from
scratch with the same budget on the same sentences (`benchmarks.peer_spacy`;
`--no-peer` skips it). It writes results/ner-conll2003.json and .md, or
results/ner-conll2003-train<N>.json/.md with `--max-train-sentences N`.
`--ablation` trains each lever's variant (`ABLATION`; `--levers` picks
some) for every seed and writes results/ner-ablation.json/.md
(`-train<N>` with `--max-train-sentences N`, then the levers' keys when
only some ran); `--variants` the norm/placement
variants of the previous Transformer tagger (`PREVIOUS`;
results/ner-variants.*). No pretrained embeddings or language models are
used anywhere.
"""

import argparse
import os
import statistics
import time

from benchmarks import common

# The learning curve: training sentences (None: all), minutes of training
# per run, and the most epochs: more than the budget holds on the 2-core
# machine, so the budget ends each run and the learning rate's decay spans
# it (`--decay-over budget`, the default).
CURVE = {"1000": (1000, 2.0, 60), "3000": (3000, 2.0, 60),
         "all": (None, 10.0, 60)}
VARIANTS = [
    ("layer", "pre"), ("layer", "post"), ("rms", "pre"),
    ("rms", "sandwich"), ("dyt", "pre"), ("layer", "deepnorm"),
    ("layer", "rezero"),
]
TRANSFORMER = ["--recurrent-layers", "0", "--layers", "4", "--d-model", "128",
               "--intermediate-dim", "256", "--dropout", "0.2"]
# The tagger this project shipped before the BiLSTM block, hashed features
# and CRF: what results/ner-variants.md measured (`--variants`).
PREVIOUS = TRANSFORMER + ["--no-crf", "--hash-buckets", "0"]
# Each lever of the default tagger changed, one at a time.
# The ablation's levers: key (for --levers), what changes, the flags.
ABLATION = [
    ("default", "default (4 window-CNN blocks, hashed features, CRF "
                "over IOBES tags, sentences alone)", []),
    ("bilstm", "a BiLSTM block instead of the window-CNN blocks",
     ["--conv-layers", "0", "--recurrent-layers", "1"]),
    ("batch16", "batches of 16 sentences", ["--batch-size", "16"]),
    ("dropout", "word dropout 0.3", ["--word-dropout", "0.3"]),
    ("nohash", "no hashed features", ["--hash-buckets", "0"]),
    ("mentions-aug", "mention replacement 0.3",
     ["--mention-replacement", "0.3"]),
    ("context-neighbours", "document context: neighbouring sentences",
     ["--document-context", "neighbours"]),
    ("context-mentions", "document context: other mentions",
     ["--document-context", "mentions"]),
    ("decay-epochs", "the learning rate decays over --epochs, not over the "
                     "time budget", ["--decay-over", "epochs"]),
    ("eval-steps", "dev evaluated at epoch ends 200 batches apart, not "
                   "after every epoch", ["--eval-steps", "200"]),
    ("iobes", "the model learns IOBES tags (it outputs IOB2)",
     ["--model-tags", "iobes"]),
    ("iob2", "the model learns IOB2 tags (the default before IOBES)",
     ["--model-tags", "iob2"]),
]


def run(args, flags, minutes, seed, run_dir):
    """Train ours with `flags` on top of the defaults; one result row."""
    from keras_resnorm.ner.config import TrainConfig
    from keras_resnorm.ner.train import train

    argv = ["--run-dir", run_dir, "--overwrite",
            "--max-minutes", str(minutes), "--epochs", str(args.epochs),
            "--patience", str(args.epochs), "--seed", str(seed)] + flags
    if args.data_dir:
        argv += ["--data-dir", args.data_dir]
    if args.max_train_sentences:
        argv += ["--max-train-sentences", str(args.max_train_sentences)]
    config = TrainConfig.from_argv(argv)
    started = time.perf_counter()
    _, metrics = train(config)
    wall = time.perf_counter() - started
    entity = metrics["test_entity"]
    return {
        "seed": seed,
        "test_entity_f1": 100 * entity["f1"],
        "test_entity_precision": 100 * entity["precision"],
        "test_entity_recall": 100 * entity["recall"],
        "dev_entity_f1": 100 * metrics["dev_entity"]["f1"],
        "test_token_accuracy": 100 * metrics["test_token_accuracy"],
        "best_epoch": metrics["best_epoch"],
        "epochs_run": metrics["epochs_run"],
        "train_minutes": metrics["train_seconds_this_call"] / 60,
        "wall_minutes": wall / 60,
        "train_tokens_per_second": metrics["tokens_per_second"],
        "corpus": metrics["corpus"],
        "per_type_f1": {k: 100 * v["f1"]
                        for k, v in entity["per_type"].items()},
        "flags": flags,
        "config": metrics["config"],
    }


def summary(rows, key):
    values = [r[key] for r in rows]
    return {"mean": statistics.fmean(values), "min": min(values),
            "max": max(values), "n": len(values)}


def _spread(s):
    return f"{s['mean']:.2f} ({s['min']:.2f}-{s['max']:.2f})"


def _peer(args, corpus, minutes):
    from benchmarks import peer_spacy

    return peer_spacy.train_and_score(corpus, minutes, seed=args.seeds[0],
                                      max_train_sentences=args
                                      .max_train_sentences)


def curve(args, argv, machine):
    """Each of `--sizes` with its budget, one results file each."""
    for size in args.sizes:
        sentences, minutes, epochs = CURVE[size]
        point = argparse.Namespace(**dict(
            vars(args), max_train_sentences=sentences,
            minutes=args.minutes or minutes, epochs=args.epochs or epochs))
        main_benchmark(point, argv, machine)


def main_benchmark(args, argv, machine):
    from keras_resnorm.ner import data

    minutes = args.minutes or 10.0
    corpus = data.find_corpus(args.data_dir) if not args.no_peer else None
    runs, peer = [], None
    for i, seed in enumerate(args.seeds):
        runs.append(run(args, [], minutes, seed,
                        os.path.join(args.run_root, f"ours-seed{seed}")))
        if i == 0 and corpus is not None:
            peer = _peer(args, corpus, minutes)
    mean = summary(runs, "test_entity_f1")
    size = (f"{args.max_train_sentences} training sentences"
            if args.max_train_sentences else "the full training set")
    rows = [dict(r, system="ours") for r in runs]
    if peer:
        rows.append(dict(peer, system=f"spaCy {peer['spacy']} efficiency"))
    table = common.markdown_table(rows, [
        "system", "seed", "test_entity_f1", "test_entity_precision",
        "test_entity_recall", "dev_entity_f1", "epochs_run", "best_epoch",
        "train_minutes", "train_tokens_per_second"])
    lines = [
        common.header(f"CoNLL-2003 NER from scratch, {size}, "
                      f"{minutes:g}-minute training budget",
                      "benchmarks.ner_conll2003", argv, machine),
        "Headline: test entity-level micro F1 (seqeval, IOB2), the model of "
        "each run chosen on valid.txt. Both systems train from scratch (no "
        "pretrained embeddings or vectors), on the same sentences, with the "
        "same wall-clock budget, one after the other in this process. "
        f"Else running on the machine: {args.others}.\n",
        table, "",
        f"Ours, test entity F1 over seeds {args.seeds}: mean (range) "
        f"{_spread(mean)}; dev {_spread(summary(runs, 'dev_entity_f1'))}.",
    ]
    payload = {"machine": machine,
               "command": common.command("benchmarks.ner_conll2003", argv),
               "others_running": args.others,
               "budget_minutes": minutes,
               "max_train_sentences": args.max_train_sentences,
               "runs": runs, "summary": {"test_entity_f1": mean},
               "peers": {}}
    if peer:
        payload["peers"]["spacy"] = peer
        lines.append(f"spaCy: test entity F1 {peer['test_entity_f1']:.2f} "
                     f"(seed {peer['seed']}); ours minus spaCy: "
                     f"{mean['mean'] - peer['test_entity_f1']:+.2f} points.")
    lines.append("\nPer type (test entity F1): " + "; ".join(
        f"{r['system']} seed {r['seed']}: " + ", ".join(
            f"{k} {v:.2f}" for k, v in r["per_type_f1"].items())
        for r in rows))
    name = "ner-conll2003" + (f"-train{args.max_train_sentences}"
                              if args.max_train_sentences else "")
    common.write(name, payload, "\n".join(lines) + "\n")


def ablation(args, argv, machine):
    minutes = args.minutes or 3.0
    levers = [lever for lever in ABLATION
              if args.levers is None or lever[0] in args.levers]
    runs = {name: [] for _, name, _ in levers}
    # Seeds outermost: the variants interleave, so a slow stretch of the
    # machine does not fall on one variant's runs only.
    for seed in args.seeds:
        for key, name, flags in levers:
            runs[name].append(run(
                args, flags, minutes, seed,
                os.path.join(args.run_root, f"ablation-{key}-seed{seed}")))
    rows = []
    for _, name, flags in levers:
        test = summary(runs[name], "test_entity_f1")
        dev = summary(runs[name], "dev_entity_f1")
        rows.append({
            "variant": name, "flags": " ".join(flags) or "(defaults)",
            "test F1 mean (range)": _spread(test),
            "dev F1 mean (range)": _spread(dev),
            "epochs": statistics.fmean(r["epochs_run"] for r in runs[name]),
            "tokens/s": statistics.fmean(r["train_tokens_per_second"]
                                         for r in runs[name])})
    size = (f"{args.max_train_sentences} training sentences"
            if args.max_train_sentences else "all training sentences")
    md = (common.header(f"CoNLL-2003 ablation: each lever changed, {size}, "
                        f"{minutes:g}-minute budget, seeds {args.seeds}",
                        "benchmarks.ner_conll2003", argv, machine)
          + "Test and dev entity-level micro F1 (seqeval), mean and range "
          f"over the seeds. Else running on the machine: {args.others}.\n\n"
          + common.markdown_table(rows, list(rows[0])) + "\n")
    name = "ner-ablation" + (f"-train{args.max_train_sentences}"
                             if args.max_train_sentences else "")
    if len(levers) < len(ABLATION):  # a chosen few: a file of their own
        name += "-" + "-".join(k for k, _, _ in levers if k != "default")
    common.write(name, {
        "machine": machine,
        "command": common.command("benchmarks.ner_conll2003", argv),
        "others_running": args.others,
        "budget_minutes": minutes, "rows": rows, "runs": runs}, md)


def variants(args, argv, machine):
    minutes = args.minutes or 4.0
    rows = []
    for norm, placement in VARIANTS:
        row = run(args, PREVIOUS + ["--norm", norm, "--placement",
                                    placement], minutes, args.seeds[0],
                  os.path.join(args.run_root, f"{norm}-{placement}"))
        rows.append(dict(row, norm=norm, placement=placement))
    table = common.markdown_table(rows, [
        "norm", "placement", "test_entity_f1", "dev_entity_f1",
        "test_token_accuracy", "epochs_run", "best_epoch",
        "train_tokens_per_second"])
    md = (common.header(f"CoNLL-2003 variants at the same {minutes:g}-minute "
                        "budget", "benchmarks.ner_conll2003", argv, machine)
          + table + "\n")
    common.write("ner-variants", {"machine": machine,
                                  "command": common.command(
                                      "benchmarks.ner_conll2003", argv),
                                  "budget_minutes": minutes, "rows": rows},
                 md)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--minutes", type=float, default=None,
                        help="training budget of each run (10; ablation 3)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="most epochs (default: the curve's, else "
                             "20); the budget may end training first, and "
                             "then the learning rate's decay spans it")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--max-train-sentences", type=int, default=None,
                        help="one point of the curve: N sentences spread "
                             "over the training file (--train-subset "
                             "spread, the same for spaCy)")
    parser.add_argument("--sizes", nargs="+", choices=list(CURVE),
                        default=list(CURVE),
                        help="the learning curve's sizes to run (budgets: "
                             + ", ".join(f"{k} {m:g} min"
                                         for k, (_, m, _) in CURVE.items())
                             + "); --minutes overrides")
    parser.add_argument("--no-peer", action="store_true",
                        help="skip the spaCy run")
    parser.add_argument("--ablation", action="store_true")
    parser.add_argument("--levers", nargs="+", default=None,
                        choices=[k for k, _, _ in ABLATION],
                        help="the ablation's levers to run (default: all)")
    parser.add_argument("--variants", action="store_true")
    parser.add_argument("--run-root", default=os.path.join("runs", "bench"))
    parser.add_argument("--others", default="not recorded",
                        help="what else ran on the machine meanwhile, for "
                             "the results file (say 'nothing')")
    args = parser.parse_args(argv)
    machine = common.machine()
    if args.max_train_sentences or args.ablation or args.variants:
        args.epochs = args.epochs or 20
    if args.ablation:
        ablation(args, argv, machine)
    elif args.variants:
        variants(args, argv, machine)
    elif args.max_train_sentences:
        main_benchmark(args, argv, machine)
    else:
        curve(args, argv, machine)


if __name__ == "__main__":
    main()
