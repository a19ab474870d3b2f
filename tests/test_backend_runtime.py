"""The training runtime on each Keras backend: what `--strategy` becomes, what is refused, the first log line.

The backend is fixed when Keras is first imported, so each case runs in a
fresh Python process with `KERAS_BACKEND` set.
"""

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import REPO

_PROBE = """
import json, sys
from keras_cnn.colorization.config import PRESETS, ColorizationConfig
from keras_cnn.config import resolve
from keras_cnn.errors import UserError
from keras_cnn import training
cfg = resolve(ColorizationConfig, PRESETS, "cifar10_unet",
              dict(strategy=sys.argv[1], batch_size=8, learning_rate=0.01, lr_scaling="linear"))
lines = []
try:
    runtime = training.setup_runtime(cfg, lines.append)
except UserError as e:
    print(json.dumps({"error": str(e)}))
else:
    print(json.dumps({"line": lines[0], "replicas": runtime.replicas, "global_batch": runtime.global_batch,
                      "learning_rate": runtime.learning_rate, "backend": runtime.backend,
                      "tf_strategy": runtime.strategy is not None, "distribution": type(runtime.distribution).__name__,
                      "jit_compile": runtime.jit_compile}))
"""


def probe(backend, strategy, devices=1, tf_config=None):
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3",
           "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    env.pop("TF_CONFIG", None)
    if tf_config:
        env["TF_CONFIG"] = tf_config
    out = subprocess.run([sys.executable, "-c", _PROBE, strategy], capture_output=True, text=True, env=env,
                         cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_jax_trains_data_parallel_over_every_local_device():
    got = probe("jax", "auto", devices=2)
    assert (got["backend"], got["replicas"], got["global_batch"], got["learning_rate"]) == ("jax", 2, 16, 0.02)
    assert not got["tf_strategy"] and got["distribution"] == "DataParallel" and got["jit_compile"]
    assert got["line"].startswith("backend jax; DataParallel over 2 devices; global batch 8 x 2 = 16")
    assert "XLA on" in got["line"]
    one = probe("jax", "one_device", devices=2)
    assert (one["replicas"], one["distribution"]) == (1, "NoneType")
    assert one["line"].startswith("backend jax; one device;")


def test_tensorflow_first_line_names_the_backend_and_strategy():
    got = probe("tensorflow", "default")
    assert got["tf_strategy"] and got["replicas"] == 1 and not got["jit_compile"]
    assert got["line"].startswith("backend tensorflow; strategy _DefaultDistributionStrategy with 1 replica(s)")


@pytest.mark.parametrize("backend, strategy, devices, tf_config, message", [
    ("jax", "multi_worker", 1, None, "--strategy multi_worker does not run on the jax backend (KERAS_BACKEND=jax); "
                                     "it runs auto, default, one_device, mirrored, or use KERAS_BACKEND=tensorflow"),
    ("jax", "tpu", 1, None, "--strategy tpu does not run on the jax backend"),
    ("jax", "mirrored", 1, None, "--strategy mirrored needs two or more devices, and JAX sees one"),
    ("jax", "auto", 1, json.dumps({"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]},
                                   "task": {"type": "worker", "index": 0}}),
     "TF_CONFIG names a cluster, but training on several machines runs on the TensorFlow backend only"),
    ("torch", "mirrored", 1, None, "--strategy mirrored does not run on the torch backend (KERAS_BACKEND=torch); "
                                   "it runs auto, default, one_device"),
])
def test_a_strategy_the_backend_cannot_run_is_one_line(backend, strategy, devices, tf_config, message):
    if backend == "torch":
        pytest.importorskip("torch", reason="the torch backend needs PyTorch (pip install torch)")
    got = probe(backend, strategy, devices, tf_config)
    assert message in got["error"] and "\n" not in got["error"]
