"""SavedModel export of colourizers: parity with Keras, signatures, versions, models.config, bad input."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from PIL import Image
from tensorflow_serving.config import model_server_config_pb2

from keras_cnn import training
from keras_cnn.colorization.palette import grey, load_palette
from keras_cnn.errors import UserError
from keras_cnn.export import layout, saved_model, servable_for
from keras_cnn.fileio import atomic_path
from keras_cnn.tasks import open_run
from tests.export_helpers import blocky_images, colour_run

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAVED_MODEL_CLI = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A UNet run exported as SavedModel version 1; (run_dir, export root, version dir)."""
    root = tmp_path_factory.mktemp("colour")
    run_dir, _ = colour_run(str(root))
    out = str(root / "exported_models")
    summary = layout.export_model(servable_for(open_run(run_dir)), out, "unet", ("saved_model",), log=lambda *a: None)
    return run_dir, out, summary["saved_model"]["path"]


def keras_reference(run_dir, images, downsize_input=False, decode="argmax"):
    """Probabilities and decoded colours straight from the Keras model and the palette."""
    model = training.load_model(os.path.join(run_dir, "best.keras"))
    palette = load_palette(os.path.join(run_dir, "palette.npy"))
    logits = model(images, training=False)
    return (tf.nn.softmax(logits, -1).numpy(),
            palette.decode(logits, grey(images), decode).numpy())


def test_reloaded_saved_model_matches_keras_at_two_batch_sizes(exported):
    run_dir, _, version_dir = exported
    serve = tf.saved_model.load(version_dir).signatures["serving_default"]
    images = blocky_images(5, seed=7)
    for n in (1, 5):
        out = serve(images=tf.constant(images[:n]))
        probs, colours = keras_reference(run_dir, images[:n])
        assert out["probabilities"].shape == (n, 32, 32, 12)
        assert np.max(np.abs(out["probabilities"].numpy() - probs)) < 1e-5
        assert out["colours"].dtype == tf.uint8
        np.testing.assert_array_equal(out["colours"].numpy(), colours)


def test_saved_model_cli_run_matches_keras_at_two_batch_sizes(exported, tmp_path):
    run_dir, _, version_dir = exported
    images = blocky_images(3, seed=11)
    procs = {}
    # Both runs at once: each pays TensorFlow's start-up.
    for n in (1, 3):
        np.save(tmp_path / f"in{n}.npy", images[:n])
        procs[n] = subprocess.Popen(
            [SAVED_MODEL_CLI, "run", "--dir", version_dir, "--tag_set", "serve", "--signature_def",
             "serving_default", "--inputs", f"images={tmp_path / f'in{n}.npy'}", "--outdir",
             str(tmp_path / f"out{n}")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for n, proc in procs.items():
        log, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, log[-2000:]
        probs, colours = keras_reference(run_dir, images[:n])
        got = np.load(tmp_path / f"out{n}" / "probabilities.npy")
        assert got.shape == probs.shape
        assert np.max(np.abs(got - probs)) < 1e-5
        np.testing.assert_array_equal(np.load(tmp_path / f"out{n}" / "colours.npy"), colours)


def test_signature_keys_and_dtypes(exported):
    _, _, version_dir = exported
    loaded = tf.saved_model.load(version_dir)
    assert set(loaded.signatures) == {"serving_default", "serving_decoded", "serving_bytes"}
    default = loaded.signatures["serving_default"]
    spec = default.structured_input_signature[1]["images"]
    assert spec.dtype == tf.uint8 and spec.shape.as_list() == [None, None, None, 3]
    assert set(default.structured_outputs) == {"colours", "probabilities"}
    assert loaded.signatures["serving_bytes"].structured_input_signature[1]["image_bytes"].dtype == tf.string


def test_any_image_size_is_padded_by_edge_pixels_and_cropped_back(exported):
    run_dir, _, version_dir = exported
    serve = tf.saved_model.load(version_dir).signatures["serving_default"]
    image = blocky_images(1, 32, seed=3)[:, :30, :26]
    out = serve(images=tf.constant(image))
    assert out["colours"].shape == (1, 30, 26, 3)
    # The same as the Keras model on the image padded to 32 x 28 with repeated edges.
    padded = np.pad(image, ((0, 0), (0, 2), (0, 2), (0, 0)), mode="edge")
    probs, _ = keras_reference(run_dir, padded)
    assert np.max(np.abs(out["probabilities"].numpy() - probs[:, :30, :26])) < 1e-5


def _encode(image, fmt, **kwargs):
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def test_bytes_signature_answers_every_photo_at_its_own_size(exported):
    _, _, version_dir = exported
    loaded = tf.saved_model.load(version_dir)
    images = blocky_images(2, seed=5)
    blobs = [_encode(images[0], "PNG"), _encode(images[1], "PNG")]
    got = loaded.signatures["serving_bytes"](image_bytes=tf.constant(blobs))
    want = loaded.signatures["serving_default"](images=tf.constant(images))
    # A client that sends files gets the picture: colours and each photo's size, no probabilities.
    assert set(got) == {"colours", "sizes"}
    np.testing.assert_array_equal(got["colours"].numpy(), want["colours"].numpy())
    np.testing.assert_array_equal(got["sizes"].numpy(), [[32, 32], [32, 32]])
    # A 48 x 64 JPEG and a 40 x 40 PNG in one request: each coloured at its own size, padded to the largest.
    big = blocky_images(1, 64, seed=9)[0][:48]
    small = blocky_images(1, 40, seed=2)[0]
    mixed = [_encode(big, "JPEG", quality=90), _encode(small, "PNG")]
    out = loaded.signatures["serving_bytes"](image_bytes=tf.constant(mixed))
    assert out["colours"].shape == (2, 48, 64, 3)
    np.testing.assert_array_equal(out["sizes"].numpy(), [[48, 64], [40, 40]])
    alone = loaded.signatures["serving_default"](images=tf.constant(small[None]))["colours"].numpy()[0]
    np.testing.assert_array_equal(out["colours"].numpy()[1, :40, :40], alone)
    assert not out["colours"].numpy()[1, 40:].any() and not out["colours"].numpy()[1, :, 40:].any()
    decoded_jpeg = tf.io.decode_image(mixed[0], channels=3).numpy()  # TensorFlow's JPEG decoder, as the graph's
    np.testing.assert_array_equal(out["colours"].numpy()[0], loaded.signatures["serving_default"](
        images=tf.constant(decoded_jpeg[None]))["colours"].numpy()[0])
    with pytest.raises(tf.errors.InvalidArgumentError):
        loaded.signatures["serving_bytes"](image_bytes=tf.constant([b"not an image"]))


def test_decoded_signature_returns_the_colours_alone(exported):
    _, _, version_dir = exported
    loaded = tf.saved_model.load(version_dir)
    photo = blocky_images(1, 64, seed=6)[:, :44]
    got = loaded.signatures["serving_decoded"](images=tf.constant(photo))
    assert set(got) == {"colours"} and got["colours"].shape == (1, 44, 64, 3)
    np.testing.assert_array_equal(got["colours"].numpy(), loaded.signatures["serving_default"](
        images=tf.constant(photo))["colours"].numpy())


@pytest.mark.parametrize("model,palette_space,decode,downsize", [
    ("pool_upsample", "ab", "annealed", False),
    ("conv_transpose", "rgb", "argmax", True),
    # Its decoder resizes to sizes known only when the graph runs.
    ("effnet_unet", "ab", "argmax", False),
])
def test_other_nets_palettes_decodings_and_super_resolution(tmp_path, model, palette_space, decode, downsize):
    run_dir, _ = colour_run(str(tmp_path), model=model, palette_space=palette_space, decode=decode,
                            downsize_input=downsize)
    summary = layout.export_model(servable_for(open_run(run_dir)), str(tmp_path / "out"), model, ("saved_model",),
                                  log=lambda *a: None)
    serve = tf.saved_model.load(summary["saved_model"]["path"]).signatures["serving_default"]
    images = blocky_images(2, seed=4)
    out = serve(images=tf.constant(images))
    probs, colours = keras_reference(run_dir, images, downsize, decode)
    assert np.max(np.abs(out["probabilities"].numpy() - probs)) < 1e-5
    # Lab maths in float32 on two code paths (graph, eager) may round one level apart.
    assert np.max(np.abs(out["colours"].numpy().astype(int) - colours.astype(int))) <= 1


def test_metadata_beside_the_saved_model(exported):
    run_dir, _, version_dir = exported
    meta = saved_model.read_metadata(version_dir)
    palette = load_palette(os.path.join(run_dir, "palette.npy"))
    assert meta["name"] == "unet" and meta["version"] == 1
    assert meta["application"] == "colorization"
    assert meta["input_size"] == [32, 32] and meta["input"]["key"] == "images"
    np.testing.assert_allclose(meta["palette"]["colours"], palette.colours)
    assert meta["palette"]["space"] == "rgb" and len(meta["class_names"]) == len(palette)
    assert max(meta["check"]["max_abs_diff_probabilities"].values()) < 1e-5


def _config_names(path):
    config = model_server_config_pb2.ModelServerConfig()
    with open(path) as f:
        text_format.Parse(f.read(), config)
    return {c.name: c.base_path for c in config.model_config_list.config}


def test_versions_are_never_overwritten_and_models_config_lists_every_model(tmp_path):
    run_dir, _ = colour_run(str(tmp_path))
    servable = servable_for(open_run(run_dir))
    out = str(tmp_path / "exported_models")
    quiet = dict(log=lambda *a: None)
    assert layout.export_model(servable, out, "unet", ("saved_model",), **quiet)["version"] == 1
    layout.export_model(servable, out, "other", ("saved_model",), version=7, **quiet)
    assert _config_names(os.path.join(out, "models.config")) == {"unet": "/models/unet",
                                                                 "other": "/models/other"}
    assert layout.next_version(out, "unet") == 2 and layout.next_version(out, "other") == 8
    os.makedirs(os.path.join(out, "unet", "2"))  # a version someone else is writing or wrote
    before = sorted(os.listdir(os.path.join(out, "unet")))
    pb = os.path.join(out, "unet", "1", "saved_model.pb")
    stamp = os.stat(pb).st_mtime_ns
    with pytest.raises(UserError, match=r"version 1 of model 'unet' already exists.*next free one \(3\)"):
        layout.export_model(servable, out, "unet", ("saved_model",), version=1, **quiet)
    assert sorted(os.listdir(os.path.join(out, "unet"))) == before == ["1", "2"]
    assert os.stat(pb).st_mtime_ns == stamp
    # A TFLite-only version counts too (see test_export_tflite).
    os.makedirs(os.path.join(out, "unet", "tflite", "5"))
    assert layout.next_version(out, "unet") == 6


def test_failed_export_leaves_nothing_behind(tmp_path, monkeypatch):
    run_dir, _ = colour_run(str(tmp_path))
    out = str(tmp_path / "exported_models")

    def broken(*args, **kwargs):
        raise UserError("converter exploded")

    monkeypatch.setattr("keras_cnn.export.tflite.convert", broken)
    with pytest.raises(UserError, match="converter exploded"):
        layout.export_model(servable_for(open_run(run_dir)), out, "unet", ("saved_model", "tflite_float32"),
                            log=lambda *a: None)
    # Nothing of the half-done version: no SavedModel, no TFLite folder, no temporary folders.
    assert not os.path.exists(out)


def test_missing_and_corrupt_checkpoints_and_bad_names(tmp_path):
    run_dir, _ = colour_run(str(tmp_path))
    with pytest.raises(UserError, match="last.keras: model file does not exist"):
        servable_for(open_run(run_dir), checkpoint="last")
    with open(os.path.join(run_dir, "best.keras"), "wb") as f:
        f.write(b"PK\x03\x04 truncated zip")
    with pytest.raises(UserError, match="best.keras: not a whole .keras file"):
        servable_for(open_run(run_dir))
    with pytest.raises(UserError, match="run folder does not exist"):
        servable_for(open_run(str(tmp_path / "nowhere")))
    with pytest.raises(UserError, match="cannot read the run's config"):
        servable_for(open_run(str(tmp_path / "images")))
    with open(os.path.join(run_dir, "config.json"), "w") as f:
        f.write('{"model": "unet",')
    with pytest.raises(UserError, match=r"config.json: the run's config is not valid JSON \(Expecting"):
        servable_for(open_run(run_dir))
    for name in ("", "../evil", "models.config", "a b"):
        with pytest.raises(UserError, match="model name"):
            layout.check_name(name)
    with pytest.raises(UserError, match="unknown export format"):
        layout.parse_formats("saved_model,tflite_int4")


def test_export_script_writes_a_version_and_refuses_to_overwrite_it(tmp_path):
    run_dir, _ = colour_run(str(tmp_path))
    out = tmp_path / "exported_models"
    cmd = [sys.executable, os.path.join(REPO, "scripts", "export.py"), "--run-dir", run_dir, "--name", "unet",
           "--formats", "saved_model,tflite_float32", "--out", str(out), "--check-count", "4"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"wrote {out / 'unet' / '1'}" in done.stdout
    assert (out / "unet" / "1" / "saved_model.pb").is_file()
    assert (out / "unet" / "tflite" / "1" / "unet_float32.tflite").is_file()
    report = json.loads((out / "unet" / "tflite" / "1" / "unet_float32_report.json").read_text())
    assert report["agreement_with_keras"]["max_abs_diff"] < 1e-5
    again = subprocess.run(cmd + ["--version", "1"], capture_output=True, text=True, timeout=300)
    assert again.returncode == 2
    assert again.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "already exists" in again.stderr and "Traceback" not in again.stderr


def test_atomic_path_without_overwrite_keeps_what_exists(tmp_path):
    target = tmp_path / "1"
    with atomic_path(str(target), overwrite=False) as tmp:
        os.makedirs(tmp)
        (Path(tmp) / "saved_model.pb").write_text("mine")
    assert (target / "saved_model.pb").read_text() == "mine"
    with pytest.raises(UserError, match="1: already exists; not overwriting it"):
        with atomic_path(str(target), overwrite=False):
            pass
    # Another writer finishing the same version first wins; ours is dropped.
    other = tmp_path / "2"
    with pytest.raises(UserError, match="appeared while writing it"):
        with atomic_path(str(other), overwrite=False) as tmp:
            os.makedirs(tmp)
            other.mkdir()
            (other / "saved_model.pb").write_text("theirs")
    assert (other / "saved_model.pb").read_text() == "theirs"
    assert sorted(os.listdir(tmp_path)) == ["1", "2"]
