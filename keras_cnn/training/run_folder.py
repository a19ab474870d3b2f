"""The run folder: creating it, resuming it, and its `history.csv`.

A *run folder* holds everything one training run writes (on the chief only
when several workers train together):

    config.json      the resolved config plus the task's name (resume re-reads it)
    best.keras       the best model so far by the monitored metric (atomic)
    last.keras       the model after the last finished epoch (atomic)
    history.csv      one row per finished epoch (rows of a replayed epoch are
                     dropped on resume, so every epoch appears once)
    logs/            TensorBoard event files
    backup/          `RunBackup` state (weights + optimizer, epoch, step),
                     deleted when training finishes
    plots/           per-epoch strips and the final curves
    metrics.json     the final metrics of the checkpoints
"""

import contextlib
import csv
import io
import os
import shutil

from keras_cnn import config as config_lib
from keras_cnn import distribute, state_files
from keras_cnn.errors import UserError
from keras_cnn.fileio import atomic_write_text, named_os_error, temporary_name
from keras_cnn.state_files import BACKUP_DIR, BACKUP_STATE, CONFIG, HISTORY_CSV  # noqa: F401 (the folder's files)


def read_history(run_dir, before_epoch=None):
    """The complete rows of `history.csv` (dicts of strings), optionally only epochs < `before_epoch`.

    Read through `keras_cnn.state_files`: a file that is not a CSV log is a
    one-line error naming it.
    """
    _, all_rows = state_files.history(run_dir)
    rows = []
    for row in all_rows:
        # A row cut short by a kill mid-write has missing fields: not a finished epoch.
        if None in row.values() or None in row or not (row.get("epoch") or "").isdigit():
            continue
        if before_epoch is None or int(row["epoch"]) < before_epoch:
            rows.append(row)
    return rows


def _number(text):
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if value == value else None  # NaN is no value to compare


def last_training_metrics(run_dir):
    """The training metrics (no `val_` columns) of the last finished epoch in `history.csv`."""
    rows = read_history(run_dir)
    if not rows:
        return {}
    out = {}
    for key, value in rows[-1].items():
        if key == "epoch" or key.startswith("val_") or _number(value) is None:
            continue
        out[key] = _number(value)
    return out


def drop_history_from(run_dir, epoch):
    """Rewrites `history.csv` keeping only complete rows of epochs before `epoch`; returns how many went."""
    path = os.path.join(run_dir, HISTORY_CSV)
    header, all_rows = state_files.history(run_dir)
    if not header:
        return 0
    total = len(all_rows)
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
    # Keras writes "NA" where a value is missing; a cell that is no number is no best value.
    values = [v for v in (_number(r.get(monitor)) for r in read_history(run_dir, before_epoch)) if v is not None]
    if not values:
        return None
    return min(values) if mode == "min" else max(values)


def run_config(run_dir, cfg, resume=False, chief=None):
    """The config a run in `run_dir` trains with, checking the folder; writes nothing.

    A folder that already holds a config is only reused with `resume=True`,
    and then its saved config wins (a resumed run must be the same run). A
    resume needs something to resume: a backup, or a run that stopped before
    its first backup; a finished run is an error, not a silent restart.
    `chief` False (default: from `TF_CONFIG`): a non-chief worker uses the
    saved config when it can see the chief's folder (shared file system),
    else `cfg`, so every machine should be given the same flags.
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
        state_files.check_resume(run_dir)
        if not os.path.exists(os.path.join(run_dir, BACKUP_DIR, BACKUP_STATE)):
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
        raise UserError(config_lib.nothing_to_resume(run_dir))
    return cfg


def prepare_run_dir(run_dir, cfg, resume=False, chief=None, task=None):
    """Creates the run folder with its `config.json` (whole or not at all); returns the config to train with.

    The checks and the config are those of `run_config`; a non-chief worker
    writes nothing. `task` is the task's name, recorded in `config.json`.
    """
    with new_run(run_dir, cfg, resume, chief, task) as (cfg, _):
        return cfg


@contextlib.contextmanager
def new_run(run_dir, cfg, resume=False, chief=None, task=None):
    """The set-up phase of a run; yields `(config, folder)`: the config to train with, and where set-up writes.

    A new run is built in a hidden folder beside `run_dir`
    (`.tmp-<pid>-<random>-<name>`): `config.json` first, then what set-up
    writes into `folder` (a palette). When the body returns, the folder is
    renamed into place, so `run_dir` appears whole or not at all: a failure
    during set-up (bad data, a bad palette, a full disk) leaves nothing that
    would block the fixed command. A `run_dir` that exists without a run (an
    empty folder made beforehand) gets the files moved in, `config.json`
    last: a folder is a run once it holds `config.json`. A resumed run sets
    up in `run_dir` itself; a non-chief worker writes nothing.
    """
    if chief is None:
        chief = distribute.is_chief()
    cfg = run_config(run_dir, cfg, resume, chief)
    if not chief or os.path.exists(config_lib.config_path(run_dir)):
        yield cfg, run_dir
        return
    parent, name = os.path.split(os.path.abspath(run_dir))
    os.makedirs(parent, exist_ok=True)
    build = os.path.join(parent, temporary_name(name))  # within NAME_MAX for a legal long name
    try:
        os.makedirs(build)
        config_lib.save_config(cfg, config_lib.config_path(build), task=task)
        yield cfg, build
        _publish(build, run_dir)
    except OSError as e:
        # Name the run folder, not the hidden one that is about to go.
        named = named_os_error(e, run_dir, build)
        if named is e:
            raise
        raise named from e
    finally:
        shutil.rmtree(build, ignore_errors=True)


def _publish(build, run_dir):
    """Puts the set-up files of `build` in place as `run_dir`: one rename, or moved into an existing folder."""
    if not os.path.isdir(run_dir):
        os.rename(build, run_dir)
        return
    # A folder that exists without a run (made beforehand): config.json goes last, so it only
    # becomes a run once everything else is there.
    names = sorted(os.listdir(build), key=lambda n: n == CONFIG)
    for name in names:
        target = os.path.join(run_dir, name)
        if os.path.lexists(target):
            raise UserError(f"{target}: already exists in the run folder; choose an empty or new --run-dir")
    for name in names:
        os.replace(os.path.join(build, name), os.path.join(run_dir, name))
