"""A photo of any size through a fixed-size TFLite file: the same size and colours as `colorize`, masks as `segment`.

The tiling itself (`keras_cnn.full_size`) is checked in NumPy against a
whole-image pass of a net whose reach is known; the files are checked on a
UNet trained for seconds (its decisions mean something, so agreement does
too) and on a small random-weight segmenter.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from keras_cnn import full_size
from tests.helpers import REPO


def quiet(*args):
    pass


# === The tiling, in NumPy ===

def box_filter(images, radius):
    """A "net" whose output pixel is the mean of the (2r+1)^2 input pixels around it, zero-padded like a conv."""
    x = np.pad(images.astype(np.float64), ((0, 0), (radius, radius), (radius, radius), (0, 0)))
    h, w = images.shape[1:3]
    out = np.zeros(images.shape, np.float64)
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            out += x[:, dy:dy + h, dx:dx + w]
    return out / (2 * radius + 1) ** 2


def whole_image(images, radius):
    """What `colorize` does in one pass: pad to the 4-pixel grid by repeating the edge, run, crop back."""
    h, w = images.shape[1:3]
    padded = full_size.crop_padded(images, (0, h + (-h) % 4, 0, w + (-w) % 4))
    return box_filter(padded, radius)[:, :h, :w]


@pytest.mark.parametrize("height,width,window", [(75, 110, 32), (32, 32, 32), (9, 50, 32), (130, 97, 48)])
def test_tiles_cover_every_pixel_once_and_stay_on_the_grid(height, width, window):
    border = full_size.halo(7, window=window)
    cover = np.zeros((height + (-height) % 4, width + (-width) % 4), int)
    for (y0, y1, x0, x1), (ya, yb, xa, xb) in full_size.tiles(height, width, None, border, window=window):
        assert (yb - ya, xb - xa) == (window, window)
        assert ya <= y0 < y1 <= yb and xa <= x0 < x1 <= xb
        assert ya % 4 == xa % 4 == y0 % 4 == x0 % 4 == 0
        cover[y0:y1, x0:x1] += 1
    assert np.all(cover == 1)
    # A "net" that copies its input puts every photo pixel back where it was.
    photo = np.random.RandomState(0).randint(0, 256, (2, height, width, 3)).astype(np.uint8)
    again = full_size.run_tiled(lambda view, core: view[:, core[0], core[1]], photo, None, border, window=window)
    np.testing.assert_array_equal(again, photo)


@pytest.mark.parametrize("radius", [3, 7, 8])
def test_fixed_window_tiles_equal_one_whole_image_pass(radius):
    # Each kept pixel sees its whole neighbourhood: the border covers the reach, and at the photo's edges the
    # view ends where the photo does, so the net pads there as it does for the whole photo.
    photo = np.random.RandomState(radius).randint(0, 256, (1, 75, 110, 3)).astype(np.uint8)
    border = full_size.halo(radius, window=32)
    assert border >= radius and border % 4 == 0
    tiled = full_size.run_tiled(lambda view, core: box_filter(view, radius)[:, core[0], core[1]], photo, None,
                                border, window=32)
    np.testing.assert_allclose(tiled, whole_image(photo, radius), rtol=0, atol=1e-9)
    # A border short of the reach changes pixels: the test can tell.
    short = full_size.run_tiled(lambda view, core: box_filter(view, radius)[:, core[0], core[1]], photo, None,
                                border - 4, window=32)
    assert np.max(np.abs(short - whole_image(photo, radius))) > 1


def test_halo_rules():
    assert full_size.halo(7) == 12 and full_size.halo(None) == full_size.MAX_HALO  # any-size (Keras) nets
    assert full_size.halo(7, window=32) == 8  # the course UNet in a 32-pixel file: cores of 16
    assert full_size.halo(13, window=32) == 12  # no more than leaves a 4-pixel core
    assert full_size.halo(None, window=32) == 8  # nets that see the whole image: a quarter of the window
    assert full_size.halo(7, window=256) == 8
    with pytest.raises(ValueError, match="leaves no core"):
        list(full_size.tiles(40, 40, None, 16, window=32))


# === The TFLite files ===

@pytest.fixture(scope="module")
def trained_export(tmp_path_factory):
    """A UNet trained for seconds on photos whose colour follows from their grey, exported float32 and int8."""
    from keras_cnn.export import layout, servable_for
    from keras_cnn.tasks import open_run
    from tests.export_helpers import trained_colour_run

    root = tmp_path_factory.mktemp("tfl_full")
    run_dir, palette = trained_colour_run(str(root))
    summary = layout.export_model(servable_for(open_run(run_dir)), str(root / "exported"), "unet",
                                  ("tflite_float32", "tflite_int8"), representative_count=64, check_count=8,
                                  log=quiet)
    return run_dir, palette, summary["tflite"]["path"]


def grey_coded_photo(palette, height, width, seed=5):
    """A photo of the trained run's kind (blocks of palette colours, told apart by their grey) at any size."""
    from tests.export_helpers import grey_coded_images

    colours = np.round(np.asarray(palette.colours) * 256)
    side = max(height, width) + (-max(height, width)) % 4
    return grey_coded_images(1, colours, size=side, seed=seed)[0][:height, :width]


def tflite_predict(model, image, out):
    """`tflite-predict` on one photo; its one result PNG is moved to `out`."""
    out_dir = f"{out}.d"
    done = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "tflite_predict.py"), "--model", model,
                           "--input", image, "--out-dir", out_dir], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr[-2000:]
    (written,) = os.listdir(out_dir)
    os.replace(os.path.join(out_dir, written), out)
    return done.stdout


def test_tflite_colourizes_the_whole_photo_like_colorize(trained_export, tmp_path):
    from keras_cnn.export import litert_runtime as rt
    from keras_cnn.tasks import open_run

    run_dir, palette, folder = trained_export
    meta = rt.read_metadata(os.path.join(folder, "metadata.json"))
    assert meta["receptive_radius"] == 7  # measured on the UNet at export
    photo = grey_coded_photo(palette, 75, 110)  # not a multiple of 4, nor of the 16-pixel cores
    Image.fromarray(photo).save(tmp_path / "photo.png")
    keras_colours = open_run(run_dir).predict(photo)  # what `colorize` writes
    agreement = {}
    for variant in ("float32", "int8"):
        out = str(tmp_path / f"{variant}.png")
        said = tflite_predict(os.path.join(folder, f"unet_{variant}.tflite"), str(tmp_path / "photo.png"), out)
        assert "colours at 110x75, in tiles of 32x32 keeping the central 16x16" in said
        colours = np.asarray(Image.open(out))
        assert colours.shape == keras_colours.shape == photo.shape
        agreement[variant] = float(np.mean(np.all(colours == keras_colours, axis=-1)))
    # float32 computes what Keras does (a border past the receptive field); int8 rounds near-ties.
    assert agreement["float32"] >= 0.98, agreement
    assert agreement["int8"] >= 0.90, agreement
    # The tiles matter: the file run on the photo shrunk to its input size is far from colorize's colours.
    shrunk = np.asarray(Image.fromarray(photo).resize((32, 32), Image.Resampling.BILINEAR))
    once = rt.predict(rt.load_interpreter(os.path.join(folder, "unet_float32.tflite")), shrunk[None])["colours"][0]
    upsized = np.asarray(Image.fromarray(once).resize((110, 75), Image.Resampling.NEAREST))
    assert np.mean(np.all(upsized == keras_colours, axis=-1)) < agreement["float32"] - 0.1


def test_tflite_annealed_colourizer_decodes_its_tiles(tmp_path):
    # Annealed-mean colourizers return logits: the app decodes them tile by tile with the palette.
    from keras_cnn.export import layout, servable_for
    from keras_cnn.export import litert_runtime as rt
    from keras_cnn.tasks import open_run
    from tests.export_helpers import blocky_images, colour_run

    run_dir, _ = colour_run(str(tmp_path), decode="annealed")
    summary = layout.export_model(servable_for(open_run(run_dir)), str(tmp_path / "out"), "unet", ("tflite_float32",),
                                  check_count=4, log=quiet)
    folder = summary["tflite"]["path"]
    meta = rt.read_metadata(os.path.join(folder, "metadata.json"))
    photo = blocky_images(1, 64, seed=3)[0][:52, :60]
    got = rt.colorize(rt.load_interpreter(os.path.join(folder, "unet_float32.tflite")), photo, meta)
    want = open_run(run_dir).predict(photo)
    assert got.shape == want.shape == photo.shape
    # Float32 maths on both sides; annealed means may land one level apart.
    assert np.max(np.abs(got.astype(int) - want.astype(int))) <= 2
    assert np.mean(got == want) > 0.95


def test_tflite_segmenter_mask_is_at_the_photo_size_like_segment(tmp_path):
    from keras_cnn.export import layout, servable_for
    from keras_cnn.export import litert_runtime as rt
    from keras_cnn.segmentation.predict import predict_labels
    from keras_cnn.tasks import open_run
    from tests.export_helpers import blocky_images, segmenter_run

    run = open_run(segmenter_run(str(tmp_path)))
    summary = layout.export_model(servable_for(run), str(tmp_path / "out"), "seg", ("tflite_float32",),
                                  check_count=4, log=quiet)
    model_path = os.path.join(summary["tflite"]["path"], "seg_float32.tflite")
    photo = blocky_images(1, 96, seed=4)[0][:70, :90]
    Image.fromarray(photo).save(tmp_path / "photo.png")
    said = tflite_predict(model_path, str(tmp_path / "photo.png"), str(tmp_path / "mask.png"))
    assert "mask at 90x70" in said
    mask = np.asarray(Image.open(tmp_path / "mask.png"))
    want = predict_labels(run.model, photo)  # what `segment` writes
    assert mask.shape == want.shape == (70, 90)
    np.testing.assert_array_equal(mask, rt.segment(rt.load_interpreter(model_path), photo) * 255)
    # The photo is shrunk by PIL here and by TensorFlow there: nearly the same pixels.
    assert np.mean((mask > 0) == (want > 0)) >= 0.9
