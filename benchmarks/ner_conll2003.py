"""CoNLL-2003 from scratch: test entity F1 in a wall-clock budget, and variants.

    python -m benchmarks.ner_conll2003 --data-dir ../shared/data/conll2003
    python -m benchmarks.ner_conll2003 --variants --minutes 4

The first trains one model for `--minutes` (default 20) of training time,
selects the epoch by dev entity F1 and scores test.txt; it writes
results/ner-conll2003.json and .md. `--variants` trains each of five
norm/placement variants for the same budget and writes
results/ner-variants.json and .md. No pretrained embeddings or language
models are used.
"""

import argparse
import os
import time

from benchmarks import common

VARIANTS = [
    ("layer", "pre"), ("layer", "post"), ("rms", "pre"),
    ("rms", "sandwich"), ("dyt", "pre"), ("layer", "deepnorm"),
    ("layer", "rezero"),
]


def run(args, norm, placement, minutes, run_dir):
    from keras_resnorm.ner import cli
    from keras_resnorm.ner.train import train

    argv = ["ner", "train", "--run-dir", run_dir, "--overwrite",
            "--norm", norm, "--placement", placement,
            "--max-minutes", str(minutes), "--epochs", str(args.epochs),
            "--patience", str(args.epochs), "--dropout", str(args.dropout),
            "--layers", str(args.layers), "--d-model", str(args.d_model),
            "--intermediate-dim", str(2 * args.d_model)]
    if args.data_dir:
        argv += ["--data-dir", args.data_dir]
    config = cli._train_config(cli.build_parser().parse_args(argv))
    started = time.perf_counter()
    _, metrics = train(config)
    wall = time.perf_counter() - started
    entity = metrics["test_entity"]
    return {
        "norm": norm, "placement": placement,
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
        "config": metrics["config"],
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--minutes", type=float, default=None)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--dropout", type=float, default=0.2)
    parser.add_argument("--norm", default="layer")
    parser.add_argument("--placement", default="pre")
    parser.add_argument("--variants", action="store_true")
    parser.add_argument("--run-root", default=os.path.join("runs", "bench"))
    args = parser.parse_args(argv)
    machine = common.machine()
    command = common.command("benchmarks.ner_conll2003", argv)

    if not args.variants:
        minutes = args.minutes or 20.0
        row = run(args, args.norm, args.placement, minutes,
                  os.path.join(args.run_root, "conll2003"))
        table = common.markdown_table([row], [
            "norm", "placement", "test_entity_f1", "test_entity_precision",
            "test_entity_recall", "test_token_accuracy", "dev_entity_f1",
            "best_epoch", "epochs_run", "train_minutes",
            "train_tokens_per_second"])
        md = (common.header(f"CoNLL-2003 NER from scratch ({minutes:g}-minute "
                            "training budget)", "benchmarks.ner_conll2003",
                            argv, machine)
              + "Headline: test entity-level micro F1 (seqeval). Token accuracy "
              "counts the O tag and is not the standard metric.\n\n" + table
              + "\n\nPer type (test entity F1): " + ", ".join(
                  f"{k} {v:.2f}" for k, v in row["per_type_f1"].items())
              + f"\n\nTarget: test entity F1 >= 88.0 in <= 20 minutes: "
              f"{'met' if row['test_entity_f1'] >= 88.0 else 'missed by %.2f points' % (88.0 - row['test_entity_f1'])}.\n")
        common.write("ner-conll2003", {"machine": machine, "command": command,
                                       "budget_minutes": minutes,
                                       "result": row}, md)
        return
    minutes = args.minutes or 4.0
    rows = []
    for norm, placement in VARIANTS:
        rows.append(run(args, norm, placement, minutes,
                        os.path.join(args.run_root, f"{norm}-{placement}")))
    table = common.markdown_table(rows, [
        "norm", "placement", "test_entity_f1", "dev_entity_f1",
        "test_token_accuracy", "epochs_run", "best_epoch",
        "train_tokens_per_second"])
    md = (common.header(f"CoNLL-2003 variants at the same {minutes:g}-minute "
                        "budget", "benchmarks.ner_conll2003", argv, machine)
          + table + "\n")
    common.write("ner-variants", {"machine": machine, "command": command,
                                  "budget_minutes": minutes, "rows": rows}, md)


if __name__ == "__main__":
    main()
