"""The CRF inside the tagger: every inference path returns the Viterbi path."""

import keras
import numpy as np
import tensorflow as tf

from keras_resnorm.ner import crf as crf_lib
from keras_resnorm.ner import export
from keras_resnorm.ner.evaluate import predict_tags
from keras_resnorm.ner.config import ModelConfig
from keras_resnorm.ner.model import build_model, crf_layer
from keras_resnorm.ner.model import decoder
from keras_resnorm.ner.tagger import tokenize
from test_export import capi

TAGS = ["O", "B-ORG", "I-ORG", "B-PER", "I-PER"]
SENTENCES = ["EU rejects German call to boycott British lamb .",
             "Peter Blackburn", "BRUSSELS 1996-08-22"]


def crf_tagger(**overrides):
    values = dict(layers=1, recurrent_layers=1, heads=2, d_model=16,
                  intermediate_dim=32, word_dim=8, char_dim=4, char_filters=8,
                  max_length=8, hash_buckets=50, hash_dim=4)
    values.update(overrides)
    keras.utils.set_random_seed(0)
    tagger, _, _ = build_model(ModelConfig(**values), ["eu", "peter"],
                               list("EUPetr"), TAGS)
    crf = crf_layer(tagger)
    # Scores that Viterbi must follow and argmax over the (small, untrained)
    # emissions ignores: I-X only after B-X or I-X, and every path pulled
    # towards "B-PER I-PER I-PER ...".
    transitions = np.zeros((5, 5), "float32")
    for i in range(5):
        for j, tag in enumerate(TAGS):
            if tag.startswith("I-") and TAGS[i][2:] != tag[2:]:
                transitions[i, j] = -1e4
    transitions[3, 4] = transitions[4, 4] = 5.0
    crf.transitions.assign(transitions)
    crf.start.assign(np.array([0, 0, 0, 5, 0], "float32"))
    return tagger


def argmax_and_viterbi(tagger, tokens):
    scores = tagger(tokens, training=False)
    crf = crf_layer(tagger)
    path, _ = crf_lib.viterbi_decode(scores, *crf.scores(),
                                     mask=tf.not_equal(tokens, ""))
    return np.argmax(scores, -1), path.numpy()


def test_decoder_returns_viterbi_not_argmax():
    tagger = crf_tagger()
    tokens = tf.constant([s.split() + [""] * (8 - len(s.split()))
                          for s in SENTENCES[1:]])
    argmax, viterbi = argmax_and_viterbi(tagger, tokens)
    ids, confidence = decoder(tagger)(tokens)
    mask = tokens.numpy() != b""
    np.testing.assert_array_equal(ids.numpy()[mask], viterbi[mask])
    assert (argmax[mask] != viterbi[mask]).any(), "the test needs a case " \
        "where the transitions change the path"
    assert ((confidence.numpy() > 0) == mask).all()
    # Without confidences (evaluation, Tagger): the same path, no marginals.
    ids_only, none = decoder(tagger, confidence=False)(tokens)
    assert none is None
    np.testing.assert_array_equal(ids_only, ids)


def test_export_and_c_api_serve_the_viterbi_path(tmp_path):
    tagger = crf_tagger()
    path = export.export(tagger, str(tmp_path / "ner"), warmup=False)
    assert export.xla_marked_functions(path) == []
    token_lists = [[t for t, _, _ in tokenize(s)] for s in SENTENCES]
    expected = predict_tags(tagger, token_lists)
    served = tf.saved_model.load(path).signatures["serving_default"](
        text=tf.constant(SENTENCES))
    [response] = capi(path, [{"text": SENTENCES}])["responses"]
    assert response["ok"], response
    checked = 0
    for i, want in enumerate(expected):
        n = int(served["lengths"][i])
        assert n == len(want)
        assert [t.decode() for t in served["tags"].numpy()[i, :n]] == want
        assert response["outputs"]["tags"][i][:n] == want
        checked += n
    assert checked == sum(len(t) for t in token_lists)
    # The first sentence is longer than max_length 8: windows, joined back.
    assert len(expected[0]) == 9
    # Viterbi never puts I-X after O or another type.
    for tags in expected:
        for prev, tag in zip(["O"] + tags, tags):
            if tag.startswith("I-"):
                assert prev[2:] == tag[2:], tags


def test_tagger_without_crf_decodes_by_argmax(tmp_path):
    tagger, _, core = build_model(
        ModelConfig(layers=1, recurrent_layers=0, crf=False, hash_buckets=0,
                    heads=2, d_model=16, intermediate_dim=32, word_dim=8,
                    char_dim=4, char_filters=8, max_length=8),
        ["eu"], list("EU"), TAGS)
    assert crf_layer(tagger) is None
    assert [i.name for i in core.inputs] == ["word_ids", "case_ids",
                                              "char_ids", "mask"]
    tokens = tf.constant([["EU", "x", ""]])
    probs = tf.nn.softmax(tagger(tokens)).numpy()
    ids, confidence = decoder(tagger)(tokens)
    np.testing.assert_array_equal(ids, np.argmax(probs, -1))
    np.testing.assert_allclose(confidence, probs.max(-1), rtol=1e-6)
    ids_only, none = decoder(tagger, confidence=False)(tokens)
    assert none is None
    np.testing.assert_array_equal(ids_only, ids)


def test_saved_crf_tagger_loads_and_decodes_the_same(tmp_path):
    tagger = crf_tagger()
    path = tmp_path / "tagger.keras"
    tagger.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(crf_layer(loaded).transitions,
                                  crf_layer(tagger).transitions)
    token_lists = [s.split() for s in SENTENCES]
    assert predict_tags(loaded, token_lists) == predict_tags(tagger,
                                                             token_lists)
