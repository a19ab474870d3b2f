"""The state files of a run folder, read back through one checker.

Training writes small files that later commands read again:

    config.json          every command that opens the run (`keras_cnn.config.load_config`)
    backup/state.json    `--resume`: the epoch, step and weights file of the last backup
    time_budget.json     `--resume` of a run with a time budget: the training time spent
    history.csv          `--resume` (finished epochs, the best value so far), the curves
    int8_finetune.json   `export` of a `finetune_int8` run: what the model was tuned from
    metrics.json         the benchmarks, reusing a finished run

They are written atomically, but a run folder can still hold anything: a file
cut short by a full disk or a copy, one edited by hand, binary bytes. Every
reader goes through this module, which reads a bounded number of bytes,
parses them and checks each field's type and range, so a bad file is one
`UserError` line naming the file, what is wrong and what to do, never a
traceback or a line that names no file.

This module is imported before TensorFlow (`--resume` checks the folder before
any work) and must stay light.
"""

import csv
import io
import json
import math
import os

from keras_cnn.errors import UserError

# A state file is a few hundred bytes; history.csv of 100,000 epochs is about 20 MB.
MAX_BYTES = 64 * 2**20

CONFIG = "config.json"
BACKUP_DIR = "backup"
BACKUP_STATE = "state.json"
TIME_BUDGET = "time_budget.json"
HISTORY_CSV = "history.csv"


def _failure(path, what, problem, remedy=""):
    return UserError(f"{path}: {what} {problem}" + (f"; {remedy}" if remedy else ""))


def _shown(value, limit=40):
    text = json.dumps(value) if not isinstance(value, float) or math.isfinite(value) else str(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _kind(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    return {dict: "an object", list: "a list", str: "a string"}.get(type(value), "a number")


def read_text(path, what, remedy=""):
    """The UTF-8 text of the file `path` (a `what`, e.g. "backup state"), or a one-line `UserError`."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as e:
        raise UserError(f"{path}: cannot read {what} ({e.strerror or type(e).__name__})"
                        + (f"; {remedy}" if remedy else "")) from None
    if len(data) > MAX_BYTES:
        raise _failure(path, what, f"is over {MAX_BYTES // 2**20} MB, not a file this package wrote", remedy)
    if b"\0" in data:
        raise _failure(path, what, "holds binary bytes (NUL), not text", remedy)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _failure(path, what, f"is not UTF-8 text (byte {e.start})", remedy) from None


def read_json(path, what, remedy=""):
    """The parsed JSON of the file `path`; an empty, cut-short or non-JSON file is a one-line `UserError`."""
    text = read_text(path, what, remedy)
    if not text.strip():
        raise _failure(path, what, "is empty (cut short while it was written?)", remedy)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        where = f"line {e.lineno} column {e.colno}"
        detail = f"{e.msg} {where}" if e.msg.endswith(" at") else f"{e.msg} at {where}"
        cut = " (cut short?)" if e.pos >= len(text.rstrip()) or e.msg.startswith("Unterminated") else ""
        raise _failure(path, what, f"is not valid JSON ({detail}){cut}", remedy) from None
    except RecursionError:  # "[[[[...": deeper than the parser goes
        raise _failure(path, what, "is not valid JSON (nested too deeply)", remedy) from None


# === Field checks: None where the value is fine, else the phrase saying what is wrong ===

def count(value):
    """A whole number >= 0 (not true/false, not 2.0)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return f"must be a whole number >= 0, got {_shown(value)}"
    return None


def seconds(value):
    """A finite number >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        return f"must be a number of seconds >= 0, got {_shown(value)}"
    return None


def file_name(value):
    """The name of a file in the same folder: no folder part, not "." or ".."."""
    if not isinstance(value, str) or not value or value in (".", "..") or "/" in value or "\\" in value \
            or "\0" in value:
        return f"must be the name of a file in the same folder, got {_shown(value)}"
    return None


def read_object(path, what, fields=None, remedy=""):
    """The JSON object in `path`, with `fields` (name -> check) present and valid; else a one-line `UserError`.

    Keys not in `fields` are kept and not checked.
    """
    data = read_json(path, what, remedy)
    if not isinstance(data, dict):
        raise _failure(path, what, f"must be a JSON object, got {_kind(data)}", remedy)
    for name, check in (fields or {}).items():
        if name not in data:
            raise _failure(path, what, f"has no {json.dumps(name)}", remedy)
        problem = check(data[name])
        if problem:
            raise _failure(path, what, f"{json.dumps(name)} {problem}", remedy)
    return data


def read_csv(path, what, remedy=""):
    """`(header, rows)` of a CSV file; rows are dicts as `csv.DictReader` gives (short rows hold None)."""
    text_ = read_text(path, what, remedy)
    try:
        reader = csv.DictReader(io.StringIO(text_, newline=""))
        rows = list(reader)
        return list(reader.fieldnames or []), rows
    except csv.Error as e:
        raise _failure(path, what, f"is not a CSV file ({e})", remedy) from None


# === The run folder's files ===

def backup_state(backup_dir):
    """`{"epoch", "step", "weights"}` of the backup in `backup_dir`, or None if there is none.

    The weights file it names must exist beside it.
    """
    path = os.path.join(backup_dir, BACKUP_STATE)
    if not os.path.lexists(path):
        return None
    remedy = f"delete {backup_dir} to restart the run from its beginning"
    state = read_object(path, "backup state", {"epoch": count, "step": count, "weights": file_name}, remedy)
    if not os.path.isfile(os.path.join(backup_dir, state["weights"])):
        raise _failure(path, "backup state", f"names {state['weights']}, which is missing", remedy)
    return {"epoch": state["epoch"], "step": state["step"], "weights": state["weights"]}


def time_budget_seconds(path):
    """The training time a run with a time budget has spent (`time_budget.json`); 0 if it has none yet."""
    if not os.path.lexists(path):
        return 0.0
    data = read_object(path, "time budget record", {"seconds": seconds},
                       "delete it to resume with the time budget counted from 0")
    return float(data["seconds"])


def history(run_dir):
    """`(header, rows)` of the run's `history.csv` ((`[]`, `[]`) if it has none)."""
    path = os.path.join(run_dir, HISTORY_CSV)
    if not os.path.lexists(path):
        return [], []
    header, rows = read_csv(path, "training log",
                            "move it away to resume without the log of the earlier epochs")
    if header and "epoch" not in header:
        raise _failure(path, "training log", f"has no \"epoch\" column (its columns: {', '.join(header)[:80]})",
                       "move it away to resume without the log of the earlier epochs")
    return header, rows


def check_resume(run_dir):
    """Reads every state file `--resume` uses in `run_dir`: one line naming the first bad one.

    Called before anything is loaded or written; the callbacks read the same
    files through the same functions when training starts.
    """
    backup_state(os.path.join(run_dir, BACKUP_DIR))
    time_budget_seconds(os.path.join(run_dir, TIME_BUDGET))
    history(run_dir)
