"""Which Keras backend this process runs on, and the commands that need TensorFlow's.

The models, losses and metrics are Keras 3 and run on TensorFlow, JAX or
PyTorch (`KERAS_BACKEND`); the data pipelines are tf.data everywhere. Export
(SavedModel, TFLite) and the int8 tools are TensorFlow programs: they load a
run's `.keras` file under the TensorFlow backend whatever backend trained it,
so a run trained under JAX or PyTorch exports to the same files.
"""

import os
import sys

from keras_cnn.errors import UserError

BACKENDS = ("tensorflow", "jax", "torch")


def backend_name():
    """The Keras backend of this process: "tensorflow", "jax" or "torch"."""
    import keras

    return keras.backend.backend()


def has_gpu():
    """Whether the backend of this process sees a GPU."""
    name = backend_name()
    if name == "jax":
        import jax

        return any(d.platform == "gpu" for d in jax.devices())
    if name == "torch":
        import torch

        return torch.cuda.is_available()
    import tensorflow as tf

    return bool(tf.config.list_logical_devices("GPU"))


def use_tensorflow(command, log=None):
    """Makes this process run Keras on TensorFlow, for a command that writes TensorFlow files.

    Call it before Keras is imported. A `KERAS_BACKEND` naming another backend
    is overridden with one line on stderr (a `.keras` file holds weights, not
    backend code, so it loads the same); once Keras runs another backend in
    this process it is too late, and that is a `UserError`.
    """
    wanted = os.environ.get("KERAS_BACKEND", "tensorflow")
    if "keras" in sys.modules:
        if backend_name() != "tensorflow":
            raise UserError(f"{command} runs on the TensorFlow backend, but Keras already runs on "
                            f"{backend_name()} in this process; run it in a new one")
        return
    if wanted != "tensorflow":
        (log or (lambda m: print(m, file=sys.stderr)))(
            f"note: {command} runs on the TensorFlow backend (KERAS_BACKEND={wanted} is ignored here); "
            "runs trained under any backend export the same")
    os.environ["KERAS_BACKEND"] = "tensorflow"
