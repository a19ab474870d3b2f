"""The callbacks every run gets: CSV log, atomic checkpoints, kill-safe backups, TensorBoard,
a stop on a non-finite loss, and a clean stop on SIGTERM / SIGINT."""

import io
import json
import math
import os
import shutil
import signal
import tempfile
import threading

import keras

from keras_cnn import distribute, state_files
from keras_cnn.errors import TrainingInterrupted, UserError
from keras_cnn.fileio import atomic_path, atomic_write_text, named_os_error
from keras_cnn.training.run_folder import BACKUP_DIR, BACKUP_STATE, HISTORY_CSV, drop_history_from, read_best


class ResumableCSVLogger(keras.callbacks.CSVLogger):
    """`CSVLogger` (append mode) that writes every epoch exactly once across resumes.

    Training may restart in an epoch whose row was already written (killed
    after the row, before the next backup). The file is opened at the first
    epoch that actually runs, after `RunBackup` has decided where that is, and
    rows from that epoch on are dropped first.
    """

    def __init__(self, run_dir):
        super().__init__(os.path.join(run_dir, HISTORY_CSV), append=True)
        self.run_dir = run_dir
        self._opened = False

    def on_train_begin(self, logs=None):
        self._opened = False

    def on_epoch_begin(self, epoch, logs=None):
        if not self._opened:
            drop_history_from(self.run_dir, epoch)
            super().on_train_begin(logs)
            self._opened = True

    def on_epoch_end(self, epoch, logs=None):
        if self.keys is None:
            # The columns Keras is about to write (its CSVLogger's rule) must be those the file has.
            keys = sorted(logs or {})
            if not any(k.startswith("val_") for k in keys):
                keys += [f"val_{k}" for k in keys]
            state_files.check_history_columns(self.run_dir, ["epoch"] + keys)
        try:
            super().on_epoch_end(epoch, logs)
        except OSError as e:  # a full disk: write() names no file
            named = named_os_error(e, self.filename, unnamed=True)
            if named is e:
                raise
            raise named from e

    def on_train_end(self, logs=None):
        if self._opened:
            super().on_train_end(logs)


class AtomicCheckpoint(keras.callbacks.Callback):
    """Saves `best.keras` when `monitor` improves and `last.keras` every epoch.

    Unlike `keras.callbacks.ModelCheckpoint`, the file is written under a
    temporary name and renamed, so a run killed mid-save keeps the previous
    good checkpoint.
    """

    def __init__(self, run_dir, monitor="val_loss", mode="min"):
        super().__init__()
        self.run_dir = run_dir
        self.monitor = monitor
        self.mode = mode
        self.best = None
        self._started = False

    def _improved(self, value):
        if self.best is None:
            return True
        return value < self.best if self.mode == "min" else value > self.best

    def on_train_begin(self, logs=None):
        self._started = False

    def on_epoch_begin(self, epoch, logs=None):
        # On resume, the best value so far comes back from the CSV log, from
        # the epochs before the one training restarts in.
        if not self._started:
            self._started = True
            if self.best is None:
                self.best = read_best(self.run_dir, self.monitor, self.mode, before_epoch=epoch)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        last = os.path.join(self.run_dir, "last.keras")
        with atomic_path(last) as tmp:
            self.model.save(tmp)
        value = logs.get(self.monitor)
        if value is not None and self._improved(float(value)):
            self.best = float(value)
            # The same model was just saved: a copy of the file costs a fraction of a second save.
            with atomic_path(os.path.join(self.run_dir, "best.keras")) as tmp:
                shutil.copyfile(last, tmp)


def _save_weights(model, path):
    """`model.save_weights(path)`, the HDF5 file built in memory and written to `path` with one plain write.

    HDF5 writing straight to a disk that fills up keeps the half-written file
    open, retries the write as each of h5py's objects is freed (a traceback
    each) and crashes the process at exit (exit 139). Built in memory, a full
    disk is one `OSError` from `write()`, which `atomic_path` names. Costs
    the weights' size in memory for a moment. With a Keras whose saving
    internals differ, the weights are written straight to the file.
    """
    try:
        from keras.src.saving import saving_lib

        store_class, save_state = saving_lib.H5IOStore, saving_lib._save_state
    except (ImportError, AttributeError):
        model.save_weights(path)
        return
    buffer = io.BytesIO()
    store = store_class(buffer, mode="w")
    save_state(model, weights_store=store, assets_store=None, inner_path="", visited_saveables=set())
    store.close()
    with open(path, "wb") as f:
        f.write(buffer.getbuffer())


def read_backup_state(backup_dir):
    """`{"epoch", "step", "weights"}` of the backup in `backup_dir`, or None if there is none.

    Checked by `keras_cnn.state_files.backup_state`: a bad `state.json` is one line naming it.
    """
    return state_files.backup_state(backup_dir)


class RunBackup(keras.callbacks.BackupAndRestore):
    """`BackupAndRestore` that survives SIGKILL at any instant and restores every worker alike.

    Keras' callback overwrites its weights file and its epoch counter in
    place, and after a resume it files step backups under epoch 0. This one:

    - writes each backup to a new file, then atomically replaces `state.json`
      (epoch, step, file name), then deletes the older file: a kill at any
      point leaves a complete, consistent backup;
    - with `save_freq` N steps, also backs up at every epoch end, so a
      finished epoch is never trained again;
    - several workers: only the chief reads `backup_dir`; the others write
      their (identical) backups to a temporary folder that `fit` deletes, and
      receive the chief's restored weights, optimizer state and epoch by
      all-reduce (`distribute.broadcast_from_chief`), so no shared file
      system is needed.

    Like Keras' own callback it restarts an interrupted epoch from its first
    batch: after a step backup the weights and optimizer state are those of
    that step. `restored` is `(epoch, step)` after a restore, else None.

    Args:
        backup_dir: folder for the backup (used by this run only).
        save_freq: "epoch" or a number of steps.
        chief: whether this process is the one that restores.
        log: function receiving the one-line resume message.
    """

    STATE = BACKUP_STATE

    def __init__(self, backup_dir, save_freq="epoch", chief=True, log=print):
        super().__init__(backup_dir, save_freq=save_freq, delete_checkpoint=True)
        self.chief = chief
        self.log = log
        self.restored = None

    def on_train_begin(self, logs=None):
        model = self.model
        if not model.built:
            raise ValueError("RunBackup needs a built model")
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        state = read_backup_state(self.backup_dir) if self.chief else None
        if state:
            path = os.path.join(self.backup_dir, state["weights"])
            try:
                model.load_weights(path)
            except Exception as e:  # h5py/Keras raise many types for a bad file
                raise UserError(f"{path}: cannot restore backup ({str(e).splitlines()[0][:200]}); "
                                f"delete {self.backup_dir} to restart the run from its beginning") from None
        epoch, step = (state["epoch"], state["step"]) if state else (0, 0)
        variables = list(model.weights) + (list(model.optimizer.variables) if model.optimizer else [])
        epoch, step = distribute.broadcast_from_chief(distribute.model_strategy(model), variables, (epoch, step))
        self.restored = (epoch, step) if (epoch or step) else None
        if self.restored:
            # Epochs and steps counted from 1, as Keras' progress lines do.
            source = self.backup_dir if self.chief else "the chief's backup"
            if step:
                self.log(f"resuming from {source}, made after step {step} of epoch {epoch + 1}: epoch "
                         f"{epoch + 1} starts again from its first batch with the weights and optimizer "
                         "state of that step")
            else:
                self.log(f"resuming from {source}, made after epoch {epoch}: training continues with "
                         f"epoch {epoch + 1}")
            model._initial_epoch = epoch
        self._current_epoch = epoch
        self._last_batch_seen = 0
        self._batches_seen_since_last_saving = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._current_epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        self._current_epoch = epoch + 1
        self._last_batch_seen = 0
        self._batches_seen_since_last_saving = 0
        self._save(epoch + 1, 0)

    def on_train_batch_end(self, batch, logs=None):
        if self._should_save_on_batch(batch):
            self._save(self._current_epoch, batch + 1)

    def save_step(self, epoch, step):
        """A backup made after `step` steps of `epoch` (both as Keras counts: epoch 0-based)."""
        self._save(epoch, step)

    def _save(self, epoch, step):
        os.makedirs(self.backup_dir, exist_ok=True)
        name = f"epoch{epoch:05d}-step{step:07d}.weights.h5"
        with atomic_path(os.path.join(self.backup_dir, name)) as tmp:
            _save_weights(self.model, tmp)
        atomic_write_text(os.path.join(self.backup_dir, self.STATE),
                          json.dumps({"epoch": epoch, "step": step, "weights": name}) + "\n")
        # Older backups, and temporary files of a save that was killed.
        for other in os.listdir(self.backup_dir):
            if other not in (name, self.STATE):
                path = os.path.join(self.backup_dir, other)
                shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)

    def on_train_end(self, logs=None):
        super().on_train_end(logs)
        # Keras reads this at the start of every `fit`; a later `fit` of the
        # same model must not start at the resumed epoch.
        self.model._initial_epoch = None


class NonFiniteLoss(UserError):
    """The loss became NaN or infinite at `step` (1-based) of `epoch` (1-based)."""

    def __init__(self, run_dir, epoch, step, value):
        super().__init__(f"{run_dir}: training stopped at epoch {epoch}, step {step}: the loss became "
                         f"{value} (not finite); lower --learning-rate")
        self.epoch, self.step, self.value = epoch, step, value


class StopOnNaN(keras.callbacks.Callback):
    """Stops training with `NonFiniteLoss` (a `UserError`) at the first step whose loss is not finite.

    Unlike `keras.callbacks.TerminateOnNaN`, which lets the epoch end (its
    checkpoints, CSV row and backup written from broken weights) and `fit`
    return normally, this raises at once from the step's end: the run folder
    keeps the checkpoints and backup of the last good epoch or step, and the
    script exits non-zero.
    """

    def __init__(self, run_dir):
        super().__init__()
        self.run_dir = run_dir
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None:
            return
        value = float(keras.ops.convert_to_numpy(loss))
        if not math.isfinite(value):
            raise NonFiniteLoss(self.run_dir, self.epoch + 1, batch + 1, value)


class StopOnSignal(keras.callbacks.Callback):
    """SIGTERM or SIGINT (Ctrl-C) stop training cleanly at the end of the current step.

    The way schedulers and preemption stop a job: the first signal is
    noted, the step that is running finishes, `backup` saves that step
    (so `--resume` continues from it) and `TrainingInterrupted` is raised
    (exit 128 + signal number through `keras_cnn.cli`). A second signal stops
    at once (`TrainingInterrupted` too, exit 128 + that signal's number),
    keeping the last backup. Under a
    multi-worker strategy the workers agree by all-reduce at every step, so
    they all stop after the same step even when only one was signalled.

    Installed by `install()` around `fit` (main thread only: Python runs
    signal handlers there); `restore()` puts the previous handlers back.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, backup, run_dir, log=print):
        super().__init__()
        self.backup = backup
        self.run_dir = run_dir
        self.log = log
        self.received = None
        self.epoch = 0
        self._previous = {}
        self._sync = None

    def install(self):
        if threading.current_thread() is not threading.main_thread():
            return False
        for sig in self.SIGNALS:
            self._previous[sig] = signal.getsignal(sig)
            signal.signal(sig, self._handle)
        return True

    def restore(self):
        for sig, previous in self._previous.items():
            # None: a handler not installed from Python (TensorFlow's own SIGTERM notifier).
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        self._previous = {}

    def _handle(self, signum, frame):
        if self.received is not None:
            # The second signal stops at once; the exit code is that signal's (143 for TERM, 130 for INT),
            # as for a process it had killed.
            self.restore()
            backup_dir = self.backup.backup_dir
            kept = (f"the last backup in {backup_dir} is kept"
                    if os.path.exists(os.path.join(backup_dir, RunBackup.STATE)) else "nothing was backed up yet")
            raise TrainingInterrupted(signum, f"{self.run_dir}: training stopped at once by a second signal "
                                              f"({signal.Signals(signum).name}); {kept}; run the same command "
                                              "with --resume to continue")
        self.received = signum
        self.log(f"{signal.Signals(signum).name} received: stopping after this step, once it is backed up "
                 "(send it again to stop at once)")

    def on_train_begin(self, logs=None):
        from keras_cnn import multiworker_fix

        strategy = distribute.model_strategy(self.model)
        self._sync = strategy if strategy is not None and multiworker_fix.is_multi_worker(strategy) else None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def _stop_requested(self):
        """The signal to stop for (0: none); under a multi-worker strategy, any worker's."""
        if self._sync is None:
            return self.received or 0
        import tensorflow as tf

        # Every worker calls this at every step, so the collectives line up.
        flags = tf.constant([int(self.received == s) for s in self.SIGNALS], tf.int64)
        flags = self._sync.reduce(tf.distribute.ReduceOp.SUM, flags, axis=None).numpy()
        return next((int(s) for s, n in zip(self.SIGNALS, flags) if n), 0)

    def on_train_batch_end(self, batch, logs=None):
        signum = self._stop_requested()
        if signum:
            self.backup.save_step(self.epoch, batch + 1)
            self._stop(signum, f"epoch {self.epoch + 1}, step {batch + 1}")

    def on_epoch_end(self, epoch, logs=None):
        # Signalled during validation or the end-of-epoch saves: the epoch's backup is already made.
        signum = self._stop_requested()
        if signum:
            self._stop(signum, f"the end of epoch {epoch + 1}")

    def _stop(self, signum, where):
        name = signal.Signals(signum).name
        raise TrainingInterrupted(signum, f"{self.run_dir}: training stopped by {name} at {where}, backed "
                                          f"up in {self.backup.backup_dir}; run the same command with "
                                          "--resume to continue")


def standard_callbacks(run_dir, monitor="val_loss", mode="min", backup_every_steps=0,
                       chief=True, log=print):
    """The callbacks every run gets: `StopOnNaN` first, then `RunBackup`, then `StopOnSignal`.

    The backup comes after the checkpoint, CSV and extra callbacks so that
    when it records an epoch as finished, that epoch's checkpoint, CSV row and
    plots are already written; `StopOnSignal` comes after it and uses it.
    Non-chief workers get only the NaN stop, the backup (writing to a
    temporary folder) and the signal stop.
    """
    callbacks = [StopOnNaN(run_dir)]
    if chief:
        callbacks += [
            AtomicCheckpoint(run_dir, monitor=monitor, mode=mode),
            ResumableCSVLogger(run_dir),
            keras.callbacks.TensorBoard(os.path.join(run_dir, "logs"), write_graph=False),
        ]
    # Every worker saves (symmetric work under a multi-worker strategy); only
    # the chief's copy is kept.
    backup_dir = os.path.join(run_dir, BACKUP_DIR) if chief else tempfile.mkdtemp(prefix="keras_cnn_backup_")
    backup = RunBackup(backup_dir, save_freq=backup_every_steps if backup_every_steps > 0 else "epoch",
                       chief=chief, log=log)
    callbacks += [backup, StopOnSignal(backup, run_dir, log)]
    return callbacks
