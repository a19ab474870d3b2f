"""The two keras.io-style examples run top to bottom on tiny data: data, model, compile, fit, evaluate, export.

They run in this process (`runpy`), on photos made here, for one epoch; the
full versions and their measured figures are in docs/PYTHON_API.md.
"""

import os
import runpy
import sys

import numpy as np
import pytest
from PIL import Image

from tests.export_helpers import blocky_images, segmenter_run
from tests.helpers import REPO, write_images

EXAMPLES = os.path.join(REPO, "examples")


def run_example(name, argv, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [name] + [str(a) for a in argv])
    runpy.run_path(os.path.join(EXAMPLES, name), run_name="__main__")
    return capsys.readouterr().out


def test_colorization_example_runs_on_tiny_data(tmp_path, monkeypatch, capsys):
    data = write_images(str(tmp_path / "photos"), blocky_images(40, seed=1), ext=".jpg")
    out = tmp_path / "out"
    said = run_example("colorization_unet.py", ["--data-dir", data, "--epochs", 1, "--max-images", 24,
                                                "--batch-size", 12, "--out-dir", out], monkeypatch, capsys)
    # The split of the command line: 10% of 40 held out, the training images capped at 24.
    assert "24 training and 4 validation photos" in said
    assert "validation: accuracy" in said and "grey input: accuracy" in said and "the grey input" in said
    assert sorted(os.listdir(out)) == ["colorizer.keras", "palette.npy", "photo_colours.png", "saved_model"]
    # The photo scaled to 256x256 and its colours, side by side.
    assert np.asarray(Image.open(out / "photo_colours.png")).shape == (256, 512, 3)


def test_segmentation_example_runs_on_tiny_data(tmp_path, monkeypatch, capsys):
    data = os.path.join(os.path.dirname(segmenter_run(str(tmp_path / "made"), n_pairs=12)), "data")
    out = tmp_path / "out"
    said = run_example("segmentation_deeplabv3.py", ["--data-dir", data, "--backbone", "tiny", "--image-size", 64,
                                                     "--epochs", 1, "--out-dir", out], monkeypatch, capsys)
    assert "9 training and 3 validation pairs" in said  # a quarter held out, as the command line does
    assert "validation: fg_iou" in said and "mean_iou" in said
    assert sorted(os.listdir(out)) == ["photo_overlay.png", "saved_model", "segmenter.keras"]
    # The overlay is at the photo's own size, not the model's 64x64.
    first = sorted(os.listdir(os.path.join(data, "images")))
    from keras_cnn.segmentation import folder_pairs, split_pairs

    photo = split_pairs(folder_pairs(data), 0.25)[1][0][0]
    assert os.path.basename(photo) in first
    assert np.asarray(Image.open(out / "photo_overlay.png")).shape == np.asarray(Image.open(photo)).shape


@pytest.mark.parametrize("name", ["colorization_unet.py", "segmentation_deeplabv3.py"])
def test_examples_say_which_data_folder_is_missing(name, tmp_path, monkeypatch, capsys):
    with pytest.raises(SystemExit) as stopped:
        run_example(name, ["--data-dir", tmp_path / "nope", "--out-dir", tmp_path / "out"], monkeypatch, capsys)
    assert stopped.value.code == 2
    assert f"--data-dir {tmp_path / 'nope'}: no such folder" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
