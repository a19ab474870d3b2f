"""The colourizer's input conversion, as a layer of the model: RGB pixels 0-255 -> what the nets see.

The nets of `models.py`, `resunet.py` and `effnet_unet.py` take the course's
*net input*: grey = RGB mean / 256 (`color.grey`), or in super-resolution
mode the 4x-downsized colour image / 256 (`downsize`). `Colorizer` starts
with a `ColorizerInput` layer, as keras-hub attaches an image converter to a
task (and as `segmentation/preprocessing.py` does for the segmenters), so a
saved model takes RGB pixels and training, evaluation, prediction and export
cannot drift apart. Written in `keras.ops`: it runs on every Keras backend.
"""

import keras
import numpy as np
from keras import ops

from keras_cnn.colorization.color import grey
from keras_cnn.errors import UserError

INPUT_MODES = ("grey", "downsize")


def check_input_mode(mode):
    if mode not in INPUT_MODES:
        raise UserError(f"unknown colourizer input mode {mode!r}; choose one of: {', '.join(INPUT_MODES)}")
    return mode


def downsize(images, factor=4):
    """Super-resolution input: average-pool 2 twice, then nearest upsampling 4x (3 channels, /256)."""
    x = ops.cast(images, "float32") / 256.0
    squeeze = len(x.shape) == 3
    if squeeze:
        x = x[None]
    for _ in range(int(np.log2(factor))):
        x = ops.average_pool(x, 2, 2, padding="valid")
    x = ops.repeat(ops.repeat(x, factor, axis=1), factor, axis=2)
    return x[0] if squeeze else x


def net_input(images, mode="grey"):
    """What the nets see for RGB pixels 0-255: grey / 256, or the 4x-downsized colour image."""
    check_input_mode(mode)
    return downsize(images) if mode == "downsize" else grey(images, "keras")


@keras.saving.register_keras_serializable(package="keras_cnn")
class ColorizerInput(keras.layers.Layer):
    """RGB pixels 0-255 -> the net input (`net_input`); no weights.

    Computed in float32 whatever the precision policy: bfloat16 would round
    the grey levels the palette decoding later reuses.
    """

    def __init__(self, mode="grey", **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        self.mode = check_input_mode(mode)

    def call(self, images):
        return net_input(images, self.mode)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + ((1,) if self.mode == "grey" else (3,))

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}
