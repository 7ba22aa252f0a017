"""The REST and gRPC clients build TF Serving's documented request formats,
and turn its answers into spans; round trips go through loopback stand-ins
that answer from the exported SavedModel in TF Serving's formats."""

import http.server
import importlib.util
import json
import pathlib
import threading
from concurrent import futures

import pytest
import tensorflow as tf

ROOT = pathlib.Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("clients",
                                              ROOT / "serving" / "clients.py")
clients = importlib.util.module_from_spec(spec)
spec.loader.exec_module(clients)


def test_rest_request_is_tf_serving_row_format():
    url, body = clients.rest_request(["EU rejects German call ."],
                                     host="h:8501", version=3)
    assert url == "http://h:8501/v1/models/ner/versions/3:predict"
    assert json.loads(body) == {"signature_name": "serving_default",
                                "instances": ["EU rejects German call ."]}
    url, _ = clients.rest_request(["x"])
    assert url == "http://localhost:8501/v1/models/ner:predict"
    with pytest.raises(TypeError, match="Received: texts='x'"):
        clients.rest_request("x")


def test_parse_rest_response_row_format():
    payload = json.dumps({"predictions": [
        {"tokens": ["EU", "rejects", "German", ""],
         "tags": ["B-ORG", "O", "B-MISC", ""],
         "confidence": [0.9, 1.0, 0.8, 0.0], "lengths": 3}]})
    [spans] = clients.parse_rest_response(payload)
    assert [(s["type"], s["start"], s["end"], s["text"]) for s in spans] == [
        ("ORG", 0, 1, "EU"), ("MISC", 2, 3, "German")]
    assert spans[0]["confidence"] == pytest.approx(0.9)
    with pytest.raises(RuntimeError, match="bad input"):
        clients.parse_rest_response('{"error": "bad input"}')


def test_grpc_request_fields():
    from tensorflow.core.framework import types_pb2

    request = clients.grpc_request(["a b", "c"], version=2)
    assert request.model_spec.name == "ner"
    assert request.model_spec.signature_name == "serving_default"
    assert request.model_spec.version.value == 2
    tensor = request.inputs["text"]
    assert tensor.dtype == types_pb2.DT_STRING
    assert [d.size for d in tensor.tensor_shape.dim] == [2]
    assert list(tensor.string_val) == [b"a b", b"c"]


def test_documents_requests_name_the_documents_signature():
    from tensorflow.core.framework import types_pb2

    _, body = clients.rest_request(["Leeds won .", "Fans sang ."],
                                   documents=[4, 4])
    assert json.loads(body) == {"signature_name": "tag_documents",
                                "instances": [
                                    {"sentences": "Leeds won .",
                                     "documents": 4},
                                    {"sentences": "Fans sang .",
                                     "documents": 4}]}
    request = clients.grpc_request(["a", "b"], documents=[0, 1])
    assert request.model_spec.signature_name == "tag_documents"
    assert list(request.inputs["sentences"].string_val) == [b"a", b"b"]
    assert request.inputs["documents"].dtype == types_pb2.DT_INT32
    assert list(request.inputs["documents"].int_val) == [0, 1]
    assert "text" not in request.inputs
    with pytest.raises(ValueError, match="Received: 1 documents for 2"):
        clients.rest_request(["a", "b"], documents=[0])


def test_the_command_line_sends_documents(monkeypatch, capsys):
    # The README's command: the sentences after --documents stay sentences.
    seen = []
    monkeypatch.setattr(clients, "predict_rest",
                        lambda *args, documents=None: seen.append(
                            (args[0], documents)) or [])
    clients.main(["rest", "--documents", "0,0,1", "Leeds beat Chelsea 2-1 .",
                  "Leeds fans sang .", "Peter Blackburn"])
    assert seen == [(["Leeds beat Chelsea 2-1 .", "Leeds fans sang .",
                      "Peter Blackburn"], [0, 0, 1])]
    with pytest.raises(SystemExit):
        clients.main(["rest", "--documents", "0,x", "a", "b"])
    assert "documents must be comma-separated integers" in (
        capsys.readouterr().err)


@pytest.mark.parametrize("tags,expected", [
    (["B-PER", "I-PER", "O"], [("PER", 0, 2)]),
    (["I-LOC", "I-LOC", "B-LOC"], [("LOC", 0, 2), ("LOC", 2, 3)]),
    (["B-ORG", "I-PER"], [("ORG", 0, 1), ("PER", 1, 2)]),
    (["O", "O"], []),
])
def test_spans_from_tags(tags, expected):
    tokens = [f"t{i}" for i in range(len(tags))]
    got = clients.spans_from_tags(tokens, tags)
    assert [(s["type"], s["start"], s["end"]) for s in got] == expected


def _expected_spans(out, row):
    """Spans of one served row computed without the client code: seqeval's
    own IOB2 chunker over the served tags."""
    from seqeval.metrics.sequence_labeling import get_entities

    n = int(out["lengths"][row])
    tags = [t.decode() for t in out["tags"][row][:n]]
    return [(kind, start, end + 1) for kind, start, end in get_entities(tags)]


def _serve(loaded, texts):
    out = loaded.signatures["serving_default"](text=tf.constant(texts))
    return {k: v.numpy() for k, v in out.items()}


def test_rest_round_trip_through_loopback_stand_in(exported):
    _, path, _ = exported
    loaded = tf.saved_model.load(path)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            assert self.path == "/v1/models/ner:predict"
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            out = _serve(loaded, body["instances"])
            rows = [{"tokens": [t.decode() for t in out["tokens"][i]],
                     "tags": [t.decode() for t in out["tags"][i]],
                     "confidence": out["confidence"][i].tolist(),
                     "lengths": int(out["lengths"][i])}
                    for i in range(len(body["instances"]))]
            data = json.dumps({"predictions": rows}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host = f"127.0.0.1:{server.server_address[1]}"
        texts = ["Anna Kovacs visited Norvale .", ""]
        spans = clients.predict_rest(texts, host=host, timeout=60)
        expected = _expected_spans(_serve(loaded, texts), 0)
        assert expected, "the served model found no entity to compare"
        assert [(s["type"], s["start"], s["end"]) for s in spans[0]] == \
            expected
        assert spans[1] == []
    finally:
        server.shutdown()


def test_grpc_round_trip_through_loopback_stand_in(exported):
    import grpc
    from tensorflow_serving.apis import predict_pb2
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    _, path, _ = exported
    loaded = tf.saved_model.load(path)

    class Servicer(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):
            texts = [v for v in request.inputs["text"].string_val]
            out = _serve(loaded, texts)
            response = predict_pb2.PredictResponse()
            for key, value in out.items():
                response.outputs[key].CopyFrom(tf.make_tensor_proto(value))
            return response

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        Servicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        texts = ["Shares of Halden Motors fell .", "Anna Kovacs"]
        spans = clients.predict_grpc(texts, host=f"127.0.0.1:{port}",
                                     timeout=60)
        out = _serve(loaded, texts)
        expected = [_expected_spans(out, row) for row in range(len(texts))]
        assert any(expected), "the served model found no entity to compare"
        assert [[(s["type"], s["start"], s["end"]) for s in row]
                for row in spans] == expected
        for row, row_spans in enumerate(spans):
            tokens = [t.decode() for t in out["tokens"][row]]
            for s in row_spans:
                assert s["text"] == " ".join(tokens[s["start"]:s["end"]])
                # The span's confidence: the mean over its tokens.
                assert s["confidence"] == pytest.approx(float(sum(
                    out["confidence"][row][s["start"]:s["end"]])) / (
                    s["end"] - s["start"]), abs=1e-6)
    finally:
        server.stop(0)
