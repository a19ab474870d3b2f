"""The colourization scripts end to end, as a user runs them from the README."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests.helpers import REPO, write_images


def run(script, *args, check=True):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, os.path.join(REPO, "scripts", script), *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("colour")
    rng = np.random.RandomState(0)
    # Smooth random colour fields, so there is something learnable.
    base = rng.randint(0, 256, (60, 4, 4, 3)).astype(np.uint8)
    images = base.repeat(8, axis=1).repeat(8, axis=2)
    data = write_images(tmp / "data", images)
    run_dir = tmp / "run"
    proc = run("train_colorization.py", "--dataset", "folder", "--data-dir", data, "--run-dir", run_dir,
               "--epochs", 2, "--batch-size", 16, "--num-classes", 6, "--num-filters", 8, "--max-examples", 40)
    return tmp, run_dir, proc.stdout


def test_training_ends_with_the_summary_and_logs_one_line_per_epoch(trained_run):
    _, run_dir, stdout = trained_run
    # Written to a pipe: one line per epoch, no progress bar redrawn with carriage returns.
    assert "\r" not in stdout and "Epoch 2/2" in stdout
    lines = stdout.splitlines()[-5:]
    # --max-examples caps training only: all 6 held-out images are scored.
    assert lines[0].startswith("validation (6 images, best.keras): loss ")
    assert lines[1].startswith("baseline, the grey input shown as colour: accuracy ")
    assert lines[2].startswith(("beats the grey-input baseline on delta E", "below the grey-input baseline on delta E"))
    assert lines[2].startswith("beats") or "a short run (2 of the preset's 25 epochs, --max-examples 40)" in lines[2]
    assert lines[3].startswith("a full cifar10_unet run reaches accuracy 58.3%  delta E 14.21  PSNR 24.04 dB")
    assert "docs/BENCHMARKS.md" in lines[3]
    assert lines[4].startswith(f"wrote {run_dir} after ") and "s of training on " in lines[4]


def test_training_writes_a_complete_run_folder(trained_run):
    _, run_dir, _ = trained_run
    for name in ("config.json", "palette.npy", "best.keras", "last.keras", "history.csv", "metrics.json",
                 "plots/epoch_001.png", "plots/epoch_002.png", "plots/curves.png"):
        assert (run_dir / name).exists(), name
    assert not (run_dir / "backup").exists()  # deleted once training finishes
    config = json.loads((run_dir / "config.json").read_text())
    assert config["epochs"] == 2 and config["num_colours"] == 6 and config["learning_rate"] == 1e-3
    assert config["max_examples"] == 40
    assert np.load(run_dir / "palette.npy").shape == (6, 3)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics["validation"]) == {"loss", "accuracy", "delta_e", "psnr"}
    assert metrics["baselines"]["palette_truth"]["accuracy"] == 1.0
    assert metrics["validation_images"] == 6
    assert len((run_dir / "history.csv").read_text().strip().splitlines()) == 3


def test_refuses_to_overwrite_a_run_and_resume_needs_one(trained_run, tmp_path):
    tmp, run_dir, _ = trained_run
    proc = run("train_colorization.py", "--dataset", "folder", "--data-dir", tmp / "data", "--run-dir", run_dir,
               check=False)
    assert proc.returncode == 2 and "already holds a run; pass --resume" in proc.stderr
    proc = run("train_colorization.py", "--run-dir", tmp_path / "none", "--resume", check=False)
    assert proc.returncode == 2 and "nothing to resume" in proc.stderr


def test_evaluate_and_activation_maps(trained_run, tmp_path):
    _, run_dir, _ = trained_run
    proc = run("evaluate_colorization.py", "--run-dir", run_dir, "--decode", "annealed", "--out",
               tmp_path / "e.json", "--activations-dir", tmp_path / "maps")
    result = json.loads((tmp_path / "e.json").read_text())
    assert result["decode"] == "annealed" and result["images"] == 6
    assert 0 <= result["model"]["accuracy"] <= 1 and result["model"]["delta_e"] > 0
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("validation (6 images, best.keras, annealed decoding): loss ")
    assert lines[1].startswith("baseline, the grey input shown as colour: ")
    # Annealed decoding is not what the run's preset measured: said, and the preset's full run quoted.
    assert "closest preset: cifar10_unet, with other" in lines[2] and "decode" in lines[2]
    assert lines[3].startswith("a full cifar10_unet run reaches")
    assert lines[4].startswith("ceiling, the true colours snapped to the palette: accuracy 100.0%")
    maps = sorted(os.listdir(tmp_path / "maps"))
    assert {"input.png", "truth.png", "output.png"} <= set(maps)
    assert any(m.endswith("_up1_relu.png") for m in maps)


def test_colorize_any_size_file_and_folder(trained_run, tmp_path):
    _, run_dir, _ = trained_run
    photos = write_images(tmp_path / "photos", np.random.RandomState(1).randint(0, 256, (3, 37, 50, 3)))
    Image.fromarray(np.full((21, 19), 90, np.uint8)).save(tmp_path / "photos" / "grey.png")
    run("colorize.py", "--run-dir", run_dir, "--input", photos, "--out-dir", tmp_path / "out")
    out = Image.open(tmp_path / "out" / "0000_color.png")
    assert out.size == (50, 37) and out.mode == "RGB"
    assert Image.open(tmp_path / "out" / "grey_color.png").size == (19, 21)
    # grey | colourized | original under a 12-pixel band of labels.
    compare = np.asarray(Image.open(tmp_path / "out" / "0000_compare.png"))
    assert compare.shape == (12 + 37, 150, 3)
    for panel in range(3):  # each label is dark text on white, over its own panel
        label = compare[:12, 50 * panel:50 * (panel + 1)]
        assert label.min() < 128 and np.median(label) == 255
    proc = run("colorize.py", "--run-dir", run_dir, "--input", tmp_path / "missing.jpg", "--out-dir",
               tmp_path / "o2", check=False)
    assert proc.returncode == 2 and "missing.jpg: no such file" in proc.stderr
    (tmp_path / "fake.jpg").write_bytes(b"not an image")
    proc = run("colorize.py", "--run-dir", run_dir, "--input", tmp_path / "fake.jpg", "--out-dir",
               tmp_path / "o3", check=False)
    assert proc.returncode == 2 and "fake.jpg: cannot be decoded" in proc.stderr
    assert not (tmp_path / "o3").exists() or os.listdir(tmp_path / "o3") == []


def test_bad_flags_are_one_line_errors(tmp_path):
    proc = run("train_colorization.py", "--run-dir", tmp_path / "r", "--cifar-class", "unicorn",
               "--dataset", "archive", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("error: --cifar-class: unknown CIFAR-10 class 'unicorn'; choose a number 0..9 "
                                   "or one of: airplane, automobile, bird, cat, deer, dog, frog, horse, ship, truck")
    np.save(tmp_path / "p.npy", np.zeros((3, 4)))
    write_images(tmp_path / "d", np.zeros((4, 32, 32, 3)))
    proc = run("train_colorization.py", "--run-dir", tmp_path / "r2", "--dataset", "folder", "--data-dir",
               tmp_path / "d", "--palette", tmp_path / "p.npy", check=False)
    assert proc.returncode == 2 and "p.npy: palette must be (K, 3)" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "r").exists() and not (tmp_path / "r2").exists()  # failed set-up leaves nothing


def test_activation_maps_show_distinct_layers_with_titles(trained_run, tmp_path):
    from keras_cnn.colorization.predict import save_activations
    from keras_cnn.tasks import open_run

    _, run_dir, _ = trained_run
    run = open_run(run_dir)
    image = np.random.RandomState(0).randint(0, 256, (32, 32, 3)).astype(np.uint8)
    written = save_activations(run.model, run.assets["palette"], image, str(tmp_path / "maps"))
    grids = [p for p in written if os.path.basename(p)[:2].isdigit()]
    names = [os.path.basename(p)[3:-4] for p in grids]
    # No picture that only repeats the one before it (BatchNorm, the linear logits, crops, pads).
    assert not any(n.endswith(("_bn", "_crop", "_pad")) or n == "logits" for n in names), names
    assert "up1_relu" in names and "final" in names
    pictures = [open(p, "rb").read() for p in grids]
    assert len(set(pictures)) == len(pictures)
    # Enlarged enough to read: at least 400 pixels wide.
    assert all(Image.open(p).size[0] >= 400 for p in grids)
