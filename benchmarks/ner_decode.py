"""How long tagging a dev set takes with and without the CRF's confidences.

Every dev evaluation during training, `ner evaluate` and `Tagger` need only
the tags: the Viterbi path. The TF Serving export also returns each tag's
marginal probability, which takes a forward-backward pass over the
sentence. This times `evaluate.predict_tags` over one split of a corpus
with a saved tagger, both ways, interleaved (`--repeats` rounds, the first
of each way a warm-up that traces the graph), and counts the tags on which
the two disagree (there should be none):

    python -m benchmarks.ner_decode --model runs/ner-demo/best.keras \\
        --data-dir ../shared/data/conll2003 --name ner-decode-conll2003

writes `results/<name>.{json,md}` with the median seconds of each way, the
seconds of each round and seqeval's scoring time beside them (which the
dev evaluation also pays).
"""

import argparse
import statistics
import sys
import time

from benchmarks import common

WAYS = ("with confidence", "tags only")


def measure(model_path, data_dir, split="valid", repeats=5, encoding="utf-8",
            scheme="iob2", cache_dir=None):
    """`{"rows": [...], "sentences": N, "differing_tags": N, ...}`."""
    from keras_resnorm.ner import data, evaluate
    from keras_resnorm.ner.errors import load_keras_archive

    corpus = data.load_conll_dir(data_dir, cache_dir=cache_dir,
                                 encoding=encoding, scheme=scheme)
    sentences = corpus.sentences(split)
    tokens = [t for t, _ in sentences]
    model = load_keras_archive(model_path)
    forwards = {way: evaluate.make_forward(model, confidence=way == WAYS[0])
                for way in WAYS}
    seconds = {way: [] for way in WAYS}
    predictions = {}
    for _ in range(repeats):
        for way in WAYS:
            start = time.perf_counter()
            predictions[way] = evaluate.predict_tags(
                model, tokens, forward=forwards[way])
            seconds[way].append(time.perf_counter() - start)
    start = time.perf_counter()
    f1 = evaluate.entity_scores([g for _, g in sentences],
                                predictions[WAYS[1]])["f1"]
    scoring = time.perf_counter() - start
    differing = sum(a != b for x, y in zip(*predictions.values())
                    for a, b in zip(x, y))
    rows = [{"decoding": way, "median s": statistics.median(s[1:] or s),
             "rounds s": " ".join(f"{v:.2f}" for v in s)}
            for way, s in seconds.items()]
    return {"rows": rows, "sentences": len(sentences),
            "tokens": sum(map(len, tokens)), "differing_tags": differing,
            "entity_f1": f1, "seqeval_s": scoring, "split": split,
            "speedup": rows[0]["median s"] / rows[1]["median s"]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="a saved tagger "
                        "(.keras), e.g. a run's best.keras")
    parser.add_argument("--data-dir", required=True,
                        help="CoNLL-style corpus directory")
    parser.add_argument("--split", default="valid")
    parser.add_argument("--scheme", default="iob2")
    parser.add_argument("--encoding", default="utf-8")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--repeats", type=int, default=5,
                        help="rounds of both ways; the first is a warm-up")
    parser.add_argument("--name", default="ner-decode")
    parser.add_argument("--others", default="nothing else",
                        help="what else ran on the machine meanwhile")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1. Received: "
                     f"{args.repeats}")
    result = measure(args.model, args.data_dir, args.split, args.repeats,
                     args.encoding, args.scheme, args.cache_dir)
    machine = common.machine()
    result.update(machine=machine, model=args.model, data_dir=args.data_dir,
                  repeats=args.repeats, others=args.others,
                  command=common.command("benchmarks.ner_decode", argv))
    markdown = (
        common.header("Tagging a split with and without CRF confidences",
                      "benchmarks.ner_decode", argv, machine)
        + f"Model `{args.model}`; the {args.split} split of "
        f"`{args.data_dir}`: {result['sentences']:,} sentences, "
        f"{result['tokens']:,} tokens. {args.repeats} interleaved rounds; "
        "the median leaves out the first (tracing). Also running: "
        f"{args.others}.\n\n"
        + common.markdown_table(result["rows"],
                                ["decoding", "median s", "rounds s"])
        + f"\n\nTags differing between the two ways: "
        f"{result['differing_tags']}. Tags only is "
        f"{result['speedup']:.2f}x as fast. Entity F1 "
        f"{result['entity_f1']:.4f}; seqeval's scoring took "
        f"{result['seqeval_s']:.2f} s more.\n")
    common.write(args.name, result, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
