"""Training plumbing shared by colourization and segmentation.

A *run folder* holds everything one training run writes:

    config.json      the resolved config (resume re-reads it)
    best.keras       the best model so far by the monitored metric (atomic)
    last.keras       the model after the last finished epoch (atomic)
    history.csv      per-epoch metrics (CSVLogger, appended on resume)
    logs/            TensorBoard event files
    backup/          BackupAndRestore state, deleted when training finishes
    plots/           per-epoch strips and the final curves

`fit()` runs `model.fit` with these callbacks; the caller builds and compiles
the model inside the strategy's scope.
"""

import contextlib
import dataclasses
import math
import os
import shutil
import tempfile

import keras
import tensorflow as tf

from keras_cnn import config as config_lib
from keras_cnn import distribute
from keras_cnn.errors import UserError
from keras_cnn.fileio import atomic_path


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
    """Seeds, strategy, precision policy, global batch and learning rate for `cfg`.

    The batch size in a config is per replica; the global batch is that times
    the replicas in sync. The learning rate follows `cfg.lr_scaling`: "none"
    keeps it, "linear" multiplies it by the replicas (Goyal et al. 2017),
    "sqrt" by their square root. The rule and the result are logged.
    """
    keras.utils.set_random_seed(cfg.seed)
    strategy = distribute.get_strategy(cfg.strategy)
    keras.mixed_precision.set_global_policy(mixed_policy() if cfg.mixed_precision else "float32")
    replicas = strategy.num_replicas_in_sync
    factor = {"none": 1.0, "linear": float(replicas), "sqrt": math.sqrt(replicas)}[cfg.lr_scaling]
    runtime = Runtime(strategy, replicas, cfg.batch_size * replicas, cfg.learning_rate * factor,
                      distribute.is_chief(strategy))
    log(f"strategy {type(strategy).__name__} with {replicas} replica(s); global batch "
        f"{cfg.batch_size} x {replicas} = {runtime.global_batch}; learning rate {cfg.learning_rate:g} "
        f"x {factor:g} ({cfg.lr_scaling} scaling) = {runtime.learning_rate:g}; "
        f"precision {keras.mixed_precision.global_policy().name}; XLA {'on' if cfg.jit_compile else 'off'}")
    return runtime


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

    def _improved(self, value):
        if self.best is None:
            return True
        return value < self.best if self.mode == "min" else value > self.best

    def on_train_begin(self, logs=None):
        # On resume, the best value so far comes back from the CSV log.
        if self.best is None:
            self.best = read_best(self.run_dir, self.monitor, self.mode)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        with atomic_path(os.path.join(self.run_dir, "last.keras")) as tmp:
            self.model.save(tmp)
        value = logs.get(self.monitor)
        if value is not None and self._improved(float(value)):
            self.best = float(value)
            with atomic_path(os.path.join(self.run_dir, "best.keras")) as tmp:
                self.model.save(tmp)


def read_best(run_dir, monitor, mode):
    import csv

    path = os.path.join(run_dir, "history.csv")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        values = [float(r[monitor]) for r in csv.DictReader(f) if r.get(monitor) not in (None, "")]
    if not values:
        return None
    return min(values) if mode == "min" else max(values)


def prepare_run_dir(run_dir, cfg, resume=False):
    """Creates the run folder and writes `config.json`.

    A folder that already holds a config is only reused with `resume=True`,
    and then its saved config wins (a resumed run must be the same run).
    """
    path = config_lib.config_path(run_dir)
    if os.path.exists(path):
        if not resume:
            raise UserError(f"{run_dir}: run folder already holds a run; pass --resume to continue it "
                            "or choose another --run-dir")
        return config_lib.load_config(type(cfg), path)
    if resume:
        raise UserError(f"{run_dir}: nothing to resume (no config.json)")
    os.makedirs(run_dir, exist_ok=True)
    config_lib.save_config(cfg, path)
    return cfg


@contextlib.contextmanager
def new_run(run_dir, cfg, resume=False):
    """`prepare_run_dir` for the set-up phase of a run; yields the config to use.

    If set-up fails (bad data, bad palette...) in a folder this call created,
    the folder is removed again, so fixing the flag and re-running does not
    trip over a half-made run.
    """
    existed = os.path.exists(run_dir)
    try:
        yield prepare_run_dir(run_dir, cfg, resume)
    except BaseException:
        if not existed:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise


def standard_callbacks(run_dir, monitor="val_loss", mode="min", backup_every_steps=0,
                       chief=True):
    """The callbacks every run gets; non-chief workers write only to a scratch folder."""
    callbacks = [keras.callbacks.TerminateOnNaN()]
    # BackupAndRestore must run on every worker (they restore together); the
    # others write scratch copies that `fit` deletes at the end.
    backup_dir = os.path.join(run_dir, "backup") if chief else tempfile.mkdtemp(prefix="keras_cnn_backup_")
    callbacks.append(keras.callbacks.BackupAndRestore(
        backup_dir, save_freq=backup_every_steps if backup_every_steps > 0 else "epoch",
        delete_checkpoint=True))
    if chief:
        callbacks += [
            AtomicCheckpoint(run_dir, monitor=monitor, mode=mode),
            keras.callbacks.CSVLogger(os.path.join(run_dir, "history.csv"), append=True),
            keras.callbacks.TensorBoard(os.path.join(run_dir, "logs"), write_graph=False),
        ]
    return callbacks


def fit(model, train_ds, val_ds, epochs, run_dir, monitor="val_loss", mode="min",
        backup_every_steps=0, chief=True, extra_callbacks=(), verbose="auto", steps_per_epoch=None):
    """`model.fit` with the standard callbacks; returns the History."""
    callbacks = standard_callbacks(run_dir, monitor, mode, backup_every_steps, chief)
    callbacks += [c for c in extra_callbacks if chief]
    try:
        return model.fit(train_ds, validation_data=val_ds, epochs=epochs, callbacks=callbacks,
                         verbose=verbose, steps_per_epoch=steps_per_epoch, shuffle=False)
    finally:
        if not chief:
            for c in callbacks:
                if isinstance(c, keras.callbacks.BackupAndRestore):
                    shutil.rmtree(c.backup_dir, ignore_errors=True)


def load_model(path):
    """Loads a `.keras` file of this package with a one-line error when it cannot."""
    import keras_cnn.colorization.models  # noqa: F401  (registers the classes)

    try:
        import keras_cnn.segmentation  # noqa: F401
    except ImportError:
        pass
    if not os.path.exists(path):
        raise UserError(f"{path}: model file does not exist")
    try:
        return keras.saving.load_model(path)
    except Exception as e:  # Keras raises many types for a bad archive
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{path}: cannot load model ({first[:200]})") from None


def config_dict(cfg):
    return dataclasses.asdict(cfg)
