"""Mixed precision on the NER tagger: step time, and dev F1 at one budget.

    python -m benchmarks.ner_precision --data-dir ../shared/data/conll2003

Two parts, in one process:

1. Step time: the same tagger built under float32, mixed_bfloat16 and
   mixed_float16 takes training steps on the same batches, the precisions
   interleaved round by round; medians per precision and the ratio to
   float32.
2. Accuracy: one training run per precision and seed (`--seeds`), all
   with the same epochs (`--epochs`, also capped by `--minutes` of training
   each); the best dev entity F1 and the test entity F1 of that model; per
   precision the mean over seeds and its difference to float32's mean (the
   target: within 0.5 points), beside the spread between seeds.

Writes results/ner-precision-<machine>.json and .md.
"""

import argparse
import os
import statistics
import time

from benchmarks import common

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


def _config(args, precision, run_dir, seed=0):
    from keras_resnorm.ner.config import TrainConfig

    argv = ["--run-dir", run_dir, "--overwrite",
            "--precision", precision, "--epochs", str(args.epochs),
            "--patience", str(args.epochs), "--seed", str(seed)]
    if args.minutes:
        argv += ["--max-minutes", str(args.minutes)]
    if args.data_dir:
        argv += ["--data-dir", args.data_dir]
    return TrainConfig.from_argv(argv)


def step_times(args, corpus):
    """Median seconds per training step for each precision, interleaved."""
    import keras

    from keras_resnorm.ner import pipeline
    from keras_resnorm.ner import train as train_lib

    sentences = corpus.sentences("train")
    words, chars = train_lib.build_vocabulary(sentences, 2)
    vocab = {"words": words, "chars": chars, "tags": corpus.tags}
    models = {}
    for precision in PRECISIONS:
        config = _config(args, precision, os.path.join(args.run_root, "steps"))
        keras.utils.set_random_seed(0)
        _, features, model = train_lib.build_tagger(config, vocab)
        train_lib.compile_for_training(model, config)
        batches = [b for _, _, b in pipeline.epochs_dataset(
            sentences, corpus.tags, config.batch_size, config.model.max_length,
            0, 0, 1).take(args.steps)]
        batches = [(tuple(features(t)), g, w) for t, g, w in batches]
        for x, y, w in batches:     # trace every bucket shape, warm up
            model.train_on_batch(x, y, sample_weight=w)
        models[precision] = (model, batches)
    times = {p: [] for p in PRECISIONS}
    for _ in range(args.repeats):
        for precision in PRECISIONS:
            model, batches = models[precision]
            started = time.perf_counter()
            for x, y, w in batches:
                model.train_on_batch(x, y, sample_weight=w)
            times[precision].append((time.perf_counter() - started)
                                    / len(batches))
    return {p: statistics.median(t) for p, t in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--minutes", type=float, default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--steps", type=int, default=20,
                        help="training steps per timing repetition")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS),
                        choices=PRECISIONS)
    parser.add_argument("--run-root", default=os.path.join("runs", "bench"))
    args = parser.parse_args(argv)

    from keras_resnorm.ner import data as data_lib
    from keras_resnorm.ner.train import train

    machine = common.machine()
    corpus = data_lib.find_corpus(args.data_dir)
    medians = step_times(args, corpus)
    rows = []
    # Seeds outermost, so that drift of the machine's speed over the run
    # touches every precision alike.
    for seed in args.seeds:
        for precision in args.precisions:
            config = _config(args, precision, os.path.join(
                args.run_root, f"precision-{precision}-{seed}"), seed)
            _, metrics = train(config)
            rows.append({
                "precision": precision, "seed": seed,
                "dev_entity_f1": 100 * metrics["dev_entity"]["f1"],
                "test_entity_f1": 100 * metrics["test_entity"]["f1"],
                "epochs_run": metrics["epochs_run"],
                "train_minutes": metrics["train_seconds_this_call"] / 60,
                "train_tokens_per_second": metrics["tokens_per_second"],
            })
    summary = []
    for precision in args.precisions:
        mine = [r for r in rows if r["precision"] == precision]
        dev = [r["dev_entity_f1"] for r in mine]
        summary.append({
            "precision": precision,
            "step_ms": 1000 * medians[precision],
            "speed_vs_float32": medians["float32"] / medians[precision],
            "dev_f1_mean": statistics.mean(dev),
            "dev_f1_min": min(dev), "dev_f1_max": max(dev),
            "test_f1_mean": statistics.mean(r["test_entity_f1"]
                                            for r in mine),
            "tokens_per_second_median": statistics.median(
                r["train_tokens_per_second"] for r in mine),
        })
    base = next((r for r in summary if r["precision"] == "float32"), None)
    for row in summary:
        if base:
            row["dev_mean_minus_float32"] = (row["dev_f1_mean"]
                                             - base["dev_f1_mean"])
    table = common.markdown_table(summary, [
        "precision", "step_ms", "speed_vs_float32", "dev_f1_mean",
        "dev_mean_minus_float32", "dev_f1_min", "dev_f1_max", "test_f1_mean",
        "tokens_per_second_median"])
    runs = common.markdown_table(rows, [
        "precision", "seed", "dev_entity_f1", "test_entity_f1", "epochs_run",
        "train_minutes", "train_tokens_per_second"])
    verdicts = [f"{r['precision']}: mean dev F1 "
                f"{r['dev_mean_minus_float32']:+.2f} points vs float32 ("
                f"{'within' if abs(r['dev_mean_minus_float32']) <= 0.5 else 'outside'}"
                " the 0.5-point target)" for r in summary
                if base and r is not base]
    md = (common.header("Mixed precision, NER tagger", "benchmarks."
                        "ner_precision", argv, machine)
          + f"Corpus: {corpus.source}. Step time: median of {args.repeats} "
          f"interleaved repetitions of {args.steps} training steps (global "
          f"batch 32, the same batches for every precision, after one "
          f"untimed pass over them). Accuracy: one run per precision and "
          f"seed (seeds {args.seeds}), {args.epochs} epochs"
          + (f", at most {args.minutes:g} minutes of training each"
             if args.minutes else "") + ".\n\n" + table + "\n\n"
          + "\n".join(f"- {v}" for v in verdicts) + "\n\nRuns:\n\n"
          + runs + "\n")
    common.write(f"ner-precision-{common.machine_tag()}",
                 {"machine": machine, "command": common.command(
                     "benchmarks.ner_precision", argv), "summary": summary,
                  "rows": rows, "step_seconds": medians}, md)


if __name__ == "__main__":
    main()
