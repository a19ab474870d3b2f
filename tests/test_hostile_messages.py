"""Messages that point the right way: each names the real problem, the file and the flag.

(Huge photos, symlink loops and long file names are in test_hostile_outputs.py.)
"""

import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from PIL import Image

from keras_cnn import cli, fileio
from keras_cnn.errors import UserError
from tests.helpers import REPO, make_cifar_archive

ENV = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3")


def keras_cnn_line(*argv):
    proc = subprocess.run([sys.executable, "-m", "keras_cnn", *argv], cwd=REPO, capture_output=True, text=True,
                          env=ENV, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]
    return lines[0]


# === Data ===

@pytest.mark.parametrize("pairs,fraction,need", [(1, 0.25, 3), (2, 0.25, 3), (3, 0.1, 6)])
def test_too_few_pairs_name_the_folder_and_the_flag(tmp_path, pairs, fraction, need):
    from keras_cnn.segmentation.data import split_pairs

    images = tmp_path / "horses" / "images"
    listed = [(str(images / f"p{i}.jpg"), str(tmp_path / "horses" / "masks" / f"p{i}.png")) for i in range(pairs)]
    with pytest.raises(UserError) as e:
        split_pairs(listed, fraction)
    assert str(e.value).startswith(f"{images}: {pairs} image/mask pair(s) are too few for --val-fraction "
                                   f"{fraction}, which needs at least {need}")
    assert "--val-fraction 0" in str(e.value)
    train, val = split_pairs([(str(images / f"q{i}.jpg"), "m") for i in range(need)], fraction)
    assert len(train) and len(val)


def test_an_archive_without_the_class_says_so(tmp_path):
    from keras_cnn.data.cifar10 import load_class

    archive = tmp_path / "cifar-10-python.tar.gz"
    make_cifar_archive(archive, per_batch=5)  # labels 0..4: no horses (7)
    with pytest.raises(UserError) as e:
        load_class("archive", 7, archive=str(archive), md5=None, cache_dir=str(tmp_path / "cache"))
    assert str(e.value).startswith(f"{archive}: its training batches (data_batch_1..5) hold no images of class 7 "
                                   "(horse); pick another --cifar-class")
    train, val = load_class("archive", 3, archive=str(archive), md5=None, cache_dir=str(tmp_path / "cache"))
    assert len(train) == 5 and len(val) == 1


# (id, the checksum given, what the line says)
HASHES = [
    ("short", "abc123", "'abc123' is not an md5 (32 hex digits) or a sha256 (64 hex digits); it has 6 characters"),
    ("not-hex", "z" * 32, "is not an md5 (32 hex digits) or a sha256 (64 hex digits); it has 32 characters, "
                          "not all hex digits"),
    ("between", "a" * 40, "it has 40 characters"),
]


@pytest.mark.parametrize("given,says", [h[1:] for h in HASHES], ids=[h[0] for h in HASHES])
def test_a_checksum_of_the_wrong_format_is_said_to_be_one(tmp_path, given, says):
    from keras_cnn.data.downloads import verify

    (tmp_path / "f").write_bytes(b"data")
    with pytest.raises(UserError) as e:
        verify(str(tmp_path / "f"), given)
    assert says in str(e.value) and "mismatch" not in str(e.value)
    line = keras_cnn_line("train-colorization", "--run-dir", str(tmp_path / "run"), "--md5", given)
    assert line.startswith(f"error: --md5 {given!r} is not an md5") and says in line
    assert not os.path.exists(tmp_path / "run")


# === Models and export ===

def test_a_truncated_keras_file_is_not_file_not_found(tmp_path):
    from keras_cnn.training import load_model

    with zipfile.ZipFile(tmp_path / "whole.keras", "w") as z:
        z.writestr("config.json", "{}")
        z.writestr("model.weights.h5", b"\0" * 5000)
    data = (tmp_path / "whole.keras").read_bytes()
    (tmp_path / "cut.keras").write_bytes(data[:len(data) // 2])
    (tmp_path / "other.keras").write_bytes(b"PK\x05\x06" + b"\0" * 18)  # an empty zip
    with pytest.raises(UserError) as e:
        load_model(str(tmp_path / "cut.keras"))
    assert str(e.value).startswith(f"{tmp_path / 'cut.keras'}: not a whole .keras file")
    assert "not found" not in str(e.value)
    with pytest.raises(UserError, match="a zip archive without config.json inside"):
        load_model(str(tmp_path / "other.keras"))


def test_an_impossible_export_image_size_is_not_out_of_memory(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    (run / "best.keras").write_bytes(b"a stand-in; never loaded")
    line = keras_cnn_line("export", "--run-dir", str(run), "--out", str(tmp_path / "out"), "--image-size", "100000")
    assert line.startswith("error: --image-size 100000: more than the 2048 a TFLite input may be")


@pytest.mark.parametrize("flags,hint", [
    (["--batch-size", "--image-size"], "try a smaller --batch-size or smaller images"),
    (["--image-size"], "try a smaller --image-size"),
    (["--out"], "try smaller images, or free some memory"),
])
def test_out_of_memory_names_only_flags_the_command_has(capsys, flags, hint):
    def command():
        parser = cli.ArgumentParser()
        for flag in flags:
            parser.add_argument(flag)
        parser.parse_args([])
        raise MemoryError()

    with pytest.raises(SystemExit):
        cli.main(command)
    assert capsys.readouterr().err == f"error: out of memory; {hint}\n"


# === The Python API ===

# (id, what is passed, what the one line says; None: accepted)
PHOTOS = [
    ("grey-2d", np.zeros((5, 6)), "images has shape (5, 6), one grey image; photos are RGB"),
    ("empty", np.zeros((0, 0, 3), np.uint8), "images has shape (0, 0, 3): an image of 0 pixels"),
    ("no-photos", np.zeros((0, 8, 8, 3), np.uint8), "images has shape (0, 8, 8, 3): no photos"),
    ("rgba", np.zeros((8, 8, 4), np.uint8), "(RGBA: drop the alpha channel, image[..., :3])"),
    ("ragged-nested", [[np.zeros((8, 8, 3)), np.zeros((4, 8, 3))]], "photos of different sizes do not make one array"),
    ("out-of-range", np.full((4, 4, 3), 300.0), "images must hold values 0..255, got 300..300"),
    ("nan", np.full((4, 4, 3), np.nan), "images holds NaN or infinite values"),
    ("text", np.array([["a"]]), "images must be numbers"),
    ("missing-path", "no/such/photo.jpg", "no/such/photo.jpg: no such file"),
    ("path", "{photo}", None),
    ("one-photo", np.full((8, 8, 3), 7, np.uint8), None),
    ("floats", np.full((2, 8, 8, 3), 6.6), None),
]


@pytest.mark.parametrize("given,says", [p[1:] for p in PHOTOS], ids=[p[0] for p in PHOTOS])
def test_photos_given_to_the_python_api_are_checked(tmp_path, given, says):
    photo = tmp_path / "photo.png"
    Image.fromarray(np.full((6, 10, 3), 9, np.uint8)).save(photo)
    if isinstance(given, str):
        given = given.format(photo=photo)
    if says:
        with pytest.raises(UserError) as e:
            fileio.check_photos(given)
        assert says in str(e.value) and "\n" not in str(e.value)
        return
    out = fileio.check_photos(given)
    assert out.dtype == np.uint8 and out.shape[-1] == 3 and out.ndim == (3 if np.ndim(given) != 4 else 4)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from tests.export_helpers import colour_run, segmenter_run

    root = tmp_path_factory.mktemp("api")
    (root / "c").mkdir()
    (root / "s").mkdir()
    photo = root / "photo.png"
    Image.fromarray(np.full((20, 24, 3), 90, np.uint8)).save(photo)
    return colour_run(str(root / "c"))[0], segmenter_run(str(root / "s")), str(photo)


def test_the_predict_functions_take_a_path_and_refuse_the_rest_in_one_line(runs):
    import keras_cnn
    from keras_cnn.colorization.colorizer import Colorizer

    colour_dir, seg_dir, photo = runs
    colour, seg = keras_cnn.open_run(colour_dir), keras_cnn.open_run(seg_dir)
    calls = {
        "Run.predict (colours)": colour.predict,
        "Colorizer.colorize": Colorizer.from_run(colour_dir).colorize,
        "Run.predict (labels)": seg.predict,
        "DeepLabV3Segmenter.segment": seg.model.segment,
    }
    for name, call in calls.items():
        out = call(photo)
        assert out.shape[:2] == (20, 24), name
        for bad, says in ((np.zeros((20, 24), np.uint8), "one grey image"),
                          (np.zeros((0, 0, 3), np.uint8), "an image of 0 pixels")):
            with pytest.raises(UserError) as e:
                call(bad)
            assert says in str(e.value), name
    with pytest.raises(UserError, match="give one photo"):
        seg.model.segment(np.zeros((2, 8, 8, 3), np.uint8))


def test_photos_of_different_sizes_in_one_call_come_back_each_at_its_own_size(runs):
    """A list of photos of several sizes (or of paths) is a list back, as the README's "at the photos' own size"
    promises; a list of same-size photos stays a batch (an array back)."""
    import keras_cnn
    from keras_cnn.colorization.colorizer import Colorizer

    colour_dir, seg_dir, photo = runs
    small, big = np.full((12, 16, 3), 40, np.uint8), np.full((30, 22, 3), 200, np.uint8)
    colour, seg = keras_cnn.open_run(colour_dir), keras_cnn.open_run(seg_dir)
    for name, call, channels in (("Run.predict (colours)", colour.predict, (3,)),
                                 ("Colorizer.colorize", Colorizer.from_run(colour_dir).colorize, (3,)),
                                 ("Run.predict (labels)", seg.predict, ())):
        out = call([small, big, photo])
        assert isinstance(out, list) and [o.shape for o in out] == [
            (12, 16, *channels), (30, 22, *channels), (20, 24, *channels)], name
        np.testing.assert_array_equal(out[1], call(big), err_msg=name)
        same = call([small, small])
        assert isinstance(same, np.ndarray) and same.shape == (2, 12, 16, *channels), name
        with pytest.raises(UserError, match="one grey image"):
            call([small, np.zeros((5, 5), np.uint8)])
