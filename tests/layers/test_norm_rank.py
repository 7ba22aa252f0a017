"""A norm built at one rank and called at another normalizes the right axes.

Axes are resolved per call (keeping their sign, as Keras does), so the
output equals that of a layer built for the new rank with the same weights,
in eager, tf.function and XLA, on the fused and composite paths; when the
normalized sizes differ from the built ones the error names both shapes.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_resnorm as kr

NORMS = {"layer": kr.LayerNormalization, "rms": kr.RMSNormalization,
         "scale": kr.ScaleNormalization, "dyt": kr.DynamicTanh}
# (axis, built shape, called shape): the normalized sizes agree.
CASES = [
    (-1, (2, 2, 3), (4, 2, 2, 3)),
    ([-2, -1], (2, 2, 3), (4, 5, 2, 3)),
    (1, (2, 3, 2), (4, 3, 2, 2)),
    ([1, 2], (2, 3, 2), (4, 3, 2, 5)),
    (-1, (2, 2, 2, 3), (5, 3)),
]
RUNNERS = {
    "eager": lambda f: f,
    "function": tf.function,
    "xla": lambda f: tf.function(f, jit_compile=True),
}


def _randomize(layer, seed=0):
    rng = np.random.default_rng(seed)
    layer.set_weights([rng.normal(size=w.shape).astype("float32") + 1.0
                       for w in layer.weights])


def _options(name, fused):
    return {"fused": fused} if name in ("layer", "rms") else {}


# Only LayerNorm and RMSNorm have a fused kernel ("auto" takes it inside
# tf.function and XLA for a last axis); the others have one path.
NORM_PATHS = [("layer", "auto"), ("layer", False), ("rms", "auto"),
              ("rms", False), ("scale", False), ("dyt", False)]


@pytest.mark.parametrize("runner", RUNNERS)
@pytest.mark.parametrize("axis,built,called", CASES)
@pytest.mark.parametrize("name,fused", NORM_PATHS)
def test_build_at_one_rank_call_at_another(name, fused, axis, built, called,
                                           runner):
    cls = NORMS[name]
    x = np.random.default_rng(1).normal(size=called).astype("float32") * 3 + 1
    stale = cls(axis=axis, **_options(name, fused))
    stale.build(built)
    _randomize(stale)
    fresh = cls(axis=axis, **_options(name, fused))
    fresh.build(called)
    fresh.set_weights(stale.get_weights())
    got = np.asarray(RUNNERS[runner](stale)(x))
    want = np.asarray(fresh(x))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    if name == "layer":
        # Keras's own layer is the reference the issue was measured with.
        theirs = keras.layers.LayerNormalization(axis=axis)
        theirs.build(called)
        theirs.set_weights(stale.get_weights())
        np.testing.assert_allclose(got, np.asarray(theirs(x)), rtol=1e-4,
                                   atol=1e-4)


@pytest.mark.parametrize("name", NORMS)
@pytest.mark.parametrize("axis,built,called", [
    (-1, (2, 2, 3), (2, 3, 2)),
    (2, (2, 2, 3), (2, 3, 2, 3)),
    ([-2, -1], (2, 4, 3), (2, 3, 4)),
])
def test_sizes_that_cannot_agree_name_both_shapes(name, axis, built, called):
    layer = NORMS[name](axis=axis)
    layer.build(built)
    with pytest.raises(ValueError) as info:
        layer(np.ones(called, "float32"))
    message = str(info.value)
    assert f"was built for inputs of shape {built}" in message
    assert f"Received: inputs.shape={called}" in message


def test_rank_too_small_for_the_axis_names_it():
    layer = kr.LayerNormalization(axis=2)
    layer.build((2, 3, 4))
    with pytest.raises(ValueError, match=r"axis 2 is out of bounds for "
                       r"inputs of rank 2"):
        layer(np.ones((3, 4), "float32"))


@pytest.mark.parametrize("fused", ["auto", False])
@pytest.mark.parametrize("placement", ["pre", "post", "sandwich", "deepnorm"])
@pytest.mark.parametrize("norm", ["layer", "rms"])
def test_residual_wrapper_norms_follow_the_call_rank(norm, placement, fused):
    def make():
        return kr.ResidualWrapper(keras.layers.Dense(3, activation="tanh"),
                                  norm=norm, placement=placement, depth=2,
                                  fused=fused)

    x = np.random.default_rng(2).normal(size=(4, 2, 5, 3)).astype("float32")
    stale, fresh = make(), make()
    stale.build((2, 5, 3))
    _randomize(stale)
    fresh.build(x.shape)
    fresh.set_weights(stale.get_weights())
    want = np.asarray(fresh(x))
    for runner in RUNNERS.values():
        np.testing.assert_allclose(np.asarray(runner(stale)(x)), want,
                                   rtol=1e-5, atol=1e-5)


def test_fused_add_norm_path_is_taken_at_the_new_rank():
    # Inside tf.function, add_norm takes the fused kernel for a last-axis
    # LayerNorm; it must resolve that axis for the input it is given.
    norm = kr.LayerNormalization()
    norm.build((2, 3))
    _randomize(norm)
    skip = np.random.default_rng(3).normal(size=(4, 2, 3)).astype("float32")
    h = np.random.default_rng(4).normal(size=(4, 2, 3)).astype("float32")
    from keras_resnorm.layers._fusion import add_norm

    graph = tf.function(lambda a, b: add_norm(norm, a, b, fused=True))
    concrete = graph.get_concrete_function(skip, h)
    ops = {op.type for op in concrete.graph.get_operations()}
    assert "IdentityN" in ops  # the custom-gradient kernel
    normed, total = graph(skip, h)
    reference = kr.LayerNormalization(fused=False)
    reference.build((4, 2, 3))
    reference.set_weights(norm.get_weights())
    np.testing.assert_allclose(np.asarray(normed),
                               np.asarray(reference(skip + h)), rtol=1e-5,
                               atol=1e-5)
    np.testing.assert_allclose(np.asarray(total), skip + h, rtol=1e-6)
