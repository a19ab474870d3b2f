"""Inputs that used to crash the process natively end in one line and exit 2.

- A thread count far above the CPU count (LiteRT given 100,000 threads
  crashed with a segfault as the interpreter was torn down, after the output
  was written) is refused before anything runs (`hardware.check_threads`).
- A disk that fills up while a training backup is written (HDF5 kept the
  half-written file, printed a traceback per freed object and crashed at
  exit, 139): the backup is built in memory and written with one plain
  write, so it is one line naming the file (`callbacks._save_weights`). The
  test fills a real, tiny tmpfs (needs root to mount; skipped otherwise).
"""

import contextlib
import os
import subprocess
import sys
import tempfile
import textwrap

import pytest

from keras_cnn import hardware
from keras_cnn.errors import UserError
from tests.helpers import REPO

ENV = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3")

THREADS = [
    ("tflite-predict", ["tflite-predict", "--model", "{w}/m.tflite", "--input", "{w}/p.png", "--out", "{w}/o.png",
                        "--metadata", "{w}/metadata.json", "--threads", "100000"], "--threads 100000"),
    ("int8-study", ["int8-study", "--run-dir", "{w}", "--out", "{w}/o.json", "--threads", "100000"],
     "--threads 100000"),
    ("benchmark", ["benchmark", "--out", "{w}/b.json", "--tflite-threads", "100000"], "--tflite-threads 100000"),
]


@pytest.mark.parametrize("argv,flag", [row[1:] for row in THREADS], ids=[row[0] for row in THREADS])
def test_a_thread_count_far_above_the_cpus_is_one_line(tmp_path, argv, flag):
    for name in ("m.tflite", "p.png", "metadata.json", "config.json"):
        (tmp_path / name).write_bytes(b"a stand-in; never read")
    proc = subprocess.run([sys.executable, "-m", "keras_cnn", *[a.format(w=tmp_path) for a in argv]], cwd=REPO,
                          capture_output=True, text=True, env=ENV, timeout=120)
    assert proc.returncode == 2, proc.stderr
    # tflite-predict's --out FILE still works, with its one deprecation line (docs/CLI.md).
    lines = [ln for ln in proc.stderr.splitlines() if ln != "warning: --out is deprecated; use --out-dir"]
    assert lines == [f"error: {flag}: more than the {hardware.max_threads()} threads this "
                                        f"package runs (this machine has {os.cpu_count()} CPUs; more threads "
                                        "than CPUs only wait for each other)"]
    assert not os.path.exists(tmp_path / "o.png")


def test_the_library_bounds_threads_too():
    pytest.importorskip("ai_edge_litert")
    from keras_cnn.export import litert_runtime

    with pytest.raises(UserError, match="num_threads 100000: more than the"):
        litert_runtime.load_interpreter(b"not a model", num_threads=100000)
    assert hardware.check_threads(None, "--threads") is None
    assert hardware.check_threads(hardware.max_threads(), "--threads") == hardware.max_threads()


@contextlib.contextmanager
def tiny_disk(size):
    """A fresh tmpfs of `size` (e.g. "1m"), or a skip where it cannot be mounted."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tiny tmpfs needs root")
    folder = tempfile.mkdtemp(prefix="keras-cnn-full-")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", folder],
                             capture_output=True, text=True)
    if mounted.returncode:
        os.rmdir(folder)
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()})")
    try:
        yield folder
    finally:
        subprocess.run(["umount", folder], check=False)
        os.rmdir(folder)


BACKUP = textwrap.dedent("""
    import sys
    import keras
    from keras_cnn import cli
    from keras_cnn.training.callbacks import RunBackup

    # About 1 MB of weights and 2 MB of Adam state: a backup of 3 MB on a disk of 1 MB.
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(512), keras.layers.Dense(512)])
    model.compile("adam", "mse")
    model.optimizer.build(model.trainable_variables)
    backup = RunBackup(sys.argv[1])
    backup.set_model(model)
    cli.main(lambda: backup.save_step(0, 1))
""")


def test_a_disk_that_fills_during_a_backup_is_one_line_and_a_clean_exit():
    with tiny_disk("1m") as disk:
        backup_dir = os.path.join(disk, "run", "backup")
        proc = subprocess.run([sys.executable, "-c", BACKUP, backup_dir], cwd=REPO, capture_output=True,
                              text=True, env=ENV, timeout=300)
        left = os.listdir(backup_dir) if os.path.isdir(backup_dir) else []
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.splitlines()[-1] == (
        f"error: {backup_dir}/epoch00000-step0000001.weights.h5: no space left on device; free some space there, "
        "or write somewhere else, and run the command again")
    assert left == [], "a half-written backup was left behind"


def test_a_backup_written_in_memory_loads_as_one_written_by_keras(tmp_path):
    """The in-memory backup is the file `model.save_weights` writes: it restores the same weights."""
    import keras
    import numpy as np

    from keras_cnn.training import callbacks

    def model(seed):
        keras.utils.set_random_seed(seed)
        m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.Dense(2)])
        m.compile("adam", "mse")
        m.fit(np.ones((8, 4)), np.ones((8, 2)), epochs=1, verbose=0)
        return m

    source = model(0)
    callbacks._save_weights(source, str(tmp_path / "a.weights.h5"))
    restored = model(1)
    restored.load_weights(str(tmp_path / "a.weights.h5"))
    for a, b in zip(source.weights + source.optimizer.variables, restored.weights + restored.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
