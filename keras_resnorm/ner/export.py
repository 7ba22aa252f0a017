"""Export a trained tagger as a versioned SavedModel for TensorFlow Serving.

```
<base>/<version>/saved_model.pb
<base>/<version>/variables/
<base>/<version>/assets/
<base>/<version>/assets.extra/tf_serving_warmup_requests
```

TF Serving polls `<base>` and loads every numeric directory it sees, so a
version is written into a hidden non-numeric sibling (`.tmp-<version>-<pid>`)
and renamed into place only when complete: killing the export at any moment
leaves no partial numeric directory. An existing version is never
overwritten.

Signatures (batch is the first dimension of every input and output):

- `serving_default`: `text` tf.string `[batch]`, one sentence per element,
  tokenized in the graph -> `tokens` and `tags` (tf.string `[batch, time]`,
  padded with ""), `confidence` (float32 `[batch, time]`, the tag's
  probability: with a CRF the marginal probability of the Viterbi tag,
  normalized per token so that it never exceeds 1; 0 on padding),
  `lengths` (int32 `[batch]`).
- `tag_tokens`: `tokens` tf.string `[batch, time]` and `lengths` int32
  `[batch]`, for clients that tokenize themselves; the same outputs. What
  follows `lengths` in a row is never read (the outputs up to `lengths`
  do not depend on it). A token before `lengths` that is empty or holds
  the record separator `"\x1e"` fails the request (INVALID_ARGUMENT,
  naming why), as `Tagger.tag_tokens` raises a ValueError for it.
- `tag_documents`: `sentences` tf.string `[batch]`, one sentence each, and
  `documents` int32 `[batch]`, the document each belongs to (a document's
  sentences consecutive and in order) -> the outputs of `serving_default`
  per sentence, and `documents` as sent. A tagger trained with
  `document_context="neighbours"` reads each sentence with its document's
  other sentences (`context.neighbour_contexts_graph`, the same rule as
  `Tagger.predict_documents`); one without document context tags each
  sentence alone. A `"mentions"` tagger has no such graph rule yet: its
  export has no `tag_documents` signature (`export` says so).

Sentences longer than the model's `max_length` are tagged in consecutive
windows, as in training, so every token gets a tag. No function carries
`jit_compile=True` unless `xla=True` is asked for: TF Serving refuses
XLA-marked functions unless started with `--xla_cpu_compilation_enabled`.
"""

import os
import re

import keras
import tensorflow as tf

from keras_resnorm._checks import check_positive
from keras_resnorm.ner import features, files
from keras_resnorm.ner.features import UNREADABLE_TOKEN, tokenize_text
from keras_resnorm.ner.errors import ExportError, load_keras_archive
from keras_resnorm.ner.context import neighbour_contexts_graph
from keras_resnorm.ner.model import (
    context_settings,
    decoder,
    max_length,
    tag_names,
)

__all__ = [
    "DOCUMENT_MODES",
    "WARMUP_FILE",
    "WARMUP_SENTENCES",
    "export",
    "export_size",
    "next_version",
    "write_warmup",
    "xla_marked_functions",
]

WARMUP_FILE = "tf_serving_warmup_requests"
# Signatures that read documents, by a tagger's `document_context`.
DOCUMENT_MODES = ("none", "neighbours")
WARMUP_SENTENCES = (
    "EU rejects German call to boycott British lamb .",
    "Peter Blackburn",
    "BRUSSELS 1996-08-22",
    "The European Commission said on Thursday it disagreed with German "
    "advice to consumers to shun British lamb until scientists determine "
    "whether mad cow disease can be transmitted to sheep .",
)


def _tag_fn(model, xla):
    """tokens [b, t] padded with "", lengths [b], optional document
    context (ragged [b, None]) -> the four outputs."""
    tag_table = tag_names(model)
    window = max_length(model)
    decode = decoder(model)
    if xla:
        decode = tf.function(decode, jit_compile=True)

    def read(flat, lengths, n, contexts):
        """Decode windows `flat` [b * n, size], each followed by its
        sentence's context, packed as in training (no padding between)."""
        if contexts is None:
            return decode(flat)
        size = tf.shape(flat)[1]
        starts = tf.range(n) * size
        real = tf.clip_by_value(tf.cast(lengths, tf.int32)[:, None] - starts,
                                0, size)
        windows = tf.RaggedTensor.from_tensor(flat,
                                              lengths=tf.reshape(real, [-1]))
        context = tf.gather(contexts, tf.repeat(tf.range(tf.shape(
            lengths)[0]), n))
        rows = tf.concat([windows, context], axis=1).to_tensor(
            default_value=features.PAD)
        rows = tf.pad(rows, [[0, 0], [0, tf.maximum(0, size - tf.shape(
            rows)[1])]], constant_values=features.PAD)
        ids, confidence = decode(rows)
        return ids[:, :size], confidence[:, :size]

    def tag(tokens, lengths, contexts=None):
        tags_const = tf.constant(tag_table)
        batch, width = tf.shape(tokens)[0], tf.shape(tokens)[1]
        flat, n = features.split_windows(tokens, window)
        ids, confidence = read(flat, lengths, n, contexts)
        ids = features.join_windows(ids, batch, n, width)
        confidence = features.join_windows(confidence, batch, n, width)
        valid = tf.sequence_mask(lengths, width)
        return {"tokens": tf.where(valid, tokens, features.PAD),
                "tags": tf.where(valid, tf.gather(tags_const, ids),
                                 features.PAD),
                "confidence": tf.where(valid, confidence, 0.0),
                "lengths": tf.cast(lengths, tf.int32)}
    return tag


def _archive(model, xla):
    """A Keras ExportArchive with both signatures.

    ExportArchive tracks every Keras variable in the object graph, which the
    C++ session loader that TF Serving uses needs to restore them.
    """
    tag = _tag_fn(model, xla)

    def serve_text(text):
        ragged = tokenize_text(text)
        lengths = tf.cast(ragged.row_lengths(), tf.int32)
        return tag(ragged.to_tensor(default_value=""), lengths)

    def serve_tokens(tokens, lengths):
        lengths = tf.minimum(lengths, tf.shape(tokens)[1])
        # What lies after `lengths` is padding, whatever the client sent
        # there; inside, a token the model would read as padding or as
        # context is refused (as `Tagger.tag_tokens` refuses it).
        check = tf.debugging.Assert(
            features.readable_tokens(tokens, lengths),
            ["tag_tokens: a token before `lengths`", UNREADABLE_TOKEN])
        with tf.control_dependencies([check]):
            tokens = tf.where(tf.sequence_mask(lengths, tf.shape(tokens)[1]),
                              tokens, features.PAD)
        return tag(tokens, lengths)

    mode, budget = context_settings(model)

    def serve_documents(sentences, documents):
        ragged = tokenize_text(sentences)
        lengths = tf.cast(ragged.row_lengths(), tf.int32)
        contexts = (neighbour_contexts_graph(ragged, documents, budget)
                    if mode == "neighbours" else None)
        out = tag(ragged.to_tensor(default_value=""), lengths, contexts)
        out["documents"] = tf.identity(documents)
        return out

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        "serving_default", serve_text,
        input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    archive.add_endpoint(
        "tag_tokens", serve_tokens,
        input_signature=[tf.TensorSpec([None, None], tf.string, name="tokens"),
                         tf.TensorSpec([None], tf.int32, name="lengths")])
    if mode in DOCUMENT_MODES:
        archive.add_endpoint(
            "tag_documents", serve_documents,
            input_signature=[
                tf.TensorSpec([None], tf.string, name="sentences"),
                tf.TensorSpec([None], tf.int32, name="documents")])
    return archive


def next_version(base):
    versions = [int(n) for n in os.listdir(base) if re.fullmatch(r"\d+", n)] \
        if os.path.isdir(base) else []
    return max(versions, default=0) + 1


def write_warmup(path, sentences=WARMUP_SENTENCES, model_name="ner",
                 documents=True):
    """Write TF Serving warmup records: PredictionLog protos in a TFRecord
    (one sentence and a batch of them; with `documents`, the same
    sentences as two documents through `tag_documents`)."""
    from tensorflow_serving.apis import model_pb2, predict_pb2
    from tensorflow_serving.apis import prediction_log_pb2

    requests = [("serving_default", {"text": [sentences[0]]}),
                ("serving_default", {"text": list(sentences)})]
    if documents:
        split = len(sentences) // 2
        requests.append(("tag_documents", {
            "sentences": list(sentences),
            "documents": [0] * split + [1] * (len(sentences) - split)}))
    with tf.io.TFRecordWriter(path) as writer:
        for signature, inputs in requests:
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(
                    name=model_name, signature_name=signature))
            for name, values in inputs.items():
                request.inputs[name].CopyFrom(tf.make_tensor_proto(
                    values, dtype=tf.string if name != "documents"
                    else tf.int32))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())


def export(model, base, version=None, warmup=True, xla=False,
           model_name="ner"):
    """Export `model` (a tagger, or a path to its .keras file) under `base`.

    Args:
        model: a tagger `keras.Model`, or the path of a saved `.keras` one.
        base: the model base path TF Serving watches.
        version: positive int; `None` takes the next free one.
        warmup: whether to write `assets.extra/tf_serving_warmup_requests`.
        xla: whether the model call carries `jit_compile=True` (only for
            servers started with `--xla_cpu_compilation_enabled`).
        model_name: the model name the warmup requests carry.

    Returns:
        The path of the new version directory.
    """
    if isinstance(model, (str, os.PathLike)):
        model = load_keras_archive(model)
    try:
        os.makedirs(base, exist_ok=True)
    except OSError as error:
        raise ExportError(
            f"{base}: cannot create the export base directory "
            f"({error.strerror or error})") from error
    if not os.access(base, os.W_OK):
        raise ExportError(f"{base}: the export base directory is not "
                          "writable")
    if version is None:
        version = next_version(base)
    check_positive("version", version, integer=True)
    final = os.path.join(base, str(version))
    if os.path.exists(final):
        raise ExportError(
            f"{final} exists; versions are never overwritten. "
            f"Received: version={version}")
    # Leftovers of killed exports are hidden, non-numeric: safe to remove.
    files.remove_leftovers(base)
    tmp = files.tmp_name(base, str(version))
    _archive(model, xla).write_out(tmp, verbose=False)
    mode, _ = context_settings(model)
    documents = mode in DOCUMENT_MODES
    if not documents:
        print(f"note: a tagger with document_context={mode!r} is exported "
              "without the tag_documents signature (its context has no "
              "graph rule yet); serving_default and tag_tokens tag each "
              "sentence alone")
    if warmup:
        os.makedirs(os.path.join(tmp, "assets.extra"), exist_ok=True)
        write_warmup(os.path.join(tmp, "assets.extra", WARMUP_FILE),
                     model_name=model_name, documents=documents)
    files.publish_directory(tmp, final)
    return final


def export_size(path):
    return sum(os.path.getsize(os.path.join(folder, name))
               for folder, _, files in os.walk(path) for name in files)


def xla_marked_functions(path):
    """Names of functions in the export's graph that carry _XlaMustCompile."""
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    marked = []
    for meta in proto.meta_graphs:
        for fn in meta.graph_def.library.function:
            if fn.attr["_XlaMustCompile"].b:
                marked.append(fn.signature.name)
    return marked
