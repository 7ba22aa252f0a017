"""spaCy's NER trained from scratch on the same splits, budget and metric.

    python -m benchmarks.peer_spacy --data-dir ../shared/data/conll2003 --minutes 10

The peer a user would pick instead of ours: spaCy 3.8's own `ner` pipeline
as `spacy init config -p ner -o efficiency` writes it (hashed NORM, PREFIX,
SUFFIX and SHAPE embeddings, a 4-layer maxout CNN, a transition-based
parser; no vectors, no pretrained weights), trained with spaCy's own loop
(`spacy.training.loop.train_while_improving`, its default schedule, batcher
and dev evaluation every 200 steps) until `--minutes` of wall time have
passed; the best checkpoint by spaCy's dev entity F1 is kept, as `spacy
train` keeps `model-best`. Data come from our corpus loader (the same
sentences, the same `--max-train-sentences` cut, pre-tokenized, one
sentence per Doc) and the test score from our metric (seqeval entity-level
micro F1 on IOB2 tags), so both sides are scored by the same function.
Training tokens per second are counted as ours are: the words of the
batches trained on, per second of training, with the dev evaluations and
the best model's snapshots left out.

spaCy is a benchmark-only dependency: `pip install -e ".[bench]"`.
"""

import argparse
import contextlib
import os
import tempfile
import time


def _docs(nlp, sentences):
    from spacy.tokens import Doc

    return [Doc(nlp.vocab, words=list(tokens), ents=list(tags))
            for tokens, tags in sentences]


def _iob(doc):
    return ["O" if t.ent_iob_ in ("O", "") else f"{t.ent_iob_}-{t.ent_type_}"
            for t in doc]


def predict(nlp, token_lists):
    """IOB2 tags for pre-tokenized sentences."""
    from spacy.tokens import Doc

    docs = (Doc(nlp.vocab, words=list(tokens)) for tokens in token_lists)
    return [_iob(doc) for doc in nlp.pipe(docs, batch_size=256)]


class _Excluded:
    """Seconds spent in the functions it wraps (`timed(f)`) and in
    `with timed.excluded():` blocks, to leave out of a training time."""

    def __init__(self):
        self.seconds = 0.0

    def __call__(self, function):
        def wrapped(*args, **kwargs):
            with self.excluded():
                return function(*args, **kwargs)
        return wrapped

    @contextlib.contextmanager
    def excluded(self):
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds += time.perf_counter() - started


def train_and_score(corpus, minutes, seed=0, max_train_sentences=None,
                    log=print, subset="spread"):
    """Train spaCy for `minutes`, return its dev and test entity scores.
    With `max_train_sentences`, on the sentences ours trains on with the
    same `--max-train-sentences` and `--train-subset` (`subset`)."""
    import spacy
    from spacy.cli.init_config import init_config
    from spacy.schemas import ConfigSchemaTraining
    from spacy.tokens import DocBin
    from spacy.training.initialize import init_nlp
    from spacy.training.loop import create_evaluation_callback
    from spacy.training.loop import create_train_batches
    from spacy.training.loop import train_while_improving
    from spacy.util import registry, resolve_dot_names

    from keras_resnorm.ner.evaluate import entity_scores

    train = corpus.sentences("train", max_train_sentences, subset)
    valid, test = corpus.sentences("valid"), corpus.sentences("test")
    with tempfile.TemporaryDirectory(prefix="peer-spacy-") as tmp:
        blank = spacy.blank("en")
        paths = {}
        for split, sentences in (("train", train), ("dev", valid)):
            paths[split] = os.path.join(tmp, f"{split}.spacy")
            DocBin(docs=_docs(blank, sentences)).to_disk(paths[split])
        config = init_config(lang="en", pipeline=["ner"],
                             optimize="efficiency", gpu=False)
        config["paths"]["train"] = paths["train"]
        config["paths"]["dev"] = paths["dev"]
        config["system"]["seed"] = seed
        # The wall-clock budget ends training, not a step count or patience.
        config["training"]["max_steps"] = 0
        config["training"]["patience"] = 0
        nlp = init_nlp(config)
        resolved = nlp.config.interpolate()
        T = registry.resolve(resolved["training"],
                             schema=ConfigSchemaTraining)
        train_corpus, dev_corpus = resolve_dot_names(
            resolved, [T["train_corpus"], T["dev_corpus"]])
        # Training tokens/s as ours counts them: the words of the batches
        # trained on, per second of training, dev evaluations and the
        # best model's snapshots left out.
        timed = _Excluded()
        steps = train_while_improving(
            nlp, T["optimizer"],
            create_train_batches(nlp, train_corpus, T["batcher"],
                                 T["max_epochs"]),
            timed(create_evaluation_callback(nlp, dev_corpus,
                                             T["score_weights"])),
            dropout=T["dropout"],
            accumulate_gradient=T["accumulate_gradient"],
            patience=T["patience"], max_steps=T["max_steps"],
            eval_frequency=T["eval_frequency"],
            exclude=T["frozen_components"],
            annotating_components=T["annotating_components"],
            before_update=T["before_update"])
        started = time.perf_counter()
        best, best_dev, step, epoch, words = None, -1.0, 0, 0, 0
        for _, info, is_best in steps:
            step, epoch, words = info["step"], info["epoch"], info["words"]
            if is_best is not None:
                dev = info["other_scores"].get("ents_f", 0.0)
                log(f"spacy step {step} epoch {epoch}: dev ents_f "
                    f"{100 * dev:.2f}")
                if is_best:
                    with timed.excluded():
                        best, best_dev = nlp.to_bytes(), dev
            if time.perf_counter() - started > minutes * 60:
                break
        train_seconds = time.perf_counter() - started
    if best is not None:
        nlp.from_bytes(best)
    scores = {}
    for split, sentences in (("dev", valid), ("test", test)):
        pred = predict(nlp, [t for t, _ in sentences])
        scores[split] = entity_scores([g for _, g in sentences], pred)
    return {
        "seed": seed,
        "test_entity_f1": 100 * scores["test"]["f1"],
        "test_entity_precision": 100 * scores["test"]["precision"],
        "test_entity_recall": 100 * scores["test"]["recall"],
        "dev_entity_f1": 100 * scores["dev"]["f1"],
        "spacy_dev_ents_f": 100 * best_dev,
        "train_minutes": train_seconds / 60,
        "steps": step, "epochs_started": epoch + 1,
        "train_tokens_per_second": words / max(
            train_seconds - timed.seconds, 1e-9),
        "train_sentences": len(train),
        "per_type_f1": {k: 100 * v["f1"]
                        for k, v in scores["test"]["per_type"].items()},
        "spacy": spacy.__version__,
        "config": "spacy init config -p ner -o efficiency (no vectors)",
    }


def main(argv=None):
    from benchmarks import common
    from keras_resnorm.ner import data

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-train-sentences", type=int, default=None)
    args = parser.parse_args(argv)
    corpus = data.find_corpus(args.data_dir)
    row = train_and_score(corpus, args.minutes, args.seed,
                          args.max_train_sentences)
    machine = common.machine()
    md = (common.header(f"spaCy NER from scratch ({args.minutes:g}-minute "
                        "budget)", "benchmarks.peer_spacy", argv, machine)
          + common.markdown_table([row], [
              "test_entity_f1", "test_entity_precision", "test_entity_recall",
              "dev_entity_f1", "train_minutes", "steps", "train_sentences",
              "train_tokens_per_second"]))
    common.write("peer-spacy", {"machine": machine,
                                "command": common.command(
                                    "benchmarks.peer_spacy", argv),
                                "result": row}, md)


if __name__ == "__main__":
    main()
