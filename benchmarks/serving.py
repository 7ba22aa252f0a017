"""Serving latency and throughput: TF C API (TF Serving's path) vs in-process.

    python -m benchmarks.serving --model runs/bench/ours-seed0/best.keras

Exports the tagger, then measures one-sentence latency (p50, p99) and
throughput at batch 1, 8 and 64 three ways: through TensorFlow's C API in
a separate process that does not import TF Python (the C++ loader and
Session::Run that TF Serving uses; `serving/capi_contract.py`), through
Keras `model.predict` in process, and through the exported
`serving_default` signature called as a tf.function in process. Then the
sentence-length curve: one sentence of 5, 20, 50 and 120 tokens through
the C API (`LENGTHS`), since recurrent and Viterbi loops take one step per
token. Then a document of `DOCUMENT_SENTENCES` sentences: one
`tag_documents` request, one `serving_default` request of the same
sentences, and the sentences as that many one-sentence requests, one after
another (the sum of their medians), all through the C API. Writes
results/serving-<machine>.json and .md.
"""

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

from benchmarks import common

ROOT = pathlib.Path(__file__).resolve().parents[1]
SENTENCES = [
    "EU rejects German call to boycott British lamb .",
    "Peter Blackburn",
    "The European Commission said on Thursday it disagreed with German "
    "advice to consumers to shun British lamb until scientists determine "
    "whether mad cow disease can be transmitted to sheep .",
    "Germany 's representative to the European Union 's veterinary "
    "committee Werner Zwingmann said on Wednesday consumers should buy "
    "sheepmeat from countries other than Britain .",
]


LENGTHS = (5, 20, 50, 120)
DOCUMENT_SENTENCES = 20


def sentence_of(length):
    """A sentence of `length` tokens, cut from `SENTENCES` end to end."""
    words = " ".join(SENTENCES).split()
    return " ".join(words[i % len(words)] for i in range(length))


def _capi(path, signature, requests, repeats):
    """Run `requests` through the C API tool; its parsed answer."""
    spec = {"signature": signature, "repeat": repeats, "requests": requests}
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run(
        [sys.executable, str(ROOT / "serving" / "capi_contract.py"), path],
        input=json.dumps(spec), capture_output=True, text=True, env=env,
        check=True)
    return json.loads(done.stdout)


def document_rows(path, repeats):
    """A document of DOCUMENT_SENTENCES sentences served three ways."""
    document = batch_of(DOCUMENT_SENTENCES)
    as_document = _capi(path, "tag_documents", [{
        "sentences": document, "documents": [0] * len(document)}], repeats)
    plain = _capi(path, "serving_default",
                  [{"text": document}] + [{"text": [s]} for s in document],
                  repeats)
    median = [1e3 * statistics.median(r["seconds"][1:])
              for r in plain["responses"]]
    return [
        {"requests": f"1 tag_documents request of {len(document)} "
                     "sentences",
         "p50_ms": 1e3 * statistics.median(
             as_document["responses"][0]["seconds"][1:])},
        {"requests": f"1 serving_default request of {len(document)} "
                     "sentences", "p50_ms": median[0]},
        {"requests": f"{len(document)} serving_default requests of one "
                     "sentence (sum of medians)", "p50_ms": sum(median[1:])},
    ]


def batch_of(size):
    return [SENTENCES[i % len(SENTENCES)] for i in range(size)]


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def summarize(name, batch, seconds):
    return {"path": name, "batch": batch,
            "p50_ms": 1e3 * statistics.median(seconds),
            "p99_ms": 1e3 * percentile(seconds, 0.99),
            "sentences_per_s": batch / statistics.median(seconds),
            "n": len(seconds)}


def main(argv=None):
    import keras
    import tensorflow as tf

    from keras_resnorm.ner import export
    from keras_resnorm.ner.features import tokenize_text
    from keras_resnorm.ner.model import context_settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--tag", default=None)
    args = parser.parse_args(argv)
    base = tempfile.mkdtemp(prefix="serving_bench_")
    path = export.export(args.model, os.path.join(base, "ner"))
    size_mb = export.export_size(path) / 1e6

    spec = {"signature": "serving_default", "repeat": args.repeats,
            "requests": [{"text": batch_of(b)} for b in (1, 8, 64)]
            + [{"text": [sentence_of(n)]} for n in LENGTHS]}
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run(
        [sys.executable, str(ROOT / "serving" / "capi_contract.py"), path],
        input=json.dumps(spec), capture_output=True, text=True, env=env,
        check=True)
    capi = json.loads(done.stdout)
    rows = []
    # The first call of each shape pays for graph setup: dropped.
    for b, response in zip((1, 8, 64), capi["responses"]):
        rows.append(summarize("C API (TF Serving's loader)", b,
                              response["seconds"][1:]))
    lengths = [dict(summarize("C API (TF Serving's loader)", 1,
                              response["seconds"][1:]), tokens=n)
               for n, response in zip(LENGTHS, capi["responses"][3:])]

    model = keras.saving.load_model(args.model, safe_mode=True)
    loaded = tf.saved_model.load(path)
    signature = loaded.signatures["serving_default"]
    for b in (1, 8, 64):
        texts = tf.constant(batch_of(b))
        keras_s, fn_s = [], []
        for i in range(args.repeats + 1):
            start = time.perf_counter()
            tokens = tokenize_text(texts).to_tensor(default_value="")
            model.predict(tokens, verbose=0)
            t1 = time.perf_counter()
            signature(text=texts)
            t2 = time.perf_counter()
            if i:
                keras_s.append(t1 - start)
                fn_s.append(t2 - t1)
        rows.append(summarize("Keras model.predict", b, keras_s))
        rows.append(summarize("tf.function (serving_default)", b, fn_s))
    rows.sort(key=lambda r: (r["batch"], r["path"]))
    mode, _ = context_settings(model)
    # A "mentions" tagger's export has no tag_documents signature.
    documents = (document_rows(path, args.repeats)
                 if mode in export.DOCUMENT_MODES else [])
    machine = common.machine()
    tag = args.tag or common.machine_tag()
    md = (common.header(f"Serving latency and throughput ({tag})",
                        "benchmarks.serving", argv, machine)
          + f"Export: "
          f"{size_mb:.1f} MB; C API load {capi['load_seconds']:.2f} s. "
          f"{args.repeats} requests per row, one after another (C API in its "
          "own process; the two in-process paths interleaved).\n\n"
          + common.markdown_table(rows, ["batch", "path", "p50_ms", "p99_ms",
                                         "sentences_per_s"])
          + "\n\nOne sentence through the C API, by its length in tokens:"
          "\n\n" + common.markdown_table(lengths, ["tokens", "p50_ms",
                                                   "p99_ms"])
          + "\n\nA document through the C API (the tagger's document "
          f"context: {mode}):\n\n"
          + common.markdown_table(documents, ["requests", "p50_ms"]))
    common.write(f"serving-{tag}", {"machine": machine, "rows": rows,
                                    "lengths": lengths,
                                    "export_mb": size_mb,
                                    "capi_load_seconds": capi["load_seconds"],
                                    "document": documents},
                 md)


if __name__ == "__main__":
    main()
