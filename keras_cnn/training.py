"""Training plumbing shared by colourization and segmentation.

A *run folder* holds everything one training run writes (on the chief only
when several workers train together):

    config.json      the resolved config (resume re-reads it)
    best.keras       the best model so far by the monitored metric (atomic)
    last.keras       the model after the last finished epoch (atomic)
    history.csv      one row per finished epoch (rows of a replayed epoch are
                     dropped on resume, so every epoch appears once)
    logs/            TensorBoard event files
    backup/          `RunBackup` state (weights + optimizer, epoch, step),
                     deleted when training finishes
    plots/           per-epoch strips and the final curves

`fit()` runs `model.fit` with these callbacks; the caller builds and compiles
the model inside the strategy's scope (`setup_runtime` gives the strategy).
Resuming: run the same command again with `--resume`; `RunBackup` restores the
last backup and training goes on from there.
"""

import contextlib
import csv
import dataclasses
import io
import json
import math
import os
import shutil
import tempfile

import keras
import tensorflow as tf

from keras_cnn import config as config_lib
from keras_cnn import distribute
from keras_cnn.errors import UserError
from keras_cnn.fileio import atomic_path, atomic_write_text

BACKUP_DIR = "backup"
HISTORY_CSV = "history.csv"


@dataclasses.dataclass
class Runtime:
    """Where and how a run trains, resolved from its `TrainingConfig`."""

    strategy: tf.distribute.Strategy
    replicas: int
    global_batch: int
    learning_rate: float
    chief: bool


def mixed_policy():
    """float16 where GPUs have fast float16 math, bfloat16 on CPU and TPU."""
    return "mixed_float16" if tf.config.list_logical_devices("GPU") else "mixed_bfloat16"


def setup_runtime(cfg, log=print):
    """Strategy, seeds, precision policy, global batch and learning rate for `cfg`.

    The batch size in a config is per replica; the global batch is that times
    the replicas in sync. The learning rate follows `cfg.lr_scaling`: "none"
    keeps it, "linear" multiplies it by the replicas (Goyal et al. 2017),
    "sqrt" by their square root. The rule and the result are logged. The
    precision policy is set (or reset to float32) for the whole process.
    """
    # The strategy comes first: MultiWorkerMirroredStrategy must set up its
    # collective ops before any other TensorFlow work.
    strategy = distribute.get_strategy(cfg.strategy)
    keras.utils.set_random_seed(cfg.seed)
    keras.mixed_precision.set_global_policy(mixed_policy() if cfg.mixed_precision else "float32")
    replicas = strategy.num_replicas_in_sync
    if cfg.jit_compile and replicas > 1 and not tf.config.list_logical_devices("GPU"):
        # Keras XLA-compiles the whole distributed step, all-reduce included,
        # and TensorFlow has no XLA collectives on CPU (UnimplementedError
        # under MultiWorkerMirroredStrategy; MirroredStrategy over logical
        # CPUs fails with "Trying to access resource ... on CPU:1 from CPU:0").
        raise UserError(f"--jit-compile with {replicas} CPU replicas: XLA cannot compile collective ops on "
                        "CPU; train with one replica or without --jit-compile")
    factor = {"none": 1.0, "linear": float(replicas), "sqrt": math.sqrt(replicas)}[cfg.lr_scaling]
    runtime = Runtime(strategy, replicas, cfg.batch_size * replicas, cfg.learning_rate * factor,
                      distribute.is_chief(strategy))
    log(f"strategy {type(strategy).__name__} with {replicas} replica(s) ({distribute.task_name()}"
        f"{', chief' if runtime.chief else ''}); global batch {cfg.batch_size} x {replicas} = "
        f"{runtime.global_batch}; learning rate {cfg.learning_rate:g} x {factor:g} ({cfg.lr_scaling} "
        f"scaling) = {runtime.learning_rate:g}; precision {keras.mixed_precision.global_policy().name}; "
        f"XLA {'on' if cfg.jit_compile else 'off'}")
    return runtime


# === History ===

def read_history(run_dir, before_epoch=None):
    """The complete rows of `history.csv` (dicts of strings), optionally only epochs < `before_epoch`."""
    path = os.path.join(run_dir, HISTORY_CSV)
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        rows = []
        for row in reader:
            # A row cut short by a kill mid-write has missing fields: not a finished epoch.
            if None in row.values() or None in row or not (row.get("epoch") or "").isdigit():
                continue
            if before_epoch is None or int(row["epoch"]) < before_epoch:
                rows.append(row)
    return rows


def drop_history_from(run_dir, epoch):
    """Rewrites `history.csv` keeping only complete rows of epochs before `epoch`; returns how many went."""
    path = os.path.join(run_dir, HISTORY_CSV)
    if not os.path.exists(path):
        return 0
    with open(path, newline="") as f:
        header = next(csv.reader(f), None)
        total = sum(1 for _ in f)
    if not header:
        return 0
    keep = read_history(run_dir, before_epoch=epoch)
    if len(keep) == total:
        return 0
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    writer.writerows(keep)
    atomic_write_text(path, out.getvalue())
    return total - len(keep)


def read_best(run_dir, monitor, mode, before_epoch=None):
    values = [float(r[monitor]) for r in read_history(run_dir, before_epoch)
              if r.get(monitor) not in (None, "", "NA")]
    if not values:
        return None
    return min(values) if mode == "min" else max(values)


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

    def on_train_end(self, logs=None):
        if self._opened:
            super().on_train_end(logs)


# === Checkpoints and backups ===

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
        with atomic_path(os.path.join(self.run_dir, "last.keras")) as tmp:
            self.model.save(tmp)
        value = logs.get(self.monitor)
        if value is not None and self._improved(float(value)):
            self.best = float(value)
            with atomic_path(os.path.join(self.run_dir, "best.keras")) as tmp:
                self.model.save(tmp)


def read_backup_state(backup_dir):
    """`{"epoch", "step", "weights"}` of the backup in `backup_dir`, or None if there is none."""
    path = os.path.join(backup_dir, RunBackup.STATE)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            state = json.load(f)
        epoch, step, weights = int(state["epoch"]), int(state["step"]), str(state["weights"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"{path}: unreadable backup state ({type(e).__name__}); delete {backup_dir} "
                        "to restart the run from its beginning") from None
    if not os.path.exists(os.path.join(backup_dir, weights)):
        raise UserError(f"{path}: names {weights}, which is missing; delete {backup_dir} "
                        "to restart the run from its beginning")
    return {"epoch": epoch, "step": step, "weights": weights}


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

    STATE = "state.json"

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
        epoch, step = distribute.broadcast_from_chief(model.distribute_strategy, variables, (epoch, step))
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

    def _save(self, epoch, step):
        os.makedirs(self.backup_dir, exist_ok=True)
        name = f"epoch{epoch:05d}-step{step:07d}.weights.h5"
        with atomic_path(os.path.join(self.backup_dir, name)) as tmp:
            self.model.save_weights(tmp)
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


# === Run folders ===

def prepare_run_dir(run_dir, cfg, resume=False, chief=None):
    """Creates the run folder and writes `config.json`; returns the config to train with.

    A folder that already holds a config is only reused with `resume=True`,
    and then its saved config wins (a resumed run must be the same run). A
    resume needs something to resume: a backup, or a run that stopped before
    its first backup; a finished run is an error, not a silent restart.

    `chief` (default: from `TF_CONFIG`) False: a non-chief worker writes
    nothing; it uses the saved config when it can see the chief's folder
    (shared file system), else `cfg`, so every machine should be given the
    same flags.
    """
    if chief is None:
        chief = distribute.is_chief()
    path = config_lib.config_path(run_dir)
    if not chief:
        return config_lib.load_config(type(cfg), path) if resume and os.path.exists(path) else cfg
    if os.path.exists(path):
        if not resume:
            raise UserError(f"{run_dir}: run folder already holds a run; pass --resume to continue it "
                            "or choose another --run-dir")
        saved = config_lib.load_config(type(cfg), path)
        if not os.path.exists(os.path.join(run_dir, BACKUP_DIR, RunBackup.STATE)):
            done = len(read_history(run_dir))
            if done >= saved.epochs:
                raise UserError(f"{run_dir}: run already finished ({done} of {saved.epochs} epochs); "
                                "nothing to resume")
            if done:
                raise UserError(f"{run_dir}: no backup to resume from, but history.csv has {done} "
                                f"epoch(s): the run stopped early (e.g. NaN loss) or {BACKUP_DIR}/ was "
                                "deleted; start a new run")
        return saved
    if resume:
        raise UserError(f"{run_dir}: nothing to resume (no config.json)")
    os.makedirs(run_dir, exist_ok=True)
    config_lib.save_config(cfg, path)
    return cfg


@contextlib.contextmanager
def new_run(run_dir, cfg, resume=False, chief=None):
    """`prepare_run_dir` for the set-up phase of a run; yields the config to use.

    If set-up fails (bad data, bad palette...) in a folder this call created,
    the folder is removed again, so fixing the flag and re-running does not
    trip over a half-made run. Only the chief creates or removes it.
    """
    if chief is None:
        chief = distribute.is_chief()
    existed = os.path.exists(run_dir)
    try:
        yield prepare_run_dir(run_dir, cfg, resume, chief)
    except BaseException:
        if chief and not existed:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise


def standard_callbacks(run_dir, monitor="val_loss", mode="min", backup_every_steps=0,
                       chief=True, log=print):
    """The callbacks every run gets, `RunBackup` last.

    The backup comes last so that when it records an epoch as finished, that
    epoch's checkpoint, CSV row and plots are already written. Non-chief
    workers get only the backup, writing to a temporary folder.
    """
    callbacks = [keras.callbacks.TerminateOnNaN()]
    if chief:
        callbacks += [
            AtomicCheckpoint(run_dir, monitor=monitor, mode=mode),
            ResumableCSVLogger(run_dir),
            keras.callbacks.TensorBoard(os.path.join(run_dir, "logs"), write_graph=False),
        ]
    # Every worker saves (symmetric work under a multi-worker strategy); only
    # the chief's copy is kept.
    backup_dir = os.path.join(run_dir, BACKUP_DIR) if chief else tempfile.mkdtemp(prefix="keras_cnn_backup_")
    callbacks.append(RunBackup(backup_dir, save_freq=backup_every_steps if backup_every_steps > 0 else "epoch",
                               chief=chief, log=log))
    return callbacks


def _shard_on_purpose(dataset):
    # A pipeline that chose a policy keeps it; one left at AUTO gets DATA.
    if isinstance(dataset, tf.data.Dataset) and (
            dataset.options().experimental_distribute.auto_shard_policy
            == tf.data.experimental.AutoShardPolicy.AUTO):
        return distribute.set_auto_shard_policy(dataset, "data")
    return dataset


def fit(model, train_ds, val_ds, epochs, run_dir, monitor="val_loss", mode="min",
        backup_every_steps=0, chief=True, extra_callbacks=(), verbose="auto", steps_per_epoch=None,
        sync_batchnorm=True, log=print):
    """`model.fit` with the standard callbacks; returns the History.

    `extra_callbacks` run on the chief only, before the backup. Datasets are
    batched at the global batch; those left at the AUTO shard policy are set
    to DATA. `sync_batchnorm`: BatchNorm statistics over the global batch
    when there are several replicas (`distribute.sync_batchnorm`).
    """
    if sync_batchnorm and model.distribute_strategy.num_replicas_in_sync > 1:
        distribute.sync_batchnorm(model)
    callbacks = standard_callbacks(run_dir, monitor, mode, backup_every_steps, chief, log)
    callbacks[-1:-1] = [c for c in extra_callbacks if chief]
    try:
        return model.fit(_shard_on_purpose(train_ds),
                         validation_data=None if val_ds is None else _shard_on_purpose(val_ds),
                         epochs=epochs, callbacks=callbacks, verbose=verbose,
                         steps_per_epoch=steps_per_epoch, shuffle=False)
    finally:
        if not chief:
            shutil.rmtree(callbacks[-1].backup_dir, ignore_errors=True)


def load_model(path):
    """Loads a `.keras` file of this package with a one-line error when it cannot."""
    import keras_cnn.colorization.models  # noqa: F401  (registers the classes)
    import keras_cnn.colorization.pipeline  # noqa: F401  (PixelCrossEntropy in a saved compile config)
    import keras_cnn.segmentation.deeplab_v3  # noqa: F401  (segmenter, ASPP and backbones)
    import keras_cnn.segmentation.metrics  # noqa: F401  (metrics in a saved compile config)
    if not os.path.exists(path):
        raise UserError(f"{path}: model file does not exist")
    try:
        return keras.saving.load_model(path)
    except Exception as e:  # Keras raises many types for a bad archive
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{path}: cannot load model ({first[:200]})") from None


def config_dict(cfg):
    return dataclasses.asdict(cfg)
