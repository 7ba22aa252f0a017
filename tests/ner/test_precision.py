"""--precision: mixed policies train, keep float32 statistics, serve float32."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_resnorm.layers._base import NormalizationBase
from keras_resnorm.ner import export
from keras_resnorm.ner.evaluate import make_forward, predict_tags
from keras_resnorm.ner.train import train
from ner_helpers import tiny_config


class _Capture(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.trained = self.model


@pytest.mark.parametrize("precision, compute", [("mixed_float16", "float16"),
                                                ("mixed_bfloat16",
                                                 "bfloat16")])
def test_mixed_precision_run_trains_and_exports_float32(
        tmp_path, builtin_corpus, precision, compute):
    capture = _Capture()
    # 54 steps: the default average (momentum 0.99) would be the mean of
    # an untrained trajectory and find no entity (F1 0 in both policies);
    # 0.5 keeps the average (and its bias correction) under the mixed
    # policies in the test while the weights it averages are learned ones.
    tagger, metrics = train(tiny_config(tmp_path / "run", epochs=3,
                                        precision=precision,
                                        ema_momentum=0.5),
                            builtin_corpus, extra_callbacks=[capture])
    # The global policy is back to float32 once the model is built.
    assert keras.config.dtype_policy().name == "float32"
    core = capture.trained
    assert (type(core.optimizer).__name__ == "LossScaleOptimizer") == (
        precision == "mixed_float16")
    layers = list(tagger._flatten_layers(include_self=False, recursive=True))
    norms = [l for l in layers if isinstance(l, NormalizationBase)]
    assert norms and all(l.compute_dtype == compute for l in norms)
    assert all(w.dtype == "float32" for l in norms for w in l.weights)
    assert tagger.get_layer("ner_core").get_layer(
        "tag_logits").compute_dtype == "float32"
    assert np.isfinite(metrics["test_entity"]["f1"])
    assert metrics["test_entity"]["f1"] > 0.1, metrics["test_entity"]

    path = export.export(tagger, str(tmp_path / "serving" / "ner"),
                         warmup=False)
    serve = tf.saved_model.load(path).signatures["serving_default"]
    sentences = ["Anna Kovacs visited Norvale on Monday .",
                 "The Zentral Bank of Orvia said so ."]
    out = serve(text=tf.constant(sentences))
    assert out["confidence"].dtype == tf.float32
    # The served graph is the same model, but TF rewrites a loaded graph its
    # own way, and in a 16-bit compute dtype a different order of roundings
    # moves the marginals by up to a few 1e-2 (bfloat16 keeps 8 bits): a
    # near-tie may then decode differently. So: confidences agree to the
    # dtype's rounding, and every token the model is sure of (>= 0.6, a
    # clear majority) gets the same tag, and there are enough of those.
    tokens = [s.split() for s in sentences]
    width = max(len(t) for t in tokens)
    padded = tf.constant([t + [""] * (width - len(t)) for t in tokens])
    _, confidence = make_forward(tagger)(padded)
    expected = predict_tags(tagger, tokens)
    np.testing.assert_allclose(out["confidence"].numpy(),
                               np.asarray(confidence, np.float32), atol=0.06)
    sure = 0
    for row, n, want, conf in zip(out["tags"].numpy(), out["lengths"].numpy(),
                                  expected, np.asarray(confidence)):
        assert n == len(want)
        for got, tag, c in zip(row[:n], want, conf):
            if c >= 0.6:
                sure += 1
                assert got.decode() == tag, (row, want, conf)
    assert sure >= sum(map(len, tokens)) // 3, sure
