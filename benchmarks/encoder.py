"""A 4-block, d=256 encoder: keras_resnorm blocks against keras-nlp's.

    python -m benchmarks.encoder

Both encoders are post-norm LayerNorm Transformers with the same sizes (4
heads, feed-forward 1024, dropout 0.1), compiled with XLA, fed the same
inputs. Train-step and inference times are medians of interleaved
repetitions in one process. Writes results/encoder-<machine>.json and .md.
"""

import argparse
import statistics
import time

import numpy as np

from benchmarks import common


def build(kind, fused="auto", d=256, blocks=4, heads=4, ffn=1024, length=128):
    import keras
    import keras_nlp

    import keras_resnorm as kr

    inputs = keras.Input((length, d))
    h = inputs
    for i in range(blocks):
        if kind == "keras-nlp":
            h = keras_nlp.layers.TransformerEncoder(
                ffn, heads, dropout=0.1, layer_norm_epsilon=1e-5,
                activation="gelu", name=f"block_{i}")(h)
        else:
            h = kr.TransformerEncoderBlock(
                heads, ffn, key_dim=d // heads, norm="layer",
                placement="post", dropout=0.1, attention_dropout=0.1,
                activation="gelu", norm_kwargs={"epsilon": 1e-5},
                fused=fused, name=f"block_{i}")(h)
    model = keras.Model(inputs, keras.layers.Dense(9)(h))
    model.compile(keras.optimizers.Adam(1e-4),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=True)
    return model


def main(argv=None):
    import keras
    import tensorflow as tf

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--tag", default=None)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(args.batch, args.length, 256)), tf.float32)
    y = tf.constant(rng.integers(0, 9, size=(args.batch, args.length)))
    variants = {"keras-nlp TransformerEncoder": ("keras-nlp", "auto"),
                "keras_resnorm TransformerEncoderBlock": ("ours", "auto"),
                "keras_resnorm (fused=False)": ("ours", False)}
    models, params = {}, {}
    for name, (kind, fused) in variants.items():
        keras.utils.set_random_seed(0)
        model = build(kind, fused, length=args.length)
        params[name] = model.count_params()
        model.make_train_function()
        model.make_predict_function()
        for _ in range(2):  # compile and warm up
            model.train_on_batch(x, y)
            model.predict_on_batch(x)
        models[name] = model
    train_t = {n: [] for n in models}
    infer_t = {n: [] for n in models}
    for _ in range(args.repeats):
        for name, model in models.items():
            start = time.perf_counter()
            model.train_on_batch(x, y)
            train_t[name].append(time.perf_counter() - start)
            start = time.perf_counter()
            model.predict_on_batch(x)
            infer_t[name].append(time.perf_counter() - start)
    base = "keras-nlp TransformerEncoder"
    rows = []
    for name in models:
        tr, inf = statistics.median(train_t[name]), statistics.median(infer_t[name])
        rows.append({
            "encoder": name, "parameters": params[name],
            "train_step_ms": 1e3 * tr, "inference_ms": 1e3 * inf,
            "train_speedup_vs_keras_nlp": statistics.median(train_t[base]) / tr,
            "inference_speedup_vs_keras_nlp":
                statistics.median(infer_t[base]) / inf,
            "train_samples_ms": [1e3 * t for t in train_t[name]],
            "inference_samples_ms": [1e3 * t for t in infer_t[name]],
        })
    machine = common.machine()
    tag = args.tag or common.machine_tag()
    ours = rows[1]
    md = (common.header(f"4-block d=256 post-norm encoder, XLA ({tag})",
                        "benchmarks.encoder", argv, machine)
          + f"Batch {args.batch} x {args.length} tokens, "
          f"medians of {args.repeats} interleaved repetitions.\n\n"
          + common.markdown_table(rows, [
              "encoder", "parameters", "train_step_ms", "inference_ms",
              "train_speedup_vs_keras_nlp", "inference_speedup_vs_keras_nlp"])
          + "\n\nTarget: ours no slower than keras-nlp: train "
          f"{ours['train_speedup_vs_keras_nlp']:.2f}x, inference "
          f"{ours['inference_speedup_vs_keras_nlp']:.2f}x "
          f"({'met' if min(ours['train_speedup_vs_keras_nlp'], ours['inference_speedup_vs_keras_nlp']) >= 1.0 else 'missed'}).\n")
    common.write(f"encoder-{tag}", {"machine": machine, "rows": rows}, md)


if __name__ == "__main__":
    main()
