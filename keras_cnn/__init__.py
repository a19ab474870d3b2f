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
    "keras_cnn.segmentation.torchvision_resnet",
    "keras_cnn.segmentation.efficientnet_lite",
    "keras_cnn.segmentation.metrics",
)


def register_keras_objects():
    """Imports the modules that register this package's classes with `keras.saving` (idempotent)."""
    for name in _KERAS_MODULES:
        importlib.import_module(name)


def _keras_cnn_initializing(besides):
    return any(getattr(getattr(m, "__spec__", None), "_initializing", False)
               for name, m in list(sys.modules.items()) if name.startswith("keras_cnn.") and name != besides)


class _RegisterAfterKerasImport(importlib.abc.MetaPathFinder):
    """Calls `register_keras_objects` once Keras is imported, whoever imports it.

    If a module of this package imported Keras, registering at once would
    re-enter that half-initialised module; the registration then waits until
    no module of the package is initialising (checked after each one loads).
    """

    def __init__(self):
        self.keras_loaded = False

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "keras" and not fullname.startswith("keras_cnn."):
            return None
        spec = None
        for finder in sys.meta_path:
            if finder is not self and hasattr(finder, "find_spec"):
                spec = finder.find_spec(fullname, path, target)
                if spec is not None:
                    break
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        original = spec.loader.exec_module

        def exec_module(module):
            original(module)
            self.keras_loaded |= fullname == "keras"
            # `module` itself still counts as initialising until this returns.
            if self.keras_loaded and not _keras_cnn_initializing(besides=fullname):
                if self in sys.meta_path:
                    sys.meta_path.remove(self)
                register_keras_objects()

        spec.loader.exec_module = exec_module
        return spec


if "keras" in sys.modules:
    register_keras_objects()
elif not any(isinstance(f, _RegisterAfterKerasImport) for f in sys.meta_path):
    sys.meta_path.insert(0, _RegisterAfterKerasImport())


def __getattr__(name):
    # The user-facing entry points, imported on first use (they need TensorFlow).
    if name in ("open_run", "train", "get_task", "TASKS"):
        return getattr(importlib.import_module("keras_cnn.tasks"), name)
    if name == "read_image":
        return importlib.import_module("keras_cnn.fileio").read_image
    raise AttributeError(f"module 'keras_cnn' has no attribute {name!r}")
