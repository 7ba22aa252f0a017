"""Document context: the rows a tagger with `document_context` reads, and
that they never carry a gold tag."""

import numpy as np
import pytest
import tensorflow as tf

from keras_resnorm.ner import context, pipeline
from keras_resnorm.ner.features import (
    CONTEXT_SEPARATOR as SEP,
    scored_mask,
    tokenize_text,
)

DOCUMENT = [
    "Leeds beat Chelsea 2-1 on Sunday .".split(),
    "The match was played in rain .".split(),
    "Fans of Leeds sang after the game .".split(),
    "Chelsea said nothing .".split(),
]


def test_may_be_name():
    assert [context.may_be_name(t) for t in
            ["Leeds", "EU", "iPhone", "the", "2-1", ".", "\u5317\u4eac"]] == [
        True, True, True, False, False, False, True]


def test_neighbours_take_the_nearest_sentences_after_before_within_budget():
    contexts = context.document_contexts(DOCUMENT, "neighbours", 100)
    assert contexts[1] == [SEP] + DOCUMENT[2] + [SEP] + DOCUMENT[0] + [
        SEP] + DOCUMENT[3]
    short = context.document_contexts(DOCUMENT, "neighbours", 5)
    assert short[0] == [SEP] + DOCUMENT[1][:4]
    assert all(len(c) <= 5 for c in short)


def test_mentions_copy_the_other_occurrences_of_name_like_words():
    contexts = context.document_contexts(DOCUMENT, "mentions", 100, span=1)
    # "Leeds" is in sentence 2 ("of Leeds sang"), "Chelsea" in 3; "The" is
    # not a name: the document writes "the" too; "Sunday" is alone.
    assert contexts[0] == [SEP, "of", "Leeds", "sang", SEP, "Chelsea",
                           "said"]
    assert contexts[1] == []
    assert contexts[3] == [SEP, "beat", "Chelsea", "2-1"]
    # Nearest sentences first; the budget cuts.
    assert context.document_contexts(DOCUMENT, "mentions", 4, span=1)[0] == [
        SEP, "of", "Leeds", "sang"]


def test_a_sentence_alone_has_no_context_and_bad_modes_are_refused():
    for mode in context.MODES:
        assert context.document_contexts([DOCUMENT[0]], mode, 64) == [[]]
    assert context.document_contexts(DOCUMENT, "none", 64) == [[]] * 4
    with pytest.raises(ValueError, match="mode must be one of.*'nearby'"):
        context.document_contexts(DOCUMENT, "nearby", 64)


def test_the_separator_is_never_a_token_of_text_and_ends_the_scored_part():
    text = tf.constant([f"EU{SEP}rejects \x1c it"])
    assert tokenize_text(text).to_list() == [[b"EU", b"rejects", b"it"]]
    tokens = tf.constant([["EU", "rejects", SEP, "EU", "said", SEP, "x"],
                          ["Leeds", "", "", "", "", "", ""]])
    np.testing.assert_array_equal(scored_mask(tokens), [
        [True, True, False, False, False, False, False],
        [True, False, False, False, False, False, False]])


def test_rows_carry_context_tokens_but_never_their_tags():
    tags = ["O", "B-ORG", "B-LOC"]
    document = [(DOCUMENT[0], ["B-ORG", "O", "B-ORG"] + ["O"] * 4),
                (DOCUMENT[2], ["O", "O", "B-ORG"] + ["O"] * 4),
                (DOCUMENT[3], ["B-ORG", "O", "O", "O"])]
    relabelled = [(tokens, ["B-LOC" if t != "O" else t for t in labels])
                  for tokens, labels in document]

    def batches(documents):
        sentences, contexts = context.with_contexts(documents, "mentions",
                                                    16)
        ds = pipeline.make_dataset(sentences, tags, batch_size=8,
                                   contexts=contexts)
        return sentences, contexts, next(iter(ds))

    sentences, contexts, (tokens, tag_ids, weights) = batches([document])
    _, other_contexts, (_, other_ids, other_weights) = batches([relabelled])
    # Context is a function of the tokens: other gold tags, same context.
    assert contexts == other_contexts
    assert any(contexts)
    for row, (tokens_row, ids_row, weights_row) in enumerate(
            zip(tokens.numpy(), tag_ids.numpy(), weights.numpy())):
        words = [t.decode() for t in tokens_row]
        i = next(i for i, (s, _) in enumerate(sentences)
                 if words[:len(s)] == s)
        n, c = len(sentences[i][0]), len(contexts[i])
        assert words[n:n + c] == contexts[i]
        # Only the sentence's own tokens are targets.
        np.testing.assert_array_equal(weights_row,
                                      [1.0] * n + [0.0] * (len(words) - n))
        assert not ids_row[n:].any()
    # The relabelled sentences change the targets, not what is read.
    np.testing.assert_array_equal(weights, other_weights)
    assert (tag_ids.numpy() != other_ids.numpy()).any()
    assert pipeline.num_batches(sentences, 1, 128, contexts) == 3


@pytest.mark.parametrize("subset", ["spread", "first"])
def test_split_with_contexts_keeps_the_same_sentences_with_or_without_context(
        builtin_corpus, subset):
    plain, none = context.split_with_contexts(builtin_corpus, "train",
                                              "none", 64, 50, subset)
    assert none is None
    assert plain == builtin_corpus.sentences("train", 50, subset)
    ordered, contexts = context.split_with_contexts(
        builtin_corpus, "train", "neighbours", 64, 50, subset)
    assert sorted(map(str, ordered)) == sorted(map(str, plain))
    assert len(contexts) == 50 and all(c[0] == SEP for c in contexts)
    everything, _ = context.split_with_contexts(builtin_corpus, "train",
                                                "none", 64)
    assert everything == builtin_corpus.sentences("train")


def test_a_context_tagger_trains_evaluates_and_tags_documents(
        tmp_path, builtin_corpus, capsys):
    import json

    from keras_resnorm.ner import cli
    from keras_resnorm.ner.evaluate import predict_tags
    from keras_resnorm.ner.tagger import Tagger, tokenize
    from keras_resnorm.ner.train import train
    from ner_helpers import tiny_config

    # Seven steps: the training weights (the default average would be the
    # mean of seven untrained steps, whose raw tags need not be well formed,
    # and this test compares raw tags with spans).
    config = tiny_config(tmp_path / "run", epochs=1, max_train_sentences=120,
                         ema_momentum=0.0)
    config.model.document_context = "mentions"
    config.model.context_tokens = 24
    _, metrics = train(config, builtin_corpus)
    assert metrics["config"]["model"]["document_context"] == "mentions"
    assert metrics["test_entity"]["support"] > 0
    path = str(tmp_path / "run" / "best.keras")
    tagger = Tagger.load(path)

    # Documents are read with their context; a sentence alone is not.
    document = ["Anna Kovacs visited Norvale .",
                "Kovacs left Norvale on Monday ."]
    tokens = [[t for t, _, _ in tokenize(s)] for s in document]
    contexts = context.document_contexts(tokens, "mentions", 24)
    assert contexts[0] and contexts[1]
    expected = predict_tags(tagger.model, tokens, contexts=contexts)
    [spans] = tagger.predict_documents([document])
    got = [["O"] * len(t) for t in tokens]
    for i, sentence in enumerate(spans):
        for span in sentence:
            got[i][span["start"]:span["end"]] = (
                ["B-" + span["type"]]
                + ["I-" + span["type"]] * (span["end"] - span["start"] - 1))
    assert got == expected
    assert tagger.predict_documents([document[:1]]) == [
        tagger.predict(document[:1])]

    capsys.readouterr()
    assert cli.main(["ner", "evaluate", "--model", path, "--data-dir",
                     builtin_corpus.source, "--split", "test"]) in (0, None)
    out = capsys.readouterr().out
    assert "document context: mentions" in out
    printed = json.loads(out[out.rindex('{\n  "entity"'):])
    assert printed["entity"]["f1"] == pytest.approx(
        metrics["test_entity"]["f1"])


def test_context_settings_are_checked():
    from keras_resnorm.ner.config import ModelConfig, TrainConfig
    from keras_resnorm.ner.errors import ConfigError

    with pytest.raises(ConfigError, match=r"document_context must be one of "
                       r"\('none', 'neighbours', 'mentions'\). Received: "
                       r"document_context='nearby'"):
        ModelConfig(document_context="nearby").validate()
    with pytest.raises(ConfigError, match=r"needs hashed features .* "
                       r"Received: document_context='mentions', "
                       r"hash_buckets=0"):
        ModelConfig(document_context="mentions", hash_buckets=0).validate()
    with pytest.raises(ConfigError, match=r"mention_replacement cannot be "
                       r"combined with document_context"):
        TrainConfig(mention_replacement=0.3, model=ModelConfig(
            document_context="mentions")).validate()
    with pytest.raises(ConfigError, match=r"context_tokens must be"):
        ModelConfig(context_tokens=0).validate()


def test_the_graph_neighbour_rule_equals_the_python_rule():
    # Random documents: empty sentences, one-sentence documents, budgets
    # that cut a piece or leave room for a separator only.
    import random

    rng = random.Random(0)
    words = ["Leeds", "beat", "EU", "it", "."]
    for _ in range(25):
        documents = [[[rng.choice(words) for _ in range(rng.randint(0, 5))]
                      for _ in range(rng.randint(1, 6))]
                     for _ in range(rng.randint(0, 4))]
        budget = rng.randint(1, 12)
        flat = [s for d in documents for s in d]
        ids = [i for i, d in enumerate(documents) for _ in d]
        want = [c for d in documents
                for c in context.document_contexts(d, "neighbours", budget)]
        tokens = tf.RaggedTensor.from_row_lengths(
            tf.constant([t for s in flat for t in s], tf.string),
            tf.constant([len(s) for s in flat], tf.int64))
        got = context.neighbour_contexts_graph(
            tokens, tf.constant(ids, tf.int32), budget).to_list()
        assert [[t.decode() for t in row] for row in got] == want, (
            documents, budget)
