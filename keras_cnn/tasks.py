"""Tasks: one object per application behind one small interface, a registry, and run folders.

A `Task` knows its config class and presets, its data, how to build and
compile its model, its datasets and extra callbacks, and how to evaluate,
predict and export. Everything else is shared and lives here or in
`keras_cnn.training`:

- `train(cfg, run_dir)`: the one training loop (run folder, strategy, `fit`,
  final metrics) for any task.
- `open_run(run_dir)`: the one way to open a run folder; `config.json`
  records the task's name, so a `Run` knows its application.

Adding an application: a package like `keras_cnn/segmentation/` with a
`task.py` defining a `Task` subclass, and one line in `_TASK_MODULES`.

Example:
    run = open_run("runs/unet")
    colours = run.predict(read_image("photo.jpg"))     # uint8 (H, W, 3)
    metrics = run.evaluate()
"""

import dataclasses
import functools
import importlib
import os
import shutil
import time

from keras_cnn import config as config_lib
from keras_cnn import state_files, training
from keras_cnn.errors import UserError
from keras_cnn.fileio import atomic_write_text, named_os_error

# Task name -> module defining it (imported on first use, so importing one
# application never imports the other).
_TASK_MODULES = {
    "colorization": "keras_cnn.colorization.task",
    "segmentation": "keras_cnn.segmentation.task",
}
TASKS = tuple(_TASK_MODULES)
CHECKPOINTS = ("best", "last")

# Config fields holding paths: stored absolute in config.json, so a run folder
# can be evaluated, resumed and exported from any working directory.
PATH_FIELDS = ("data_dir", "archive", "palette", "cache_dir", "base_model", "backbone_weights")


class Task:
    """The interface of an application. Subclasses set the class attributes and override the methods.

    Attributes:
        name: registry name, recorded in each run's `config.json`.
        config_class: the frozen config dataclass.
        presets: name -> config.
        monitor, monitor_mode: the validation metric `best.keras` is chosen by.
    """

    name = None
    config_class = None
    presets = {}
    monitor = "val_loss"
    monitor_mode = "min"

    # === Training ===
    def load_data(self, cfg, splits=("train", "validation")):
        """The data `cfg` names (any object the other methods understand)."""
        raise NotImplementedError

    def prepare(self, cfg, data, run_dir, runtime):
        """Run assets computed before the model (e.g. a palette), written on the chief; a dict."""
        return {}

    def build_model(self, cfg, data, assets, runtime):
        """The compiled Keras model (called inside the strategy's scope)."""
        raise NotImplementedError

    def datasets(self, cfg, data, assets, model, runtime):
        """`(train_ds, val_ds)` batched at the global batch."""
        raise NotImplementedError

    def callbacks(self, cfg, data, assets, model, run_dir, runtime):
        """Extra callbacks on the chief (per-epoch strips, task metrics)."""
        return []

    def describe(self, cfg, data, model, runtime):
        """One log line about the data and the model."""
        return f"model: {model.count_params():,} parameters"

    def final_metrics(self, run, data, runtime):
        """The metrics written to `metrics.json` when training ends."""
        raise NotImplementedError

    # === Using a run ===
    def load_assets(self, run):
        """What a run needs beside its model (e.g. its palette); a dict."""
        return {}

    def adapt_model(self, model, run):
        """A loaded model in the current layout (older `.keras` layouts are converted here)."""
        return model

    def evaluate(self, run, checkpoint="best", split="validation", **options):
        raise NotImplementedError

    def predict(self, run, images, **options):
        """uint8 RGB (H, W, 3) or (N, H, W, 3) -> the task's result for each image."""
        raise NotImplementedError


def get_task(name):
    """The `Task` registered as `name`."""
    if name not in _TASK_MODULES:
        raise UserError(f"unknown task {name!r}; choose one of: {', '.join(TASKS)}")
    return _load_task(name)


@functools.cache
def _load_task(name):
    return importlib.import_module(_TASK_MODULES[name]).TASK


def task_for_config(cfg):
    for name in TASKS:
        task = get_task(name)
        if isinstance(cfg, task.config_class):
            return task
    raise UserError(f"no task takes a {type(cfg).__name__}")


def with_absolute_paths(cfg):
    """`cfg` with its existing path fields made absolute."""
    changes = {}
    for name in PATH_FIELDS:
        value = getattr(cfg, name, None)
        if isinstance(value, str) and value and os.path.exists(value):
            changes[name] = os.path.abspath(value)
    return dataclasses.replace(cfg, **changes) if changes else cfg


# === Run folders ===

@dataclasses.dataclass
class Run:
    """A training run folder: its task, its config, its checkpoints and assets."""

    run_dir: str
    task: Task
    config: object

    def path(self, name):
        return os.path.join(self.run_dir, name)

    def checkpoint_path(self, checkpoint="best"):
        if checkpoint not in CHECKPOINTS:
            raise UserError(f"unknown checkpoint {checkpoint!r}; choose one of: {', '.join(CHECKPOINTS)}")
        return self.path(f"{checkpoint}.keras")

    @functools.cached_property
    def assets(self):
        return self.task.load_assets(self)

    def load_model(self, checkpoint="best"):
        """The task model of `checkpoint` ("best" or "last"); it takes RGB pixels 0-255."""
        return self.task.adapt_model(training.load_model(self.checkpoint_path(checkpoint)), self)

    @functools.cached_property
    def model(self):
        return self.load_model("best")

    def predict(self, images, **options):
        return self.task.predict(self, images, **options)

    def evaluate(self, checkpoint="best", split="validation", **options):
        return self.task.evaluate(self, checkpoint, split, **options)


def open_run(run_dir, overrides=None, task=None):
    """The `Run` of a run folder of any task; `overrides` (e.g. a moved `data_dir`) change its config.

    With `task` ("colorization" or "segmentation"), a run of the other application is refused in one line.
    """
    run_dir = os.fspath(run_dir)
    if not os.path.isdir(run_dir):
        raise UserError(f"{run_dir}: run folder does not exist")
    name = config_lib.read_task_name(run_dir)
    if task and name != task:
        raise UserError(f"{run_dir}: a {name} run, not a {task} run")
    task = get_task(name)
    cfg = config_lib.load_config(task.config_class, config_lib.config_path(run_dir))
    if overrides:
        cfg = config_lib.resolve(task.config_class, {"run": cfg}, "run", overrides)
    return Run(run_dir, task, cfg)


# === Training ===

def train(cfg, run_dir, resume=False, verbose="auto", log=print):
    """Trains `cfg` (any task's config) into `run_dir`; returns the final metrics.

    The run folder gets the files listed in `keras_cnn.training.run_folder`.
    A new one is built beside `run_dir` during set-up and renamed into place
    when set-up ends (`training.new_run`), so set-up failures (bad data, a bad
    palette, a full disk) leave nothing behind; a failure during `fit` before
    any epoch finished or was backed up removes what the run wrote too. Either
    way, fixing the cause and re-running the same command does not trip over a
    half-made run.

    The strategy is made before anything is written: a multi-worker cluster
    waits for its peers there, and a peer that never comes is a `UserError`
    after `KERAS_CNN_CLUSTER_TIMEOUT` seconds (`keras_cnn.distribute`).
    During `fit`, SIGTERM / SIGINT stop training after the running step,
    backed up (`TrainingInterrupted`; `--resume` continues), and a
    non-finite loss is a `UserError` (a run folder this call created is
    removed if no epoch had finished, so the fixed command can run again).
    Without a validation split (val_fraction 0) `best.keras` is chosen by the
    training metric.
    """
    task = task_for_config(cfg)
    cfg = with_absolute_paths(cfg)
    # Checks the folder (writing nothing) and gives the config a resume continues with.
    runtime = training.setup_runtime(training.run_config(run_dir, cfg, resume), log)
    # What the folder held before (None: no folder), so a run that dies of a NaN loss before its first
    # epoch can take back exactly what it wrote.
    before = (set(os.listdir(run_dir)) if os.path.isdir(run_dir) else None) if runtime.chief and not resume else ()
    # A new run folder appears whole (config and assets) when set-up ends, or not at all.
    with training.new_run(run_dir, cfg, resume, task=task.name) as (cfg, setup_dir):
        data = task.load_data(cfg)
        assets = task.prepare(cfg, data, setup_dir, runtime)
        with runtime.scope():
            model = task.build_model(cfg, data, assets, runtime)
        train_ds, val_ds = task.datasets(cfg, data, assets, model, runtime)
        extra = task.callbacks(cfg, data, assets, model, run_dir, runtime) if runtime.chief else []
        log(task.describe(cfg, data, model, runtime))
    start = time.time()
    monitor = task.monitor if val_ds is not None else task.monitor.removeprefix("val_")
    try:
        training.fit(model, train_ds, val_ds, cfg.epochs, run_dir, monitor=monitor, mode=task.monitor_mode,
                     backup_every_steps=cfg.backup_every_steps, chief=runtime.chief, extra_callbacks=extra,
                     verbose=verbose, sync_batchnorm=cfg.sync_batchnorm, log=log)
    except training.NonFiniteLoss as e:
        raise UserError(_non_finite_message(e, run_dir, before)) from None
    except Exception as e:
        # A full disk, a bug: a new run that has nothing to resume from is taken back, so that the
        # same command (not --resume) runs again once the cause is fixed.
        if _nothing_to_resume(run_dir):
            gone = _take_back(run_dir, before)
            if gone:
                log(f"{run_dir}: training failed before its first backup, {gone}")
        if isinstance(e, OSError):
            # A write deep in Keras or the CSV log names no file: name the run folder.
            named = named_os_error(e, run_dir, unnamed=True)
            if named is not e:
                raise named from e
        raise
    if not runtime.chief:
        return {}
    seconds = time.time() - start
    metrics = task.final_metrics(Run(run_dir, task, cfg), data, runtime)
    if val_ds is None:
        metrics["best_chosen_by"] = f"training {monitor} (no validation split)"
        metrics["last_epoch_training"] = training.last_training_metrics(run_dir)
    metrics["train_seconds_this_session"] = round(seconds, 1)
    path = os.path.join(run_dir, "metrics.json")
    atomic_write_text(path, state_files.json_text(metrics, path, "final metrics", nulls=True))
    return metrics


def _nothing_to_resume(run_dir):
    """True if `run_dir` holds no backup (False if that cannot be told).

    The backup is written last at the end of an epoch: an epoch whose
    checkpoint and CSV row were written but whose backup was not cannot be
    resumed (`run_config` refuses such a folder), so without a backup the
    folder holds nothing worth keeping.
    """
    try:
        return training.read_backup_state(os.path.join(run_dir, training.BACKUP_DIR)) is None
    except (UserError, OSError):
        return False


def _take_back(run_dir, before):
    """Removes what this call wrote in `run_dir`; returns the phrase saying so, or None if it removed nothing.

    `before`: the folder's entries before this run (None: it did not exist,
    so all of it goes; an empty tuple: a resumed run or a non-chief worker,
    which remove nothing).
    """
    if before is None:
        # Nothing worth keeping: the fixed command must not find "a run" here.
        shutil.rmtree(run_dir, ignore_errors=True)
        return "so the run folder was removed"
    if isinstance(before, set):
        for name in set(os.listdir(run_dir)) - before:
            path = os.path.join(run_dir, name)
            shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else os.remove(path)
        return f"so what the run wrote in {run_dir} was removed"
    return None


def _non_finite_message(e, run_dir, before):
    """The one line for a NaN / infinite loss; removes what a new run wrote if no epoch finished."""
    finished = len(training.read_history(run_dir))
    if finished:
        kept = (f"{run_dir} keeps the checkpoints of its {finished} finished epoch(s); start a new run "
                "with another --run-dir")
    else:
        gone = _take_back(run_dir, before)
        kept = (f"no epoch had finished, {gone}" if gone else
                f"{run_dir} was resumed with its saved settings: start a new run with another --run-dir")
    return (f"{run_dir}: training stopped at epoch {e.epoch}, step {e.step}: the loss became {e.value} "
            f"(not finite); lower --learning-rate ({kept})")
