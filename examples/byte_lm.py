"""A byte-level causal language model of keras_resnorm blocks.

Run: python examples/byte_lm.py [--minutes 4] [--placement pre] [--out DIR]

Trains a decoder-only Transformer (`TransformerEncoder(...,
use_causal_mask=True)`) with `model.fit` to predict the next byte of
Python source code, scores it on held-out whole files in bits per byte,
and prints text it generates. The corpus is the Python standard library's
own top-level `*.py` files, which every Python installation has offline;
since they differ between Python versions, the corpus's identity (its
folder, Python version, every file's size and SHA-256, and one digest of
them all) is written with the results. Files are split whole into train,
validation and test by a hash of their names, so the test score is on
files the model never saw.

The model has no position embedding: a causal stack learns positions
from its mask (Haviv et al. 2022, "Transformer Language Models without
Positional Encodings Still Learn Positional Information"), which keeps
this file free of custom layers. Bits per byte is the mean of
`-log2 p(next byte)`; 8 is a uniform guess.

Writes to `--out` (default `runs/byte-lm`): `results.json` (corpus,
settings, per-epoch losses, test bits per byte, the sample),
`byte_lm.keras` and TensorBoard logs in `logs/`.
"""

import argparse
import hashlib
import json
import math
import os
import sys
import sysconfig
import time
import zlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_resnorm as kr  # noqa: E402

VOCABULARY = 256  # bytes
SPLITS = ("train", "validation", "test")


def split_of(name):
    """A file's split, from a hash of its name: 1 in 20 each for test and
    validation, the rest train; the same on every machine."""
    bucket = zlib.crc32(name.encode()) % 20
    return "test" if bucket == 0 else "validation" if bucket == 1 else "train"


def load_corpus(root=None, max_files=None):
    """The standard library's top-level `*.py` files, split whole.

    Returns `(texts, identity)`: `texts[split]` is a list of byte strings,
    one per file; `identity` names the corpus exactly.
    """
    root = root or sysconfig.get_paths()["stdlib"]
    names = sorted(n for n in os.listdir(root) if n.endswith(".py"))
    if not names:
        raise ValueError(f"root has no *.py files. Received: root={root!r}")
    if max_files is not None:
        # Keep the split: take the first files of each.
        by_split = {s: [n for n in names if split_of(n) == s]
                    for s in SPLITS}
        names = sorted(n for s in SPLITS for n in by_split[s][:max_files])
    texts = {s: [] for s in SPLITS}
    files = []
    for name in names:
        with open(os.path.join(root, name), "rb") as f:
            data = f.read()
        split = split_of(name)
        texts[split].append(data)
        files.append({"name": name, "split": split, "bytes": len(data),
                      "sha256": hashlib.sha256(data).hexdigest()})
    digest = hashlib.sha256("".join(
        f"{f['name']}:{f['sha256']}\n" for f in files).encode()).hexdigest()
    identity = {
        "root": root, "python": sys.version.split()[0], "files": files,
        "sha256": digest,
        "bytes": {s: sum(len(t) for t in texts[s]) for s in SPLITS},
        "file_count": {s: len(texts[s]) for s in SPLITS},
    }
    return texts, identity


class RandomWindows(keras.utils.PyDataset):
    """Batches of `context + 1` consecutive bytes from random places of
    the training files (one stream, files joined by a NUL byte): inputs
    are the first `context`, targets the last. Seeded, so a run repeats."""

    def __init__(self, texts, context, batch_size, steps, seed=0, **kwargs):
        super().__init__(**kwargs)
        self.stream = np.frombuffer(b"\0".join(texts), np.uint8)
        if len(self.stream) <= context + 1:
            raise ValueError("the training files are shorter than the "
                             f"context. Received: context={context}")
        self.context, self.batch_size, self.steps = context, batch_size, steps
        self.rng = np.random.default_rng(seed)

    def __len__(self):
        return self.steps

    def __getitem__(self, index):
        starts = self.rng.integers(0, len(self.stream) - self.context - 1,
                                   self.batch_size)
        windows = np.stack([self.stream[s:s + self.context + 1]
                            for s in starts]).astype("int32")
        return windows[:, :-1], windows[:, 1:]


def build_model(context, dim=128, layers=4, heads=4, placement="pre",
                norm="layer", seed=0, **encoder_kwargs):
    """Bytes in, next-byte logits out: an embedding, a causal stack of our
    blocks (the final norm pre-norm needs comes with it) and a linear
    read-out."""
    inputs = keras.Input((context,), dtype="int32", name="bytes")
    h = keras.layers.Embedding(VOCABULARY, dim, name="embedding")(inputs)
    h = kr.TransformerEncoder(
        layers, heads, 4 * dim, placement=placement, norm=norm,
        use_causal_mask=True, seed=seed, name="decoder",
        **encoder_kwargs)(h)
    logits = keras.layers.Dense(VOCABULARY, name="next_byte")(h)
    return keras.Model(inputs, logits, name="byte_lm")


@keras.saving.register_keras_serializable(package="byte_lm")
def bits_per_byte(y_true, y_pred):
    """The training metric: cross-entropy in bits."""
    return keras.losses.sparse_categorical_crossentropy(
        y_true, y_pred, from_logits=True) / math.log(2.0)


def evaluate_bits_per_byte(model, texts, context, batch_size=64):
    """Bits per byte over every byte of `texts` (whole files) but each
    file's first: each file is cut into consecutive windows of `context`
    bytes, and each byte is predicted from the bytes before it in its
    window."""
    inputs, targets, weights = [], [], []
    for data in texts:
        array = np.frombuffer(data, np.uint8).astype("int32")
        for start in range(0, len(array) - 1, context):
            piece = array[start:start + context + 1]
            n = len(piece) - 1
            x = np.zeros(context, "int32")
            y = np.zeros(context, "int32")
            w = np.zeros(context, "float64")
            x[:n], y[:n], w[:n] = piece[:-1], piece[1:], 1.0
            inputs.append(x), targets.append(y), weights.append(w)
    if not inputs:
        raise ValueError("texts has no file of two bytes or more")
    inputs, targets, weights = map(np.stack, (inputs, targets, weights))
    total = 0.0
    for i in range(0, len(inputs), batch_size):
        logits = np.asarray(model.predict_on_batch(inputs[i:i + batch_size]),
                            "float64")
        logits -= logits.max(-1, keepdims=True)
        log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        picked = np.take_along_axis(
            log_p, targets[i:i + batch_size, :, None], -1)[..., 0]
        total -= float((picked * weights[i:i + batch_size]).sum())
    return total / weights.sum() / math.log(2.0)


def sample(model, prompt, length=200, temperature=0.8, seed=0):
    """`length` bytes generated after `prompt` (bytes), one at a time from
    the model's distribution at `temperature` (0 picks the likeliest);
    the model sees the last `context` bytes. Returns the bytes."""
    if temperature < 0:
        raise ValueError("temperature must be 0 or more. Received: "
                         f"temperature={temperature}")
    context = model.input_shape[1]
    rng = np.random.default_rng(seed)
    out = bytearray(prompt)
    for _ in range(length):
        window = np.zeros((1, context), "int32")
        tail = np.frombuffer(bytes(out[-context:]), np.uint8)
        window[0, :len(tail)] = tail
        logits = np.asarray(model.predict_on_batch(window),
                            "float64")[0, len(tail) - 1]
        if temperature == 0:
            out.append(int(np.argmax(logits)))
            continue
        p = np.exp((logits - logits.max()) / temperature)
        out.append(int(rng.choice(VOCABULARY, p=p / p.sum())))
    return bytes(out)


class TimeBudget(keras.callbacks.Callback):
    """Stops training after `minutes` of wall-clock time (checked after
    each batch)."""

    def __init__(self, minutes):
        super().__init__()
        self.seconds = minutes * 60.0

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if time.perf_counter() - self.start > self.seconds:
            self.model.stop_training = True


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=4.0,
                        help="training time (default: %(default)s)")
    parser.add_argument("--placement", default="pre",
                        choices=kr.placements.names())
    parser.add_argument("--norm", default="layer",
                        choices=list(kr.NORMALIZATIONS))
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--context", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--steps-per-epoch", type=int, default=200)
    parser.add_argument("--max-epochs", type=int, default=1000)
    parser.add_argument("--max-files", type=int, default=None,
                        help="files per split (default: all)")
    parser.add_argument("--corpus-dir", default=None,
                        help="a folder of *.py files (default: this "
                             "Python's standard library)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--prompt", default="def ")
    parser.add_argument("--out", default=os.path.join("runs", "byte-lm"))
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(args.seed)
    texts, identity = load_corpus(args.corpus_dir, args.max_files)
    print(f"corpus: {identity['root']} (Python {identity['python']}), "
          + ", ".join(f"{s} {identity['file_count'][s]} files "
                      f"{identity['bytes'][s]:,} bytes" for s in SPLITS)
          + f"; sha256 {identity['sha256'][:16]}")
    model = build_model(args.context, args.dim, args.layers, args.heads,
                        args.placement, args.norm, seed=args.seed)
    model.compile(
        optimizer=keras.optimizers.AdamW(args.learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[bits_per_byte], jit_compile=True)
    train = RandomWindows(texts["train"], args.context, args.batch_size,
                          args.steps_per_epoch, seed=args.seed)
    validation = RandomWindows(texts["validation"] or texts["train"],
                               args.context, args.batch_size,
                               max(1, args.steps_per_epoch // 10),
                               seed=args.seed + 1)
    os.makedirs(args.out, exist_ok=True)
    start = time.perf_counter()
    history = model.fit(
        train, validation_data=validation, epochs=args.max_epochs,
        callbacks=[TimeBudget(args.minutes),
                   keras.callbacks.TensorBoard(
                       os.path.join(args.out, "logs"))],
        verbose=2)
    train_s = time.perf_counter() - start
    test_bpb = evaluate_bits_per_byte(model, texts["test"], args.context)
    generated = sample(model, args.prompt.encode(), seed=args.seed)
    text = generated.decode("utf-8", errors="replace")
    print(f"test bits per byte: {test_bpb:.3f} on "
          f"{identity['file_count']['test']} held-out files "
          f"({identity['bytes']['test']:,} bytes), after "
          f"{len(history.epoch)} epochs in {train_s:.0f} s")
    print("sample:\n" + text)
    model.save(os.path.join(args.out, "byte_lm.keras"))
    results = {
        "corpus": identity, "settings": vars(args),
        "params": model.count_params(), "train_s": train_s,
        "history": {k: [float(v) for v in vs]
                    for k, vs in history.history.items()},
        "test_bits_per_byte": test_bpb, "sample": text,
    }
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
