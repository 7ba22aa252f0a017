"""Strategy settings that cannot work fail fast, naming what is wrong."""

import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from keras_resnorm.ner import cli, distribute
from keras_resnorm.ner.distribute import ConfigError, parse_tf_config
from ner_helpers import free_ports, tf_config, tiny_config


@pytest.mark.parametrize("text, message", [
    (None, "needs the TF_CONFIG environment variable"),
    ("{cluster: 1}", "TF_CONFIG is not valid JSON"),
    ("[1, 2]", "must be a JSON object"),
    ('{"task": {"type": "worker", "index": 0}}', "Received: cluster=None"),
    ('{"cluster": {"worker": "a:1"}, "task": {"type": "worker"}}',
     "must be a non-empty list"),
    ('{"cluster": {"worker": ["a"]}, "task": {"type": "worker"}}',
     "Received: 'a'"),
    ('{"cluster": {"worker": ["a:99999"]}, "task": {"type": "worker"}}',
     "Received: 'a:99999'"),
    ('{"cluster": {"ps": ["a:1"]}, "task": {"type": "ps"}}',
     "needs a 'worker'"),
    ('{"cluster": {"worker": ["a:1"]}}', "Received: task=None"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "chief"}}',
     "Received: type='chief'"),
    ('{"cluster": {"worker": ["a:1", "b:2"]}, '
     '"task": {"type": "worker", "index": 2}}', "Received: index=2"),
    ('{"cluster": {"worker": ["a:1"]}, '
     '"task": {"type": "worker", "index": "0"}}', "Received: index='0'"),
])
def test_malformed_tf_config_is_named(text, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        parse_tf_config(text)


def test_unreachable_worker_fails_within_the_timeout():
    ports = free_ports(2)
    cluster, task_type, index = parse_tf_config(tf_config(ports))
    started = time.monotonic()
    with pytest.raises(ConfigError, match=f"did not answer within 1.5 s.*"
                       f"127.0.0.1:{ports[1]}"):
        distribute.wait_for_cluster(cluster, task_type, index, 1.5)
    assert time.monotonic() - started < 5


def test_workers_that_start_apart_find_each_other():
    ports = free_ports(2)
    cluster, _, _ = parse_tf_config(tf_config(ports))
    errors = []

    def worker(index, delay):
        time.sleep(delay)
        try:
            distribute.wait_for_cluster(cluster, "worker", index, 10)
        except Exception as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(i, 1.0 * i))
               for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert not errors and not any(t.is_alive() for t in threads)


def test_taken_port_is_reported():
    ports = free_ports(2)
    cluster, _, _ = parse_tf_config(tf_config(ports))
    with socket.socket() as busy:
        busy.bind(("", ports[0]))
        busy.listen(1)
        with pytest.raises(ConfigError, match="port is taken"):
            distribute.wait_for_cluster(cluster, "worker", 0, 1)


class _Replicas:
    def __init__(self, n):
        self.num_replicas_in_sync = n


def test_batch_size_must_split_over_replicas():
    distribute.check_batch_size(32, _Replicas(2))
    with pytest.raises(ConfigError, match=r"number of replicas \(2\).*"
                       "Received: batch_size=33"):
        distribute.check_batch_size(33, _Replicas(2))


@pytest.mark.parametrize("field, value, message", [
    ("precision", "fp8", "precision must be one of"),
    ("strategy", "tpu", "strategy must be one of"),
    ("batch_size", 0, "batch_size must be a positive int"),
    ("backup_steps", 0, "backup_steps must be a positive int or None"),
    ("cpu_devices", 1.5, "cpu_devices must be a positive int or None"),
    ("cluster_timeout", 0, "cluster_timeout must be a positive number"),
])
def test_bad_training_settings_fail_before_training(tmp_path, field, value,
                                                    message):
    from keras_resnorm.ner.train import train

    config = tiny_config(tmp_path / "run", **{field: value})
    with pytest.raises(ConfigError, match=f"{message}.*Received: "
                       f"{field}={value!r}"):
        train(config)
    assert not (tmp_path / "run").exists()


def _cli(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["ner", "train", *args])
    return exit_info.value.code, capsys.readouterr().err


def test_cli_names_bad_precision(capsys):
    code, err = _cli(["--precision", "fp8"], capsys)
    assert code == 2 and "invalid choice: 'fp8'" in err


def test_cli_reports_malformedtf_config(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TF_CONFIG", '{"cluster": ')
    code, err = _cli(["--strategy", "multiworker", "--run-dir",
                      str(tmp_path / "run")], capsys)
    assert code == 2 and "TF_CONFIG is not valid JSON" in err


def test_cli_gives_up_on_an_absent_worker(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TF_CONFIG", tf_config(free_ports(2)))
    started = time.monotonic()
    code, err = _cli(["--strategy", "multiworker", "--cluster-timeout", "2",
                      "--run-dir", str(tmp_path / "run")], capsys)
    assert code == 2 and "did not answer within 2 s" in err
    assert time.monotonic() - started < 10


def test_odd_batch_on_two_devices_stops_before_training(tmp_path):
    # Logical devices must be set before TensorFlow starts: a new process.
    out = subprocess.run(
        [sys.executable, "-m", "keras_resnorm.ner.cli", "ner", "train",
         "--strategy", "mirrored", "--cpu-devices", "2", "--batch-size", "15",
         "--run-dir", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert out.returncode == 2, out.stderr[-2000:]
    assert ("batch_size must be divisible by the number of replicas (2)"
            in out.stderr and "Received: batch_size=15" in out.stderr)
    # Nothing was written, so a corrected command starts afresh.
    assert not (tmp_path / "run").exists()
