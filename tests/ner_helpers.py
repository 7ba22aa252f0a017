"""Small NER configurations and cluster helpers shared by the NER tests."""

import json
import os
import pathlib
import socket
import subprocess
import sys

from keras_resnorm.ner.config import ModelConfig, TrainConfig

CAPI = pathlib.Path(__file__).resolve().parents[1] / "serving" / \
    "capi_contract.py"


def tiny_config(run_dir, **overrides):
    # One block of each kind (window-CNN, BiLSTM, Transformer), so every
    # encoder path runs; dropout low, so a few epochs on the built-in
    # corpus learn.
    model = ModelConfig(conv_layers=1, recurrent_layers=1, layers=1,
                        heads=2, d_model=32, intermediate_dim=64,
                        word_dim=16, char_dim=8, char_filters=16,
                        max_length=32, dropout=0.1, hash_buckets=200,
                        hash_dim=8)
    # Without XLA: the default compiles every bucket length first, which
    # costs a tiny run more than it saves (5 epochs on the built-in corpus:
    # 50-59 s with it, 30-35 s without, 2026-12-07); the demo_run fixture
    # and the `large` runs train with the default.
    values = dict(run_dir=str(run_dir), epochs=2, batch_size=16,
                  learning_rate=3e-3, patience=5, model=model,
                  jit_compile=False)
    values.update(overrides)
    return TrainConfig(**values)


def free_ports(n):
    """`n` loopback ports that were free a moment ago."""
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def tf_config(ports, index=0):
    """TF_CONFIG of a cluster of workers on 127.0.0.1 `ports`, as `index`."""
    return json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}"
                                              for p in ports]},
                       "task": {"type": "worker", "index": index}})


def capi(path, requests, signature="serving_default", repeat=1):
    """Run requests through TensorFlow's C API (the loader and Session::Run
    TF Serving uses), in a process that never imports TF Python."""
    spec = {"signature": signature, "requests": requests, "repeat": repeat}
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run([sys.executable, str(CAPI), str(path)],
                          input=json.dumps(spec), capture_output=True,
                          text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["tensorflow_python_imported"] is False
    return result
