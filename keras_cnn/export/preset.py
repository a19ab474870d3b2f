"""A trained run as a preset folder, the keras-hub way on local disk (`keras-cnn export --preset-dir`).

    DIR/
        config.json         the model's Keras config (`keras.saving.serialize_keras_object`), no optimizer
        model.weights.h5    its weights (`model.save_weights`)
        metadata.json       application, versions, input, decoding or class names, source run
        assets/palette.npy  a colourizer's palette

`Colorizer.from_preset(DIR)` and `DeepLabV3Segmenter.from_preset(DIR)` load
it trained (`keras_cnn.presets`, the reader, lives below the applications).
The folder is built beside DIR and renamed into place when complete, after
the model loaded back from it gave the same logits as the run's; an existing
DIR is never replaced. The metadata names the run by its folder name only:
a preset is meant to be copied to other machines.
"""

import os

import numpy as np

from keras_cnn import presets, state_files
from keras_cnn.errors import UserError
from keras_cnn.export.registry import adapter_for
from keras_cnn.export.servable import run_source
from keras_cnn.fileio import atomic_path, atomic_write_text


def check_preset_dir_free(preset_dir, what="--preset-dir"):
    """An existing `preset_dir` is refused in one line: a preset is never replaced."""
    if os.path.lexists(preset_dir):
        raise UserError(f"{what} {preset_dir}: already exists; not replacing it (choose a new folder)")


def write_preset(run, preset_dir, checkpoint="best", class_names=None):
    """Writes `checkpoint` ("best" or "last") of `run` as a preset folder at `preset_dir`; returns its metadata.

    `class_names`: a segmenter's, one per class (default "background",
    "foreground"). `preset_dir` must not exist.
    """
    import keras

    import keras_cnn

    preset_dir = os.fspath(preset_dir)
    check_preset_dir_free(preset_dir, "preset folder")
    model = run.load_model(checkpoint)
    extras, assets = adapter_for(run).preset_extras(run, model, class_names)
    config = keras.saving.serialize_keras_object(model)
    # The preset is the model, not a training state: compile it afresh to fine-tune.
    config.pop("compile_config", None)
    input_spec = {"dtype": "uint8 or float32", "layout": "NHWC RGB 0-255", **extras.pop("input")}
    metadata = {
        "format": presets.FORMAT,
        "format_version": presets.FORMAT_VERSION,
        "application": run.task.name,
        "model_class": type(model).__name__,
        "parameter_count": model.count_params(),
        "input": input_spec,
        **extras,
        "source": run_source(run, checkpoint),
        "versions": {"keras_cnn": keras_cnn.__version__, "keras": keras.__version__,
                     "backend": keras.backend.backend()},
    }
    with atomic_path(preset_dir, overwrite=False) as tmp:
        os.makedirs(os.path.join(tmp, presets.ASSETS_DIR))
        path = os.path.join(preset_dir, presets.CONFIG_FILE)
        atomic_write_text(os.path.join(tmp, presets.CONFIG_FILE),
                          state_files.json_text(config, path, "the model's config"))
        model.save_weights(os.path.join(tmp, presets.WEIGHTS_FILE))
        for name, write in assets.items():
            write(presets.asset_path(tmp, name))
        path = os.path.join(preset_dir, presets.METADATA_FILE)
        atomic_write_text(os.path.join(tmp, presets.METADATA_FILE),
                          state_files.json_text(metadata, path, "preset metadata"))
        _check_round_trip(model, tmp, preset_dir)
    return metadata


def _check_round_trip(model, tmp, preset_dir):
    """The folder, loaded as a user will load it, gives the model's logits (before it is renamed into place)."""
    loaded = type(model).from_preset(tmp)
    height, width = (d or 32 for d in model.input_shape[1:3])
    images = np.random.RandomState(0).randint(0, 256, (2, height, width, 3)).astype(np.uint8)
    want, got = np.asarray(model(images, training=False)), np.asarray(loaded(images, training=False))
    if want.shape != got.shape or not np.allclose(want, got, atol=1e-5):
        raise UserError(f"{preset_dir}: the model loaded back from the preset gives other logits than the run's "
                        f"(largest difference {np.max(np.abs(want - got)) if want.shape == got.shape else 'shape'}); "
                        "nothing written")
