"""The state files of a run folder are checked, not trusted: every bad one is one line naming it.

`keras_cnn.state_files` is the one reader of `config.json`, `backup/state.json`,
`time_budget.json`, `history.csv` and `int8_finetune.json`. The table below
gives each a wrong type, a missing key, a list, binary bytes, a file cut short
and a few worse; each must be one `UserError` line that starts with the file's
path and, for the files `--resume` reads, says what to do.
"""

import json
import os

import pytest

from keras_cnn import state_files
from keras_cnn.colorization.config import PRESETS as COLOUR_PRESETS
from keras_cnn.colorization.config import ColorizationConfig
from keras_cnn.config import load_config, read_task_name, resolve, resume_config, save_config
from keras_cnn.errors import UserError

BUDGET, BACKUP, HISTORY = "time_budget.json", "backup/state.json", "history.csv"
NOT_SECONDS = 'time budget record "seconds" must be a number of seconds >= 0, got '  # + the value
GOOD_BACKUP = b'{"epoch": 1, "step": 0, "weights": "epoch00001-step0000000.weights.h5"}'

# (id, file in the run folder, its bytes (None: a folder), what the one line must say after "PATH: ")
BAD_STATE_FILES = [
    ("budget:wrong-type", BUDGET, b'{"seconds": "ten"}', NOT_SECONDS + '"ten"'),
    ("budget:missing-key", BUDGET, b'{"minutes": 3}', 'time budget record has no "seconds"'),
    ("budget:list", BUDGET, b"[12.5]", "time budget record must be a JSON object, got a list"),
    ("budget:binary", BUDGET, b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "time budget record holds binary bytes"),
    ("budget:not-utf8", BUDGET, b'{"seconds": "\xff\xfe"}', "time budget record is not UTF-8 text (byte 13)"),
    ("budget:truncated", BUDGET, b'{"seconds": 12', "time budget record is not valid JSON (Expecting ',' delimiter "
                                                   "at line 1 column 15) (cut short?)"),
    ("budget:empty", BUDGET, b"", "time budget record is empty (cut short while it was written?)"),
    ("budget:negative", BUDGET, b'{"seconds": -5}', NOT_SECONDS + "-5"),
    ("budget:nan", BUDGET, b'{"seconds": NaN}', "time budget record is not valid JSON (NaN is not a JSON number)"),
    ("budget:bool", BUDGET, b'{"seconds": true}', NOT_SECONDS + "true"),
    ("budget:deep", BUDGET, b"[" * 100_000, "time budget record is not valid JSON (nested too deeply)"),
    ("budget:folder", BUDGET, None, "cannot read time budget record (Is a directory)"),
    ("backup:truncated", BACKUP, b'{"epoch": 1, "st', "backup state is not valid JSON"),
    ("backup:null", BACKUP, b"null", "backup state must be a JSON object, got null"),
    ("backup:epoch-string", BACKUP, GOOD_BACKUP.replace(b"1,", b'"1",'),
     'backup state "epoch" must be a whole number >= 0, got "1"'),
    ("backup:step-float", BACKUP, GOOD_BACKUP.replace(b'"step": 0', b'"step": 2.5'),
     'backup state "step" must be a whole number >= 0, got 2.5'),
    ("backup:no-weights", BACKUP, b'{"epoch": 1, "step": 0}', 'backup state has no "weights"'),
    ("backup:weights-path", BACKUP, b'{"epoch": 1, "step": 0, "weights": "../config.json"}',
     'backup state "weights" must be the name of a file in the same folder, got "../config.json"'),
    ("backup:weights-missing", BACKUP, b'{"epoch": 1, "step": 0, "weights": "gone.weights.h5"}',
     "backup state names gone.weights.h5, which is missing"),
    ("history:binary", HISTORY, b"epoch,loss\n0,\x00\x01\x02", "training log holds binary bytes (NUL), not text"),
    ("history:not-utf8", HISTORY, b"epoch,loss\n0,\xff\n", "training log is not UTF-8 text (byte 13)"),
    ("history:no-epoch", HISTORY, b"loss,val_loss\n1.0,2.0\n", 'training log has no "epoch" column'),
    ("history:huge-field", HISTORY, b'epoch,loss\n0,"' + b"9" * 200_000 + b'"\n', "training log is not a CSV file"),
]

REMEDY = {BUDGET: "; delete it to resume with the time budget counted from 0",
          BACKUP: "; delete {run}/backup to restart the run from its beginning",
          HISTORY: "; move it away to resume without the log of the earlier epochs"}


def write_state(run_dir, name, content):
    path = os.path.join(run_dir, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if content is None:
        os.makedirs(path)
    else:
        with open(path, "wb") as f:
            f.write(content)
    return path


def colour_run(tmp_path):
    run = str(tmp_path / "run")
    os.makedirs(os.path.join(run, "backup"))
    cfg = resolve(ColorizationConfig, COLOUR_PRESETS, "cifar10_unet", {"source": "folder", "data_dir": str(tmp_path)})
    save_config(cfg, os.path.join(run, "config.json"), task="colorization")
    # A good backup and log, so that only the file under test is bad.
    write_state(run, "backup/epoch00001-step0000000.weights.h5", b"weights")
    write_state(run, BACKUP, GOOD_BACKUP)
    write_state(run, HISTORY, b"epoch,loss\n0,1.0\n")
    write_state(run, BUDGET, b'{"seconds": 60.5}\n')
    return run, cfg


def test_good_state_files_are_read(tmp_path):
    run, cfg = colour_run(tmp_path)
    state_files.check_resume(run)
    assert state_files.backup_state(os.path.join(run, "backup"))["epoch"] == 1
    assert state_files.time_budget_seconds(os.path.join(run, BUDGET)) == 60.5
    assert state_files.time_budget_seconds(os.path.join(run, "none.json")) == 0.0
    assert state_files.history(run) == (["epoch", "loss"], [{"epoch": "0", "loss": "1.0"}])
    assert resume_config(ColorizationConfig, COLOUR_PRESETS, None, {}, run) == cfg


@pytest.mark.parametrize("name,content,expected", [c[1:] for c in BAD_STATE_FILES],
                         ids=[c[0] for c in BAD_STATE_FILES])
def test_a_bad_state_file_is_one_line_naming_it(tmp_path, name, content, expected):
    run, _ = colour_run(tmp_path)
    if os.path.exists(os.path.join(run, name)):
        os.remove(os.path.join(run, name))
    path = write_state(run, name, content)
    # Checked where --resume starts (before TensorFlow is imported)...
    with pytest.raises(UserError) as caught:
        resume_config(ColorizationConfig, COLOUR_PRESETS, None, {}, run)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: {expected}"), message
    assert message.endswith(REMEDY[name].format(run=run)), message
    # ... and by the reader each file's user calls.
    reader = {BUDGET: lambda: state_files.time_budget_seconds(path),
              BACKUP: lambda: state_files.backup_state(os.path.dirname(path)),
              HISTORY: lambda: state_files.history(run)}[name]
    with pytest.raises(UserError, match="^" + path):
        reader()


# (id, config.json bytes, the line after "PATH: ")
BAD_CONFIGS = [
    ("list", b"[1, 2]", "config must be a JSON object, got a list"),
    ("truncated", b'{"epochs": 3, "batch', "config is not valid JSON (Unterminated string starting at line 1 "
                                            "column 15) (cut short?)"),
    ("binary", b"PK\x03\x04\x00\x00", "config holds binary bytes (NUL), not text"),
    ("empty", b"  \n", "config is empty (cut short while it was written?)"),
    ("string", b'"colorization"', "config must be a JSON object, got a string"),
]


@pytest.mark.parametrize("content,expected", [c[1:] for c in BAD_CONFIGS], ids=[c[0] for c in BAD_CONFIGS])
def test_a_bad_config_is_one_line_naming_it(tmp_path, content, expected):
    path = write_state(str(tmp_path), "config.json", content)
    with pytest.raises(UserError) as caught:
        load_config(ColorizationConfig, path)
    assert str(caught.value) == f"{path}: {expected}"
    with pytest.raises(UserError, match="^" + path + ": the run's config "):
        read_task_name(str(tmp_path))


def test_the_task_a_config_names_must_be_a_name(tmp_path):
    write_state(str(tmp_path), "config.json", b'{"task": ["segmentation"]}')
    with pytest.raises(UserError, match=r'config.json: "task" must be the name of a task, got \["segmentation"\]'):
        read_task_name(str(tmp_path))


def test_a_bad_int8_record_is_one_line_naming_it(tmp_path):
    path = write_state(str(tmp_path), "int8_finetune.json", b'["not", "a", "record"]')
    with pytest.raises(UserError) as caught:
        state_files.read_object(path, "int8 fine-tuning record", remedy="delete it to export without that record")
    assert str(caught.value) == (f"{path}: int8 fine-tuning record must be a JSON object, got a list; "
                                 "delete it to export without that record")


def test_the_training_callbacks_read_through_the_checker(tmp_path):
    from keras_cnn.segmentation.task import TimeBudget
    from keras_cnn.training import read_backup_state

    run, _ = colour_run(tmp_path)
    path = write_state(run, BUDGET, b'{"seconds": 12')
    with pytest.raises(UserError, match="^" + path + ": time budget record is not valid JSON"):
        TimeBudget(5, run).on_train_begin()
    path = write_state(run, BACKUP, b"[]")
    with pytest.raises(UserError, match="^" + path + ": backup state must be a JSON object, got a list"):
        read_backup_state(os.path.dirname(path))
    write_state(run, BUDGET, json.dumps({"seconds": 90}).encode())
    budget = TimeBudget(5, run)
    budget.on_train_begin()
    assert budget.spent == 90.0
