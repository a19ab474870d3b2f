"""Train anywhere, export the same files: a run trained under JAX exports in a TensorFlow process.

For both applications, on tiny data: `keras-cnn train-*` under
`KERAS_BACKEND=jax`, the trained model's logits computed under JAX, then
`keras-cnn export` with `KERAS_BACKEND=jax` still set (export switches itself
to TensorFlow and says so), and the SavedModel's and the float32 TFLite
file's outputs compared with the JAX logits.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.export_helpers import blocky_images
from tests.helpers import REPO, write_images
from tests.test_segmentation_data import make_folder

pytest.importorskip("jax", reason="the JAX backend needs jax (pip install -e .[jax])")

# The JAX half: the run's best.keras on the images in `images.npy`, logits to `logits.npy`.
_JAX_LOGITS = """
import sys
import numpy as np
import keras
import keras_cnn
assert keras.backend.backend() == "jax"
run = keras_cnn.open_run(sys.argv[1])
images = np.load(sys.argv[2])
np.save(sys.argv[3], np.asarray(keras.ops.convert_to_numpy(run.model(images, training=False)), np.float32))
"""


def cli(*args, backend="jax"):
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-m", "keras_cnn", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


def jax_logits(run_dir, images, tmp_path):
    np.save(tmp_path / "images.npy", images)
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    proc = subprocess.run([sys.executable, "-c", _JAX_LOGITS, str(run_dir), str(tmp_path / "images.npy"),
                           str(tmp_path / "logits.npy")], capture_output=True, text=True, env=env, cwd=REPO,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return np.load(tmp_path / "logits.npy")


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def exported_outputs(root, name, images):
    """(SavedModel probabilities, TFLite float32 logits) for `images` from export root `root`."""
    import tensorflow as tf

    from keras_cnn.export import litert_runtime

    loaded = tf.saved_model.load(str(root / name / "1"))
    probabilities = loaded.signatures["serving_default"](images=tf.constant(images))["probabilities"].numpy()
    tflite = root / name / "tflite" / "1" / f"{name}_float32.tflite"
    logits = litert_runtime.predict(litert_runtime.load_interpreter(str(tflite)), images)["logits"]
    return probabilities, logits


def check_export(tmp_path, run_dir, name, images):
    expected = jax_logits(run_dir, images, tmp_path)
    out = cli("export", "--run-dir", run_dir, "--name", name, "--formats", "saved_model,tflite_float32",
              "--out", tmp_path / "exported", "--check-count", 4, "--representative-count", 4)
    assert "note: export runs on the TensorFlow backend (KERAS_BACKEND=jax is ignored here)" in out.stderr
    metadata = json.loads((tmp_path / "exported" / name / "tflite" / "1" / "metadata.json").read_text())
    assert metadata["versions"]["keras"]
    probabilities, logits = exported_outputs(tmp_path / "exported", name, images)
    np.testing.assert_allclose(probabilities, softmax(expected), atol=2e-4)
    np.testing.assert_allclose(logits, expected, atol=2e-3, rtol=1e-3)
    return out


def test_a_colourizer_trained_under_jax_exports_under_tensorflow(tmp_path):
    images = blocky_images(48, 32, seed=3)
    data = write_images(str(tmp_path / "data"), images)
    run_dir = tmp_path / "run"
    train = cli("train-colorization", "--dataset", "folder", "--data-dir", data, "--run-dir", run_dir, "--epochs", 1,
                "--batch-size", 8, "--num-classes", 6, "--num-filters", 4)
    assert train.stdout.splitlines()[0].startswith("backend jax; ")
    check_export(tmp_path, run_dir, "unet", images[:4])


def test_a_segmenter_trained_under_jax_exports_under_tensorflow(tmp_path):
    data = make_folder(tmp_path / "data", n=8)
    run_dir = tmp_path / "run"
    train = cli("train-segmentation", "--preset", "smoke", "--data-dir", data, "--run-dir", run_dir, "--epochs", 1)
    assert train.stdout.splitlines()[0].startswith("backend jax; ")
    images = blocky_images(3, 32, seed=5)
    check_export(tmp_path, run_dir, "seg", images)
