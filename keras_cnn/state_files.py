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
import re

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


class _NotJSON(ValueError):
    """NaN, Infinity or -Infinity: Python's json reads and writes them, JSON has no such numbers."""


def _refuse_constant(name):
    raise _NotJSON(name)


def _non_finite(value, where=""):
    """The place (`"a"."b"[2]`) of the first NaN or infinity inside `value`, or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return where or "the value"
    if isinstance(value, dict):
        items = ((f"{where}.{json.dumps(str(k))}" if where else json.dumps(str(k)), v) for k, v in value.items())
    elif isinstance(value, (list, tuple)):
        items = ((f"{where}[{i}]", v) for i, v in enumerate(value))
    else:
        return None
    for place, item in items:
        found = _non_finite(item, place)
        if found:
            return found
    return None


def _nulled(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _nulled(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nulled(v) for v in value]
    return value


def json_text(value, path, what, indent=2, sort_keys=False, nulls=False):
    """`value` as JSON text for the file `path` (a `what`), or a one-line `UserError` if it holds NaN or infinity.

    Python's `json` writes NaN and Infinity as bare words, which are not JSON
    (browsers, TF Serving clients and `jq` refuse the file). The JSON files
    this package writes go through here (`allow_nan=False`), and every one it
    reads is refused if it holds them (`read_json`). With `nulls`, for
    measurements where a non-finite value means "no value", they are written
    as null instead.
    """
    if nulls:
        value = _nulled(value)
    place = _non_finite(value)
    if place:
        raise UserError(f"{path}: refusing to write {what}: {place} is not a finite number; "
                        "JSON has no NaN or infinity")
    return json.dumps(value, indent=indent, sort_keys=sort_keys, allow_nan=False) + "\n"


def read_json(path, what, remedy=""):
    """The parsed JSON of the file `path`; an empty, cut-short or non-JSON file is a one-line `UserError`."""
    text = read_text(path, what, remedy)
    if not text.strip():
        raise _failure(path, what, "is empty (cut short while it was written?)", remedy)
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except _NotJSON as e:
        raise _failure(path, what, f"is not valid JSON ({e} is not a JSON number)", remedy) from None
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


HISTORY_REMEDY = "move it away to resume without the log of the earlier epochs"
_METRIC_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _cell_is_number(text):
    """Keras' CSV logger writes numbers (nan and inf included) and "NA" where a value is missing."""
    if text == "NA":
        return True
    try:
        float(text)
    except (TypeError, ValueError):
        return False
    return True


def history_problem(header, rows):
    """None if `header` and `rows` are what Keras' CSV logger writes for a run, else what is wrong.

    The logger writes "epoch" and then the logged names sorted ("loss" always
    among them, "val_X" only beside "X"); one row per finished epoch, epochs
    one apart, every cell a number or "NA". Only the last row may be cut short
    (a kill while it was written).
    """
    shown = ", ".join(header)
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    if "epoch" not in header:
        return f"has no \"epoch\" column (its columns: {shown})"
    if header[0] != "epoch":
        return f"does not start with its \"epoch\" column (its columns: {shown})"
    names = header[1:]
    odd = [n for n in names if not _METRIC_NAME.match(n or "")]
    if odd:
        return f"has a column {json.dumps(odd[0])[:40]} that is no metric name (its columns: {shown})"
    trained = sorted(n for n in names if not n.startswith("val_"))
    # Keras sorts the names it logs; with no validation it adds val_NAME for each NAME after them.
    keras_orders = (sorted(names), trained + [f"val_{n}" for n in trained])
    if len(set(names)) != len(names) or names not in keras_orders or "loss" not in names:
        return f"is not a training log this package wrote (its columns: {shown})"
    lone = [n for n in names if n.startswith("val_") and n[4:] not in names]
    if lone:
        return f"has {lone[0]} without {lone[0][4:]} (its columns: {shown})"
    previous = None
    for number, row in enumerate(rows, 2):
        last = number == len(rows) + 1
        if None in row:
            return f"line {number} has more cells than the {len(header)} columns"
        cells = [row[n] for n in header]
        if None in cells and not last:
            return f"line {number} has fewer cells than the {len(header)} columns"
        epoch = cells[0]
        if epoch is None or (last and None in cells):
            continue  # cut short while it was written: not a finished epoch (read_history skips it)
        if not epoch.isdigit():
            return f"line {number}: epoch {json.dumps(epoch)[:40]} is not a whole number"
        if previous is not None and int(epoch) != previous + 1:
            return f"line {number}: epoch {epoch} follows epoch {previous}"
        previous = int(epoch)
        bad = [(n, c) for n, c in zip(header[1:], cells[1:]) if not _cell_is_number(c)]
        if bad:
            return f"line {number}: {bad[0][0]} {json.dumps(bad[0][1])[:40]} is not a number"
    return None


def history(run_dir):
    """`(header, rows)` of the run's `history.csv` ((`[]`, `[]`) if it has none), checked by `history_problem`."""
    path = os.path.join(run_dir, HISTORY_CSV)
    if not os.path.lexists(path):
        return [], []
    header, rows = read_csv(path, "training log", HISTORY_REMEDY)
    if header:
        problem = history_problem(header, rows)
        if problem:
            raise _failure(path, "training log", problem, HISTORY_REMEDY)
    return header, rows


def check_history_columns(run_dir, header):
    """A one-line `UserError` unless the run's `history.csv` has exactly the columns `header` this run logs.

    Keras' CSV logger appends its rows under whatever header the file has,
    so a log of other columns would get rows that do not fit it.
    """
    path = os.path.join(run_dir, HISTORY_CSV)
    existing, _ = history(run_dir)
    if existing and existing != list(header):
        raise _failure(path, "training log", f"has the columns {', '.join(existing)[:80]}, but this run logs "
                       f"{', '.join(header)[:80]}", HISTORY_REMEDY)


def _configured_epochs(run_dir):
    """The run's "epochs" from its config.json, or None where it has none that makes sense (checked elsewhere)."""
    path = os.path.join(run_dir, CONFIG)
    if not os.path.isfile(path):
        return None
    try:
        epochs = read_object(path, "config").get("epochs")
    except UserError:
        return None
    return epochs if count(epochs) is None else None


def check_resume(run_dir):
    """Reads every state file `--resume` uses in `run_dir`: one line naming the first bad one.

    Called before anything is loaded or written; the callbacks read the same
    files through the same functions when training starts.
    """
    backup_dir = os.path.join(run_dir, BACKUP_DIR)
    state = backup_state(backup_dir)
    epochs = _configured_epochs(run_dir)
    # A backup beyond the run's last epoch would make --resume train nothing and call the run finished.
    if state and epochs is not None and (state["epoch"], state["step"]) > (epochs, 0):
        done = f"epoch {state['epoch']}" + (f", step {state['step']}" if state["step"] else "")
        raise _failure(os.path.join(backup_dir, BACKUP_STATE), "backup state",
                       f"says training got to {done}, but the run has {epochs} epoch(s) "
                       f"(\"epochs\" in {os.path.join(run_dir, CONFIG)})",
                       f"delete {backup_dir} to restart the run from its beginning")
    time_budget_seconds(os.path.join(run_dir, TIME_BUDGET))
    history(run_dir)
