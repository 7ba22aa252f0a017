"""Our blocks under `keras.distribution` on the JAX backend, with two host
devices (`XLA_FLAGS=--xla_force_host_platform_device_count=2`): a model of
unrolled, scanned and hyper-connection stacks trains under `DataParallel`
and under `ModelParallel` with `keras_resnorm.distribution.layout_map`, to
one device's losses, and round-trips through a `.keras` file."""

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent('''
    import sys

    import jax
    import keras
    import numpy as np

    import keras_resnorm as kr
    from keras_resnorm.distribution import layout_map

    assert len(jax.devices()) == 2, jax.devices()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 6, 16)).astype("float32")
    y = rng.normal(size=(8, 6, 4)).astype("float32")

    def model(**options):
        keras.utils.set_random_seed(0)
        inputs = keras.Input((6, 16))
        h = kr.TransformerEncoder(num_layers=2, num_heads=2,
                                  intermediate_dim=32, name="enc",
                                  **options)(inputs)
        m = keras.Model(inputs, keras.layers.Dense(4, name="head")(h))
        m.compile(keras.optimizers.SGD(0.05), "mse")
        return m

    def losses(m):
        history = m.fit(x, y, batch_size=8, epochs=3, shuffle=False,
                        verbose=0)
        return history.history["loss"]

    cases = {"unrolled": {}, "scanned": {"scan": True},
             "hyper-scanned": {"scan": True, "placement": "hyper",
                               "expansion": 2}}
    alone = {name: losses(model(**o)) for name, o in cases.items()}
    devices = keras.distribution.list_devices()
    mesh = keras.distribution.DeviceMesh((1, 2), ["batch", "model"], devices)
    distributions = {
        "data": keras.distribution.DataParallel(devices=devices),
        "model": keras.distribution.ModelParallel(
            layout_map=layout_map(mesh), batch_dim_name="batch"),
    }
    for kind, distribution in distributions.items():
        keras.distribution.set_distribution(distribution)
        for name, options in cases.items():
            m = model(**options)
            if kind == "model":
                # The feed-forward kernels are split over the two devices,
                # the scanned stack's along their feature axis only.
                kernel = [w for w in m.weights
                          if w.path.endswith(("hidden/kernel",
                                              "hidden-kernel"))]
                assert kernel, [w.path for w in m.weights]
                for w in kernel:
                    spec = tuple(w.value.sharding.spec)
                    want = ((None, "model") if len(w.shape) == 2
                            else (None, None, "model"))
                    assert spec == want, (w.path, spec)
            got = losses(m)
            np.testing.assert_allclose(got, alone[name], rtol=2e-4,
                                       atol=1e-5, err_msg=f"{kind} {name}")
            assert got[-1] < got[0], (kind, name, got)
            path = f"{sys.argv[1]}/{kind}-{name}.keras"
            m.save(path)
            loaded = keras.saving.load_model(path, safe_mode=True)
            np.testing.assert_allclose(np.asarray(loaded(x)),
                                       np.asarray(m(x)), rtol=1e-5,
                                       atol=1e-5)
            print(kind, name, ["%.6f" % v for v in got])
    print("ok")
''')


def test_blocks_train_under_data_and_model_parallel(tmp_path):
    env = dict(os.environ, KERAS_BACKEND="jax",
               XLA_FLAGS="--xla_force_host_platform_device_count=2")
    run = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)],
                         capture_output=True, text=True, env=env,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-4000:]
    assert run.stdout.strip().endswith("ok"), run.stdout[-2000:]


def test_the_layout_map_names_the_axis_it_needs():
    import keras
    import pytest

    from keras_resnorm.distribution import layout_map

    mesh = keras.distribution.DeviceMesh(
        (1,), ["batch"], keras.distribution.list_devices()[:1])
    with pytest.raises(ValueError, match=r"model_axis must be one of the "
                       r"mesh's axes \('batch',\)\. Received: "
                       r"model_axis='model'"):
        layout_map(mesh)
