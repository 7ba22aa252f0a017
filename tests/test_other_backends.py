"""The layers on Keras's JAX and PyTorch backends, with TensorFlow made
unimportable: every placement and norm trains and saves, the scanned
encoder equals the unrolled one and keeps its blocks' state, and a causal
stack leaks nothing.

`import keras_resnorm` must not need TensorFlow: only the fused kernel
(TensorFlow backend) and the NER showcase use it. Each check runs in a
fresh process, since Keras picks its backend once per process.
"""

import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent('''
    import sys

    class NoTensorFlow:
        """Any import of TensorFlow fails. (A spec whose loading fails,
        rather than an error from `find_spec`: PyTorch asks `find_spec`
        whether TensorFlow is installed, and only an import must fail.)"""

        def find_spec(self, name, path=None, target=None):
            if name == "tensorflow" or name.startswith("tensorflow."):
                import importlib.machinery
                return importlib.machinery.ModuleSpec(name, self)

        def create_module(self, spec):
            raise ImportError("TensorFlow is blocked in this check")

        def exec_module(self, module):
            raise ImportError("TensorFlow is blocked in this check")

    sys.meta_path.insert(0, NoTensorFlow())

    import keras
    import numpy as np

    import keras_resnorm as kr
    from keras_resnorm import optimizers

    assert keras.backend.backend() == sys.argv[1], keras.backend.backend()
    numpy = keras.ops.convert_to_numpy  # a tensor or variable of any backend
    # XLA on JAX; the PyTorch backend's jit_compile is torch.compile, which
    # this check leaves out.
    JIT = sys.argv[1] == "jax"
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(4, 5, 8)) * 3 + 1).astype("float32")

    # Values against float64 references of the papers' formulas.
    x64 = x.astype("float64")
    mean = x64.mean(-1, keepdims=True)
    var = ((x64 - mean) ** 2).mean(-1, keepdims=True)
    want = {"layer": (x64 - mean) / np.sqrt(var + 1e-3),
            "rms": x64 / np.sqrt((x64 ** 2).mean(-1, keepdims=True) + 1e-6)}
    for name, reference in want.items():
        y = numpy(kr.normalization(name)(x)).astype("float64")
        np.testing.assert_allclose(y, reference, rtol=1e-5, atol=1e-5)
    for name in kr.NORMALIZATIONS:
        assert np.all(np.isfinite(numpy(kr.normalization(name)(x))))

    def trains_and_saves(model, name, optimizer, check=any, **compile_args):
        """Two epochs change the weights (`check` over them), and a .keras
        round trip keeps the outputs."""
        model.compile(optimizer=optimizer, loss="mse", **compile_args)
        before = [numpy(w) for w in model.trainable_weights]
        history = model.fit(x, np.zeros_like(x), epochs=2, verbose=0)
        assert np.all(np.isfinite(history.history["loss"]))
        after = [numpy(w) for w in model.trainable_weights]
        assert check(not np.array_equal(b, a) for b, a in zip(before, after))
        path = f"{sys.argv[2]}/{name}.keras"
        model.save(path)
        loaded = keras.saving.load_model(path, safe_mode=True)
        np.testing.assert_allclose(numpy(loaded(x)), numpy(model(x)),
                                   rtol=1e-5, atol=1e-5)

    # Every placement trains a step, with our optimizer, and saves.
    for placement in ("pre", "post", "sandwich", "deepnorm", "none"):
        inputs = keras.Input((5, 8))
        h = kr.ResidualWrapper(keras.layers.Dense(8), placement=placement,
                               depth=2, dropout=0.1, seed=1)(inputs)
        model = keras.Model(inputs, kr.TransformerEncoder(
            num_layers=1, num_heads=2, intermediate_dim=16)(h))
        trains_and_saves(model, placement,
                         optimizers.AdamW(1e-2, clipnorm=1.0))

    # Every norm trains in a wrapper, and saves.
    for norm in kr.NORMALIZATIONS:
        inputs = keras.Input((5, 8))
        h = kr.ResidualWrapper(keras.layers.Dense(8), norm=norm)(inputs)
        trains_and_saves(keras.Model(inputs, h), f"norm-{norm}",
                         optimizers.AdamW(1e-2))

    # A scanned encoder (keras.ops.scan here) gives the unrolled one's
    # outputs, trains with dropout and drop path under jit, and saves.
    options = dict(num_layers=3, num_heads=2, intermediate_dim=16,
                   dropout=0.1, drop_path=0.2, seed=3)
    unrolled = kr.TransformerEncoder(**options)
    scanned = kr.TransformerEncoder(scan=True, **options)
    unrolled(x), scanned(x)
    scanned.set_unrolled_weights(unrolled.get_weights())
    np.testing.assert_allclose(numpy(scanned(x)), numpy(unrolled(x)),
                               rtol=1e-5, atol=1e-5)
    inputs = keras.Input((5, 8))
    trains_and_saves(keras.Model(inputs, scanned(inputs)), "scanned", "adam",
                     check=all, jit_compile=JIT)

    # The state a scanned block assigns (BatchNormalization's statistics)
    # is carried through keras.ops.scan, in fit under jit too: every depth
    # moves, as in the unrolled stack.
    bn = dict(num_layers=3, num_heads=2, intermediate_dim=16,
              placement="post", norm=keras.layers.BatchNormalization)
    unrolled, scanned = (kr.TransformerEncoder(**bn),
                         kr.TransformerEncoder(scan=True, **bn))
    unrolled(x), scanned(x)
    scanned.set_unrolled_weights(unrolled.get_weights())
    unrolled(x, training=True), scanned(x, training=True)
    for a, b in zip(scanned.get_unrolled_weights(), unrolled.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    inputs = keras.Input((5, 8))
    model = keras.Model(inputs, scanned(inputs))
    stacked = [w for w in scanned.non_trainable_weights if w.shape[0] == 3]
    before = [numpy(w) for w in stacked]
    model.compile("sgd", "mse", jit_compile=JIT)
    model.fit(x, x, epochs=1, verbose=0)
    for b, w in zip(before, stacked):
        assert all(not np.allclose(b[i], numpy(w)[i]) for i in range(3))

    # A causal stack (scanned, hyper-connections), under jit on JAX:
    # changing the positions after 2 leaves every output up to 2 exactly as
    # it was.
    causal = kr.TransformerEncoder(num_layers=2, num_heads=2,
                                   intermediate_dim=16, placement="hyper",
                                   scan=True, use_causal_mask=True)
    later = x.copy()
    later[:, 3:] = -later[:, 3:] * 5
    causal(x)  # a scanned stack builds eagerly
    run = causal
    if JIT:
        import jax

        run = jax.jit(lambda t: causal(t))
    a, b = numpy(run(x)), numpy(run(later))
    np.testing.assert_array_equal(a[:, :3], b[:, :3])
    assert not np.array_equal(a[:, 3:], b[:, 3:])
    assert "tensorflow" not in sys.modules
    print("ok")
''')


# PyTorch: the CPU build, `torch==2.13.0` in the test extra (setup.cfg).
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_layers_train_and_save_without_tensorflow(backend, tmp_path):
    env = dict(os.environ, KERAS_BACKEND=backend)
    run = subprocess.run([sys.executable, "-c", SCRIPT, backend,
                          str(tmp_path)], capture_output=True, text=True,
                         env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip().endswith("ok")
