import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_resnorm import HyperConnection
from keras_resnorm.ner.config import ModelConfig
from keras_resnorm.ner.model import TokenFeatures, build_model


def features():
    return TokenFeatures(["eu", "rejects", "0000", "call"],
                         list("EUrejctsal0"), max_chars=4)


def test_graph_preprocessing_words_cases_chars_mask():
    layer = features()
    tokens = tf.constant([["EU", "rejects", "1996", "Call", "zebra", ""]])
    word_ids, case_ids, char_ids, mask = [t.numpy() for t in layer(tokens)]
    # 0 padding, 1 out of vocabulary, then the vocabulary in order.
    np.testing.assert_array_equal(word_ids, [[2, 3, 4, 5, 1, 0]])
    # lower=1 upper=2 title=3 digit=4 other=5, pad=0
    np.testing.assert_array_equal(case_ids, [[2, 1, 4, 3, 1, 0]])
    np.testing.assert_array_equal(mask, [[True] * 5 + [False]])
    assert char_ids.shape == (1, 6, 4)
    np.testing.assert_array_equal(char_ids[0, 5], [0, 0, 0, 0])
    # "rejects" truncated to 4 characters r, e, j, e.
    chars = ["", "[UNK]"] + list("EUrejctsal0")
    assert [chars[i] for i in char_ids[0, 1]] == ["r", "e", "j", "e"]


def test_invalid_utf8_and_short_batches_do_not_fail():
    layer = features()
    word_ids, _, char_ids, _ = layer(tf.constant([[b"\xff\xfeab", b"E"]]))
    assert char_ids.shape == (1, 2, 4)
    assert word_ids.numpy()[0, 0] == 1


def test_tagger_takes_raw_tokens_and_ignores_padding(tmp_path):
    tagger, _, core = build_model(
        ModelConfig(layers=1, heads=2, d_model=16, intermediate_dim=32,
                    word_dim=8, char_dim=4, char_filters=8, max_length=16),
        ["eu"], list("EU"), ["O", "B-ORG"])
    _check_padding_and_saving(tagger, ["EU", "rejects"], 3, tmp_path)


def _check_padding_and_saving(tagger, tokens, padding, tmp_path):
    """Padding ("" tokens) changes no real token's scores, and the tagger
    comes back from a `.keras` file with `safe_mode=True`."""
    short = tagger(tf.constant([tokens]))
    padded = tagger(tf.constant([tokens + [""] * padding]))
    np.testing.assert_allclose(padded[:, :len(tokens)], short, atol=1e-5)
    path = tmp_path / "tagger.keras"
    tagger.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(loaded(tf.constant([["EU", "x"]])),
                               tagger(tf.constant([["EU", "x"]])), atol=1e-6)


def test_window_conv_layer_checks():
    from layer_check import check_layer
    from keras_resnorm.ner.model import WindowConv

    check_layer(lambda dtype=None: WindowConv(6, window=2, dtype=dtype),
                (2, 7, 5), trainable_weights=2, mask_tail=3)


def test_window_cnn_tagger_ignores_padding_and_saves(tmp_path):
    config = ModelConfig(conv_layers=2, recurrent_layers=0, d_model=16,
                         word_dim=8, char_dim=4, char_filters=8,
                         max_length=16, hash_buckets=20, hash_dim=4)
    tagger, _, core = build_model(config, ["eu"], list("EU"),
                                  ["O", "B-ORG", "I-ORG"])
    assert [layer.name for layer in core.layers
            if layer.name.startswith(("conv_", "recurrent_"))] == [
        "conv_0", "conv_1"]
    _check_padding_and_saving(tagger, ["EU", "rejects", "x"], 13, tmp_path)


@pytest.mark.parametrize("norm,placement,branch_scale", [
    ("rms", "pre", None), ("dyt", "post", None), ("scale", "sandwich", None),
    ("layer", "deepnorm", None), ("layer", "none", "rezero"),
    ("rms", "pre", "layerscale"),
])
def test_every_norm_and_placement_builds(norm, placement, branch_scale):
    tagger, _, _ = build_model(
        ModelConfig(norm=norm, placement=placement, branch_scale=branch_scale,
                    layers=2, heads=2, d_model=16, intermediate_dim=32,
                    word_dim=8, char_dim=4, char_filters=8, max_length=16),
        ["eu"], list("EU"), ["O", "B-ORG", "I-ORG"])
    assert tagger(tf.constant([["EU", "x"]])).shape == (1, 2, 3)


# mhc only: the NER model builds hyper and mhc through the same path
# (placements.widens_stream), and tests/layers/test_hyper_connection.py
# checks both variants' layers (save, load, XLA, training); a second NER
# run here cost 70 s of the default test run.
@pytest.mark.parametrize("placement", ["mhc"])
def test_hyper_placements_train_save_and_export(placement, tmp_path,
                                                 builtin_corpus):
    from keras_resnorm.ner import export
    from keras_resnorm.ner.tagger import Tagger
    from keras_resnorm.ner.train import train
    from ner_helpers import capi, tiny_config

    config = tiny_config(tmp_path / "run", epochs=1)
    config.model.placement = placement
    config.model.expansion = 2
    # The window-CNN and BiLSTM blocks alone, in HyperConnections: the
    # Transformer block's two more (each 20 Sinkhorn steps) doubled the
    # test's time.
    config.model.layers = 0
    tagger, metrics = train(config, builtin_corpus)
    assert np.isfinite(metrics["dev_entity"]["f1"])
    assert any(isinstance(layer, HyperConnection)
               for layer in tagger.get_layer("ner_core").layers)
    loaded = keras.saving.load_model(tmp_path / "run" / "best.keras",
                                     safe_mode=True)
    tokens = tf.constant([["Anna", "Kovacs", "visited", "Norvale", "."]])
    np.testing.assert_allclose(loaded(tokens), tagger(tokens), atol=1e-5)
    path = export.export(loaded, str(tmp_path / "serving"))
    served = tf.saved_model.load(path).signatures["serving_default"](
        text=tf.constant(["Anna Kovacs visited Norvale ."]))
    assert int(served["lengths"][0]) == 5
    # The serving contract is unchanged: TF Serving's C++ path (the C API's
    # loader and Session::Run) answers with the Keras model's tags.
    texts = ["Anna Kovacs visited Norvale .", "EU rejects German call ."]
    [response] = capi(path, [{"text": texts}])["responses"]
    assert response["ok"], response
    keras_tags = Tagger.load(str(tmp_path / "run" / "best.keras"))
    expected = keras_tags.tag_tokens([t.split() for t in texts])
    for i, tags in enumerate(expected):
        n = response["outputs"]["lengths"][i]
        assert response["outputs"]["tags"][i][:n] == tags


@pytest.mark.parametrize("dtype", ["float32", "mixed_float16",
                                   "mixed_bfloat16"])
def test_mention_pool_averages_the_other_occurrences_of_a_name(dtype):
    from keras_resnorm.ner.model import MentionPool

    rng = np.random.default_rng(0)
    h = rng.normal(size=(2, 5, 3)).astype("float32")
    # norm-hash keys; case ids: 1 lower, 2 upper, 3 title, 5 other; mask.
    keys = np.array([[7, 8, 7, 7, 9], [4, 4, 4, 5, 0]])
    hash_ids = np.stack([keys] + [np.zeros_like(keys)] * 3, axis=-1)
    cases = np.array([[3, 3, 3, 1, 3], [2, 5, 2, 3, 0]])
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]], bool)
    want = np.zeros((2, 5, 4), "float32")
    for b in range(2):
        for i in range(5):
            same = [j for j in range(5) if j != i and keys[b, j] == keys[b, i]
                    and mask[b, j] and mask[b, i] and cases[b, i] != 1
                    and cases[b, j] != 1]
            if same:
                want[b, i, :3] = h[b, same].mean(axis=0)
                want[b, i, 3] = 1.0
    layer = MentionPool("mentions", 32, dtype=dtype)
    args = (tf.constant(h), tf.constant(hash_ids), tf.constant(cases),
            tf.constant(mask))
    out = layer(*args)
    assert out.dtype == layer.compute_dtype
    tolerance = {"float32": 1e-6, "mixed_float16": 2e-3,
                 "mixed_bfloat16": 2e-2}[dtype]
    np.testing.assert_allclose(np.asarray(out, "float32"), want,
                               atol=tolerance)
    xla = tf.function(lambda *a: layer(*a), jit_compile=True)(*args)
    np.testing.assert_allclose(np.asarray(xla, "float32"),
                               np.asarray(out, "float32"), atol=tolerance)
    clone = MentionPool.from_config(layer.get_config())
    assert (clone.context, clone.context_tokens) == ("mentions", 32)


def test_tagger_with_document_context_reads_it_and_saves(tmp_path):
    from keras_resnorm.ner.features import CONTEXT_SEPARATOR as SEP
    from keras_resnorm.ner.model import context_settings, decoder

    config = ModelConfig(conv_layers=1, recurrent_layers=0, d_model=16,
                         word_dim=8, char_dim=4, char_filters=8,
                         max_length=16, hash_buckets=20, hash_dim=4,
                         document_context="mentions", context_tokens=8,
                         dropout=0.0)
    tagger, _, _ = build_model(config, ["eu"], list("EU"),
                               ["O", "B-ORG", "I-ORG"])
    assert context_settings(tagger) == ("mentions", 8)
    sentence = ["EU", "rejects", "Leeds"]
    alone = tagger(tf.constant([sentence]))
    read = tagger(tf.constant([sentence + [SEP, "beat", "Leeds", "x"]]))
    # The other "Leeds" reaches the sentence's "Leeds" from beyond a
    # 1-block window's reach; the context is not tagged.
    assert not np.allclose(read[0, 2], alone[0, 2], atol=1e-4)
    ids, confidence = decoder(tagger)(
        tf.constant([sentence + [SEP, "beat", "Leeds", "x"]]))
    assert confidence.numpy()[0, 3:].max() == 0.0
    _check_padding_and_saving(tagger, sentence + [SEP, "Leeds"], 5, tmp_path)
    loaded = keras.saving.load_model(tmp_path / "tagger.keras",
                                     safe_mode=True)
    assert context_settings(loaded) == ("mentions", 8)
