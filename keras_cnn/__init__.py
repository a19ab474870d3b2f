"""keras_cnn: colourization and DeepLabV3 segmentation with Keras 3 / TensorFlow.

Three lines from a trained run folder to a result (the models take RGB
pixels; their preprocessing is part of the saved model):

    import keras_cnn
    run = keras_cnn.open_run("runs/unet")
    colours = run.predict(keras_cnn.read_image("photo.jpg"))

Layers, bottom-up (docs/ARCHITECTURE.md):
    keras_cnn.errors, fileio, config        errors, files, experiment configs
    keras_cnn.data                          downloads, CIFAR-10, safe unpickling
    keras_cnn.colorization, segmentation    one application each: config, data,
                                            models, metrics, predict, and its
                                            `task.py` (the Task of `keras_cnn.tasks`)
    keras_cnn.training, distribute          the shared training loop and run folder
    keras_cnn.tasks                         the task registry, `open_run`, `train`
    keras_cnn.export, benchmarks            SavedModel / TFLite, measurements
    keras_cnn.commands                      the command-line jobs

After `import keras_cnn`, every Keras class the package saves is registered,
so `keras.saving.load_model("runs/x/best.keras")` works. The registration
waits until Keras itself is imported, so importing the package (and asking a
command for `--help`) stays instant.
"""

import importlib
import importlib.abc
import importlib.util
import sys

__version__ = "0.2.0"

# Modules whose import registers the package's saved classes (models,
# layers, losses, metrics) with `keras.saving`.
_KERAS_MODULES = (
    "keras_cnn.colorization.models",
    "keras_cnn.colorization.colorizer",
    "keras_cnn.colorization.pipeline",
    "keras_cnn.segmentation.deeplab_v3",
    "keras_cnn.segmentation.metrics",
)


def register_keras_objects():
    """Imports the modules that register this package's classes with `keras.saving` (idempotent)."""
    for name in _KERAS_MODULES:
        importlib.import_module(name)


class _AfterKerasImport(importlib.abc.MetaPathFinder):
    """Runs `register_keras_objects` right after the first `import keras`, whoever imports it."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "keras":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec("keras")
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        original = loader.exec_module

        def exec_module(module):
            original(module)
            register_keras_objects()

        loader.exec_module = exec_module
        return spec


if "keras" in sys.modules:
    register_keras_objects()
elif not any(isinstance(f, _AfterKerasImport) for f in sys.meta_path):
    sys.meta_path.insert(0, _AfterKerasImport())


def __getattr__(name):
    # The user-facing entry points, imported on first use (they need TensorFlow).
    if name in ("open_run", "train", "get_task", "TASKS"):
        return getattr(importlib.import_module("keras_cnn.tasks"), name)
    if name == "read_image":
        return importlib.import_module("keras_cnn.fileio").read_image
    raise AttributeError(f"module 'keras_cnn' has no attribute {name!r}")
