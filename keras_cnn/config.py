"""Experiment configs: frozen dataclasses, named presets, command-line overrides.

Each application defines one frozen dataclass holding every knob with its
default (`ColorizationConfig`, `SegmentationConfig`) and a dict of named
presets. Scripts expose every field as a `--field-name` flag; only the flags a
user actually gives override the preset, and the resolved config is written to
`config.json` in the run folder so a run can be repeated or resumed exactly.

Every config is validated where it is made (`resolve`) and where it is read
back (`load_config`), before anything is written: a bad value is one line
naming the flag (`--epochs must be >= 1, got 0`), never a traceback after the
run folder exists. Each config class lists its rules in `problems()`.

This module is imported by `--help` and must not import TensorFlow.
"""

import argparse
import dataclasses
import json
import math
import os
import typing
from dataclasses import field

from keras_cnn import state_files, vocabulary
from keras_cnn.errors import UserError
from keras_cnn.fileio import atomic_write_text


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """The fields every training run has; application configs inherit them.

    `task_name` (a class attribute, not a field) is the name of the task whose
    config this is (`keras_cnn.tasks`), recorded in every `config.json`.
    """

    task_name = None

    epochs: int = 10
    batch_size: int = field(default=32, metadata={"help": "per replica; global = this x replicas"})
    learning_rate: float = field(default=1e-3, metadata={"help": "base rate, before lr_scaling"})
    lr_scaling: str = field(default="none", metadata={
        "choices": ("none", "linear", "sqrt"),
        "help": "learning rate x replicas (linear) or x sqrt(replicas) (sqrt)"})
    # NumPy and TensorFlow seeds are unsigned 32-bit.
    seed: int = field(default=0, metadata={"max": 2**32 - 1})
    strategy: str = field(default="auto", metadata={
        "choices": ("auto", "default", "one_device", "mirrored", "multi_worker", "tpu"),
        "help": "auto: multi_worker if TF_CONFIG names a cluster, mirrored if 2+ GPUs, else default"})
    mixed_precision: bool = field(default=False, metadata={
        "help": "mixed_float16 on GPU, mixed_bfloat16 on CPU/TPU; logits and loss stay float32"})
    jit_compile: bool = field(default=False, metadata={"help": "XLA-compile the train step"})
    sync_batchnorm: bool = field(default=True, metadata={
        "help": "BatchNorm statistics over the global batch when there are several replicas "
                "(same results as one device); --no-sync-batchnorm: per replica"})
    backup_every_steps: int = field(default=0, metadata={
        "help": "back up weights and optimizer every N steps as well as every epoch (0: every epoch)"})
    max_examples: int = field(default=0, metadata={
        "help": "train on at most this many examples (0: all); the validation split is not capped, so "
                "the metrics compare with a full run's"})

    def problems(self):
        """One entry per rule: None where it holds, else the phrase saying what is wrong.

        Subclasses extend the list. Types and choices are checked for every
        field by `validate` first, so these rules may assume the right types.
        """
        return [
            bound(self, "epochs", ge=1),
            bound(self, "batch_size", ge=1),
            bound(self, "learning_rate", gt=0),
            bound(self, "seed", ge=0),
            bound(self, "backup_every_steps", ge=0),
            bound(self, "max_examples", ge=0),
        ]

    def validate(self, source=None):
        """Returns self, or raises one `UserError` listing every bad field.

        `source` (a config.json path) prefixes the message, so the user knows
        which file to fix.
        """
        found = type_problems(self) or [p for p in self.problems() if p]
        if found:
            message = "; ".join(found)
            raise UserError(f"{source}: {message}" if source else message)
        return self

    def input_paths(self):
        """(field, path, "file" or "folder") for every input this config needs to exist."""
        return []


def _field_type(cls, field):
    hints = typing.get_type_hints(cls)
    t = hints[field.name]
    # Optional[X] -> X
    args = [a for a in typing.get_args(t) if a is not type(None)]
    if typing.get_origin(t) is typing.Union and len(args) == 1:
        return args[0]
    return t


def flag(name, cls=None):
    """The command-line spelling of a config field: `batch_size` -> `--batch-size`.

    With the field's config class (or a config), a field whose flag was renamed
    gets its flag's name (`ColorizationConfig`'s `source` -> `--dataset`; see
    `keras_cnn.vocabulary`).
    """
    if cls is not None:
        cls = cls if isinstance(cls, type) else type(cls)
        name = vocabulary.field_flag(cls.__name__, name)
    return "--" + name.replace("_", "-")


def bound(cfg, name, ge=None, gt=None, le=None, lt=None, why=""):
    """None if `cfg.<name>` is within the bounds, else the phrase saying it is not.

    Float fields must also be finite (a NaN fails no comparison). `why` is
    added to the phrase where the bound is not obvious.
    """
    value = getattr(cfg, name)
    why = f" ({why})" if why else ""
    if isinstance(value, float) and not math.isfinite(value):
        return f"{flag(name, cfg)} must be a finite number, got {value}{why}"
    for limit, ok, word in ((ge, lambda v, x: v >= x, ">="), (gt, lambda v, x: v > x, ">"),
                            (le, lambda v, x: v <= x, "<="), (lt, lambda v, x: v < x, "<")):
        if limit is not None and not ok(value, limit):
            return f"{flag(name, cfg)} must be {word} {limit}, got {value}{why}"
    return None


# The largest value of an integer field, unless its metadata says otherwise ("max"): TensorFlow keeps
# sizes and counts in 32 bits, and a 23-digit --batch-size must be a line here, not an OverflowError
# from deep inside TensorFlow.
INT_LIMIT = 2**31 - 1


def type_problems(cfg):
    """Fields whose value has the wrong type, is not one of the field's choices, or is an integer out of range."""
    found = []
    for f in dataclasses.fields(cfg):
        value, t = getattr(cfg, f.name), _field_type(type(cfg), f)
        if value is None and type(None) in typing.get_args(typing.get_type_hints(type(cfg))[f.name]):
            continue  # Optional[...] and not set
        # bool is an int to Python, but `"epochs": true` is a mistake.
        if not isinstance(value, t) or (t is not bool and isinstance(value, bool)):
            found.append(f"{flag(f.name, cfg)} wants {t.__name__}, got {value!r}")
            continue
        choices = f.metadata.get("choices")
        if choices and value not in choices:
            found.append(f"{flag(f.name, cfg)} must be one of {', '.join(map(str, choices))}, got {value!r}")
        limit = f.metadata.get("max", INT_LIMIT)
        if t is int and not -limit <= value <= limit:
            found.append(f"{flag(f.name, cfg)} must be {'<=' if value > 0 else '>='} {limit if value > 0 else -limit}, "
                         f"got {value}")
    return found


def _coerced(cls, values):
    """`values` with whole numbers given for float fields turned into floats (JSON and YAML write 1 for 1.0)."""
    values = dict(values)
    for f in dataclasses.fields(cls):
        v = values.get(f.name)
        if _field_type(cls, f) is float and isinstance(v, int) and not isinstance(v, bool):
            values[f.name] = float(v)
    return values


def add_config_args(parser, cls, skip=(), shown=None, shown_as="default", only=None, title=None):
    """Adds one `--field-name` flag per dataclass field (default: not given).

    `shown` (a config: the chosen preset) supplies the values `--help` shows,
    labelled `shown_as` (the preset's name); without it the dataclass
    defaults are shown, and with `shown_as=None` none are. The flags themselves
    default to "not given", so only what the user types overrides the preset.
    `only` limits the flags to those fields; `title` names their group. A
    renamed field's old flag stays as a hidden alias that prints one
    deprecation line (`keras_cnn.vocabulary`).
    """
    shown = cls() if shown is None else shown
    group = parser.add_argument_group(title or f"{cls.__name__} fields (override the preset)")
    renamed = vocabulary.old_field_flags(cls.__name__)
    for f in dataclasses.fields(cls):
        if f.name in skip or (only is not None and f.name not in only):
            continue
        t = _field_type(cls, f)
        help_text = f.metadata.get("help", "")
        if shown_as is not None:
            help_text = f"{help_text} ({shown_as}: {getattr(shown, f.name)!r})"
        # argparse expands % in help strings.
        help_text = help_text.strip().replace("%", "%%")
        if t is bool:
            action = group.add_argument(flag(f.name, cls), dest=f.name, action=argparse.BooleanOptionalAction,
                                        default=None, help=help_text)
        else:
            choices = f.metadata.get("choices")
            action = group.add_argument(flag(f.name, cls), dest=f.name, type=t, default=None, choices=choices,
                                        metavar=t.__name__.upper() if not choices else None, help=help_text)
        if f.name in renamed:
            vocabulary.add_alias(group, flag(f.name), action)


def overrides_from_args(args, cls):
    """The fields the user set on the command line, as a dict."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in vars(args).items() if k in names and v is not None}


def resolve(cls, presets, preset, overrides=None):
    """`presets[preset]` with `overrides` applied, validated; unknown keys are an error."""
    if preset not in presets:
        raise UserError(f"unknown preset {preset!r}; choose one of: {', '.join(sorted(presets))}")
    overrides = dict(overrides or {})
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise UserError(f"unknown config key(s) {', '.join(unknown)} for {cls.__name__}")
    return dataclasses.replace(presets[preset], **_coerced(cls, overrides)).validate()


def save_config(cfg, path, task=None):
    """Writes `cfg` as JSON, plus the name of its `task` (see `keras_cnn.tasks`)."""
    data = dataclasses.asdict(cfg)
    if task:
        data["task"] = task
    atomic_write_text(path, state_files.json_text(data, path, "config", sort_keys=True))


def load_config(cls, path):
    """Reads a `config.json` written by `save_config`: validated, unknown keys rejected.

    Keys missing from an older file take the field defaults.
    """
    data = dict(state_files.read_object(path, "config"))
    # The run's task name (also read by keras_cnn.tasks): a run of the other application is said to be
    # one, not listed as two dozen unknown keys.
    task = data.pop("task", None) or _legacy_task_name(data)
    if cls.task_name and isinstance(task, str) and task != cls.task_name:
        run_dir = os.path.dirname(path) or "."
        raise UserError(f"{run_dir}: this is a {task} run, not a {cls.task_name} run; use "
                        f"{_COMMANDS.get(task, f'the {task} commands')} with it")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise UserError(f"{path}: unknown config key(s) {', '.join(unknown)}")
    return cls(**_coerced(cls, data)).validate(source=path)


def check_input_paths(cfg):
    """Every input file or folder `cfg` names exists, or one `UserError` naming the flag.

    Checked by the commands before anything heavy is imported or written.
    """
    from keras_cnn.fileio import check_input

    for name, path, kind in cfg.input_paths():
        check_input(path, flag(name, cfg), kind)


def config_from_args(args, cls, presets, default_preset):
    """The config a training command's flags describe: validated, its inputs and `--run-dir` checked.

    `args.preset` is None when `--preset` was not given. With `--resume` it
    is the run's saved config (see `resume_config`).
    """
    from keras_cnn.fileio import check_output

    check_output(args.run_dir, "--run-dir", "folder")
    overrides = overrides_from_args(args, cls)
    cfg = resume_config(cls, presets, args.preset, overrides, args.run_dir) if args.resume else None
    if cfg is None:
        cfg = resolve(cls, presets, args.preset or default_preset, overrides)
    check_input_paths(cfg)
    return cfg


def load_run_config(cls, run_dir, overrides=None):
    """The saved config of a run folder, with `overrides` (e.g. a moved data_dir) applied and validated."""
    from keras_cnn.fileio import check_input

    check_input(run_dir, "--run-dir", "folder")
    cfg = load_config(cls, config_path(run_dir))
    return resolve(cls, {"run": cfg}, "run", overrides) if overrides else cfg


def resume_config(cls, presets, preset, overrides, run_dir):
    """The saved config of the run `--resume` continues, checked against the flags given.

    A resumed run is the same run (the training code reuses its saved config),
    so a flag that would change it is refused rather than silently ignored:
    each config flag given, and `preset` when it was given explicitly (None
    otherwise), must agree with `config.json`. Repeating the original command
    plus `--resume` is fine. A missing run folder, or one without
    config.json, is a `UserError` (nothing to resume), except under a
    multi-worker `TF_CONFIG`: then None, and the training code decides (a
    non-chief worker that cannot see the chief's folder uses the flags).
    The run's state files are checked too (`keras_cnn.state_files`).
    """
    path = config_path(run_dir)
    if not os.path.isfile(path):
        if os.environ.get("TF_CONFIG"):
            return None
        raise UserError(nothing_to_resume(run_dir))
    saved = load_config(cls, path)
    state_files.check_resume(run_dir)
    # Start from the preset if one was named, else from the saved config, so
    # that only what the user actually asked for can differ.
    wanted = resolve(cls, presets, preset, overrides) if preset else \
        resolve(cls, {"saved": saved}, "saved", overrides)
    differ = [f"{flag(f.name, cls)} {getattr(wanted, f.name)!r} (saved: {getattr(saved, f.name)!r})"
              for f in dataclasses.fields(cls) if getattr(wanted, f.name) != getattr(saved, f.name)]
    if differ:
        origin = f"--preset {preset} and the flags" if preset else "these flags"
        raise UserError(f"{path}: --resume continues the run with its saved config, but {origin} "
                        f"would change it: {', '.join(differ)}; drop them, or start a new --run-dir")
    return saved


def nothing_to_resume(run_dir):
    """The line for `--resume` of a folder that holds no run."""
    if not os.path.exists(run_dir):
        return f"{run_dir}: run folder does not exist, so there is nothing to resume; drop --resume to start a new run"
    return f"{run_dir}: nothing to resume (no config.json); drop --resume to start a new run there"


def config_path(run_dir):
    return os.path.join(run_dir, state_files.CONFIG)


# The commands that take a run folder of each task, for the line that says a run is of the other one.
_COMMANDS = {"colorization": "train-colorization --resume, evaluate-colorization, colorize or export",
             "segmentation": "train-segmentation --resume, evaluate-segmentation, segment or export"}


def _legacy_task_name(data):
    # Run folders written before config.json recorded its task.
    if "palette_space" in data:
        return "colorization"
    if "backbone" in data:
        return "segmentation"
    return None


def read_task_name(run_dir):
    """The task a run folder's `config.json` records."""
    path = config_path(run_dir)
    data = state_files.read_object(path, "the run's config")
    name = data.get("task") or _legacy_task_name(data)
    if not name:
        raise UserError(f"{path}: does not say which task the run is (no \"task\" key)")
    if not isinstance(name, str):
        raise UserError(f"{path}: \"task\" must be the name of a task, got {json.dumps(name)[:40]}")
    return name
