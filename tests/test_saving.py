"""A model that uses every public layer survives .keras and SavedModel."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_resnorm as kr


def every_layer_model(dtype=None, rate=0.1):
    # rate=0 leaves out every random draw (dropout, drop path).
    inputs = keras.Input((None,), dtype="int32", name="ids")
    h = keras.layers.Embedding(50, 16, mask_zero=True, dtype=dtype)(inputs)
    h = kr.LayerNormalization(unit_offset=True, dtype=dtype)(h)
    h = kr.TransformerEncoder(num_layers=2, num_heads=2, intermediate_dim=32,
                              norm="rms", placement="pre", drop_path=rate,
                              branch_scale="layerscale", dtype=dtype)(h)
    h = kr.TransformerEncoder(num_layers=3, num_heads=2, intermediate_dim=32,
                              placement="post", dropout=rate, drop_path=rate,
                              scan=True, dtype=dtype)(h)
    h = kr.TransformerEncoderBlock(num_heads=2, intermediate_dim=32,
                                   placement="deepnorm", depth=3,
                                   dtype=dtype)(h)
    h = kr.ResidualWrapper(kr.SelfAttention(2, dtype=dtype),
                           placement="sandwich", norm="scale", dtype=dtype)(h)
    h = kr.ResidualWrapper(kr.FeedForward(32, dtype=dtype), placement="none",
                           branch_scale="rezero", dtype=dtype)(h)
    h = kr.ResidualWrapper(keras.layers.Dense(8, dtype=dtype), norm="dyt",
                           placement="post", dropout=rate, dtype=dtype)(h)
    h = kr.DynamicTanh(dtype=dtype)(h)
    h = kr.ScaleNormalization(dtype=dtype)(h)
    h = kr.RMSNormalization(dtype=dtype)(h)
    h = kr.DropPath(rate, dtype=dtype)(h)
    outputs = keras.layers.Dense(5, dtype="float32")(h)
    return keras.Model(inputs, outputs)


def data():
    rng = np.random.default_rng(0)
    x = rng.integers(1, 50, size=(8, 7)).astype("int32")
    x[:, 5:] = 0
    return x, rng.integers(0, 5, size=(8, 7))


def trained_model(dtype=None):
    model = every_layer_model(dtype)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(
        from_logits=True))
    x, y = data()
    model.fit(x, y, epochs=2, verbose=0)
    return model


@pytest.fixture(scope="module")
def float32_model():
    """The float32 model trained once, for the tests that only read it."""
    return trained_model()


@pytest.mark.parametrize("policy", [None, "mixed_float16", "mixed_bfloat16"])
def test_keras_file_round_trip_safe_mode(tmp_path, policy, float32_model):
    model = float32_model if policy is None else trained_model(policy)
    x, _ = data()
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(loaded.predict(x, verbose=0),
                               model.predict(x, verbose=0), atol=1e-6)
    assert [type(layer) for layer in loaded.layers] == [
        type(layer) for layer in model.layers]
    norm_weights = [w for w in loaded.weights
                    if w.path.split("/")[-1] in ("gamma", "beta", "scale",
                                                 "alpha")]
    assert norm_weights and all(w.dtype == "float32" for w in norm_weights)


def test_saved_model_export_and_reload(tmp_path, float32_model):
    model = float32_model
    x, _ = data()
    path = str(tmp_path / "export")
    model.export(path, format="tf_saved_model", verbose=False)
    reloaded = tf.saved_model.load(path)
    np.testing.assert_allclose(reloaded.serve(tf.constant(x)).numpy(),
                               model.predict(x, verbose=0), atol=1e-5)
    # TF Serving refuses XLA-marked functions by default: none may be there.
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    with open(f"{path}/saved_model.pb", "rb") as f:
        proto.ParseFromString(f.read())
    library = proto.meta_graphs[0].graph_def.library
    assert library.function, "expected traced functions in the export"
    marked = [fn.signature.name for fn in library.function
              if fn.attr["_XlaMustCompile"].b]
    assert not marked
    # TF Serving's loader and Session::Run answer it (the scanned encoder
    # is a While loop in the graph), with the Keras model's numbers.
    from ner_helpers import capi

    [response] = capi(path, [{"ids": x.tolist()}])["responses"]
    assert response["ok"], response
    np.testing.assert_allclose(response["outputs"]["output_0"],
                               model.predict(x, verbose=0), atol=1e-5)


def test_xla_compiled_fit_matches_graph_fit():
    x, y = data()
    runs = []
    for jit in (False, True):
        keras.utils.set_random_seed(3)
        # No random draws: XLA and TF's kernels draw different numbers.
        model = every_layer_model(rate=0.0)
        model.compile(keras.optimizers.SGD(0.05),
                      keras.losses.SparseCategoricalCrossentropy(
                          from_logits=True), jit_compile=jit)
        before = [np.array(w) for w in model.trainable_weights]
        history = model.fit(x, y, epochs=2, batch_size=4, shuffle=False,
                            verbose=0)
        after = [np.array(w) for w in model.trainable_weights]
        assert any(not np.allclose(a, b) for a, b in zip(after, before))
        runs.append((history.history["loss"], after))
    # Two epochs of updates, the same under XLA as in a graph.
    np.testing.assert_allclose(runs[0][0], runs[1][0], rtol=1e-4)
    for graph, xla in zip(runs[0][1], runs[1][1]):
        np.testing.assert_allclose(graph, xla, rtol=1e-3, atol=1e-5)
