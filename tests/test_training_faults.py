"""Training under faults, both applications at tiny size: no validation split, a non-finite loss, signals.

In-process tests are fast; the ones that start a training script (SIGTERM to
a real process, then `--resume`) are marked slow.
"""

import csv
import dataclasses
import errno
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from keras_cnn import plots
from keras_cnn.colorization.config import PRESETS as COLOUR_PRESETS
from keras_cnn.colorization.config import ColorizationConfig
from keras_cnn.config import resolve
from keras_cnn.errors import UserError
from keras_cnn.segmentation.config import PRESETS as SEG_PRESETS
from keras_cnn.tasks import open_run, train
from tests.helpers import REPO, write_images
from tests.test_segmentation_data import make_folder


def quiet(*args, **kwargs):
    pass


@pytest.fixture(scope="module")
def colour_images(tmp_path_factory):
    rng = np.random.RandomState(0)
    images = rng.randint(0, 256, (16, 4, 4, 3)).astype(np.uint8).repeat(4, 1).repeat(4, 2)
    return str(write_images(tmp_path_factory.mktemp("c") / "imgs", images))


@pytest.fixture(scope="module")
def seg_folder(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("s") / "data", n=8)


def colour_cfg(data_dir, **overrides):
    fields = dict(source="folder", data_dir=data_dir, epochs=2, batch_size=8, num_colours=4, num_filters=4,
                  val_fraction=0.25)
    fields.update(overrides)
    return resolve(ColorizationConfig, COLOUR_PRESETS, "cifar10_unet", fields)


def seg_cfg(data_dir, **overrides):
    fields = dict(data_dir=str(data_dir), epochs=2, batch_size=4, max_examples=0, learning_rate=3e-3,
                  plot_examples=2, image_size=32)
    fields.update(overrides)
    return dataclasses.replace(SEG_PRESETS["smoke"], **fields)


def history(run_dir):
    with open(os.path.join(run_dir, "history.csv"), newline="") as f:
        return list(csv.DictReader(f))


# === val_fraction 0 ===

@pytest.mark.parametrize("application", ["colorization", pytest.param("segmentation", marks=pytest.mark.slow)])
def test_no_validation_split_trains_fully_and_finishes(application, colour_images, seg_folder, tmp_path):
    run_dir = str(tmp_path / "run")
    if application == "colorization":
        cfg, monitor = colour_cfg(colour_images, val_fraction=0.0), "loss"
    else:
        cfg, monitor = seg_cfg(seg_folder, val_fraction=0.0, epochs=1), "fg_iou"
    metrics = train(cfg, run_dir, verbose=0, log=quiet)
    rows = history(run_dir)
    assert len(rows) == cfg.epochs
    # Keras writes "NA" in the validation columns; the curves skip them.
    assert all(r.get(f"val_{monitor}") in (None, "NA") for r in rows)
    assert f"val_{monitor}" not in plots.read_history_csv(os.path.join(run_dir, "history.csv"))
    for name in ("best.keras", "last.keras", "metrics.json"):
        assert os.path.isfile(os.path.join(run_dir, name)), name
    assert os.listdir(os.path.join(run_dir, "plots"))
    saved = json.loads(open(os.path.join(run_dir, "metrics.json")).read())
    assert saved == json.loads(json.dumps(metrics))
    assert saved["best_chosen_by"] == f"training {monitor} (no validation split)"
    assert saved["last_epoch_training"][monitor] == pytest.approx(float(rows[-1][monitor]), abs=1e-6)
    # best.keras is the epoch with the best training metric.
    values = [float(r[monitor]) for r in rows]
    best_epoch = int(np.argmin(values) if monitor == "loss" else np.argmax(values))
    run = open_run(run_dir)
    if application == "colorization":
        # The best epoch's weights are those of last.keras only if it is the last epoch.
        same = all(np.array_equal(a, b) for a, b in zip(run.load_model("best").get_weights(),
                                                        run.load_model("last").get_weights()))
        assert same == (best_epoch == len(rows) - 1)
    with pytest.raises(UserError):
        run.evaluate()  # no validation split to evaluate on: one line, not a crash


# === Non-finite loss ===

def test_non_finite_loss_stops_with_one_line_and_leaves_no_trap(colour_images, tmp_path):
    from keras_cnn import training

    # A finite but absurd rate: NaN itself is refused up front by config validation.
    run_dir = str(tmp_path / "run")
    cfg = colour_cfg(colour_images, learning_rate=1e30, epochs=3, batch_size=4)
    with pytest.raises(UserError) as caught:
        train(cfg, run_dir, verbose=0, log=quiet)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{run_dir}: training stopped at epoch 1, step ")
    assert "(not finite); lower --learning-rate (no epoch had finished, so the run folder was removed)" in message
    # Nothing left that the fixed command would trip over.
    assert not os.path.exists(run_dir)
    fixed = dataclasses.replace(cfg, learning_rate=1e-3)
    assert training.run_config(run_dir, fixed) == fixed


def test_loss_becoming_nan_later_keeps_the_good_epochs(colour_images, tmp_path, monkeypatch):
    import keras

    class PoisonAtEpoch2(plots.EpochStrip):
        def on_epoch_end(self, epoch, logs=None):
            pass  # no strip: faster

        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                for w in self.model.trainable_weights[:1]:
                    w.assign(w * np.nan)

    monkeypatch.setattr(plots, "EpochStrip", PoisonAtEpoch2)
    run_dir = str(tmp_path / "run")
    with pytest.raises(UserError, match=r"training stopped at epoch 2, step 1: the loss became nan \(not finite\); "
                                        r"lower --learning-rate \(.*run keeps the checkpoints of its 1 finished"):
        train(colour_cfg(colour_images, epochs=2), run_dir, verbose=0, log=quiet)
    # Epoch 1's checkpoints and backup, and no row or checkpoint of the poisoned epoch.
    assert len(history(run_dir)) == 1
    weights = keras.saving.load_model(os.path.join(run_dir, "last.keras")).get_weights()
    assert all(np.isfinite(w).all() for w in weights)
    with open(os.path.join(run_dir, "backup", "state.json")) as f:
        assert json.load(f)["epoch"] == 1


# === Signals ===

def test_sigterm_during_fit_backs_up_the_step_and_stops(colour_images, tmp_path, monkeypatch):
    from keras_cnn.errors import TrainingInterrupted

    class SigtermAtStep(plots.EpochStrip):
        # The scheduler's SIGTERM arrives during step 2 of epoch 2 (Keras counts from 0).
        def on_train_batch_begin(self, batch, logs=None):
            if self.epoch == 1 and batch == 1:
                os.kill(os.getpid(), signal.SIGTERM)

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_epoch_end(self, epoch, logs=None):
            pass  # no strip: faster

    monkeypatch.setattr(plots, "EpochStrip", SigtermAtStep)
    run_dir = str(tmp_path / "run")
    before = signal.getsignal(signal.SIGTERM)
    logged = []
    with pytest.raises(TrainingInterrupted) as caught:
        train(colour_cfg(colour_images, epochs=2, batch_size=4), run_dir, verbose=0, log=logged.append)
    assert caught.value.exit_code == 143
    assert str(caught.value) == (f"{run_dir}: training stopped by SIGTERM at epoch 2, step 2, backed up in "
                                 f"{run_dir}/backup; run the same command with --resume to continue")
    assert any(line.startswith("SIGTERM received: stopping after this step") for line in logged)
    assert signal.getsignal(signal.SIGTERM) == before  # handlers restored
    with open(os.path.join(run_dir, "backup", "state.json")) as f:
        assert json.load(f) == {"epoch": 1, "step": 2, "weights": "epoch00001-step0000002.weights.h5"}
    monkeypatch.undo()
    logged = []
    train(colour_cfg(colour_images, epochs=2, batch_size=4), run_dir, resume=True, verbose=0, log=logged.append)
    assert any("made after step 2 of epoch 2" in line for line in logged)
    assert [r["epoch"] for r in history(run_dir)] == ["0", "1"]
    assert not os.path.exists(os.path.join(run_dir, "backup"))


# (id, first signal, second signal, exit code): the second stops at once, with its own code.
SECOND_SIGNALS = [
    ("term-term", signal.SIGTERM, signal.SIGTERM, 143),
    ("term-int", signal.SIGTERM, signal.SIGINT, 130),
    ("int-term", signal.SIGINT, signal.SIGTERM, 143),
    ("int-int", signal.SIGINT, signal.SIGINT, 130),
]


@pytest.mark.parametrize("first,second,code", [row[1:] for row in SECOND_SIGNALS],
                         ids=[row[0] for row in SECOND_SIGNALS])
def test_a_second_signal_stops_at_once_with_its_own_exit_code(colour_images, tmp_path, monkeypatch, first,
                                                                second, code):
    from keras_cnn import cli
    from keras_cnn.errors import TrainingInterrupted

    class TwoSignalsAtStep(plots.EpochStrip):
        # Two signals in quick succession during step 2 of epoch 2: a scheduler's TERM then its retry,
        # or an impatient Ctrl-C.
        def on_train_batch_begin(self, batch, logs=None):
            if self.epoch == 1 and batch == 1:
                os.kill(os.getpid(), first)
                os.kill(os.getpid(), second)

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_epoch_end(self, epoch, logs=None):
            pass

    monkeypatch.setattr(plots, "EpochStrip", TwoSignalsAtStep)
    run_dir = str(tmp_path / "run")
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    # A KeyboardInterrupt, so that a bare one (the old second signal) fails this test, not the session.
    with pytest.raises(KeyboardInterrupt) as caught:
        train(colour_cfg(colour_images, epochs=2, batch_size=4), run_dir, verbose=0, log=quiet)
    assert isinstance(caught.value, TrainingInterrupted) and caught.value.exit_code == code
    name = signal.Signals(second).name
    assert str(caught.value) == (f"{run_dir}: training stopped at once by a second signal ({name}); the last "
                                 f"backup in {run_dir}/backup is kept; run the same command with --resume to "
                                 "continue")
    assert {s: signal.getsignal(s) for s in before} == before  # handlers restored
    # The step was not backed up (the stop was at once); the end of epoch 1's backup is what resumes.
    with open(os.path.join(run_dir, "backup", "state.json")) as f:
        assert json.load(f)["epoch"] == 1
    # What the command prints and how it exits.
    with pytest.raises(SystemExit) as exited:
        cli.main(lambda: (_ for _ in ()).throw(caught.value))
    assert exited.value.code == code


def _train_script(run_dir, data_dir, *extra):
    return [sys.executable, os.path.join(REPO, "scripts", "train_colorization.py"), "--run-dir", run_dir,
            "--dataset", "folder", "--data-dir", data_dir, "--num-classes", "4", "--num-filters", "4",
            "--batch-size", "2", "--val-fraction", "0.25", "--backup-every-steps", "1", "--verbose", "0",
            *extra]


@pytest.mark.slow
def test_sigterm_to_a_training_process_then_resume(colour_images, tmp_path):
    """A real process: SIGTERM mid-epoch -> exit 143 with the step backed up; --resume finishes the run."""
    run_dir = str(tmp_path / "run")
    state = os.path.join(run_dir, "backup", "state.json")
    proc = subprocess.Popen(_train_script(run_dir, colour_images, "--epochs", "40"), cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while not os.path.exists(state) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "training stopped by SIGTERM" in err and "--resume" in err
    assert "SIGTERM received: stopping after this step" in out
    with open(state) as f:
        stopped = json.load(f)
    assert stopped["epoch"] < 40
    done = subprocess.run(_train_script(run_dir, colour_images, "--resume"), cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"made after step {stopped['step']} of epoch {stopped['epoch'] + 1}" in done.stdout \
        or f"made after epoch {stopped['epoch']}" in done.stdout
    assert len(history(run_dir)) == 40 and os.path.isfile(os.path.join(run_dir, "metrics.json"))


# === A full disk ===

def _no_space(*args, **kwargs):
    # As write() raises it deep inside NumPy, h5py or zipfile: no file name.
    raise OSError(errno.ENOSPC, "No space left on device")


def _patch_full_disk(monkeypatch, where):
    """Makes the disk fill up while `where` is written: a few bytes of it land, then ENOSPC."""
    import keras

    from keras_cnn import fileio

    if where == "config.json":
        original = fileio.atomic_write_bytes

        def write(path, data):
            if not path.endswith("config.json"):
                return original(path, data)
            with fileio.atomic_path(path) as tmp, open(tmp, "wb") as f:
                f.write(data[:5])
                _no_space()

        monkeypatch.setattr(fileio, "atomic_write_bytes", write)
    elif where == "palette.npy":
        def save(f, *args, **kwargs):
            f.write(b"\x93NUMPY")
            _no_space()

        monkeypatch.setattr(np, "save", save)
    elif where == "last.keras":
        def save(self, path, *args, **kwargs):
            with open(path, "wb") as f:
                f.write(b"PK\x03\x04")
            _no_space()

        monkeypatch.setattr(keras.Model, "save", save)
    elif where.startswith("backup/"):
        from keras_cnn.training import callbacks

        original = callbacks._save_weights
        fail_at = int(where[len("backup/epoch"):].split("-")[0])  # epoch number in the file's name

        def save_weights(model, path):
            if f"epoch{fail_at:05d}" not in os.path.basename(path):
                return original(model, path)
            with open(path, "wb") as f:
                f.write(b"\x89HDF")
            _no_space()

        monkeypatch.setattr(callbacks, "_save_weights", save_weights)
    elif where == "history.csv":
        monkeypatch.setattr(keras.callbacks.CSVLogger, "on_epoch_end", _no_space)
    else:
        raise AssertionError(where)


# (id, the file being written when the disk fills up, whether the run survives to be resumed)
DISK_FULL = [
    ("config", "config.json", False),
    ("palette", "palette.npy", False),
    ("first-checkpoint", "last.keras", False),
    ("first-csv-row", "history.csv", False),
    ("first-backup", "backup/epoch00001-step0000000.weights.h5", False),
    ("second-backup", "backup/epoch00002-step0000000.weights.h5", True),
]


@pytest.mark.parametrize("where,resumable", [row[1:] for row in DISK_FULL], ids=[row[0] for row in DISK_FULL])
def test_a_full_disk_leaves_a_whole_run_or_none(colour_images, tmp_path, monkeypatch, where, resumable):
    from keras_cnn import cli, training

    monkeypatch.setattr(plots.EpochStrip, "on_epoch_end", lambda *a, **k: None)  # no strips: faster
    run_dir = str(tmp_path / "run")
    cfg = colour_cfg(colour_images, epochs=3, batch_size=4)
    with pytest.MonkeyPatch.context() as disk, pytest.raises(OSError) as caught:
        _patch_full_disk(disk, where)
        train(cfg, run_dir, verbose=0, log=quiet)
    # Space is free again. The one line names the file (not a hidden temporary one) and what happened.
    line = cli.error_line(caught.value)
    assert line == (f"{os.path.join(run_dir, where)}: no space left on device; free some space there, or write "
                    "somewhere else, and run the command again"), line
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".tmp-")]
    if not resumable:
        # Nothing to resume from, so nothing left: the same command runs again.
        assert not os.path.exists(run_dir)
        assert training.run_config(run_dir, cfg) == cfg
        return
    # The epochs backed up before the disk filled up are kept, and --resume finishes the run.
    assert training.read_backup_state(os.path.join(run_dir, "backup"))["epoch"] == 1
    with pytest.raises(UserError, match="already holds a run; pass --resume"):
        training.run_config(run_dir, cfg)
    train(cfg, run_dir, resume=True, verbose=0, log=quiet)
    assert [r["epoch"] for r in history(run_dir)] == ["0", "1", "2"]


def test_a_run_folder_made_beforehand_is_filled_whole_or_left_as_it_was(colour_images, tmp_path):
    from keras_cnn import training

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "notes.txt").write_text("mine")
    cfg = colour_cfg(colour_images, epochs=1, batch_size=4)
    with pytest.MonkeyPatch.context() as disk, pytest.raises(OSError, match="No space left on device"):
        _patch_full_disk(disk, "palette.npy")
        train(cfg, str(run_dir), verbose=0, log=quiet)
    assert os.listdir(run_dir) == ["notes.txt"]
    assert training.prepare_run_dir(str(run_dir), cfg, task="colorization") == cfg
    assert sorted(os.listdir(run_dir)) == ["config.json", "notes.txt"]
