"""Outputs never destroy what they should not, and odd paths are named for what they are.

The one output rule (`keras_cnn.fileio.check_output`, `output_paths`,
`atomic_path`): an output never replaces an input of the same call, a file of
a run folder, or anything that is not a regular file (a FIFO, a character
device, a symlink to one); two inputs that would write the same output name
are refused with a line naming both. The command table runs every case in one
fresh process (`tests/run_cli_cases.py`) before TensorFlow is imported, and
checks that nothing was replaced.
"""

import json
import os
import stat
import subprocess
import sys
import warnings

import numpy as np
import pytest
from PIL import Image

from keras_cnn import fileio
from keras_cnn.colorization.config import PRESETS as COLOUR_PRESETS
from keras_cnn.colorization.config import ColorizationConfig
from keras_cnn.config import config_path, resolve, save_config
from keras_cnn.errors import UserError
from keras_cnn.segmentation.config import PRESETS as SEG_PRESETS
from keras_cnn.segmentation.config import SegmentationConfig
from tests.helpers import REPO


def _image(path, value=128):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(path)


def make_fixtures(w):
    """Inputs, run folders and special files the cases point at."""
    _image(w / "img.png")
    _image(w / "self" / "a.png")
    _image(w / "self" / "a_mask.png")            # an input that segment would write as a's mask
    _image(w / "self" / "a_color.png")           # ... and colorize as a's colours
    _image(w / "d1" / "x.png")
    _image(w / "d2" / "x.png", 50)               # the same stem in another folder
    _image(w / "mixed" / "x.jpg")
    _image(w / "mixed" / "x.png", 50)            # the same stem, another extension
    _image(w / "data" / "0000.png")
    (w / "model.keras").write_bytes(b"a stand-in; never loaded")
    (w / "model.tflite").write_bytes(b"a stand-in; never loaded")
    (w / "metadata.json").write_text("{}")
    colour = resolve(ColorizationConfig, COLOUR_PRESETS, "cifar10_unet",
                     {"source": "folder", "data_dir": str(w / "data")})
    seg = resolve(SegmentationConfig, SEG_PRESETS, "smoke", {"data_dir": str(w / "data")})
    for name, cfg in (("run_colour", colour), ("run_seg", seg)):
        (w / name).mkdir()
        save_config(cfg, config_path(w / name))
        (w / name / "best.keras").write_bytes(b"a stand-in; never loaded")
    (w / "run_colour" / "backup").mkdir()
    (w / "run_colour" / "backup" / "state.json").write_text('{"epoch": 1, "step": 0, "weights": "w.h5"}')
    os.mkfifo(w / "fifo.png")
    os.symlink(w / "fifo.png", w / "to_fifo.png")
    os.mkdir(w / "fifo_out")
    os.mkfifo(w / "fifo_out" / "img_mask.png")
    os.mkdir(w / "fifo_out_colour")
    os.mkfifo(w / "fifo_out_colour" / "img_color.png")
    os.symlink("loop.png", w / "loop.png")


def snapshot(w):
    """(path, type, size, mtime) of everything under `w`: a case must not change any of it."""
    found = {}
    for folder, dirs, files in os.walk(w):
        for n in dirs + files:
            p = os.path.join(folder, n)
            st = os.lstat(p)
            found[p] = (stat.S_IFMT(st.st_mode), st.st_size, st.st_mtime_ns)
    return found


# (id, argv of `keras-cnn`, what the one error line must contain; {w}: the work folder)
CASES = [
    # --- an input of the same call
    ("segment:input-is-output", ["segment", "--model", "{w}/model.keras", "--input", "{w}/self",
                                 "--out-dir", "{w}/self"],
     "--out-dir {w}/self/a_mask.png: is an input of this command ({w}/self/a_mask.png)"),
    ("colorize:input-is-output", ["colorize", "--run-dir", "{w}/run_colour", "--input", "{w}/self",
                                  "--out-dir", "{w}/self"],
     "--out-dir {w}/self/a_color.png: is an input of this command"),
    ("serving:input-is-output", ["serving-client", "--rest", "http://127.0.0.1:9", "--model", "m",
                                 "--out-dir", "{w}/self", "--input", "{w}/self/a.png", "{w}/self/a_mask.png"],
     "--out-dir {w}/self/a_mask.png: is an input of this command"),
    ("tflite:out-is-image", ["tflite-predict", "--model", "{w}/model.tflite", "--metadata", "{w}/metadata.json",
                             "--input", "{w}/img.png", "--out", "{w}/img.png"],
     "--out {w}/img.png: is an input of this command ({w}/img.png)"),
    ("tflite:out-is-model", ["tflite-predict", "--model", "{w}/model.tflite", "--metadata", "{w}/metadata.json",
                             "--input", "{w}/img.png", "--out", "{w}/model.tflite"],
     "is an input of this command"),
    ("eval-col:out-is-a-data-image", ["evaluate-colorization", "--run-dir", "{w}/run_colour", "--out",
                                      "{w}/data/0000.png"],
     "--out {w}/data/0000.png: is an input of this command (an image of {w}/data)"),
    ("eval-seg:out-is-model", ["evaluate-segmentation", "--model", "{w}/model.keras", "--data-dir", "{w}/data",
                               "--out", "{w}/model.keras"],
     "--out {w}/model.keras: is an input of this command"),
    # --- a file of a run folder
    ("eval-col:out-is-run-config", ["evaluate-colorization", "--run-dir", "{w}/run_colour",
                                    "--out", "{w}/run_colour/config.json"],
     "--out {w}/run_colour/config.json: is a file of the run folder {w}/run_colour"),
    ("eval-col:out-in-backup", ["evaluate-colorization", "--run-dir", "{w}/run_colour",
                                "--out", "{w}/run_colour/backup/state.json"],
     "is a file of the run folder {w}/run_colour"),
    ("eval-seg:out-is-run-model", ["evaluate-segmentation", "--run-dir", "{w}/run_seg",
                                   "--out", "{w}/run_seg/best.keras"],
     "--out {w}/run_seg/best.keras: is a file of the run folder {w}/run_seg"),
    # --- not a regular file
    ("tflite:out-fifo", ["tflite-predict", "--model", "{w}/model.tflite", "--metadata", "{w}/metadata.json",
                         "--input", "{w}/img.png", "--out", "{w}/fifo.png"],
     "--out {w}/fifo.png: is a FIFO (named pipe); only a regular file is ever replaced"),
    ("tflite:out-symlink-to-fifo", ["tflite-predict", "--model", "{w}/model.tflite", "--metadata",
                                    "{w}/metadata.json", "--input", "{w}/img.png", "--out", "{w}/to_fifo.png"],
     "--out {w}/to_fifo.png: is a symlink to a FIFO (named pipe)"),
    ("tflite:out-dev-null", ["tflite-predict", "--model", "{w}/model.tflite", "--metadata", "{w}/metadata.json",
                             "--input", "{w}/img.png", "--out", "/dev/null"],
     "--out /dev/null: is a character device; only a regular file is ever replaced"),
    ("eval-col:out-dev-null", ["evaluate-colorization", "--run-dir", "{w}/run_colour", "--out", "/dev/null"],
     "--out /dev/null: is a character device"),
    ("segment:fifo-in-out-dir", ["segment", "--model", "{w}/model.keras", "--input", "{w}/img.png",
                                 "--out-dir", "{w}/fifo_out"],
     "--out-dir {w}/fifo_out/img_mask.png: is a FIFO (named pipe)"),
    ("colorize:fifo-in-out-dir", ["colorize", "--run-dir", "{w}/run_colour", "--input", "{w}/img.png",
                                  "--out-dir", "{w}/fifo_out_colour"],
     "--out-dir {w}/fifo_out_colour/img_color.png: is a FIFO (named pipe)"),
    ("tflite:out-symlink-loop", ["tflite-predict", "--model", "{w}/model.tflite", "--metadata",
                                 "{w}/metadata.json", "--input", "{w}/img.png", "--out", "{w}/loop.png"],
     "--out {w}/loop.png: is a symlink loop"),
    # --- two inputs, one output name
    ("segment:same-stem-two-folders", ["segment", "--model", "{w}/model.keras", "--input", "{w}/d1", "{w}/d2",
                                       "--out-dir", "{w}/out"],
     "{w}/d1/x.png and {w}/d2/x.png would both be written as {w}/out/x_mask.png"),
    ("segment:same-stem-two-extensions", ["segment", "--model", "{w}/model.keras", "--input", "{w}/mixed",
                                          "--out-dir", "{w}/out"],
     "{w}/mixed/x.jpg and {w}/mixed/x.png would both be written as {w}/out/x_mask.png"),
    ("colorize:same-stem-two-extensions", ["colorize", "--run-dir", "{w}/run_colour", "--input", "{w}/mixed",
                                           "--out-dir", "{w}/out"],
     "{w}/mixed/x.jpg and {w}/mixed/x.png would both be written as {w}/out/x_color.png"),
    ("serving:same-stem-two-folders", ["serving-client", "--rest", "http://127.0.0.1:9", "--model", "m",
                                       "--out-dir", "{w}/out", "--input", "{w}/d1/x.png", "{w}/d2/x.png"],
     "{w}/d1/x.png and {w}/d2/x.png would both be written as {w}/out/x_colours.png"),
    # --- inputs named for what they are
    ("segment:input-symlink-loop", ["segment", "--model", "{w}/model.keras", "--input", "{w}/loop.png",
                                    "--out-dir", "{w}/out"],
     "--input {w}/loop.png: is a symlink loop"),
]


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    root = tmp_path_factory.mktemp("outputs")
    w = root / "w"
    w.mkdir()
    make_fixtures(w)
    before = snapshot(w)
    dev_null = os.lstat("/dev/null")
    cases = [{"id": cid, "argv": [a.format(w=w) for a in argv]} for cid, argv, _ in CASES]
    (root / "cases.json").write_text(json.dumps(cases))
    proc = subprocess.run([sys.executable, "-m", "tests.run_cli_cases", str(root / "cases.json"),
                           str(root / "results.json"), str(w)], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert stat.S_ISCHR(os.lstat("/dev/null").st_mode) and os.lstat("/dev/null").st_ino == dev_null.st_ino
    return w, json.loads((root / "results.json").read_text()), before, snapshot(w)


@pytest.mark.parametrize("cid,expected", [(cid, expected) for cid, _, expected in CASES],
                         ids=[cid for cid, _, _ in CASES])
def test_an_output_that_would_destroy_something_is_refused(table, cid, expected):
    w, results, before, after = table
    r = results[cid]
    # tflite-predict's --out FILE still works, with its one deprecation line (docs/CLI.md).
    lines = [ln for ln in r["stderr"].splitlines() if ln != "warning: --out is deprecated; use --out-dir"]
    assert r["code"] == 2 and len(lines) == 1 and lines[0].startswith("error: "), r
    assert expected.format(w=w) in lines[0]
    assert not r["tensorflow_imported"], "the case imported TensorFlow before refusing"
    assert after == before, "a case changed or replaced a file"


def test_atomic_path_never_replaces_a_special_file(tmp_path):
    """The writer itself refuses, whatever called it (the Python API, a command without a check)."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    link = tmp_path / "link"
    os.symlink(fifo, link)
    specials = [fifo, link]
    if os.geteuid() == 0:  # a character device of our own, the twin of /dev/null
        null = tmp_path / "null"
        os.mknod(null, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        specials.append(null)
    for path in specials:
        kind = stat.S_IFMT(os.lstat(path).st_mode)
        with pytest.raises(UserError, match="only a regular file is ever replaced"):
            fileio.atomic_write_bytes(path, b"data")
        assert stat.S_IFMT(os.lstat(path).st_mode) == kind
    assert sorted(os.listdir(tmp_path)) == sorted(p.name for p in specials)  # no temporary left
    # A regular file and a symlink to one are replaced as before.
    (tmp_path / "plain").write_bytes(b"old")
    fileio.atomic_write_bytes(tmp_path / "plain", b"new")
    assert (tmp_path / "plain").read_bytes() == b"new"


@pytest.mark.parametrize("name", ["a" * 230 + "_overlay.png", "b" * 240 + ".keras", "c" * 240 + ".weights.h5",
                                  "é" * 120 + "_mask.png"])
def test_long_legal_names_get_a_legal_temporary_name(tmp_path, name):
    assert len(os.fsencode(name)) <= 255
    fileio.atomic_write_bytes(tmp_path / name, b"x")
    assert os.listdir(tmp_path) == [name]
    with fileio.atomic_path(tmp_path / name) as tmp:
        assert len(os.fsencode(os.path.basename(tmp))) <= 255
        assert tmp.endswith(os.path.splitext(name)[1])
        with open(tmp, "wb") as f:
            f.write(b"y")
    assert os.listdir(tmp_path) == [name] and (tmp_path / name).read_bytes() == b"y"


@pytest.mark.parametrize("side", [11000, 15000])
def test_a_huge_photo_gets_the_documented_size_line_and_no_pillow_warning(tmp_path, side):
    path = tmp_path / f"big{side}.png"
    Image.new("L", (side, side)).save(path)
    line = f"{path}: image is {side}x{side} pixels, more than the 100,000,000 this package reads"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's DecompressionBombWarning would fail here
        for read in (fileio.read_image, fileio.image_size):
            with pytest.raises(UserError) as e:
                read(path)
            assert str(e.value).startswith(line)
        assert fileio.check_image_file(path).startswith(f"image is {side}x{side} pixels")


def test_symlinks_that_lead_nowhere_are_named_as_such(tmp_path):
    os.symlink("loop.png", tmp_path / "loop.png")
    os.symlink("nowhere.png", tmp_path / "dangling.png")
    for read in (fileio.read_image, lambda p: fileio.check_input(p, "--image", "file")):
        with pytest.raises(UserError, match="loop.png: is a symlink loop"):
            read(str(tmp_path / "loop.png"))
        with pytest.raises(UserError, match="dangling.png: is a symlink to nowhere.png, which does not exist"):
            read(str(tmp_path / "dangling.png"))
        with pytest.raises(UserError, match="missing.png: no such file"):
            read(str(tmp_path / "missing.png"))


def test_a_long_legal_run_folder_name_is_set_up(tmp_path):
    from keras_cnn.training import new_run

    _image(tmp_path / "data" / "0000.png")
    cfg = resolve(ColorizationConfig, COLOUR_PRESETS, "cifar10_unet", {"source": "folder",
                                                                       "data_dir": str(tmp_path / "data")})
    run_dir = tmp_path / ("r" * 250)
    with new_run(str(run_dir), cfg, chief=True, task="colorization") as (_, folder):
        assert len(os.fsencode(os.path.basename(folder))) <= 255
    assert os.listdir(run_dir) == ["config.json"]
    assert sorted(os.listdir(tmp_path)) == sorted(["data", run_dir.name])
