"""The token contract: one normalization rule for vocabulary and graph."""

import numpy as np
import pytest
import tensorflow as tf

from keras_resnorm.ner import features as features_lib
from keras_resnorm.ner.features import TokenFeatures
from keras_resnorm.ner.train import build_vocabulary


def strings(t):
    return [s.decode("utf-8") for s in np.asarray(t).ravel()]


def test_non_ascii_capitals_meet_their_vocabulary_entry():
    # The vocabulary saw only lower-case forms; the graph must lower-case
    # "Éire" and "ÖSTERREICH" (non-ASCII capitals) to find them.
    words, chars = build_vocabulary(
        [(["éire", "österreich", "éire", "österreich"], ["O"] * 4)], 2)
    assert words == ["éire", "österreich"]
    layer = TokenFeatures(words, chars)
    word_ids = layer(tf.constant([["Éire", "ÖSTERREICH", "Zürich"]]))[0]
    np.testing.assert_array_equal(word_ids, [[2, 3, 1]])


def test_vocabulary_uses_the_graph_rule():
    tokens = ["Éire", "1996-08-22", "ÉIRE", "ǅemal", "İstanbul"]
    words, _ = build_vocabulary([(tokens, ["O"] * len(tokens))], 1)
    assert sorted(words) == sorted(set(strings(
        features_lib.normalize_words(tf.constant(tokens)))))
    assert "0000-00-00" in words and "éire" in words


def test_shape_prefix_suffix():
    tokens = tf.constant(["Blackburn", "EU", "1996-08-22", "élan", "a", ""])
    assert strings(features_lib.word_shape(tokens)) == [
        "Xxxxx", "XX", "dddd-dd-dd", "xxxx", "x", ""]


def test_hashed_features_are_stable_and_in_their_ranges():
    buckets = 50
    ids = features_lib.hashed_features(
        tf.constant([["Blackburn", "blackburn", "Peter", ""]]), buckets).numpy()
    assert ids.shape == (1, 4, 4)
    for i in range(4):
        assert ((ids[..., i] >= i * buckets)
                & (ids[..., i] < (i + 1) * buckets)).all()
    # Same normalized form, prefix and suffix; different shape.
    np.testing.assert_array_equal(ids[0, 0, :3], ids[0, 1, :3])
    assert ids[0, 0, 3] != ids[0, 1, 3]
    again = features_lib.hashed_features(tf.constant([["Blackburn"]]),
                                         buckets).numpy()
    np.testing.assert_array_equal(again[0, 0], ids[0, 0])


def test_suffix_and_prefix_take_utf8_characters():
    words = features_lib.normalize_words(tf.constant(["Müller", "Aß"]))
    buckets = 1000
    ids = features_lib.hashed_features(tf.constant(["Müller", "Aß"]), buckets)
    expected_suffix = tf.strings.to_hash_bucket_fast(
        tf.constant(["ler", "aß"]), buckets) + 2 * buckets
    expected_prefix = tf.strings.to_hash_bucket_fast(
        tf.constant(["m", "a"]), buckets) + buckets
    np.testing.assert_array_equal(ids[:, 2], expected_suffix)
    np.testing.assert_array_equal(ids[:, 1], expected_prefix)
    assert strings(words) == ["müller", "aß"]


def test_feature_outputs_with_and_without_hashing():
    plain = TokenFeatures(["eu"], list("EU"), max_chars=4)
    hashed = TokenFeatures(["eu"], list("EU"), max_chars=4, hash_buckets=10)
    tokens = tf.constant([["EU", "x", ""]])
    out_plain, out_hashed = plain(tokens), hashed(tokens)
    assert len(out_plain) == 4 and len(out_hashed) == 5
    assert out_hashed[3].shape == (1, 3, 4) and out_hashed[3].dtype == tf.int32
    for a, b in zip(out_plain[:3] + out_plain[3:], out_hashed[:3]
                    + out_hashed[4:]):
        np.testing.assert_array_equal(a, b)
    config = hashed.get_config()
    assert config["hash_buckets"] == 10
    assert TokenFeatures.from_config(config).hash_buckets == 10


def test_one_padding_value_everywhere():
    from keras_resnorm.ner import evaluate, model, pipeline

    assert pipeline.PAD is features_lib.PAD
    assert model.PAD is features_lib.PAD
    assert evaluate.PAD is features_lib.PAD


def test_windows_in_python_and_in_the_graph_agree():
    from keras_resnorm.ner import pipeline

    rng = np.random.default_rng(0)
    limit = 8
    for width in (0, 1, 7, 8, 9, 16, 17, 40):
        tokens = [f"t{i}" for i in range(width)]
        starts = list(features_lib.window_starts(width, limit))
        pieces = pipeline.rows([(tokens, tokens)], limit)
        assert [p[0] for p in pieces] == [tokens[s:s + limit]
                                          for s in starts]
        assert sum(len(p[0]) for p in pieces) == width
        batch = np.array([tokens] * 3, dtype=str).reshape(3, width)
        flat, n = features_lib.split_windows(tf.constant(batch), limit)
        assert int(n) == max(1, len(starts))
        # Windows as wide as the batch, up to the limit: a short batch is
        # not padded to the limit.
        size = max(1, min(width, limit))
        assert tuple(flat.shape) == (3 * int(n), size)
        rows = strings(flat[:int(n)]) if width else []
        assert [t for t in rows if t] == tokens
        values = tf.constant(rng.integers(0, 9, size=(3 * int(n), size)))
        joined = features_lib.join_windows(values, 3, n, width)
        np.testing.assert_array_equal(
            joined, np.asarray(values).reshape(3, -1)[:, :width])
    empty = tf.zeros([0, 5], tf.string)
    flat, n = features_lib.split_windows(empty, limit)
    assert tuple(flat.shape) == (0, 5)
    assert tuple(features_lib.join_windows(
        tf.zeros([0, 5]), 0, n, 5).shape) == (0, 5)


@pytest.mark.parametrize("text, tokens", [
    # A combining accent stays with its letter (NFD "Cafe" + U+0301).
    ("Cafe\u0301 Paris", ["Cafe\u0301", "Paris"]),
    # Every Unicode space separates, the zero-width space too.
    ("New\u00a0York", ["New", "York"]),
    ("New\u200bYork", ["New", "York"]),
    ("a\u3000b\u2028c\u2009d", ["a", "b", "c", "d"]),
    ("\ufeffEU rejects", ["EU", "rejects"]),
    # ... while a zero-width non-joiner inside a word keeps it one word.
    ("\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645",
     ["\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"]),
    ("EU rejects German call, U.S. says.",
     ["EU", "rejects", "German", "call", ",", "U.S.", "says", "."]),
])
def test_tokenizer_splits_on_unicode_spaces_and_keeps_marks(text, tokens):
    from keras_resnorm.ner.tagger import tokenize

    found = tokenize(text)
    assert [t for t, _, _ in found] == tokens
    # Offsets point into the text as sent.
    assert all(text[start:end] == t for t, start, end in found)


def test_hidden_words_lose_their_identity_and_keep_their_form():
    features = TokenFeatures(["eu", "rejects"], list("EUrejcts"), 8,
                             hash_buckets=50)
    tokens = tf.constant([["EU", "rejects", "Gxyzzy", ""]])
    seen = list(features(tokens))
    hidden = tf.constant([[True, False, True, False]])
    out = features_lib.hide_words(seen, hidden, hash_buckets=50)
    np.testing.assert_array_equal(out[0], [[features_lib.OOV, 3, 1, 0]])
    blank = features_lib.hashed_features(tf.constant([""]), 50)[0, 0]
    norm, kept = out[3][..., 0].numpy(), out[3][..., 1:].numpy()
    assert norm[0, 0] == norm[0, 2] == blank
    assert norm[0, 1] == seen[3][0, 1, 0]
    # Prefix, suffix and shape, casing, characters and the mask stay.
    np.testing.assert_array_equal(kept, seen[3][..., 1:])
    for i in (1, 2, 4):
        np.testing.assert_array_equal(out[i], seen[i])
    # Without hashed features only the word id changes.
    plain = list(TokenFeatures(["eu"], list("EU"), 8)(tokens))
    out = features_lib.hide_words(plain, hidden, hash_buckets=0)
    np.testing.assert_array_equal(out[0], [[1, 1, 1, 0]])
    assert len(out) == len(plain)
