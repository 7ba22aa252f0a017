#!/usr/bin/env python3
"""Run an exported tagger through TensorFlow's C API, as TF Serving would.

TF Serving loads a SavedModel with the C++ SavedModel loader and answers
with Session::Run. This script does the same through the C API of the
shared libraries in the tensorflow wheel (`TF_LoadSessionFromSavedModel`,
`TF_SessionRun`), from a process that never imports the tensorflow Python
package. Feed and fetch tensor names come from the export's signatures,
read from the MetaGraphDef the loader returns.

    python serving/capi_contract.py EXPORT_DIR < requests.json

requests.json: {"signature": "serving_default",
                "requests": [{"text": ["EU rejects German call ."]},
                             {"tokens": [["EU", "rejects"]], "lengths": [2]}],
                "repeat": 1}
Prints JSON: load time, the signatures, and per request either
{"ok": true, "outputs": {...}, "seconds": [...]} or
{"ok": false, "code": N, "message": "..."}.
"""

import ctypes
import importlib.util
import json
import os
import struct
import sys
import time

TF_FLOAT, TF_INT32, TF_STRING, TF_INT64 = 1, 3, 7, 9
TSTRING_SIZE = 24  # sizeof(TF_TString)
STRING_INPUTS = ("text", "tokens", "sentences")  # the others are int32


class TF_Output(ctypes.Structure):
    _fields_ = [("oper", ctypes.c_void_p), ("index", ctypes.c_int)]


class TF_Buffer(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("length", ctypes.c_size_t),
                ("data_deallocator", ctypes.c_void_p)]


def _tensorflow_dir():
    # find_spec locates the package without running its __init__.
    spec = importlib.util.find_spec("tensorflow")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the tensorflow wheel is not installed")
    return list(spec.submodule_search_locations)[0]


def load_library():
    root = _tensorflow_dir()
    ctypes.CDLL(os.path.join(root, "libtensorflow_framework.so.2"),
                mode=ctypes.RTLD_GLOBAL)
    lib = ctypes.CDLL(os.path.join(root, "libtensorflow_cc.so.2"),
                      mode=ctypes.RTLD_GLOBAL)
    p, i, sz = ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t
    signatures = {
        "TF_NewStatus": ([], p), "TF_DeleteStatus": ([p], None),
        "TF_GetCode": ([p], i), "TF_Message": ([p], ctypes.c_char_p),
        "TF_NewGraph": ([], p), "TF_NewSessionOptions": ([], p),
        "TF_NewBuffer": ([], ctypes.POINTER(TF_Buffer)),
        "TF_DeleteBuffer": ([ctypes.POINTER(TF_Buffer)], None),
        "TF_LoadSessionFromSavedModel": (
            [p, p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_char_p), i, p,
             ctypes.POINTER(TF_Buffer), p], p),
        "TF_GraphOperationByName": ([p, ctypes.c_char_p], p),
        "TF_AllocateTensor": ([i, ctypes.POINTER(ctypes.c_int64), i, sz], p),
        "TF_DeleteTensor": ([p], None), "TF_TensorData": ([p], p),
        "TF_TensorType": ([p], i), "TF_NumDims": ([p], i),
        "TF_Dim": ([p, i], ctypes.c_int64),
        "TF_SessionRun": ([p, p, ctypes.POINTER(TF_Output),
                           ctypes.POINTER(p), i, ctypes.POINTER(TF_Output),
                           ctypes.POINTER(p), i, p, i, p, p], None),
    }
    for name, (args, result) in signatures.items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = args, result
    return lib


# --------------------------------------------- minimal protobuf wire reader
def _varint(data, pos):
    shift = result = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(data):
    """Yield (field number, wire type, value) of a serialized message."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 1:
            value, pos = data[pos:pos + 8], pos + 8
        elif wire == 2:
            length, pos = _varint(data, pos)
            value, pos = data[pos:pos + length], pos + length
        elif wire == 5:
            value, pos = data[pos:pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield number, wire, value


def _map_entries(data):
    key = value = None
    for number, _, v in _fields(data):
        if number == 1:
            key = v.decode()
        elif number == 2:
            value = v
    return key, value


def signatures_from_meta_graph(data):
    """MetaGraphDef bytes -> {signature: {"inputs": {k: tensor name},
    "outputs": {k: tensor name}}} (MetaGraphDef.signature_def is field 5;
    SignatureDef inputs 1, outputs 2; TensorInfo name 1)."""
    out = {}
    for number, _, value in _fields(data):
        if number != 5:
            continue
        name, sig = _map_entries(value)
        entry = {"inputs": {}, "outputs": {}}
        for field, _, part in _fields(sig):
            if field in (1, 2):
                key, info = _map_entries(part)
                tensor = next((v.decode() for n, _, v in _fields(info)
                               if n == 1), None)
                entry["inputs" if field == 1 else "outputs"][key] = tensor
        out[name] = entry
    return out


# ------------------------------------------------------------------ tensors
def _string_tensor(lib, values, shape, keep):
    """A TF_STRING tensor whose elements are TF_TString views of `values`.

    A view (type bits 0b11) stores `size << 2 | 3` and a pointer to bytes
    that `keep` holds alive until the tensor is deleted.
    """
    dims = (ctypes.c_int64 * len(shape))(*shape)
    tensor = lib.TF_AllocateTensor(TF_STRING, dims, len(shape),
                                   TSTRING_SIZE * len(values))
    base = lib.TF_TensorData(tensor)
    for k, raw in enumerate(values):
        buf = ctypes.create_string_buffer(raw, len(raw) or 1)
        keep.append(buf)
        ctypes.memmove(base + k * TSTRING_SIZE,
                       struct.pack("<QQQ", (len(raw) << 2) | 3,
                                   ctypes.addressof(buf), 0), TSTRING_SIZE)
    return tensor


def _numeric_tensor(lib, values, shape, dtype):
    fmt = {TF_INT32: "i", TF_INT64: "q", TF_FLOAT: "f"}[dtype]
    data = struct.pack(f"<{len(values)}{fmt}", *values)
    dims = (ctypes.c_int64 * len(shape))(*shape)
    tensor = lib.TF_AllocateTensor(dtype, dims, len(shape), len(data))
    if data:
        ctypes.memmove(lib.TF_TensorData(tensor), data, len(data))
    return tensor


def _read_tstring(address):
    raw = ctypes.string_at(address, TSTRING_SIZE)
    kind = raw[0] & 3
    if kind == 0:  # small: size byte, then the characters inline
        return raw[1:1 + (raw[0] >> 2)]
    if kind == 1:  # large: size, capacity, pointer
        size, _, ptr = struct.unpack("<QQQ", raw)
        return ctypes.string_at(ptr, size >> 2)
    if kind == 2:  # offset: size, offset from the struct itself
        size, offset = struct.unpack("<II", raw[:8])
        return ctypes.string_at(address + offset, size >> 2)
    size, ptr = struct.unpack("<QQ", raw[:16])  # view
    return ctypes.string_at(ptr, size >> 2)


def _to_python(lib, tensor):
    shape = [lib.TF_Dim(tensor, d) for d in range(lib.TF_NumDims(tensor))]
    count = 1
    for d in shape:
        count *= d
    dtype = lib.TF_TensorType(tensor)
    base = lib.TF_TensorData(tensor)
    if dtype == TF_STRING:
        flat = [_read_tstring(base + k * TSTRING_SIZE).decode(
            "utf-8", "replace") for k in range(count)]
    else:
        fmt = {TF_INT32: "i", TF_INT64: "q", TF_FLOAT: "f"}[dtype]
        flat = list(struct.unpack(f"<{count}{fmt}",
                                  ctypes.string_at(base, 4 * count
                                                   if fmt != "q" else 8 * count)))
    return _nest(flat, shape)


def _nest(flat, shape):
    if not shape:
        return flat[0]
    if len(shape) == 1:
        return flat
    step = len(flat) // shape[0] if shape[0] else 0
    return [_nest(flat[i * step:(i + 1) * step], shape[1:])
            for i in range(shape[0])]


def _shape_of(nested):
    shape = []
    while isinstance(nested, list):
        shape.append(len(nested))
        nested = nested[0] if nested else None
    return shape


def _flatten(nested):
    if not isinstance(nested, list):
        return [nested]
    return [x for item in nested for x in _flatten(item)]


class Session:
    """A loaded SavedModel: `run(signature, inputs)` -> outputs or error."""

    def __init__(self, export_dir, tags=("serve",)):
        self.lib = lib = load_library()
        self.status = lib.TF_NewStatus()
        self.graph = lib.TF_NewGraph()
        meta = lib.TF_NewBuffer()
        tag_array = (ctypes.c_char_p * len(tags))(*[t.encode() for t in tags])
        start = time.perf_counter()
        self.session = lib.TF_LoadSessionFromSavedModel(
            lib.TF_NewSessionOptions(), None, export_dir.encode(), tag_array,
            len(tags), self.graph, meta, self.status)
        self.load_seconds = time.perf_counter() - start
        self._check("TF_LoadSessionFromSavedModel")
        self.signatures = signatures_from_meta_graph(
            ctypes.string_at(meta.contents.data, meta.contents.length))
        lib.TF_DeleteBuffer(meta)

    def _check(self, what):
        code = self.lib.TF_GetCode(self.status)
        if code:
            raise RuntimeError(f"{what}: code {code}: "
                               f"{self.lib.TF_Message(self.status).decode()}")

    def _output(self, tensor_name):
        op_name, _, index = tensor_name.partition(":")
        oper = self.lib.TF_GraphOperationByName(self.graph, op_name.encode())
        if not oper:
            raise KeyError(f"no operation {op_name!r} in the graph")
        return TF_Output(oper, int(index or 0))

    def run(self, signature, inputs):
        """inputs: {name: nested list}. Returns (ok, outputs or (code, msg))."""
        lib = self.lib
        sig = self.signatures[signature]
        keep, feeds, values = [], [], []
        try:
            for key, value in inputs.items():
                shape = _shape_of(value)
                flat = _flatten(value)
                if key in STRING_INPUTS:
                    raw = [v if isinstance(v, bytes) else v.encode("utf-8")
                           for v in flat]
                    tensor = _string_tensor(lib, raw, shape, keep)
                else:
                    tensor = _numeric_tensor(lib, flat, shape, TF_INT32)
                feeds.append(self._output(sig["inputs"][key]))
                values.append(tensor)
            names = sorted(sig["outputs"])
            fetches = [self._output(sig["outputs"][n]) for n in names]
            out_values = (ctypes.c_void_p * len(fetches))()
            lib.TF_SessionRun(
                self.session, None, (TF_Output * len(feeds))(*feeds),
                (ctypes.c_void_p * len(values))(*values), len(feeds),
                (TF_Output * len(fetches))(*fetches), out_values,
                len(fetches), None, 0, None, self.status)
            code = lib.TF_GetCode(self.status)
            if code:
                return False, (code, lib.TF_Message(self.status).decode())
            result = {}
            for name, tensor in zip(names, out_values):
                result[name] = _to_python(lib, tensor)
                lib.TF_DeleteTensor(tensor)
            return True, result
        finally:
            for tensor in values:
                lib.TF_DeleteTensor(tensor)


def _decode_inputs(request):
    """JSON cannot hold raw bytes: {"text_hex": [...]} feeds bytes as is."""
    inputs = {}
    for key, value in request.items():
        if key.endswith("_hex"):
            inputs[key[:-4]] = [bytes.fromhex(v) for v in value]
        else:
            inputs[key] = value
    return inputs


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        raise SystemExit(__doc__)
    spec = json.load(sys.stdin)
    session = Session(argv[0])
    signature = spec.get("signature", "serving_default")
    repeat = int(spec.get("repeat", 1))
    responses = []
    for request in spec.get("requests", []):
        inputs = _decode_inputs(request)
        seconds = []
        for _ in range(repeat):
            start = time.perf_counter()
            ok, result = session.run(signature, inputs)
            seconds.append(time.perf_counter() - start)
        if ok:
            responses.append({"ok": True, "outputs": result,
                              "seconds": seconds})
        else:
            responses.append({"ok": False, "code": result[0],
                              "message": result[1]})
    json.dump({"load_seconds": session.load_seconds,
               "signatures": session.signatures,
               "tensorflow_python_imported": "tensorflow" in sys.modules,
               "responses": responses}, sys.stdout)


if __name__ == "__main__":
    main()
