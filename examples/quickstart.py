"""Build, train, save, reload and check a small model of keras_resnorm layers.

Run: python examples/quickstart.py [--epochs 3] [--out DIR]

A toy sequence task (tag each token with whether it is larger than the
sequence's mean) trained with a 2-block pre-norm RMSNorm encoder, then saved
as `.keras`, loaded back with `safe_mode=True`, and checked to give the same
predictions.
"""

import argparse
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_resnorm as kr  # noqa: E402


def make_data(n, length=12, vocab=20, seed=0):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(1, vocab, size=(n, length))
    lengths = rng.integers(4, length + 1, size=n)
    for row, size in zip(tokens, lengths):
        row[size:] = 0
    labels = np.zeros_like(tokens)
    for i, size in enumerate(lengths):
        row = tokens[i, :size]
        labels[i, :size] = row > row.mean()
    return tokens.astype("int32"), labels


def build_model(vocab=20, dim=32):
    inputs = keras.Input((None,), dtype="int32", name="tokens")
    h = keras.layers.Embedding(vocab, dim, mask_zero=True)(inputs)
    h = kr.TransformerEncoder(num_layers=2, num_heads=4,
                              intermediate_dim=2 * dim, norm="rms",
                              placement="pre")(h)
    h = kr.ResidualWrapper(keras.layers.Dense(16, activation="gelu"),
                           norm="layer", placement="post")(h)
    outputs = keras.layers.Dense(2)(h)
    return keras.Model(inputs, outputs, name="quickstart")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--out", default=None,
                        help="where to write quickstart.keras (a temp dir "
                             "by default)")
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(0)
    x, y = make_data(2048)
    x_val, y_val = make_data(256, seed=1)
    model = build_model()
    model.compile(
        optimizer=keras.optimizers.AdamW(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        weighted_metrics=["accuracy"],
    )
    model.fit(x, y, sample_weight=(x > 0).astype("float32"),
              validation_data=(x_val, y_val, (x_val > 0).astype("float32")),
              epochs=args.epochs, batch_size=64, verbose=2)
    out_dir = args.out or tempfile.mkdtemp(prefix="keras_resnorm_")
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "quickstart.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    diff = float(np.abs(loaded.predict(x_val, verbose=0)
                        - model.predict(x_val, verbose=0)).max())
    _, accuracy = loaded.evaluate(x_val, y_val,
                                  sample_weight=(x_val > 0).astype("float32"),
                                  verbose=0)
    print(f"saved {path}")
    print(f"reloaded with safe_mode=True: max |difference| = {diff:.2e}")
    print(f"validation token accuracy (padding excluded): {accuracy:.3f}")
    if diff > 1e-5:
        raise SystemExit("reloaded model disagrees with the trained one")
    return accuracy


if __name__ == "__main__":
    main()
