"""Assets that do not belong to the model are refused in one line, never decoded into garbage.

A `palette.npy` with another number of colours than the colourizer predicts,
and a `.tflite` given another export's `metadata.json`.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_cnn.colorization.palette import Palette, save_palette
from keras_cnn.errors import UserError
from keras_cnn.export import litert_runtime, servable_for
from keras_cnn.tasks import open_run
from tests.export_helpers import colour_run
from tests.helpers import REPO


@pytest.fixture(scope="module")
def wrong_palette_run(tmp_path_factory):
    """A 12-colour colourizer run whose palette.npy was replaced by one of 5 colours."""
    run_dir, images = colour_run(str(tmp_path_factory.mktemp("palette")))
    save_palette(os.path.join(run_dir, "palette.npy"), Palette(np.linspace(0, 0.9, 15).reshape(5, 3)))
    return run_dir, images


def test_a_palette_that_does_not_match_the_model_is_refused(wrong_palette_run):
    run_dir, images = wrong_palette_run
    message = (f"{run_dir}/palette.npy: palette has 5 colours but the model predicts 12; use the palette.npy of "
               "the run that trained the model")
    for use in (lambda run: run.model, lambda run: run.predict(images[0]), lambda run: run.evaluate(),
                lambda run: servable_for(run)):
        with pytest.raises(UserError) as caught:
            use(open_run(run_dir))
        assert str(caught.value) == message


@pytest.mark.slow
def test_colorize_and_evaluate_scripts_refuse_a_wrong_palette(wrong_palette_run, tmp_path):
    run_dir, images = wrong_palette_run
    Image.fromarray(images[0]).save(tmp_path / "photo.png")
    scripts = {
        "colorize": ["colorize.py", "--run-dir", run_dir, "--input", str(tmp_path / "photo.png"),
                     "--out-dir", str(tmp_path / "out")],
        "evaluate": ["evaluate_colorization.py", "--run-dir", run_dir],
    }
    procs = {name: subprocess.Popen([sys.executable, os.path.join(REPO, "scripts", args[0]), *args[1:]], cwd=REPO,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name, args in scripts.items()}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 2, (name, err[-2000:])
        assert err.strip() == (f"error: {run_dir}/palette.npy: palette has 5 colours but the model predicts 12; "
                               "use the palette.npy of the run that trained the model"), (name, err[-2000:])
    assert not (tmp_path / "out").exists()


def tiny_tflite(path, size, classes):
    """A .tflite taking uint8 (1, size, size, 3) and returning float32 probabilities (1, size, size, classes)."""
    @tf.function(input_signature=[tf.TensorSpec((1, size, size, 3), tf.uint8)])
    def probabilities(images):
        x = tf.cast(images, tf.float32) / 255.0
        logits = tf.concat([x[..., :1] * (k + 1) for k in range(classes)], axis=-1)
        return tf.nn.softmax(logits, axis=-1)

    converter = tf.lite.TFLiteConverter.from_concrete_functions([probabilities.get_concrete_function()],
                                                                probabilities)
    with open(path, "wb") as f:
        f.write(converter.convert())
    return str(path)


def colour_metadata(size, colours, files=("model_float32.tflite",)):
    return {"application": "colorization", "name": "model", "version": 1, "input_size": [size, size],
            "image_fit": "centre_crop", "decode": "argmax", "temperature": 0.38,
            "palette": {"space": "rgb", "colours": np.linspace(0, 0.9, 3 * colours).reshape(colours, 3).tolist()},
            "tflite": {"float32": f} if (f := files[0]) else {}}


def test_tflite_metadata_of_another_model_is_refused(tmp_path):
    model = tiny_tflite(tmp_path / "model_float32.tflite", 16, 5)
    interpreter = litert_runtime.load_interpreter(model)
    assert litert_runtime.check_metadata(interpreter, colour_metadata(16, 5), model) is None
    with pytest.raises(UserError) as caught:
        litert_runtime.check_metadata(interpreter, colour_metadata(32, 24), model, "other/metadata.json")
    assert str(caught.value) == (f"other/metadata.json: does not describe {model}: the model takes 16x16 images, "
                                 "the metadata says 32x32; the model predicts 5 classes, the metadata describes "
                                 "24; pass --metadata of the export this model came from")
    segmenter = {"application": "segmentation", "input_size": [16, 16], "num_classes": 2,
                 "tflite": {"float32": "horses_float32.tflite"}}
    with pytest.raises(UserError, match=r"the model predicts 5 classes, the metadata describes 2 \(it lists "
                                        r"horses_float32.tflite\)"):
        litert_runtime.check_metadata(interpreter, segmenter, model)
    # Same shapes, but the metadata lists other files: a warning, not an error (a renamed file is fine).
    warning = litert_runtime.check_metadata(interpreter, colour_metadata(16, 5, ("other_float32.tflite",)), model)
    assert "lists other_float32.tflite, not model_float32.tflite" in warning


def test_tflite_predict_script_refuses_another_models_metadata(tmp_path):
    model = tiny_tflite(tmp_path / "model_float32.tflite", 16, 5)
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / "photo.png")
    (tmp_path / "other.json").write_text(json.dumps(colour_metadata(32, 24)))
    done = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "tflite_predict.py"), "--model", model,
                           "--metadata", str(tmp_path / "other.json"), "--input", str(tmp_path / "photo.png"),
                           "--out-dir", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {tmp_path / 'other.json'}: does not describe {model}")
    assert not (tmp_path / "out").exists()
