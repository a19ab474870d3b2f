"""Preset folders: a trained model on local disk, as keras-hub keeps one, readable without its run folder.

`keras-cnn export --run-dir RUN --preset-dir DIR` writes one
(`keras_cnn.export.preset`); `Colorizer.from_preset(DIR)` and
`DeepLabV3Segmenter.from_preset(DIR)` load it trained, with what the model
needs beside its weights:

    DIR/
        config.json         the model's Keras config (class and constructor arguments,
                            `keras.saving.serialize_keras_object`), no optimizer
        model.weights.h5    its weights (`model.save_weights`)
        metadata.json       application, versions, input, class names or decoding, where it came from
        assets/palette.npy  a colourizer's palette: the colour of each class

A *recipe* (`cifar10_unet`, `weizmann_scratch`: the `--preset` of the
training commands) is something else: settings to train with, no weights.
`from_recipe` builds a recipe's untrained net.

This module only reads; it imports Keras when a model is loaded.
"""

import math
import os
import re

from keras_cnn import state_files
from keras_cnn.errors import UserError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.weights.h5"
METADATA_FILE = "metadata.json"
ASSETS_DIR = "assets"
FORMAT = "keras_cnn preset"
FORMAT_VERSION = 1

# The Keras class each application's preset holds, and the method that loads it.
MODEL_CLASSES = {"colorization": "Colorizer", "segmentation": "DeepLabV3Segmenter"}


def asset_path(preset_dir, name):
    return os.path.join(preset_dir, ASSETS_DIR, name)


def is_preset_folder(path):
    """True for a folder holding a preset's files (complete or not); a run folder has neither of these."""
    return os.path.isdir(path) and any(os.path.exists(os.path.join(path, name))
                                       for name in (METADATA_FILE, WEIGHTS_FILE))


def folder_kind(preset, application, recipes):
    """"preset" or "run" for what `from_preset(preset)` was given; anything else is a one-line `UserError`.

    `recipes`: the application's recipe names; one given here is refused with
    a pointer to `from_recipe`, since `from_preset` loads trained weights.
    """
    cls = MODEL_CLASSES[application]
    if not isinstance(preset, (str, os.PathLike)):
        raise UserError(f"{cls}.from_preset takes a preset folder (or a run folder), not a {type(preset).__name__}")
    path = os.fspath(preset)
    if is_preset_folder(path):
        return "preset"
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, state_files.CONFIG)):
            return "run"
        raise UserError(f"{path}: neither a preset folder ({METADATA_FILE}, {CONFIG_FILE}, {WEIGHTS_FILE}) "
                        f"nor a run folder ({state_files.CONFIG})")
    if path in recipes:
        raise UserError(f"{path!r} is a training recipe, not a trained preset: {cls}.from_recipe({path!r}) "
                        f"builds its untrained net; from_preset loads a folder that "
                        f"`keras-cnn export --preset-dir` wrote")
    if os.path.exists(path):
        raise UserError(f"{path}: a file, not a preset folder")
    raise UserError(f"{path}: no such preset folder (`keras-cnn export --run-dir RUN --preset-dir {path}` "
                    f"writes one)")


def read_metadata(preset_dir, application):
    """The preset's `metadata.json`, checked to be a preset of `application`; else a one-line `UserError`."""
    path = os.path.join(preset_dir, METADATA_FILE)
    what = "preset metadata"
    if not os.path.isfile(path):
        raise UserError(f"{path}: missing; not a complete preset folder")
    data = state_files.read_object(path, what)
    if data.get("format") != FORMAT:
        # e.g. the metadata.json beside exported .tflite files
        raise UserError(f"{path}: not a preset's metadata (no \"format\": \"{FORMAT}\"); "
                        "`keras-cnn export --preset-dir` writes preset folders")
    for name, check in (("application", _string), ("format_version", state_files.count)):
        problem = check(data.get(name))
        if problem:
            raise UserError(f"{path}: {what} \"{name}\" {problem}")
    if data["format_version"] > FORMAT_VERSION:
        raise UserError(f"{path}: preset format {data['format_version']} is newer than this keras_cnn reads "
                        f"({FORMAT_VERSION}); upgrade keras_cnn")
    if data["application"] != application:
        other = MODEL_CLASSES.get(data["application"])
        hint = f"; load it with {other}.from_preset" if other else ""
        raise UserError(f"{preset_dir}: a {data['application']} preset, not a {application} preset{hint}")
    return data


def load_model(preset_dir, application):
    """The model of a preset folder with its weights, uncompiled; `UserError` naming the file that is wrong."""
    import keras

    config_path = os.path.join(preset_dir, CONFIG_FILE)
    weights_path = os.path.join(preset_dir, WEIGHTS_FILE)
    for path in (config_path, weights_path):
        if not os.path.isfile(path):
            raise UserError(f"{path}: missing; not a complete preset folder")
    config = state_files.read_object(config_path, "preset model config", {"class_name": _string, "config": _object})
    wanted = MODEL_CLASSES[application]
    if config["class_name"] != wanted:
        raise UserError(f"{config_path}: holds a {_shown(config['class_name'])}, not a {wanted}")
    try:
        model = keras.saving.deserialize_keras_object(config, safe_mode=True)
    except Exception as e:  # TypeError, ValueError, KeyError... from a config edited or cut by hand
        raise UserError(f"{config_path}: not a {wanted} config Keras can build ({_one_line(e)})") from None
    try:
        model.load_weights(weights_path)
    except Exception as e:  # OSError from h5py for a bad file, ValueError for weights of another model
        raise UserError(f"{weights_path}: cannot load the weights ({_one_line(e)})") from None
    return model


def recipe_config(recipe, application, config_class, recipes, overrides):
    """The config a training recipe (a `--preset` name) builds its untrained model from, for `from_recipe`.

    A folder or an unknown name is a one-line `UserError`. The nets do not
    depend on the data, so a recipe that reads a folder builds without one.
    """
    from keras_cnn import config

    if isinstance(recipe, (str, os.PathLike)) and os.path.isdir(recipe):
        raise UserError(f"{os.fspath(recipe)}: a folder, not a recipe name; {MODEL_CLASSES[application]}.from_preset "
                        "loads a trained preset or run folder")
    if recipe not in recipes:
        raise UserError(f"unknown recipe {recipe!r} (a --preset of train-{application}); choose one of: "
                        f"{', '.join(sorted(recipes))}")
    return config.resolve(config_class, recipes, recipe, {"data_dir": "(no data: model only)", **overrides})


def open_trained(cls, preset, application, recipes, checkpoint=None):
    """What `from_preset` opens: `(model, metadata)` of a preset folder, or `(model, None)` of a run folder.

    `cls` is the application's model class (its `from_run` opens a run
    folder, at `checkpoint`, "best" by default); a recipe name or another
    application's folder is a one-line `UserError` (`folder_kind`).
    """
    if folder_kind(preset, application, recipes) == "run":
        return cls.from_run(preset, checkpoint or "best"), None
    if checkpoint is not None:
        raise UserError(f"{preset}: a preset folder holds one model; checkpoint is for run folders")
    preset = os.fspath(preset)
    metadata = read_metadata(preset, application)  # first: it says which application the folder is
    return load_model(preset, application), metadata


def _one_line(e, limit=200):
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _shown(value):
    return _one_line(repr(value), 60)


def _string(value):
    return None if isinstance(value, str) and value else f"must be a name, got {_shown(value)}"


def _object(value):
    return None if isinstance(value, dict) else f"must be a JSON object, got {_shown(value)}"


# A class name: printable, one line.
NAME = re.compile(r"^[^\x00-\x1f]{1,100}$")


def class_names(metadata, num_classes, preset_dir):
    """The `class_names` of a segmenter's metadata: one short name per class."""
    path = os.path.join(preset_dir, METADATA_FILE)
    names = metadata.get("class_names")
    if not isinstance(names, list) or len(names) != num_classes or \
            not all(isinstance(n, str) and NAME.match(n) for n in names):
        raise UserError(f"{path}: \"class_names\" must list {num_classes} class names, got {_shown(names)}")
    return names


def decoding(metadata, preset_dir):
    """`(decode, temperature)` of a colourizer's metadata: how its logits become colours."""
    path = os.path.join(preset_dir, METADATA_FILE)
    value = metadata.get("decoding")
    decode = value.get("decode") if isinstance(value, dict) else None
    temperature = value.get("temperature") if isinstance(value, dict) else None
    positive = not isinstance(temperature, bool) and isinstance(temperature, (int, float)) \
        and math.isfinite(temperature) and temperature > 0
    if decode not in ("argmax", "annealed") or not positive:
        raise UserError(f"{path}: \"decoding\" must be {{\"decode\": \"argmax\" or \"annealed\", "
                        f"\"temperature\": a number > 0}}, got {_shown(value)}")
    return decode, float(temperature)
