"""Registering the package's saved classes with `keras.saving` once Keras is imported, whoever imports it.

After `import keras_cnn`, `keras.saving.load_model("runs/x/best.keras")`
must find every class the package saves, yet `import keras_cnn` (and every
command's `--help`) must not wait for TensorFlow. So the registration waits
for Keras: an import hook runs it right after `import keras`.
"""

import importlib
import importlib.abc
import sys

# Modules whose import registers the package's saved classes (models,
# layers, losses, metrics) with `keras.saving`.
KERAS_MODULES = (
    "keras_cnn.colorization.models",
    "keras_cnn.colorization.colorizer",
    "keras_cnn.colorization.losses",
    "keras_cnn.segmentation.deeplab_v3",
    "keras_cnn.segmentation.torchvision_resnet",
    "keras_cnn.segmentation.efficientnet_lite",
    "keras_cnn.segmentation.metrics",
)


def register_keras_objects():
    """Imports the modules that register this package's classes with `keras.saving` (idempotent)."""
    for name in KERAS_MODULES:
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


def install():
    """Registers now if Keras is already imported, else once it is."""
    if "keras" in sys.modules:
        register_keras_objects()
    elif not any(isinstance(f, _RegisterAfterKerasImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _RegisterAfterKerasImport())
