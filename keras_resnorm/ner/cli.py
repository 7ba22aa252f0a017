"""`keras-resnorm` command line:
`keras-resnorm ner {demo,train,evaluate,export,predict}`."""

import argparse
import dataclasses
import json
import os
import sys

from keras_resnorm._start_up import DEBUG_ENV, is_command_line, loud

EXAMPLE = "EU rejects German call to boycott British lamb ."


def _add_train_flags(parser, defaults):
    from keras_resnorm import placements
    from keras_resnorm.ner.distribute import PRECISIONS, STRATEGIES
    from keras_resnorm.ner.model import ModelConfig

    m = ModelConfig()
    parser.add_argument("--data-dir", help="CoNLL-style corpus directory "
                        "(else $KERAS_RESNORM_CONLL_DIR, ../shared/data/"
                        "conll2003, --download, or the built-in corpus)")
    parser.add_argument("--download", action="store_true",
                        help="let TFDS download conll2003 when no corpus "
                             "directory is found")
    parser.add_argument("--scheme", choices=("iob2", "iob1"), default="iob2",
                        help="tag scheme of the files; iob1 is converted")
    parser.add_argument("--cache-dir", help="TFDS cache directory")
    parser.add_argument("--run-dir", default=defaults.run_dir)
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a finished run in --run-dir")
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--learning-rate", type=float,
                        default=defaults.learning_rate)
    parser.add_argument("--weight-decay", type=float,
                        default=defaults.weight_decay)
    parser.add_argument("--warmup-epochs", type=float,
                        default=defaults.warmup_epochs,
                        help="linear learning-rate warm-up length")
    parser.add_argument("--min-count", type=int, default=defaults.min_count,
                        help="training words seen fewer times get the "
                             "out-of-vocabulary id")
    parser.add_argument("--patience", type=int, default=defaults.patience)
    parser.add_argument("--max-minutes", type=float,
                        default=defaults.max_minutes,
                        help="wall-clock training budget")
    parser.add_argument("--max-train-sentences", type=int, default=None)
    parser.add_argument("--word-dropout", type=float,
                        default=defaults.word_dropout,
                        help="probability of replacing a training word by "
                             "the out-of-vocabulary id")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--xla", action="store_true",
                        help="train with jit_compile=True (compiles "
                             "first; measure whether it pays on your "
                             "machine)")
    parser.add_argument("--strategy", choices=STRATEGIES,
                        default=defaults.strategy,
                        help="default: one device; mirrored: all local GPUs "
                             "(or --cpu-devices); multiworker: the cluster "
                             "in TF_CONFIG, one process per machine")
    parser.add_argument("--cpu-devices", type=int, default=None,
                        help="split the CPU into this many logical devices "
                             "(to try --strategy mirrored without GPUs)")
    parser.add_argument("--cluster-timeout", type=float,
                        default=defaults.cluster_timeout,
                        help="seconds to wait for the TF_CONFIG workers")
    parser.add_argument("--precision", choices=PRECISIONS,
                        default=defaults.precision,
                        help="Keras dtype policy; norms keep float32 "
                             "statistics, the tag logits stay float32")
    parser.add_argument("--deterministic", action="store_true",
                        help="deterministic ops, so a resumed run ends with "
                             "the weights of an uninterrupted one")
    parser.add_argument("--backup-steps", type=int, default=None,
                        help="also back up every N batches (default: at "
                             "epoch ends only)")
    parser.add_argument("--norm", choices=("layer", "rms", "scale", "dyt"),
                        default=m.norm)
    parser.add_argument("--placement", choices=placements.cli_choices(),
                        default=m.placement,
                        help="rezero = no norm + ReZero; layerscale = "
                             "pre-norm + LayerScale; hyper / mhc = "
                             "hyper-connections / mHC over --expansion "
                             "streams")
    parser.add_argument("--expansion", type=int, default=m.expansion,
                        help="residual streams of --placement hyper/mhc")
    parser.add_argument("--layers", type=int, default=m.layers)
    parser.add_argument("--heads", type=int, default=m.heads)
    parser.add_argument("--d-model", type=int, default=m.d_model)
    parser.add_argument("--intermediate-dim", type=int,
                        default=m.intermediate_dim)
    parser.add_argument("--dropout", type=float, default=m.dropout)
    parser.add_argument("--attention-dropout", type=float, default=None,
                        help="default: the --dropout value")
    parser.add_argument("--word-dim", type=int, default=m.word_dim)
    parser.add_argument("--char-dim", type=int, default=m.char_dim)
    parser.add_argument("--char-filters", type=int, default=m.char_filters)
    parser.add_argument("--max-chars", type=int, default=m.max_chars,
                        help="characters per word the character CNN sees")
    parser.add_argument("--max-length", type=int, default=m.max_length)
    parser.add_argument("--recurrent-layers", type=int,
                        default=m.recurrent_layers,
                        help="BiLSTM blocks (each in a ResidualWrapper) "
                             "before the Transformer blocks")
    parser.add_argument("--hash-buckets", type=int, default=m.hash_buckets,
                        help="rows per hashed token feature (normalized "
                             "form, prefix, suffix, shape); 0: off")
    parser.add_argument("--hash-dim", type=int, default=m.hash_dim)
    parser.add_argument("--crf", action=argparse.BooleanOptionalAction,
                        default=m.crf,
                        help="linear-chain CRF output (Viterbi decoding)")


def _train_config(args):
    from keras_resnorm import placements
    from keras_resnorm.ner.model import ModelConfig
    from keras_resnorm.ner.train import TrainConfig

    # rezero / layerscale stand for a placement and a branch scale.
    chosen = placements.keyword_arguments(args.placement)
    model = ModelConfig(norm=args.norm, placement=chosen["placement"],
                        branch_scale=chosen.get("branch_scale"),
                        layers=args.layers,
                        heads=args.heads, d_model=args.d_model,
                        intermediate_dim=args.intermediate_dim,
                        dropout=args.dropout,
                        attention_dropout=(args.dropout
                                           if args.attention_dropout is None
                                           else args.attention_dropout),
                        word_dim=args.word_dim, char_dim=args.char_dim,
                        char_filters=args.char_filters,
                        max_chars=args.max_chars, max_length=args.max_length,
                        recurrent_layers=args.recurrent_layers,
                        hash_buckets=args.hash_buckets,
                        hash_dim=args.hash_dim, crf=args.crf,
                        expansion=args.expansion)
    return TrainConfig(
        run_dir=args.run_dir, data_dir=args.data_dir, download=args.download,
        scheme=args.scheme, cache_dir=args.cache_dir, epochs=args.epochs,
        batch_size=args.batch_size, learning_rate=args.learning_rate,
        weight_decay=args.weight_decay, warmup_epochs=args.warmup_epochs,
        min_count=args.min_count, patience=args.patience,
        max_minutes=args.max_minutes,
        max_train_sentences=args.max_train_sentences, seed=args.seed,
        word_dropout=args.word_dropout,
        jit_compile=args.xla, overwrite=args.overwrite,
        strategy=args.strategy, cpu_devices=args.cpu_devices,
        cluster_timeout=args.cluster_timeout, precision=args.precision,
        deterministic=args.deterministic, backup_steps=args.backup_steps,
        model=model)


def _print_tags(tagger, sentences):
    for sentence, spans in zip(sentences, tagger.predict(sentences)):
        print(f"  {sentence}")
        for span in spans:
            print(f"    {span['type']:<5} {span['text']!r} tokens "
                  f"[{span['start']}, {span['end']}) chars "
                  f"[{span['char_start']}, {span['char_end']})")
        if not spans:
            print("    (no entity)")


def cmd_train(args, demo=False):
    from keras_resnorm.ner.tagger import Tagger
    from keras_resnorm.ner.train import train

    config = _train_config(args)
    model, metrics = train(config)
    if metrics is None:
        print(f"worker done; the chief writes and scores the run in "
              f"{config.run_dir}")
        return None
    entity = metrics["test_entity"]
    print()
    print(metrics["report"])
    print(f"corpus: {metrics['corpus']}")
    print(f"test entity-level micro F1: {100 * entity['f1']:.2f} "
          f"(precision {100 * entity['precision']:.2f}, recall "
          f"{100 * entity['recall']:.2f}); token accuracy, O included: "
          f"{100 * metrics['test_token_accuracy']:.2f}")
    print(f"best model: {os.path.join(config.run_dir, 'best.keras')}")
    print(f"TensorBoard logs: {os.path.join(config.run_dir, 'logs')} "
          f"(tensorboard --logdir {os.path.join(config.run_dir, 'logs')})")
    if demo:
        from keras_resnorm.ner import export

        print("example:")
        _print_tags(Tagger(model), [EXAMPLE])
        path = export.export(model, os.path.join(config.run_dir, "serving",
                                                 "ner"))
        base = os.path.abspath(os.path.dirname(path))
        print(f"TF Serving export: {path} (serve it: docker run -p 8501:8501 "
              f"-v {base}:/models/ner -e MODEL_NAME=ner tensorflow/serving)")
    return metrics


def cmd_evaluate(args):
    from keras_resnorm.ner import data
    from keras_resnorm.ner.errors import load_keras_archive
    from keras_resnorm.ner.evaluate import evaluate

    model = load_keras_archive(args.model)
    corpus = data.find_corpus(args.data_dir, args.download, args.cache_dir,
                              args.scheme)
    sentences = corpus.sentences(args.split)
    print(f"scoring the {args.split} split of {corpus.source}: "
          f"{len(sentences)} sentences")
    result = evaluate(model, sentences)
    print(result["report"])
    print(json.dumps({"entity": {k: v for k, v in result["entity"].items()
                                 if k != "per_type"},
                      "token_accuracy": result["token_accuracy"]}, indent=2))


def cmd_predict(args):
    from keras_resnorm.ner.tagger import Tagger

    tagger = Tagger.load(args.model)
    if args.json:
        print(json.dumps(tagger.predict(args.sentences), indent=2))
    else:
        _print_tags(tagger, args.sentences)


def cmd_export(args):
    from keras_resnorm.ner import export

    path = export.export(args.model, args.base, version=args.version,
                         warmup=not args.no_warmup, xla=args.xla,
                         model_name=args.model_name)
    print(f"exported {path} ({export.export_size(path) / 1e6:.1f} MB)")


def build_parser():
    from keras_resnorm.ner.train import TrainConfig

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
    _add_train_flags(demo, dataclasses.replace(
        TrainConfig(), run_dir=os.path.join("runs", "ner-demo"),
        max_minutes=3.0, epochs=6, patience=4))
    train = add("train", help="train a tagger")
    _add_train_flags(train, TrainConfig())

    evaluate = add("evaluate", help="score a saved tagger")
    evaluate.add_argument("--model", required=True)
    evaluate.add_argument("--split", choices=("train", "valid", "test"),
                          default="test")
    evaluate.add_argument("--data-dir")
    evaluate.add_argument("--download", action="store_true")
    evaluate.add_argument("--scheme", choices=("iob2", "iob1"), default="iob2")
    evaluate.add_argument("--cache-dir")

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
    predict.add_argument("--model", required=True)
    predict.add_argument("--json", action="store_true")
    predict.add_argument("sentences", nargs="+")
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
