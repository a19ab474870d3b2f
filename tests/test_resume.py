"""Fault tolerance: backups that survive any crash, history rows written once, `--resume` semantics."""

import csv
import json
import os
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_cnn import training
from keras_cnn.colorization.config import PRESETS, ColorizationConfig
from keras_cnn.config import resolve
from keras_cnn.errors import UserError
from tests.helpers import REPO, write_images

STEPS = 4  # per epoch in the in-process tests


class Crash(keras.callbacks.Callback):
    """Raises at the end of `epoch` (after the CSV row, before the epoch's backup) or at a step."""

    def __init__(self, epoch, step=None):
        super().__init__()
        self.epoch, self.step = epoch, step

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if self.step is not None and self.current == self.epoch and batch == self.step:
            raise RuntimeError("crash mid-epoch")

    def on_epoch_end(self, epoch, logs=None):
        if self.step is None and epoch == self.epoch:
            raise RuntimeError("crash at epoch end")


def tiny_fit(run_dir, crash=None, epochs=3):
    """A fresh model (as after a restart) trained with training.fit; returns (model, log lines)."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    rng = np.random.RandomState(0)
    ds = tf.data.Dataset.from_tensor_slices((rng.rand(8 * STEPS, 4).astype("float32"),
                                             rng.rand(8 * STEPS, 3).astype("float32"))).batch(8)
    lines = []
    extra = [crash] if crash else []
    try:
        training.fit(model, ds, ds, epochs, str(run_dir), backup_every_steps=2, extra_callbacks=extra,
                     verbose=0, log=lines.append)
    except RuntimeError as e:
        assert "crash" in str(e)
    return model, lines


def epochs_in_history(run_dir):
    with open(os.path.join(run_dir, "history.csv")) as f:
        return [int(r["epoch"]) for r in csv.DictReader(f)]


def backup_state(run_dir):
    with open(os.path.join(run_dir, "backup", "state.json")) as f:
        return json.load(f)


def test_every_epoch_once_after_crashes_at_any_point(tmp_path):
    run = tmp_path / "run"
    # 1. Crash after epoch 1's CSV row but before its backup: the backup is
    #    still the step-4 one of epoch 1 (Keras' CSVLogger would then write
    #    epoch 1 twice).
    tiny_fit(run, Crash(epoch=1))
    assert epochs_in_history(run) == [0, 1]
    assert backup_state(run)["epoch"] == 1 and backup_state(run)["step"] == STEPS
    # 2. Restart: replays epoch 1, then crashes in epoch 2 after its step-2
    #    backup, which must be filed under epoch 2 (Keras' own callback files
    #    step backups made after a resume under epoch 0).
    _, lines = tiny_fit(run, Crash(epoch=2, step=3))
    assert any("resuming from" in l and "made after step 4 of epoch 2" in l for l in lines), lines
    assert epochs_in_history(run) == [0, 1]
    state = backup_state(run)
    assert (state["epoch"], state["step"]) == (2, 2)
    assert sorted(os.listdir(run / "backup")) == [state["weights"], "state.json"]
    # 3. Restart again: finishes, each epoch once, backup gone.
    model, lines = tiny_fit(run)
    assert any("made after step 2 of epoch 3" in l for l in lines), lines
    assert epochs_in_history(run) == [0, 1, 2]
    assert not os.path.exists(run / "backup")
    assert model._initial_epoch is None  # a later fit of this model starts at epoch 0 again
    # last.keras is the final model.
    last = keras.saving.load_model(run / "last.keras")
    for a, b in zip(last.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_restore_brings_back_weights_and_optimizer_state(tmp_path):
    run = tmp_path / "run"
    tiny_fit(run, Crash(epoch=1, step=3))
    saved = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    saved.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    saved.optimizer.build(saved.trainable_variables)
    saved.load_weights(run / "backup" / backup_state(run)["weights"])
    # The restored model starts where the backup was: 4 + 2 optimizer steps.
    restored = []

    class Probe(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if not restored:
                restored.append((epoch, int(self.model.optimizer.iterations),
                                 [w.copy() for w in self.model.get_weights()]))

    tiny_fit(run, Probe())
    epoch, iterations, weights = restored[0]
    assert (epoch, iterations) == (1, STEPS + 2)
    for a, b in zip(weights, saved.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_leftovers_of_a_killed_save_are_harmless(tmp_path):
    run = tmp_path / "run"
    tiny_fit(run, Crash(epoch=1, step=3))
    # What a kill during the next save would leave: a torn temporary file.
    (run / "backup" / ".tmp-999-deadbeef-epoch00001-step0000004.weights.h5").write_bytes(b"\x89HDF torn")
    _, lines = tiny_fit(run, Crash(epoch=2, step=1))
    assert any("made after step 2 of epoch 2" in l for l in lines)
    assert not [n for n in os.listdir(run / "backup") if n.startswith(".tmp-")]
    # A broken state file is a clear error naming the fix, not a stack trace.
    (run / "backup" / "state.json").write_text("{")
    with pytest.raises(UserError, match=r"state.json: backup state is not valid JSON .*delete .*backup"):
        tiny_fit(run)


def colour_cfg(data_dir, **kw):
    return resolve(ColorizationConfig, PRESETS, "cifar10_unet", dict(source="folder", data_dir=data_dir, **kw))


def test_run_folder_resume_rules(tmp_path, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    run = str(tmp_path / "run")
    cfg = colour_cfg("d", epochs=2)
    with pytest.raises(UserError, match="nothing to resume"):
        training.prepare_run_dir(run, cfg, resume=True)
    assert training.prepare_run_dir(run, cfg) == cfg
    with pytest.raises(UserError, match="already holds a run; pass --resume"):
        training.prepare_run_dir(run, cfg)
    # The saved config wins on resume.
    assert training.prepare_run_dir(run, colour_cfg("d", epochs=9), resume=True) == cfg
    with open(os.path.join(run, "history.csv"), "w") as f:
        f.write("epoch,loss\n0,1.0\n")
    with pytest.raises(UserError, match="no backup to resume from"):
        training.prepare_run_dir(run, cfg, resume=True)
    with open(os.path.join(run, "history.csv"), "a") as f:
        f.write("1,0.5\n")
    with pytest.raises(UserError, match=r"already finished \(2 of 2 epochs\)"):
        training.prepare_run_dir(run, cfg, resume=True)
    # A non-chief worker writes nothing, and reads the chief's config if it can see it.
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["a:1", "b:2"]},
                                                "task": {"type": "worker", "index": 1}}))
    other = str(tmp_path / "other")
    assert training.prepare_run_dir(other, cfg) == cfg and not os.path.exists(other)
    assert training.prepare_run_dir(run, colour_cfg("d", epochs=9), resume=True) == cfg


def test_history_rows_cut_by_a_kill_are_dropped(tmp_path):
    (tmp_path / "history.csv").write_text("epoch,loss,val_loss\n0,1.0,1.1\n1,0.9,1.0\n2,0.8")
    assert [r["epoch"] for r in training.read_history(str(tmp_path))] == ["0", "1"]
    assert training.read_best(str(tmp_path), "val_loss", "min") == 1.0
    assert training.drop_history_from(str(tmp_path), 1) == 2
    assert (tmp_path / "history.csv").read_text() == "epoch,loss,val_loss\n0,1.0,1.1\n"


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    rng = np.random.RandomState(0)
    images = rng.randint(0, 256, (40, 4, 4, 3)).astype(np.uint8).repeat(4, 1).repeat(4, 2)
    return str(write_images(tmp_path_factory.mktemp("imgs") / "horses", images))


def test_sigkill_mid_epoch_then_resume_with_the_script(tmp_path, image_folder):
    run = str(tmp_path / "run")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_CONFIG", None)
    # Epochs of 4 steps (30 training images, batch 8), a backup every 2 steps;
    # SIGKILL as step 4 of epoch 2 begins.
    first = subprocess.run(
        [sys.executable, os.path.join(REPO, "tests", "train_worker.py"), "train", run,
         str(tmp_path / "w.npz"), image_folder, "--strategy", "default", "--kill-at", "1:3"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == -signal.SIGKILL, first.stderr[-2000:]
    assert epochs_in_history(run) == [0]
    assert {k: v for k, v in backup_state(run).items() if k != "weights"} == {"epoch": 1, "step": 2}

    script = os.path.join(REPO, "scripts", "train_colorization.py")
    second = subprocess.run([sys.executable, script, "--run-dir", run, "--resume"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-2000:]
    assert (f"resuming from {os.path.join(run, 'backup')}, made after step 2 of epoch 2: epoch 2 starts "
            "again from its first batch") in second.stdout
    assert "Epoch 1/3" not in second.stdout and "Epoch 2/3" in second.stdout
    assert epochs_in_history(run) == [0, 1, 2]
    assert not os.path.exists(os.path.join(run, "backup"))
    assert json.load(open(os.path.join(run, "metrics.json")))["epochs"] == 3
    assert training.load_model(os.path.join(run, "best.keras")).output.dtype == "float32"

    third = subprocess.run([sys.executable, script, "--run-dir", run, "--resume"], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=600)
    assert third.returncode == 2
    # One line, and nothing else: TensorFlow's start-up is quiet.
    assert third.stderr.strip() == f"error: {run}: run already finished (3 of 3 epochs); nothing to resume"
