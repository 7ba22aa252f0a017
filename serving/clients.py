#!/usr/bin/env python3
"""Clients for the tagger behind TensorFlow Serving: text in, entity spans out.

    python serving/clients.py rest "EU rejects German call to boycott British lamb ."
    python serving/clients.py grpc --host localhost:8500 "Peter Blackburn"
    python serving/clients.py rest --documents 0,0,1 "Leeds beat Chelsea ." \
        "Leeds fans sang ." "Peter Blackburn"

REST uses TF Serving's predict API in the row ("instances") format:
POST http://HOST:8501/v1/models/ner[/versions/N]:predict with
{"signature_name": "serving_default", "instances": ["sentence", ...]}; the
answer is {"predictions": [{"tokens": [...], "tags": [...],
"confidence": [...], "lengths": n}, ...]}. gRPC uses
tensorflow_serving.apis' PredictionService.Predict on port 8500 with a
PredictRequest whose input "text" is a 1-D DT_STRING tensor.

With `documents` (one document index per sentence, a document's
sentences consecutive and in order), both call the export's
`tag_documents` signature: REST instances become {"sentences": "...",
"documents": 0} objects, gRPC gets a DT_STRING "sentences" and a DT_INT32
"documents" input. A tagger trained with document context reads each
sentence with its document; the answer has the same form.
"""

import argparse
import json
import urllib.request


def spans_from_tags(tokens, tags, confidence=None):
    """IOB2 tags -> [{"text", "type", "start", "end", "confidence"}].

    `end` is exclusive; an `I-` tag that does not continue an entity of its
    type starts one (conlleval's reading). `confidence` is the mean tag
    confidence of the span's tokens when given.
    """
    spans, current = [], None
    for i, tag in enumerate(list(tags) + ["O"]):
        prefix, _, kind = tag.partition("-")
        continues = (current is not None and prefix == "I"
                     and kind == current["type"])
        if current is not None and not continues:
            current["end"] = i
            current["text"] = " ".join(tokens[current["start"]:i])
            if confidence is not None:
                values = confidence[current["start"]:i]
                current["confidence"] = sum(values) / len(values)
            spans.append(current)
            current = None
        if prefix in ("B", "I") and not continues and i < len(tags):
            current = {"type": kind, "start": i}
    return spans


def _trim(prediction):
    n = int(prediction["lengths"])
    return (prediction["tokens"][:n], prediction["tags"][:n],
            prediction["confidence"][:n])


# ---------------------------------------------------------------------- REST
def _check(texts, documents):
    if isinstance(texts, str):
        raise TypeError(f"texts must be a list of strings. Received: texts={texts!r}")
    if documents is not None and len(documents) != len(texts):
        raise ValueError(
            "documents must give one document index per sentence. "
            f"Received: {len(documents)} documents for {len(texts)} texts")


def rest_request(texts, host="localhost:8501", model="ner", version=None,
                 signature="serving_default", documents=None):
    """(url, JSON body) of a TF Serving REST predict call in row format;
    with `documents`, a `tag_documents` call."""
    _check(texts, documents)
    path = f"/v1/models/{model}" + (f"/versions/{version}" if version else "")
    url = f"http://{host}{path}:predict"
    if documents is None:
        instances = list(texts)
    else:
        signature = "tag_documents"
        instances = [{"sentences": t, "documents": int(d)}
                     for t, d in zip(texts, documents)]
    body = {"signature_name": signature, "instances": instances}
    return url, json.dumps(body).encode("utf-8")


def parse_rest_response(payload):
    """TF Serving's row-format answer -> entity spans per sentence."""
    data = json.loads(payload)
    if "error" in data:
        raise RuntimeError(f"TF Serving error: {data['error']}")
    return [spans_from_tags(*_trim(p)) for p in data["predictions"]]


def predict_rest(texts, host="localhost:8501", model="ner", version=None,
                 timeout=30, documents=None):
    url, body = rest_request(texts, host, model, version,
                             documents=documents)
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return parse_rest_response(response.read())


# ---------------------------------------------------------------------- gRPC
def grpc_request(texts, model="ner", version=None,
                 signature="serving_default", documents=None):
    """A tensorflow_serving PredictRequest for `texts` (with `documents`,
    for `tag_documents`)."""
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
    from tensorflow_serving.apis import predict_pb2

    _check(texts, documents)
    if documents is not None:
        signature = "tag_documents"
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    if version:
        request.model_spec.version.value = int(version)
    tensor = tensor_pb2.TensorProto(
        dtype=types_pb2.DT_STRING,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=len(texts))]),
        string_val=[t.encode("utf-8") for t in texts])
    if documents is None:
        request.inputs["text"].CopyFrom(tensor)
        return request
    request.inputs["sentences"].CopyFrom(tensor)
    request.inputs["documents"].CopyFrom(tensor_pb2.TensorProto(
        dtype=types_pb2.DT_INT32, tensor_shape=tensor.tensor_shape,
        int_val=[int(d) for d in documents]))
    return request


def _values(proto):
    """TensorProto -> nested lists. TF Serving fills the typed fields
    (string_val, float_val, int_val); tensor_content is read too."""
    import numpy as np
    from tensorflow.core.framework import types_pb2

    dims = [d.size for d in proto.tensor_shape.dim]
    if proto.dtype == types_pb2.DT_STRING:
        flat = [v.decode("utf-8", "replace") for v in proto.string_val]
    elif proto.tensor_content:
        dtype = {types_pb2.DT_FLOAT: np.float32, types_pb2.DT_INT32: np.int32,
                 types_pb2.DT_INT64: np.int64}[proto.dtype]
        flat = np.frombuffer(proto.tensor_content, dtype).tolist()
    elif proto.dtype == types_pb2.DT_FLOAT:
        flat = list(proto.float_val)
    else:
        flat = list(proto.int_val) or list(proto.int64_val)
    if len(dims) == 2:
        return [flat[i * dims[1]:(i + 1) * dims[1]] for i in range(dims[0])]
    return flat


def parse_grpc_response(response):
    """PredictResponse -> entity spans per sentence."""
    out = {k: _values(v) for k, v in response.outputs.items()}
    return [spans_from_tags(*_trim({"tokens": out["tokens"][i],
                                    "tags": out["tags"][i],
                                    "confidence": out["confidence"][i],
                                    "lengths": out["lengths"][i]}))
            for i in range(len(out["lengths"]))]


def predict_grpc(texts, host="localhost:8500", model="ner", version=None,
                 timeout=30, documents=None):
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    with grpc.insecure_channel(host) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        response = stub.Predict(grpc_request(texts, model, version,
                                             documents=documents),
                                timeout=timeout)
    return parse_grpc_response(response)


def document_indices(value):
    """`--documents 0,0,1` -> [0, 0, 1] (one flag value, so the sentences
    after it stay sentences)."""
    try:
        return [int(v) for v in value.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            "documents must be comma-separated integers, one per sentence "
            f"(0,0,1). Received: documents={value!r}") from None


def main(argv=None):
    parser = argparse.ArgumentParser(description="Tag sentences with the "
                                     "NER model behind TF Serving.")
    parser.add_argument("protocol", choices=("rest", "grpc"))
    parser.add_argument("sentences", nargs="+")
    parser.add_argument("--host", default=None,
                        help="host:port (default localhost:8501 for REST, "
                             "localhost:8500 for gRPC)")
    parser.add_argument("--model", default="ner")
    parser.add_argument("--version", type=int, default=None)
    parser.add_argument("--documents", type=document_indices, default=None,
                        help="the document of each sentence, comma-separated "
                             "(0,0,1): calls tag_documents")
    args = parser.parse_args(argv)
    if args.protocol == "rest":
        result = predict_rest(args.sentences, args.host or "localhost:8501",
                              args.model, args.version,
                              documents=args.documents)
    else:
        result = predict_grpc(args.sentences, args.host or "localhost:8500",
                              args.model, args.version,
                              documents=args.documents)
    print(json.dumps(result, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
