"""Saved models: plain `keras.saving.load_model` after `import keras_cnn`, raw pixels in, earlier layouts.

`tests/data/legacy/` holds `.keras` files written by keras_cnn 0.1 (the
first release, whose models took already-normalised input) and their
logits on fixed inputs, made with that release's code.
"""

import os
import subprocess
import sys

import numpy as np

LEGACY = os.path.join(os.path.dirname(__file__), "data", "legacy")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_plain_keras_loads_every_saved_class_after_import_keras_cnn(tmp_path):
    # In a fresh interpreter: nothing but `import keras_cnn` registers the classes.
    from tests.export_helpers import colour_run, segmenter_run

    colour_dir, _ = colour_run(str(tmp_path / "c"))
    seg_dir = segmenter_run(str(tmp_path / "s"))
    code = (
        "import keras_cnn, keras, numpy as np\n"
        f"c = keras.saving.load_model({os.path.join(colour_dir, 'best.keras')!r})\n"
        f"s = keras.saving.load_model({os.path.join(seg_dir, 'best.keras')!r})\n"
        "print(type(c).__name__, c(np.zeros((1, 8, 8, 3), 'uint8')).shape, "
        "type(s).__name__, s(np.zeros((1, 32, 32, 3), 'uint8')).shape)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["Colorizer", "(1,", "8,", "8,", "12)", "DeepLabV3Segmenter", "(1,", "32,",
                                  "32,", "2)"]


def test_models_take_uint8_and_float_pixels_alike(tmp_path):
    from keras_cnn.tasks import open_run
    from tests.export_helpers import colour_run

    run_dir, images = colour_run(str(tmp_path))
    model = open_run(run_dir).model
    np.testing.assert_array_equal(model(images[:2]).numpy(), model(images[:2].astype(np.float32)).numpy())


def test_first_release_colourizer_file_loads_and_is_wrapped_with_its_input_conversion(tmp_path):
    import keras

    from keras_cnn.colorization.colorizer import Colorizer
    from keras_cnn.colorization.config import ColorizationConfig
    from keras_cnn.colorization.models import UNet
    from keras_cnn.colorization.palette import Palette, save_palette
    from keras_cnn.config import config_path, save_config
    from keras_cnn.tasks import open_run

    net = keras.saving.load_model(os.path.join(LEGACY, "unet_v0_1.keras"))
    assert isinstance(net, UNet)
    # A run folder of that release (config.json without "task") opens as a colourization run.
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    save_config(ColorizationConfig(num_colours=5, num_filters=4), config_path(str(run_dir)))
    save_palette(str(run_dir / "palette.npy"), Palette(np.random.RandomState(0).uniform(0, 1, (5, 3))))
    (run_dir / "best.keras").write_bytes(open(os.path.join(LEGACY, "unet_v0_1.keras"), "rb").read())
    model = open_run(str(run_dir)).model
    assert isinstance(model, Colorizer)
    x = np.random.RandomState(0).randint(0, 256, (2, 8, 8, 3)).astype(np.uint8)  # the inputs the file was made with
    np.testing.assert_allclose(model(x).numpy(), np.load(os.path.join(LEGACY, "unet_v0_1_logits.npy")), atol=1e-5)


def test_first_release_segmenter_file_loads_into_the_raw_pixel_layout():
    import keras

    import keras_cnn  # noqa: F401

    model = keras.saving.load_model(os.path.join(LEGACY, "segmenter_v0_1.keras"))
    assert model.layers[1].name == "normalize" and model.preprocessing == "imagenet"
    images = np.random.RandomState(1).randint(0, 256, (2, 32, 32, 3)).astype(np.uint8)
    # Same weights, now applied to raw pixels: the logits the old model gave on normalised ones.
    np.testing.assert_allclose(model(images).numpy(), np.load(os.path.join(LEGACY, "segmenter_v0_1_logits.npy")),
                               atol=1e-4)
