"""Big photos in bounded memory: tiled colourization and banded segmentation agree with whole-image inference."""

import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_cnn import fileio
from keras_cnn.colorization import predict as colour_predict
from keras_cnn.errors import UserError
from keras_cnn.segmentation import predict as seg_predict
from keras_cnn.tasks import open_run
from tests.export_helpers import colour_run, segmenter_run


def photo(height, width, seed=0):
    """A smooth scene with edges and noise: gradients, a few discs, JPEG-like grain."""
    rng = np.random.RandomState(seed)
    yy, xx = np.mgrid[:height, :width].astype(np.float32)
    image = np.stack([120 + 100 * np.sin(xx / 97.0 + c) * np.cos(yy / 71.0 - c) for c in range(3)], axis=-1)
    for _ in range(6):
        cy, cx, r = rng.randint(0, height), rng.randint(0, width), rng.randint(30, 160)
        image[(yy - cy) ** 2 + (xx - cx) ** 2 < r ** 2] = rng.randint(0, 256, 3)
    return np.clip(image + rng.normal(0, 6, image.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def colour_runs(tmp_path_factory):
    """Run folders made on first use: "unet", "pool_upsample_superres", "resunet"."""
    root = tmp_path_factory.mktemp("big")
    kinds = {"unet": {}, "pool_upsample_superres": dict(model="pool_upsample", downsize_input=True),
             "resunet": dict(model="resunet")}

    class Runs(dict):
        def __missing__(self, name):
            os.makedirs(root / name)
            self[name] = open_run(colour_run(str(root / name), **kinds[name])[0])
            return self[name]

    return Runs()


@pytest.mark.slow
def test_receptive_radius_of_a_global_context_net_is_unbounded(colour_runs):
    # ResUNet's image pooling sees the whole photo.
    assert colour_predict.receptive_radius(colour_runs["resunet"].model) is None
    assert colour_predict.tile_halo(colour_runs["resunet"].model) == colour_predict.MAX_HALO


def test_receptive_radius_is_measured(colour_runs):
    unet = colour_runs["unet"].model
    radius = colour_predict.receptive_radius(unet)
    # UNet, kernel 3, two stride-2 levels: measured 7 pixels.
    assert 4 <= radius <= 16
    assert colour_predict.tile_halo(unet) % 4 == 0 and colour_predict.tile_halo(unet) >= radius + 4


@pytest.mark.parametrize("name,decode", [
    ("unet", "argmax"), ("unet", "annealed"),
    pytest.param("pool_upsample_superres", "argmax", marks=pytest.mark.slow)])
def test_tiled_colourization_equals_whole_image_inference(colour_runs, name, decode):
    run = colour_runs[name]
    image = photo(701, 903)  # not multiples of 4 or of the tile
    whole = colour_predict.colorize(run.model, run.assets["palette"], image[None], decode, tile_size=None)[0]
    tiled = colour_predict.colorize(run.model, run.assets["palette"], image[None], decode, tile_size=256)[0]
    assert tiled.shape == whole.shape == image.shape
    # 4 x 3 tiles of 256 with a halo past the receptive field: the same pixels, float rounding aside
    # (measured: identical everywhere).
    same = np.mean(np.all(tiled == whole, axis=-1))
    assert same >= 0.9999, same
    assert np.max(np.abs(tiled.astype(int) - whole.astype(int))) <= (1 if decode == "annealed" else 255)


@pytest.mark.slow
def test_global_context_net_is_tiled_approximately(colour_runs):
    """ResUNet's image pooling sees each tile, not the photo: close to, not equal to, one pass (stated in the docs)."""
    run = colour_runs["resunet"]
    image = photo(512, 640, seed=1)
    whole = colour_predict.colorize(run.model, run.assets["palette"], image[None], tile_size=None)[0]
    tiled = colour_predict.colorize(run.model, run.assets["palette"], image[None], tile_size=256)[0]
    # Measured on 701 x 903: 99.8% of pixels identical (argmax).
    assert np.mean(np.all(tiled == whole, axis=-1)) > 0.95


def test_colorize_files_tiles_big_photos_and_writes_the_strip(colour_runs, tmp_path):
    run = colour_runs["unet"]
    image = photo(300, 520, seed=2)
    Image.fromarray(image).save(tmp_path / "big.png")
    Image.fromarray(image[:40, :48]).save(tmp_path / "small.png")
    written = colour_predict.colorize_files(run.model, run.assets["palette"], str(tmp_path), str(tmp_path / "out"),
                                            tile_size=128)
    assert sorted(os.path.basename(p) for p in written) == ["big_color.png", "big_compare.png",
                                                            "small_color.png", "small_compare.png"]
    whole = colour_predict.colorize(run.model, run.assets["palette"], image[None], tile_size=None)[0]
    got = np.asarray(Image.open(tmp_path / "out" / "big_color.png"))
    assert np.mean(np.all(got == whole, axis=-1)) >= 0.9999
    strip = np.asarray(Image.open(tmp_path / "out" / "big_compare.png"))
    top = colour_predict.label_height(520)  # the band naming the three panels
    assert strip.shape == (top + 300, 1560, 3)
    np.testing.assert_array_equal(strip[top:, 520:1040], got)
    np.testing.assert_array_equal(strip[top:, 1040:], image)
    np.testing.assert_array_equal(strip[top:, :520, 0], np.round(image.mean(-1)).astype(np.uint8))


def whole_image_labels(model, image):
    """The previous, unbounded predict_labels: the whole photo and full-size logits in one go."""
    x = tf.image.resize(image, model.image_size, method="bilinear", antialias=True)
    logits = model(tf.clip_by_value(tf.round(x), 0, 255)[None], training=False)
    logits = tf.image.resize(logits, image.shape[:2], method="bilinear")
    return tf.argmax(logits[0], axis=-1).numpy().astype(np.uint8)


def test_banded_segmentation_equals_whole_image_resizing(tmp_path):
    model = open_run(segmenter_run(str(tmp_path))).model
    image = photo(701, 903, seed=3)
    want = whole_image_labels(model, image)
    got = seg_predict.predict_labels(model, image)
    assert got.shape == want.shape == image.shape[:2]
    same = np.mean(got == want)
    assert same >= 0.9999, same
    # The bilinear upsampling of the logits alone, on random logits: TensorFlow's sampling exactly.
    logits = np.random.RandomState(0).normal(size=(32, 32, 3)).astype(np.float32)
    reference = tf.argmax(tf.image.resize(logits, (701, 903), method="bilinear"), -1).numpy()
    assert np.mean(seg_predict.labels_at_size(logits, 701, 903) == reference) >= 0.99999
    # The overlay, band by band, is the photo tinted where the labels say.
    labels = (np.arange(701 * 903).reshape(701, 903) % 3).astype(np.uint8)
    tinted = seg_predict.overlay(image, labels)
    np.testing.assert_array_equal(tinted[labels == 0], image[labels == 0])
    expected = np.clip(0.5 * image[labels == 1].astype(np.float32) + 0.5 * np.float32([255, 0, 0]), 0, 255)
    np.testing.assert_array_equal(tinted[labels == 1], expected.astype(np.uint8))


def test_photos_over_the_pixel_limit_are_refused_before_decoding(colour_runs, tmp_path, monkeypatch):
    """A decompression bomb is one line from the colourizer and the segmenter (limit lowered to stand in)."""
    Image.fromarray(photo(40, 50)).save(tmp_path / "bomb.png")
    monkeypatch.setattr(fileio, "MAX_IMAGE_PIXELS", 1000)
    message = f"{tmp_path / 'bomb.png'}: image is 50x40 pixels, more than the 1,000 this package reads"
    run = colour_runs["unet"]
    with pytest.raises(UserError, match=message):
        colour_predict.colorize_files(run.model, run.assets["palette"], str(tmp_path), str(tmp_path / "out"))
    with pytest.raises(UserError, match=message):
        seg_predict.segment_paths(None, [str(tmp_path / "bomb.png")], str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()
