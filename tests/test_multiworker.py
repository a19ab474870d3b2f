"""MultiWorkerMirroredStrategy with Keras 3 `model.fit`: two worker processes on 127.0.0.1.

The training-cluster tests are slow (two TensorFlow processes sharing the CPU,
30-75 s each): `pytest -m slow tests/test_multiworker.py`. The default suite
runs the tiny cluster that shows Keras#20585 is still there, and checks the
pieces of `keras_cnn.multiworker_fix` in-process.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_cnn import multiworker_fix, training
from tests.helpers import REPO, write_images

WORKER = os.path.join(REPO, "tests", "train_worker.py")


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def run_cluster(tmp_path, args_of_worker, timeout=600):
    """Starts 2 workers (`args_of_worker(i)`), waits; returns (return codes, outputs).

    Each worker gets its own TMPDIR, so the test can see what it left there.
    """
    ports = free_ports(2)
    procs, logs = [], []
    for i in range(2):
        tmp = tmp_path / f"tmp{i}"
        tmp.mkdir(exist_ok=True)
        env = dict(os.environ, TMPDIR=str(tmp), TF_CPP_MIN_LOG_LEVEL="2", TF_CONFIG=json.dumps({
            "cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
            "task": {"type": "worker", "index": i}}))
        # Files, not pipes: a full pipe would block one worker and hang both.
        log = open(tmp_path / f"worker{i}.log", "w+")
        procs.append(subprocess.Popen([sys.executable, WORKER, *args_of_worker(i)], cwd=REPO, env=env,
                                      stdout=log, stderr=subprocess.STDOUT))
        logs.append(log)
    try:
        for p in procs:
            p.wait(timeout=timeout)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    outputs = []
    for log in logs:
        log.seek(0)
        outputs.append(log.read())
        log.close()
    return [p.returncode for p in procs], outputs


# === Fast: the pieces ===

def test_fix_is_applied_only_to_multi_worker_strategies():
    before = multiworker_fix.installed()
    assert multiworker_fix.apply(tf.distribute.get_strategy()) is False
    assert multiworker_fix.apply(tf.distribute.OneDeviceStrategy("/cpu:0")) is False
    assert multiworker_fix.installed() == before
    with pytest.raises(ValueError, match="unknown patch"):
        multiworker_fix._install("everything")


def test_installed_patches_leave_single_worker_training_unchanged():
    def train():
        keras.utils.set_random_seed(0)
        with tf.distribute.OneDeviceStrategy("/cpu:0").scope():
            model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
            model.compile(optimizer="adam", loss="mse", metrics=["mae"])
        x = np.random.RandomState(0).rand(16, 3).astype("float32")
        history = model.fit(tf.data.Dataset.from_tensor_slices((x, x[:, :2])).batch(4), epochs=2, verbose=0)
        return history.history, model.get_weights()

    reference_history, reference_weights = train()
    installed_before = multiworker_fix.installed()
    try:
        for name in multiworker_fix.PATCHES:
            multiworker_fix._install(name)
        history, weights = train()
    finally:
        if not installed_before:
            multiworker_fix.remove()
    assert history == reference_history
    for a, b in zip(weights, reference_weights):
        np.testing.assert_array_equal(a, b)


def test_multi_worker_metrics_are_averaged_over_replicas_not_axis_0(monkeypatch):
    calls = []

    class Strategy:
        def reduce(self, op, value, axis):
            calls.append((op, axis))
            return value

    monkeypatch.setattr(multiworker_fix, "is_multi_worker", lambda strategy: True)
    out = multiworker_fix._reduce_per_replica({"loss": tf.constant(1.5), "accuracy": tf.constant(0.25)},
                                              Strategy(), "auto")
    assert {k: float(v) for k, v in out.items()} == {"loss": 1.5, "accuracy": 0.25}
    assert calls == [(tf.distribute.ReduceOp.MEAN, None)] * 2


# === Slow: real clusters ===

@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    rng = np.random.RandomState(0)
    images = rng.randint(0, 256, (40, 4, 4, 3)).astype(np.uint8).repeat(4, 1).repeat(4, 2)
    return str(write_images(tmp_path_factory.mktemp("imgs") / "horses", images))


# Not marked slow (two tiny workers, ~15 s): the default suite must say when the fix can go.
def test_keras_20585_still_crashes_without_fix(tmp_path):
    """When this fails, Keras has fixed #20585: delete keras_cnn/multiworker_fix.py (see its docstring)."""
    codes, outputs = run_cluster(tmp_path, lambda i: ["keras20585"], timeout=300)
    assert codes == [0, 0], outputs[0][-3000:]
    for out in outputs:
        assert "NO_FIX: ValueError: Attempt to convert a value (PerReplica:" in out, out[-3000:]
        assert "with an unsupported type (<class 'tensorflow.python.distribute.values.PerReplica'>)" in out
        assert "SYMBOLIC_BUILD_ONLY: ValueError: Invalid reduction dimension 0 for input with 0 dimensions" in out
        assert "FULL_FIX: trained, loss" in out
    # Both workers log the same all-reduced loss.
    losses = [out.split("FULL_FIX: trained, loss ")[1].split()[0] for out in outputs]
    assert losses[0] == losses[1]


def backup_scratch(tmp):
    return [n for n in os.listdir(tmp) if n.startswith("keras_cnn_backup_")]


def _weights(path):
    data = np.load(path)
    return [data[k] for k in sorted(data.files, key=lambda k: int(k.split("_")[1]))]


def _check_identical_and_chief_only(tmp_path, outputs):
    w0, w1 = _weights(tmp_path / "w0.npz"), _weights(tmp_path / "w1.npz")
    assert len(w0) == len(w1) > 0
    for a, b in zip(w0, w1):
        np.testing.assert_array_equal(a, b)
    # Each worker was given its own run folder (as on two machines): only the chief's exists.
    chief_run = tmp_path / "run0"
    assert not os.path.exists(tmp_path / "run1")
    assert {"config.json", "palette.npy", "best.keras", "last.keras", "history.csv", "metrics.json",
            "logs", "plots"} <= set(os.listdir(chief_run))
    assert not os.path.exists(chief_run / "backup")
    # The non-chief's temporary backup folder is gone.
    assert backup_scratch(tmp_path / "tmp1") == []
    # The chief's export loads and holds the weights both workers ended with.
    last = training.load_model(str(chief_run / "last.keras"))
    for a, b in zip(last.get_weights(), w0):
        np.testing.assert_array_equal(a, b)
    assert "(worker:0, chief)" in outputs[0] and "(worker:1)" in outputs[1]


@pytest.mark.slow
def test_two_workers_fit_identically_and_only_the_chief_writes(tmp_path, image_folder):
    codes, outputs = run_cluster(tmp_path, lambda i: [
        "train", str(tmp_path / f"run{i}"), str(tmp_path / f"w{i}.npz"), image_folder])
    assert codes == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    assert all("WORKER DONE" in out for out in outputs)
    _check_identical_and_chief_only(tmp_path, outputs)
    with open(tmp_path / "run0" / "history.csv") as f:
        assert [line.split(",")[0] for line in f.read().split()[1:]] == ["0", "1", "2"]


@pytest.mark.slow
def test_two_workers_resume_from_the_chiefs_backup_after_sigkill(tmp_path, image_folder):
    def args(resume):
        return lambda i: ["train", str(tmp_path / f"run{i}"), str(tmp_path / f"w{i}.npz"), image_folder,
                          *(["--resume"] if resume else ["--kill-at", "1:3"])]

    codes, outputs = run_cluster(tmp_path, args(resume=False))
    assert codes == [-signal.SIGKILL] * 2, outputs[0][-3000:]
    with open(tmp_path / "run0" / "backup" / "state.json") as f:
        state = json.load(f)
    assert (state["epoch"], state["step"]) == (1, 2)
    # SIGKILL leaves the non-chief's temporary folder behind; clear it to
    # check what the resumed run leaves.
    leftovers = backup_scratch(tmp_path / "tmp1")
    assert len(leftovers) == 1
    shutil.rmtree(tmp_path / "tmp1" / leftovers[0])

    codes, outputs = run_cluster(tmp_path, args(resume=True))
    assert codes == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    assert f"resuming from {tmp_path / 'run0' / 'backup'}, made after step 2 of epoch 2" in outputs[0]
    # The other worker keeps no backup of its own: it gets the chief's by all-reduce.
    assert "resuming from the chief's backup, made after step 2 of epoch 2" in outputs[1]
    assert all("Epoch 1/3" not in out and "Epoch 3/3" in out for out in outputs)
    _check_identical_and_chief_only(tmp_path, outputs)
    with open(tmp_path / "run0" / "history.csv") as f:
        assert [line.split(",")[0] for line in f.read().split()[1:]] == ["0", "1", "2"]


# === A peer that never comes ===

def test_cluster_timeout_setting_and_missing_peer_names(monkeypatch):
    from keras_cnn import distribute
    from keras_cnn.errors import UserError

    monkeypatch.delenv(distribute.CLUSTER_TIMEOUT_ENV, raising=False)
    assert distribute.cluster_timeout() == 300
    monkeypatch.setenv(distribute.CLUSTER_TIMEOUT_ENV, "2.5")
    assert distribute.cluster_timeout() == 2.5
    for bad in ("0", "-3", "soon", "nan", "inf"):
        monkeypatch.setenv(distribute.CLUSTER_TIMEOUT_ENV, bad)
        with pytest.raises(UserError, match=f"KERAS_CNN_CLUSTER_TIMEOUT='{bad}': must be a positive number"):
            distribute.cluster_timeout()
    ports = free_ports(3)
    cluster = {"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]}, "task": {"type": "worker", "index": 0}}
    # TensorFlow's barrier message names the late tasks.
    message = ("Barrier timed out. Id: [Init]Wait_for_all_tasks_to_register::0.\n# of tasks that reached the "
               "barrier: 1/3.\nThe first task at the barrier: /job:worker/replica:0/task:0. Some timed out task "
               "names:\n/job:worker/replica:0/task:2\n")
    assert distribute._missing_tasks(cluster, message) == [f"worker:2 (127.0.0.1:{ports[2]})"]
    # Without names (a worker whose leader never came), the peers that accept no connection.
    assert distribute._missing_tasks(cluster, "Deadline Exceeded") == [
        f"worker:1 (127.0.0.1:{ports[1]})", f"worker:2 (127.0.0.1:{ports[2]})"]


@pytest.mark.slow
def test_a_peer_that_never_starts_is_a_one_line_error_within_the_timeout(tmp_path, image_folder):
    """Two lone workers of two 2-worker clusters: the leader (worker 0) and a worker whose leader never comes."""
    procs = []
    for index in (0, 1):
        ports = free_ports(2)
        env = dict(os.environ, KERAS_CNN_CLUSTER_TIMEOUT="5", TF_CONFIG=json.dumps({
            "cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]}, "task": {"type": "worker", "index": index}}))
        cmd = [sys.executable, os.path.join(REPO, "scripts", "train_colorization.py"), "--run-dir",
               str(tmp_path / f"run{index}"), "--dataset", "folder", "--data-dir", image_folder,
               "--num-classes", "4", "--num-filters", "4", "--epochs", "1", "--strategy", "multi_worker"]
        procs.append((index, ports, time.time(),
                      subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       text=True)))
    for index, ports, started, proc in procs:
        out, err = proc.communicate(timeout=240)
        # TensorFlow's start-up on a shared CPU takes most of this; the wait itself is 5 s.
        assert time.time() - started < 200
        missing = 1 - index
        assert proc.returncode == 2, err[-3000:]
        assert err.strip() == (f"error: TF_CONFIG: worker:{missing} (127.0.0.1:{ports[missing]}) did not join the "
                               f"cluster within 5 s (this is worker:{index} (127.0.0.1:{ports[index]})); start "
                               "every task with its own TF_CONFIG, or wait longer with "
                               "KERAS_CNN_CLUSTER_TIMEOUT=SECONDS"), err[-3000:]
        # Nothing was written: the fixed command does not find a half-made run.
        assert not os.path.exists(tmp_path / f"run{index}")


def _accepts(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


# (id, this task's index in a 2-worker cluster whose other task never starts, signal, exit code)
SIGNALS_WHILE_WAITING = [
    ("leader-sigterm", 0, signal.SIGTERM, 143),
    ("worker-sigterm", 1, signal.SIGTERM, 143),
    ("leader-sigint", 0, signal.SIGINT, 130),
]


@pytest.mark.slow
@pytest.mark.parametrize("index,sig,code", [row[1:] for row in SIGNALS_WHILE_WAITING],
                         ids=[row[0] for row in SIGNALS_WHILE_WAITING])
def test_a_signal_while_waiting_for_a_peer_stops_at_once(tmp_path, image_folder, index, sig, code):
    """A scheduler's SIGTERM (or Ctrl-C) while the cluster forms: one line and 128 + the signal, not the timeout."""
    ports = free_ports(2)
    env = dict(os.environ, KERAS_CNN_CLUSTER_TIMEOUT="300", TF_CONFIG=json.dumps({
        "cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]}, "task": {"type": "worker", "index": index}}))
    cmd = [sys.executable, os.path.join(REPO, "scripts", "train_colorization.py"), "--run-dir",
           str(tmp_path / "run"), "--dataset", "folder", "--data-dir", image_folder, "--num-classes", "4",
           "--num-filters", "4", "--epochs", "1", "--strategy", "multi_worker"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # A task that waits for its peers listens on its own port (so they see it): it is waiting now.
        deadline = time.time() + 240
        while not _accepts(ports[index]) and proc.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()
        time.sleep(1)
        proc.send_signal(sig)
        signalled = time.time()
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert time.time() - signalled < 30  # the cluster timeout is 300 s
    assert proc.returncode == code, err[-3000:]
    missing = 1 - index
    assert err.strip() == (f"error: TF_CONFIG: stopped by {signal.Signals(sig).name} while waiting for "
                           f"worker:{missing} (127.0.0.1:{ports[missing]}) to join the cluster (this is "
                           f"worker:{index} (127.0.0.1:{ports[index]})); nothing was written, so the same "
                           "command starts afresh"), err[-3000:]
    assert not os.path.exists(tmp_path / "run")


@pytest.mark.slow
def test_sigterm_to_one_worker_stops_both_after_the_same_step_and_resume_continues(tmp_path, image_folder):
    """SIGTERM to the non-chief only: the workers agree by all-reduce, both stop after that step, backed up."""
    def args(resume):
        return lambda i: ["train", str(tmp_path / f"run{i}"), str(tmp_path / f"w{i}.npz"), image_folder,
                          *(["--resume"] if resume else (["--sigterm-at", "1:1"] if i == 1 else []))]

    codes, outputs = run_cluster(tmp_path, args(resume=False))
    assert codes == [143, 143], outputs[0][-3000:] + outputs[1][-3000:]
    run0 = tmp_path / "run0"
    for out in outputs:
        assert f"STOPPED: {tmp_path / 'run{}'.format(outputs.index(out))}: training stopped by SIGTERM at " \
               "epoch 2, step 2" in out, out[-3000:]
    assert "SIGTERM received: stopping after this step" in outputs[1]
    with open(run0 / "backup" / "state.json") as f:
        state = json.load(f)
    assert (state["epoch"], state["step"]) == (1, 2)
    # A clean stop removes the non-chief's scratch backup (fit's `finally`).
    assert backup_scratch(tmp_path / "tmp1") == []

    codes, outputs = run_cluster(tmp_path, args(resume=True))
    assert codes == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    assert f"resuming from {run0 / 'backup'}, made after step 2 of epoch 2" in outputs[0]
    assert "resuming from the chief's backup, made after step 2 of epoch 2" in outputs[1]
    _check_identical_and_chief_only(tmp_path, outputs)
    with open(run0 / "history.csv") as f:
        assert [line.split(",")[0] for line in f.read().split()[1:]] == ["0", "1", "2"]
