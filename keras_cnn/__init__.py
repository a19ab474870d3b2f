"""keras_cnn: colourization and DeepLabV3 segmentation with Keras 3 / TensorFlow.

Three lines from a trained run folder to a result (the models take RGB
pixels; their preprocessing is part of the saved model):

    import keras_cnn
    run = keras_cnn.open_run("runs/unet")
    colours = run.predict(keras_cnn.read_image("photo.jpg"))

The models, losses and metrics, for building and training in Python:

    model = keras_cnn.segmentation.DeepLabV3Segmenter(backbone, num_classes=2)
    model = keras_cnn.colorization.Colorizer(keras_cnn.colorization.UNet())
    model = keras_cnn.segmentation.DeepLabV3Segmenter.from_run("runs/horses64")

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

Every name here is imported on first use, so `import keras_cnn` (and every
command's `--help`) does not wait for TensorFlow. After `import keras_cnn`,
every Keras class the package saves is registered as soon as Keras is
imported, so `keras.saving.load_model("runs/x/best.keras")` works.
"""

__version__ = "0.3.0"

# Public name -> the module defining it ("" for a subpackage of the same name).
_EXPORTS = {
    "open_run": "keras_cnn.tasks",
    "train": "keras_cnn.tasks",
    "get_task": "keras_cnn.tasks",
    "TASKS": "keras_cnn.tasks",
    "read_image": "keras_cnn.fileio",
    "register_keras_objects": "keras_cnn._registration",
    "colorization": "",
    "segmentation": "",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    import importlib

    if name not in _EXPORTS:
        raise AttributeError(f"module 'keras_cnn' has no attribute {name!r}")
    if not _EXPORTS[name]:
        return importlib.import_module(f"keras_cnn.{name}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__():
    return sorted(set(__all__) | {n for n in globals() if n.startswith("__") and n != "__getattr__"})


def _install():
    from keras_cnn import _registration

    _registration.install()


_install()
