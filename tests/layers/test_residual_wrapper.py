
import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_resnorm import (
    ResidualWrapper,
    SelfAttention,
    deepnorm_constants,
    layerscale_init_for_depth,
)
from keras_resnorm import ops as rn_ops
from layer_check import check_layer

PLACEMENTS = ["pre", "post", "sandwich", "deepnorm", "none"]
NORMS = ["layer", "rms", "scale", "dyt"]


def dense_wrapper(units=6, **options):
    # tanh: with a linear branch, sandwich ScaleNorm's first gain is
    # scale-invariant and gets an exactly zero gradient.
    def make(dtype=None):
        return ResidualWrapper(
            keras.layers.Dense(units, activation="tanh", dtype=dtype),
            dtype=dtype, **options)
    return make


@pytest.mark.parametrize("placement", PLACEMENTS)
@pytest.mark.parametrize("norm", NORMS)
def test_generic_check_every_placement_and_norm(placement, norm):
    check_layer(dense_wrapper(norm=norm, placement=placement, depth=4),
                (4, 5, 6), mask_tail=2, float32_weights="*")


@pytest.mark.parametrize("options", [
    {"branch_scale": "rezero", "placement": "none"},
    {"branch_scale": "layerscale", "depth": 24},
    {"branch_scale": 0.5, "placement": "post"},
    {"dropout": 0.2, "drop_path": 0.1, "seed": 3},
    {"projection": True},
    {"placement": "peri", "norm": "rms"},
])
def test_generic_check_options(options):
    generators = ((options.get("dropout", 0) > 0)
                  + (options.get("drop_path", 0) > 0))
    check_layer(dense_wrapper(**options), (4, 5, 6), mask_tail=2,
                float32_weights="*", seed_generators=generators)


@pytest.mark.parametrize("placement,norms", [("pre", 1), ("sandwich", 2),
                                             ("post", 1)])
def test_norm_regularizers_reach_the_losses(placement, norms):
    check_layer(dense_wrapper(placement=placement, norm="rms",
                              norm_kwargs={"gamma_regularizer": "l2"}),
                (4, 5, 6), mask_tail=2, float32_weights="*", losses=norms)


def test_generic_check_with_projection_shortcut():
    check_layer(dense_wrapper(units=3, placement="post"), (4, 5, 6),
                trainable_weights=5, float32_weights="*")


def test_generic_check_wrapping_self_attention():
    check_layer(
        lambda dtype=None: ResidualWrapper(
            SelfAttention(num_heads=2, dtype=dtype), dtype=dtype),
        (3, 5, 8), mask_tail=2, float32_weights="*")


def _components(wrapper):
    f = wrapper.layer
    n = wrapper.norm_layer
    return f, n


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_placement_formulas(placement):
    x = np.random.default_rng(0).normal(size=(3, 4, 6)).astype("float32")
    w = ResidualWrapper(keras.layers.Dense(6), placement=placement, depth=3)
    y = np.asarray(w(x))
    f, n = _components(w)
    if placement == "pre":
        expected = x + f(n(x))
    elif placement == "post":
        expected = n(x + f(x))
    elif placement == "sandwich":
        expected = x + w.branch_norm_layer(f(n(x)))
    elif placement == "deepnorm":
        alpha = (2 * 3) ** 0.25
        assert w.deepnorm_alpha == pytest.approx(alpha)
        expected = n(alpha * x + f(x))
    else:
        assert n is None
        expected = x + f(x)
    np.testing.assert_allclose(y, np.asarray(expected), rtol=1e-5, atol=1e-6)


def test_post_norm_output_is_normalized_and_pre_norm_is_not():
    x = np.random.default_rng(0).normal(size=(3, 6)).astype("float32") * 5
    post = np.asarray(ResidualWrapper(keras.layers.Dense(6),
                                      placement="post")(x))
    np.testing.assert_allclose(post.mean(-1), 0.0, atol=1e-5)
    pre = np.asarray(ResidualWrapper(keras.layers.Dense(6),
                                     placement="pre")(x))
    assert np.abs(pre.mean(-1)).max() > 0.1


def test_rezero_starts_as_identity_and_learns():
    x = np.random.default_rng(0).normal(size=(8, 6)).astype("float32")
    w = ResidualWrapper(keras.layers.Dense(6), placement="none",
                        branch_scale="rezero")
    np.testing.assert_array_equal(np.asarray(w(x)), x)
    assert w.scale.shape == () and float(w.scale.numpy()) == 0.0
    model = keras.Sequential([keras.Input((6,)), w])
    model.compile(keras.optimizers.SGD(0.1), "mse")
    model.fit(x, x * 2, epochs=1, verbose=0)
    assert float(w.scale.numpy()) != 0.0


@pytest.mark.parametrize("depth,init", [(None, 0.1), (12, 0.1), (18, 0.1),
                                        (24, 1e-5), (36, 1e-6)])
def test_layerscale_initial_value_by_depth(depth, init):
    assert layerscale_init_for_depth(depth) == init
    w = ResidualWrapper(keras.layers.Dense(6), branch_scale="layerscale",
                        depth=depth)
    w.build((None, 6))
    np.testing.assert_array_equal(w.scale.numpy(), np.full(6, init, "float32"))


def test_layerscale_and_constant_scale_multiply_the_branch():
    x = np.random.default_rng(0).normal(size=(2, 6)).astype("float32")
    w = ResidualWrapper(keras.layers.Dense(6), branch_scale="layerscale",
                        layerscale_init=0.25)
    y = np.asarray(w(x))
    np.testing.assert_allclose(y, x + 0.25 * np.asarray(w.layer(w.norm_layer(x))),
                               rtol=1e-5, atol=1e-6)
    c = ResidualWrapper(keras.layers.Dense(6), branch_scale=0.5,
                        placement="none")
    np.testing.assert_allclose(np.asarray(c(x)),
                               x + 0.5 * np.asarray(c.layer(x)), rtol=1e-5,
                               atol=1e-6)


def test_deepnorm_constants_follow_the_paper_table():
    assert deepnorm_constants(encoder_layers=6) == pytest.approx(
        (12 ** 0.25, 48 ** -0.25))
    assert deepnorm_constants(decoder_layers=18) == pytest.approx(
        (36 ** 0.25, 144 ** -0.25))
    n, m = 100, 100
    assert deepnorm_constants(n, m, "encoder") == pytest.approx(
        (0.81 * (n**4 * m) ** (1 / 16), 0.87 * (n**4 * m) ** (-1 / 16)))
    assert deepnorm_constants(n, m, "decoder") == pytest.approx(
        ((3 * m) ** 0.25, (12 * m) ** -0.25))
    with pytest.raises(ValueError, match=r"Received: part='middle'"):
        deepnorm_constants(2, 2, "middle")


def test_deepnorm_scales_value_and_output_kernels_by_beta():
    keras.utils.set_random_seed(7)
    plain = SelfAttention(num_heads=2)
    plain.build((None, 5, 8))
    keras.utils.set_random_seed(7)
    attn = SelfAttention(num_heads=2)
    w = ResidualWrapper(attn, placement="deepnorm", depth=8)
    w.build((None, 5, 8))
    beta = (8 * 8) ** -0.25
    for ours, ref in zip(attn.weights, plain.weights):
        name = ours.path.split("/")
        expected = ref.numpy()
        if name[-1] == "kernel" and not {"query", "key"} & set(name):
            expected = expected * beta
        np.testing.assert_allclose(ours.numpy(), expected, rtol=1e-6,
                                   err_msg=ours.path)


def test_deepnorm_leaves_a_prebuilt_layer_alone():
    dense = keras.layers.Dense(4)
    dense.build((None, 4))
    kernel = dense.kernel.numpy().copy()
    ResidualWrapper(dense, placement="deepnorm", depth=4).build((None, 4))
    np.testing.assert_array_equal(dense.kernel.numpy(), kernel)


def test_article_stack_128_64_32_with_projection_shortcuts():
    inputs = keras.Input((128,))
    h = ResidualWrapper(keras.layers.Dense(64, activation="relu"))(inputs)
    h = ResidualWrapper(keras.layers.Dense(32, activation="relu"))(h)
    model = keras.Model(inputs, keras.layers.Dense(1)(h))
    assert model.output_shape == (None, 1)
    projections = [layer.projection_layer for layer in model.layers
                   if isinstance(layer, ResidualWrapper)]
    assert [p.kernel.shape for p in projections] == [(128, 64), (64, 32)]
    model.compile("adam", "mse")
    x = np.random.default_rng(0).normal(size=(32, 128)).astype("float32")
    history = model.fit(x, x[:, :1], epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))


def test_projection_false_rejects_a_size_change():
    w = ResidualWrapper(keras.layers.Dense(3), projection=False)
    with pytest.raises(ValueError, match=r"projection=False, input shape "
                       r"\(None, 6\), layer output shape \(None, 3\)"):
        w.build((None, 6))


def test_incompatible_shapes_name_both_shapes():
    w = ResidualWrapper(keras.layers.GlobalAveragePooling1D())
    with pytest.raises(ValueError, match=r"input shape \(None, 5, 6\), layer "
                       r"output shape \(None, 6\)"):
        w.build((None, 5, 6))


class _Recorder(keras.layers.Layer):
    """Records the training flag and mask it is called with."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs, training=None, mask=None):
        self.seen = (training, mask)
        return inputs


def test_passes_training_and_mask_and_propagates_the_mask():
    recorder = _Recorder()
    inputs = keras.Input((None,), dtype="int32")
    h = keras.layers.Embedding(10, 4, mask_zero=True)(inputs)
    out = ResidualWrapper(recorder)(h)
    assert out._keras_mask is not None
    model = keras.Model(inputs, out)
    model(np.array([[1, 2, 0]]), training=True)
    training, mask = recorder.seen
    assert training is True
    np.testing.assert_array_equal(np.asarray(mask), [[True, True, False]])


def test_layer_without_mask_argument_gets_none():
    w = ResidualWrapper(keras.layers.Dense(4))
    x = np.random.default_rng(0).normal(size=(1, 3, 4)).astype("float32")
    # Dense takes no mask: the wrapper must not pass one, and the mask must
    # not change the values.
    masked = w(x, mask=np.array([[True, True, False]]))
    np.testing.assert_array_equal(np.asarray(masked), np.asarray(w(x)))


def test_masked_attention_ignores_padding():
    x = np.random.default_rng(0).normal(size=(1, 6, 8)).astype("float32")
    w = ResidualWrapper(SelfAttention(num_heads=2))
    mask = np.array([[True] * 4 + [False] * 2])
    y1 = np.asarray(w(x, mask=mask))
    x2 = x.copy()
    x2[:, 4:] = 100.0  # Change only the padding.
    y2 = np.asarray(w(x2, mask=mask))
    np.testing.assert_allclose(y1[:, :4], y2[:, :4], rtol=1e-5, atol=1e-5)


def test_wraps_a_sequential_sub_block():
    block = keras.Sequential([keras.layers.Dense(16, activation="gelu"),
                              keras.layers.Dense(8)])
    check_layer(lambda dtype=None: ResidualWrapper(
        keras.Sequential([keras.layers.Dense(16, activation="gelu",
                                             dtype=dtype),
                          keras.layers.Dense(8, dtype=dtype)]),
        dtype=dtype, placement="sandwich"), (4, 3, 8), float32_weights="*",
        policies=("float32", "mixed_bfloat16"))
    assert tuple(ResidualWrapper(block)(np.ones((2, 8), "float32")).shape) == (2, 8)


def test_wraps_a_keras_nlp_layer():
    keras_nlp = pytest.importorskip("keras_nlp")
    w = ResidualWrapper(
        keras_nlp.layers.TransformerEncoder(intermediate_dim=16, num_heads=2),
        placement="none", branch_scale="rezero")
    x = np.random.default_rng(0).normal(size=(2, 5, 8)).astype("float32")
    np.testing.assert_array_equal(np.asarray(w(x)), x)
    restored = ResidualWrapper.from_config(w.get_config())
    assert type(restored.layer) is type(w.layer)


def test_drop_path_and_dropout_are_identity_at_inference():
    x = np.random.default_rng(0).normal(size=(4, 6)).astype("float32")
    w = ResidualWrapper(keras.layers.Dense(6), dropout=0.5, drop_path=0.5)
    w.build(x.shape)
    ref = x + np.asarray(w.layer(w.norm_layer(x)))
    np.testing.assert_allclose(np.asarray(w(x, training=False)), ref,
                               rtol=1e-5, atol=1e-6)
    train = np.asarray(w(np.repeat(x, 50, 0), training=True))
    assert not np.allclose(train, np.repeat(ref, 50, 0))


def test_drop_path_drops_whole_branches_per_example():
    x = np.ones((2000, 6), "float32")
    w = ResidualWrapper(keras.layers.Dense(6, kernel_initializer="ones"),
                        placement="none", drop_path=0.5, seed=1)
    y = np.asarray(w(x, training=True))
    dropped = np.all(y == 1.0, axis=1)
    assert 0.4 < dropped.mean() < 0.6


@pytest.mark.parametrize("kwargs,error,message", [
    ({"placement": "prenorm"}, ValueError,
     r"placement must be one of \('pre', 'post', 'sandwich', 'deepnorm', "
     r"'none', 'peri'\). Received: placement='prenorm'"),
    ({"norm": "batch"}, ValueError,
     r"norm must be one of \('layer', 'rms', 'scale', 'dyt'\). "
     r"Received: norm='batch'"),
    ({"dropout": -0.1}, ValueError, r"Received: dropout=-0.1"),
    ({"drop_path": 1.0}, ValueError, r"Received: drop_path=1.0"),
    ({"branch_scale": "rezer0"}, ValueError, r"Received: branch_scale='rezer0'"),
    ({"depth": 0}, ValueError, r"Received: depth=0"),
    ({"placement": "deepnorm"}, ValueError, r"Received: depth=None"),
    ({"projection": "yes"}, ValueError, r"Received: projection='yes'"),
    ({"norm_kwargs": 3}, TypeError, r"Received: norm_kwargs=3"),
    ({"fused": "always"}, ValueError, r"Received: fused='always'"),
])
def test_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        ResidualWrapper(keras.layers.Dense(4), **kwargs)


def test_bad_layer_and_inputs():
    with pytest.raises(TypeError, match=r"Received: layer=<function"):
        ResidualWrapper(lambda x: x)
    with pytest.raises(TypeError, match=r"Received: inputs.dtype=int32"):
        ResidualWrapper(keras.layers.Dense(4))(np.ones((2, 4), "int32"))


def test_norm_kwargs_reach_the_norms():
    w = ResidualWrapper(keras.layers.Dense(4), norm="rms", placement="sandwich",
                        norm_kwargs={"epsilon": 0.5})
    assert w.norm_layer.epsilon == 0.5 and w.branch_norm_layer.epsilon == 0.5


@pytest.mark.parametrize("placement", ["post", "deepnorm", "pre", "sandwich"])
@pytest.mark.parametrize("norm", ["layer", "rms"])
def test_fused_and_reference_paths_agree(placement, norm):
    rng = np.random.default_rng(4)
    x = tf.constant(rng.normal(size=(3, 5, 8)) * 3, tf.float32)
    outputs = {}
    for fused in (True, False):
        keras.utils.set_random_seed(9)
        w = ResidualWrapper(keras.layers.Dense(8, activation="tanh"),
                            norm=norm, placement=placement, depth=2,
                            fused=fused)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = w(x)
            loss = tf.reduce_sum(y * tf.sin(y))
        grads = tape.gradient(loss, [x] + w.trainable_weights)
        outputs[fused] = [y] + grads
        assert w.get_config()["fused"] is fused
        # Each side took the path it names: the kernel is a custom gradient
        # (an IdentityN op in the graph), the composite path is not.
        assert uses_fused_kernel(w, x) is fused
    for a, b in zip(outputs[True], outputs[False]):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4,
                                   atol=1e-4)


@pytest.mark.parametrize("placement", ["post", "sandwich"])
def test_generic_check_reference_path(placement):
    check_layer(dense_wrapper(placement=placement, fused=False), (4, 5, 6),
                mask_tail=2, float32_weights="*")


def uses_fused_kernel(fn, *args):
    """Whether tracing `fn(*args)` puts the fused kernel in the graph."""
    graph = tf.function(fn).get_concrete_function(*args).graph
    return any(op.type == "IdentityN" for op in graph.get_operations())


def test_fused_add_norm_equals_post_norm_wrapper_output():
    x = tf.constant(np.random.default_rng(0).normal(size=(3, 6)), tf.float32)
    w = ResidualWrapper(keras.layers.Dense(6), placement="post", norm="layer")
    composite = np.asarray(w(x))  # "auto" runs the composite path eagerly
    assert uses_fused_kernel(w, x)  # ... and the kernel inside tf.function
    graph = np.asarray(tf.function(w)(x))

    def kernel(x):
        return rn_ops.fused_add_norm(w.layer(x), x, w.norm_layer.gamma,
                                     w.norm_layer.beta, epsilon=1e-3,
                                     fused=True)[0]

    assert uses_fused_kernel(kernel, x)
    fused = np.asarray(kernel(x))
    np.testing.assert_allclose(composite, fused, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(graph, fused, rtol=1e-5, atol=1e-6)
    assert np.all(np.isfinite(fused)) and np.abs(fused).max() > 0.1
