"""Distribution strategies, precision policies and cluster checks for training.

`--strategy` picks TensorFlow's own distribution engine:

- `default`: one device (`tf.distribute.get_strategy()`).
- `mirrored`: `tf.distribute.MirroredStrategy` over the local GPUs, or,
  with no GPU, over the logical CPU devices (`--cpu-devices N` splits the
  CPU into N of them, which is how the tests run it).
- `multiworker`: `tf.distribute.MultiWorkerMirroredStrategy`, one process per
  machine, configured by the `TF_CONFIG` environment variable. The chief
  (task 0 of `worker`, or the `chief` task) writes checkpoints, logs and the
  backup; the other workers write to temporary directories they remove.

Everything here runs before TensorFlow starts its runtime, so bad settings
fail in seconds with a message that names them, not in a hung collective.
"""

import json
import os
import socket
import threading
import time

import tensorflow as tf

from keras_resnorm._checks import check_choice
from keras_resnorm.ner.errors import ConfigError

__all__ = [
    "PRECISIONS",
    "STRATEGIES",
    "any_worker",
    "check_batch_size",
    "configure_cpu_devices",
    "is_chief",
    "is_multi_worker",
    "make_strategy",
    "parse_tf_config",
    "wait_for_cluster",
    "worker_mean",
]

STRATEGIES = ("default", "mirrored", "multiworker")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


def parse_tf_config(text):
    """Validate a TF_CONFIG string; return `(cluster, task_type, task_index)`.

    `cluster` maps job names to lists of "host:port" addresses. Raises
    `ConfigError` naming the field at fault.

    >>> parse_tf_config('{"cluster": {"worker": ["a:1", "b:2"]},'
    ...                 ' "task": {"type": "worker", "index": 1}}')
    ({'worker': ['a:1', 'b:2']}, 'worker', 1)
    """
    if not text:
        raise ConfigError("strategy='multiworker' needs the TF_CONFIG "
                          "environment variable (cluster and task). "
                          "Received: TF_CONFIG unset")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"TF_CONFIG is not valid JSON ({error}). "
                          f"Received: TF_CONFIG={text!r}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"TF_CONFIG must be a JSON object with 'cluster' "
                          f"and 'task'. Received: TF_CONFIG={text!r}")
    cluster, task = value.get("cluster"), value.get("task")
    if not isinstance(cluster, dict) or not cluster:
        raise ConfigError("TF_CONFIG['cluster'] must map job names to lists "
                          f"of 'host:port'. Received: cluster={cluster!r}")
    for job, addresses in cluster.items():
        if not isinstance(addresses, list) or not addresses:
            raise ConfigError(f"TF_CONFIG['cluster'][{job!r}] must be a "
                              f"non-empty list of 'host:port'. "
                              f"Received: {addresses!r}")
        for address in addresses:
            host, _, port = str(address).rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ConfigError(f"TF_CONFIG['cluster'][{job!r}] has an "
                                  f"address that is not 'host:port'. "
                                  f"Received: {address!r}")
    if not {"chief", "worker"} & set(cluster):
        raise ConfigError("TF_CONFIG['cluster'] needs a 'worker' (or "
                          f"'chief') job. Received: jobs={sorted(cluster)}")
    if not isinstance(task, dict):
        raise ConfigError("TF_CONFIG['task'] must be {'type': ..., 'index': "
                          f"...}}. Received: task={task!r}")
    task_type, index = task.get("type"), task.get("index", 0)
    if task_type not in cluster:
        raise ConfigError(f"TF_CONFIG['task']['type'] must be a job of the "
                          f"cluster {sorted(cluster)}. "
                          f"Received: type={task_type!r}")
    if (not isinstance(index, int) or isinstance(index, bool)
            or not 0 <= index < len(cluster[task_type])):
        raise ConfigError(f"TF_CONFIG['task']['index'] must be an int in "
                          f"[0, {len(cluster[task_type])}). "
                          f"Received: index={index!r}")
    return cluster, task_type, index


def _split(address):
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def wait_for_cluster(cluster, task_type, task_index, timeout):
    """Return once every other task answers on its port; else raise.

    TensorFlow's own start-up waits for absent workers without a bound, so
    each worker first listens on its own port and connects to every other
    one, giving up after `timeout` seconds with a `ConfigError` that names
    the workers that never answered. A peer counts as up once anything
    accepts a connection on its port (this check's listener or, a moment
    later, TensorFlow's server).
    """
    own = cluster[task_type][task_index]
    peers = [a for job, addresses in sorted(cluster.items())
             for i, a in enumerate(addresses)
             if (job, i) != (task_type, task_index)]
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(("", _split(own)[1]))
    except OSError as error:
        listener.close()
        raise ConfigError(f"this task's port is taken ({error}); another "
                          f"process listens there. Received: "
                          f"{task_type}:{task_index} at {own!r}") from None
    listener.listen(16)
    listener.settimeout(0.2)
    stop = threading.Event()

    def accept():
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
                connection.close()
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    waiting = set(peers)
    try:
        while waiting:
            for address in sorted(waiting):
                try:
                    socket.create_connection(_split(address), 0.5).close()
                    waiting.discard(address)
                except OSError:
                    pass
            if waiting and time.monotonic() > deadline:
                raise ConfigError(
                    f"TF_CONFIG names workers that did not answer within "
                    f"{timeout:g} s (cluster_timeout). Start every worker, "
                    f"or fix their addresses. Received: unreachable="
                    f"{sorted(waiting)}")
            if waiting:
                time.sleep(0.2)
        # Give the peers time to see this task too before its port closes;
        # a peer that still misses it retries until TensorFlow's server is up.
        time.sleep(0.5)
    finally:
        stop.set()
        thread.join()
        listener.close()


def configure_cpu_devices(count):
    """Split the CPU into `count` logical devices (before TF initializes)."""
    if count is None or count <= 1:
        return
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError:
        have = len(tf.config.list_logical_devices("CPU"))
        if have != count:
            raise ConfigError(
                "cpu_devices must be set before TensorFlow initializes (run "
                f"the trainer in a fresh process); it already has {have} "
                f"logical CPU device(s). Received: cpu_devices={count}"
            ) from None


def make_strategy(name, cpu_devices=None, cluster_timeout=60.0):
    """Build the strategy `name` names (see the module docstring)."""
    check_choice("strategy", name, STRATEGIES, error=ConfigError)
    if name == "multiworker":
        cluster, task_type, index = parse_tf_config(
            os.environ.get("TF_CONFIG"))
        configure_cpu_devices(cpu_devices)
        wait_for_cluster(cluster, task_type, index, cluster_timeout)
        return tf.distribute.MultiWorkerMirroredStrategy()
    configure_cpu_devices(cpu_devices)
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in gpus or tf.config.list_logical_devices(
            "CPU")]
        # NCCL is for GPUs: logical CPU devices reduce on one of them; on
        # GPUs MirroredStrategy picks its own all-reduce (NCCL).
        cross = None if gpus else tf.distribute.ReductionToOneDevice()
        return tf.distribute.MirroredStrategy(devices,
                                              cross_device_ops=cross)
    return tf.distribute.get_strategy()


def is_multi_worker(strategy):
    return bool(getattr(strategy.extended, "_in_multi_worker_mode",
                        lambda: False)())


def is_chief(strategy):
    """True on the task that writes checkpoints, logs and exports."""
    if not is_multi_worker(strategy):
        return True
    resolver = strategy.cluster_resolver
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type == "chief" or (
        task_type == "worker" and task_id == 0
        and "chief" not in resolver.cluster_spec().jobs)


def check_batch_size(batch_size, strategy):
    """The global batch must split evenly over the replicas."""
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise ConfigError(
            f"batch_size must be divisible by the number of replicas "
            f"({replicas}), so each replica gets an equal share of the "
            f"global batch. Received: batch_size={batch_size}")


def any_worker(strategy, flag):
    """True on every worker when `flag` is True on at least one of them.

    Decisions taken from wall-clock time or from a score (stop training)
    must agree across workers, or the ones that go on wait forever in their
    next all-reduce. A no-op unless training spans several workers.
    """
    if not is_multi_worker(strategy):
        return bool(flag)
    value = strategy.run(lambda: tf.constant(1.0 if flag else 0.0))
    return bool(strategy.reduce("SUM", value, axis=None).numpy() > 0)


def worker_mean(strategy, value):
    """The mean of `value` (a float) over the workers, the same on all.

    A number read from each worker's own clock (the learning rate's
    progress through a time budget) must agree across workers, or their
    weights drift apart. `value` itself unless training spans several
    workers.
    """
    if not is_multi_worker(strategy):
        return float(value)
    per_worker = strategy.run(lambda: tf.constant(float(value)))
    return float(strategy.reduce("MEAN", per_worker, axis=None).numpy())
