"""`keras-resnorm` command line:
`keras-resnorm ner {demo,train,evaluate,export,predict}`."""

import argparse
import dataclasses
import json
import os
import sys
import time

from keras_resnorm._start_up import DEBUG_ENV, is_command_line, loud

__all__ = [
    "EXAMPLE",
    "build_parser",
    "cmd_evaluate",
    "cmd_export",
    "cmd_predict",
    "cmd_train",
    "main",
]

EXAMPLE = "EU rejects German call to boycott British lamb ."


def _print_tags(tagger, sentences):
    for sentence, spans in zip(sentences, tagger.predict(sentences)):
        print(f"  {sentence}")
        _print_spans(spans)


def _print_spans(spans):
    for span in spans:
        print(f"    {span['type']:<5} {span['text']!r} tokens "
              f"[{span['start']}, {span['end']}) chars "
              f"[{span['char_start']}, {span['char_end']})")
    if not spans:
        print("    (no entity)")


def cmd_train(args, demo=False):
    from keras_resnorm.ner.config import TrainConfig
    from keras_resnorm.ner.data import BUILTIN_NOTE
    from keras_resnorm.ner.tagger import Tagger
    from keras_resnorm.ner.train import train

    config = TrainConfig.from_flags(args, args.defaults)
    if getattr(args, "seeds", 1) > 1:
        return _train_seeds(config, args.seeds)
    started = time.perf_counter()
    model, metrics = train(config)
    if metrics is None:
        print(f"worker done; the chief writes and scores the run in "
              f"{config.run_dir}")
        return None
    entity = metrics["test_entity"]
    print()
    print(metrics["report"])
    print(f"corpus: {metrics['corpus']}")
    if metrics.get("untrained_types"):
        print(f"never trained (no training sentence has them; their "
              f"mentions count as misses): "
              f"{', '.join(metrics['untrained_types'])}")
    print(f"test entity-level micro F1: {100 * entity['f1']:.2f} "
          f"(precision {100 * entity['precision']:.2f}, recall "
          f"{100 * entity['recall']:.2f}); token accuracy, O included: "
          f"{100 * metrics['test_token_accuracy']:.2f}")
    if metrics["corpus"] == "builtin":
        print(f"NOTE: {BUILTIN_NOTE}")
    print(f"best model: {os.path.join(config.run_dir, 'best.keras')}")
    print(f"TensorBoard logs: {os.path.join(config.run_dir, 'logs')} "
          f"(tensorboard --logdir {os.path.join(config.run_dir, 'logs')})")
    exporting = 0.0
    if demo:
        from keras_resnorm.ner import export

        print("example:")
        _print_tags(Tagger(model), [EXAMPLE])
        export_started = time.perf_counter()
        path = export.export(model, os.path.join(config.run_dir, "serving",
                                                 "ner"))
        exporting = time.perf_counter() - export_started
        base = os.path.abspath(os.path.dirname(path))
        print(f"TF Serving export: {path} (serve it: docker run -p 8501:8501 "
              f"-v {base}:/models/ner -e MODEL_NAME=ner tensorflow/serving)")
    print(_time_line(time.perf_counter() - started,
                     metrics["train_seconds_this_call"], exporting))
    return metrics


def _time_line(total, training, exporting):
    """Where a run's wall time went, so a slow run shows what to cut."""
    line = (f"time: {total:.0f} s in all (after start-up): training "
            f"{training:.0f} s (XLA compiling and dev evaluation included), "
            f"the rest (loading, building, scoring) "
            f"{total - training - exporting:.0f} s")
    return line + (f", export {exporting:.0f} s" if exporting else "")


def _train_seeds(config, count):
    from keras_resnorm.ner.seeds import train_seeds

    model, summary = train_seeds(config, count)
    if summary is None:
        print(f"worker done; the chief writes and scores the runs in "
              f"{config.run_dir}")
        return None
    print()
    for name, key in (("test", "test_entity_f1"), ("dev", "dev_entity_f1")):
        s = summary[key]
        print(f"{name} entity-level micro F1 over seeds "
              f"{', '.join(map(str, summary['seeds']))}: mean "
              f"{s['mean']:.2f} (range {s['min']:.2f}-{s['max']:.2f}, "
              f"spread {s['spread']:.2f}); each: "
              + ", ".join(f"{v:.2f}" for v in s["values"]))
    best = summary["best_on_dev"]
    print(f"best on dev: seed {best}, copied to "
          f"{os.path.join(config.run_dir, 'best.keras')}")
    print(f"each run: {os.path.join(config.run_dir, 'seed-<seed>')} "
          f"(TensorBoard: tensorboard --logdir {config.run_dir}); "
          f"scores: {os.path.join(config.run_dir, 'seeds.json')}")
    return summary


def cmd_evaluate(args):
    from keras_resnorm.ner import data
    from keras_resnorm.ner.errors import load_keras_archive
    from keras_resnorm.ner.context import split_with_contexts
    from keras_resnorm.ner.evaluate import evaluate
    from keras_resnorm.ner.model import context_settings

    model = load_keras_archive(args.model)
    corpus = data.find_corpus(args.data_dir, args.download, args.cache_dir,
                              args.scheme, encoding=args.encoding)
    # A tagger with document context reads each sentence with its document.
    mode, budget = context_settings(model)
    sentences, contexts = split_with_contexts(corpus, args.split, mode,
                                              budget)
    print(f"scoring the {args.split} split of {corpus.source}: "
          f"{len(sentences)} sentences"
          + (f", document context: {mode}" if contexts else ""))
    result = evaluate(model, sentences, contexts=contexts)
    print(result["report"])
    print(json.dumps({"entity": {k: v for k, v in result["entity"].items()
                                 if k != "per_type"},
                      "token_accuracy": result["token_accuracy"]}, indent=2))


def cmd_predict(args):
    from keras_resnorm.ner.tagger import Tagger, split_sentences

    tagger = Tagger.load(args.model)
    if args.documents:
        found = tagger.predict_documents(args.sentences)
        if args.json:
            print(json.dumps(found, indent=2))
            return
        for d, (text, sentences) in enumerate(zip(args.sentences, found)):
            print(f"document {d + 1}:")
            for tokens, spans in zip(split_sentences(text), sentences):
                print(f"  {text[tokens[0][1]:tokens[-1][2]]}")
                _print_spans(spans)
    elif args.json:
        print(json.dumps(tagger.predict(args.sentences), indent=2))
    else:
        _print_tags(tagger, args.sentences)


def cmd_export(args):
    from keras_resnorm.ner import export

    path = export.export(args.model, args.base, version=args.version,
                         warmup=not args.no_warmup, xla=args.xla,
                         model_name=args.model_name)
    print(f"exported {path} ({export.export_size(path) / 1e6:.1f} MB)")


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < 1:
        raise argparse.ArgumentTypeError(
            f"must be an int >= 1. Received: {text!r}")
    return value


def build_parser():
    from keras_resnorm.ner.config import TrainConfig, add_flags

    # --debug is taken before or after the subcommand.
    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument("--debug", action="store_true",
                       default=argparse.SUPPRESS,
                       help="show the traceback of an expected failure "
                            "and TensorFlow's own log lines "
                            f"(or set {DEBUG_ENV}=1)")
    debug.add_argument("--verbose", action="store_true",
                       default=argparse.SUPPRESS,
                       help="show TensorFlow's start-up lines and library "
                            "warnings")
    parser = argparse.ArgumentParser(prog="keras-resnorm", parents=[debug])
    top = parser.add_subparsers(dest="group", required=True)
    ner = top.add_parser("ner", parents=[debug],
                         help="the named-entity-recognition showcase")
    sub = ner.add_subparsers(dest="command", required=True)

    def add(name, **kwargs):
        return sub.add_parser(name, parents=[debug], **kwargs)

    demo = add("demo", help="train briefly, evaluate, tag an "
                          "example, export for TF Serving (CoNLL-2003 when "
                          "found, else the built-in corpus)")
    # The flags are made from the config's fields (config.py).
    demo_defaults = dataclasses.replace(
        TrainConfig(), run_dir=os.path.join("runs", "ner-demo"),
        max_minutes=3.0, epochs=20)
    add_flags(demo, demo_defaults)
    demo.set_defaults(defaults=demo_defaults)
    train = add("train", help="train a tagger")
    add_flags(train)
    train.add_argument(
        "--seeds", type=_positive_int, default=1, metavar="N",
        help="train N runs with seeds --seed to --seed + N - 1, each in "
             "RUN_DIR/seed-<seed> with 1/N of --max-minutes, and report "
             "the mean and range of their scores; RUN_DIR/best.keras is "
             "the run best on dev (default: 1, one run in RUN_DIR)")
    train.set_defaults(defaults=TrainConfig())

    evaluate = add("evaluate", help="score a saved tagger")
    evaluate.add_argument("--model", required=True,
                          help="a saved tagger (.keras), e.g. RUN_DIR/best.keras")
    evaluate.add_argument("--split", choices=("train", "valid", "test"),
                          default="test",
                          help="the split to score (default: %(default)s)")
    add_flags(evaluate, names=("data_dir", "download", "scheme",
                               "encoding", "cache_dir"))

    exp = add("export", help="write a versioned SavedModel for "
                         "TF Serving")
    exp.add_argument("--model", required=True, help="a saved tagger (.keras)")
    exp.add_argument("--base", default=os.path.join("serving", "models", "ner"),
                     help="model base path that TF Serving watches")
    exp.add_argument("--version", type=int, default=None,
                     help="default: the next free version")
    exp.add_argument("--model-name", default="ner",
                     help="model name in the warmup requests")
    exp.add_argument("--no-warmup", action="store_true")
    exp.add_argument("--xla", action="store_true",
                     help="mark the model call for XLA (TF Serving then "
                          "needs --xla_cpu_compilation_enabled)")

    predict = add("predict", help="tag sentences")
    predict.add_argument("--model", required=True,
                         help="a saved tagger (.keras), e.g. RUN_DIR/best.keras")
    predict.add_argument("--json", action="store_true",
                         help="print the spans as JSON")
    predict.add_argument("--documents", action="store_true",
                         help="each argument is a document, split into "
                              "sentences; character offsets count in it")
    predict.add_argument("sentences", nargs="+", help="raw text, one "
                         "sentence (or with --documents one document) an "
                         "argument")
    return parser


def main(argv=None):
    """Run the command line; an expected failure (`errors.UsageError`: a
    corpus, model file, run directory, export base or setting that cannot
    work) prints one line naming it and exits with status 2."""
    from keras_resnorm.ner.errors import UsageError

    if is_command_line() and not loud(sys.argv[1:] if argv is None
                                      else argv):
        _quiet_libraries()
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = getattr(args, "debug", False) or \
        os.environ.get(DEBUG_ENV, "") not in ("", "0")
    try:
        return _run(args)
    except UsageError as error:
        if debug:
            raise
        # Like argparse: the program, "error:", one line, no traceback.
        message = " ".join(str(error).split("\n"))
        parser.exit(2, f"keras-resnorm: error: {message}\n")


def _quiet_libraries():
    """Library warnings that read as failures on a command line (TFDS's
    `WARNING:absl:Using custom data configuration ...`, TensorFlow's Python
    warnings) stay out; `--verbose` or `--debug` lets them through. Real
    failures still reach the user as errors."""
    import logging

    for name in ("absl", "tensorflow"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _run(args):
    if args.command == "demo":
        args.overwrite = True
        cmd_train(args, demo=True)
    elif args.command == "train":
        cmd_train(args)
    elif args.command == "evaluate":
        cmd_evaluate(args)
    elif args.command == "export":
        cmd_export(args)
    else:
        cmd_predict(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
