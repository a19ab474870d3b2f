"""Experiment configs: frozen dataclasses, named presets, command-line overrides.

Each application defines one frozen dataclass holding every knob with its
default (`ColorizationConfig`, `SegmentationConfig`) and a dict of named
presets. Scripts expose every field as a `--field-name` flag; only the flags a
user actually gives override the preset, and the resolved config is written to
`config.json` in the run folder so a run can be repeated or resumed exactly.
"""

import argparse
import dataclasses
import json
import os
import typing
from dataclasses import field

from keras_cnn.errors import UserError
from keras_cnn.fileio import atomic_write_text


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """The fields every training run has; application configs inherit them."""

    epochs: int = 10
    batch_size: int = field(default=32, metadata={"help": "per replica; global = this x replicas"})
    learning_rate: float = field(default=1e-3, metadata={"help": "base rate, before lr_scaling"})
    lr_scaling: str = field(default="none", metadata={
        "choices": ("none", "linear", "sqrt"),
        "help": "learning rate x replicas (linear) or x sqrt(replicas) (sqrt)"})
    seed: int = 0
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
    max_examples: int = field(default=0, metadata={"help": "use at most this many training examples (0: all)"})


def _field_type(cls, field):
    hints = typing.get_type_hints(cls)
    t = hints[field.name]
    # Optional[X] -> X
    args = [a for a in typing.get_args(t) if a is not type(None)]
    if typing.get_origin(t) is typing.Union and len(args) == 1:
        return args[0]
    return t


def add_config_args(parser, cls, skip=()):
    """Adds one `--field-name` flag per dataclass field (default: not given)."""
    group = parser.add_argument_group(f"{cls.__name__} fields (override the preset)")
    for field in dataclasses.fields(cls):
        if field.name in skip:
            continue
        flag = "--" + field.name.replace("_", "-")
        t = _field_type(cls, field)
        help_text = field.metadata.get("help", "")
        default = field.default if field.default is not dataclasses.MISSING else None
        help_text = f"{help_text} (default: {default!r})".strip()
        if t is bool:
            group.add_argument(flag, dest=field.name, action=argparse.BooleanOptionalAction,
                               default=None, help=help_text)
        else:
            choices = field.metadata.get("choices")
            group.add_argument(flag, dest=field.name, type=t, default=None, choices=choices,
                               metavar=t.__name__.upper() if not choices else None, help=help_text)


def overrides_from_args(args, cls):
    """The fields the user set on the command line, as a dict."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in vars(args).items() if k in names and v is not None}


def resolve(cls, presets, preset, overrides=None):
    """`presets[preset]` with `overrides` applied; unknown keys are an error."""
    if preset not in presets:
        raise UserError(f"unknown preset {preset!r}; choose one of: {', '.join(sorted(presets))}")
    cfg = presets[preset]
    overrides = dict(overrides or {})
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise UserError(f"unknown config key(s) {', '.join(unknown)} for {cls.__name__}")
    for f in dataclasses.fields(cls):
        if f.name in overrides:
            value = overrides[f.name]
            t = _field_type(cls, f)
            if value is not None and t in (int, float, str, bool) and not isinstance(value, t):
                if t is float and isinstance(value, int) and not isinstance(value, bool):
                    overrides[f.name] = float(value)
                else:
                    raise UserError(f"config key {f.name} wants {t.__name__}, got {value!r}")
            choices = f.metadata.get("choices")
            if choices and overrides[f.name] not in choices:
                raise UserError(f"config key {f.name} must be one of {', '.join(choices)}, got {value!r}")
    return dataclasses.replace(cfg, **overrides)


def save_config(cfg, path, task=None):
    """Writes `cfg` as JSON, plus the name of its `task` (see `keras_cnn.tasks`)."""
    data = dataclasses.asdict(cfg)
    if task:
        data["task"] = task
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def load_config(cls, path):
    """Reads a `config.json` written by `save_config`, rejecting unknown keys."""
    try:
        with open(path) as f:
            data = json.load(f)
    except OSError as e:
        raise UserError(f"{path}: cannot read config ({e.strerror})") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: not a run config (expected a JSON object, got {type(data).__name__})")
    data = dict(data)
    data.pop("task", None)  # the run's task name, read by keras_cnn.tasks
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise UserError(f"{path}: unknown config key(s) {', '.join(unknown)}")
    return cls(**data)


def config_path(run_dir):
    return os.path.join(run_dir, "config.json")
