"""`Colorizer`: the task model, RGB pixels in, palette logits out.

The nets of `models.py` and `resunet.py` see the course's *net input* (grey =
RGB mean / 256, or the 4x-downsized colour image / 256 in super-resolution
mode). `Colorizer` puts that conversion in front of a net as a layer
(`ColorizerInput`), as keras-hub attaches an image converter to a task, so a
saved model takes what every caller has: RGB pixels 0-255 (uint8 or float),
any size that is a multiple of 4. Training, evaluation, prediction and export
therefore cannot drift apart.
"""

import keras
import numpy as np
import tensorflow as tf

from keras_cnn.colorization.blocks import ColourNet
from keras_cnn.colorization.palette import grey
from keras_cnn.errors import UserError

INPUT_MODES = ("grey", "downsize")


def downsize(images, factor=4):
    """Super-resolution input: average-pool 2 twice, then nearest upsampling 4x (3 channels, /256)."""
    x = tf.cast(images, tf.float32) / 256.0
    squeeze = x.shape.rank == 3
    if squeeze:
        x = x[None]
    for _ in range(int(np.log2(factor))):
        x = tf.nn.avg_pool2d(x, 2, 2, "VALID")
    x = tf.repeat(tf.repeat(x, factor, axis=1), factor, axis=2)
    return x[0] if squeeze else x


def net_input(images, mode="grey"):
    """What the nets see for RGB pixels 0-255: grey / 256, or the 4x-downsized colour image."""
    if mode not in INPUT_MODES:
        raise UserError(f"unknown colourizer input mode {mode!r}; choose one of: {', '.join(INPUT_MODES)}")
    return downsize(images) if mode == "downsize" else grey(images)


@keras.saving.register_keras_serializable(package="keras_cnn")
class ColorizerInput(keras.layers.Layer):
    """RGB pixels 0-255 -> the net input (`net_input`); no weights.

    Computed in float32 whatever the precision policy: bfloat16 would round
    the grey levels the palette decoding later reuses.
    """

    def __init__(self, mode="grey", **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        if mode not in INPUT_MODES:
            raise UserError(f"unknown colourizer input mode {mode!r}; choose one of: {', '.join(INPUT_MODES)}")
        self.mode = mode

    def call(self, images):
        return net_input(images, self.mode)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + ((1,) if self.mode == "grey" else (3,))

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


@keras.saving.register_keras_serializable(package="keras_cnn")
class Colorizer(keras.Model):
    """A colourization net with its input conversion: RGB (N, H, W, 3) 0-255 -> logits (N, H, W, K).

    Args:
        net: a `ColourNet` (UNet, ResUNet, ...) whose input channels match
            `input_mode` (1 for "grey", 3 for "downsize").
        input_mode: "grey" (the course) or "downsize" (super-resolution).

    Example:
        model = Colorizer(UNet(num_colours=24))
        logits = model(np.zeros((2, 32, 32, 3), "uint8"))  # (2, 32, 32, 24)
    """

    def __init__(self, net, input_mode="grey", **kwargs):
        if not isinstance(net, ColourNet):
            raise UserError(f"Colorizer wraps a colourization net, not a {type(net).__name__}")
        wanted = 1 if input_mode == "grey" else 3
        if net.num_in_channels != wanted:
            raise UserError(f"input mode {input_mode!r} gives {wanted} channel(s) but the net takes "
                            f"{net.num_in_channels}")
        inputs = keras.Input((None, None, 3), name="images")
        preprocessor = ColorizerInput(input_mode, name="preprocess")
        outputs = net(preprocessor(inputs))
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self.net = net
        self.preprocessor = preprocessor
        self.input_mode = input_mode

    @property
    def num_colours(self):
        return self.net.num_colours

    def summary(self, *args, expand_nested=True, **kwargs):
        # The net is one nested model: without expanding it the table is one opaque row.
        return super().summary(*args, expand_nested=expand_nested, **kwargs)

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable,
                "net": keras.saving.serialize_keras_object(self.net), "input_mode": self.input_mode}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["net"] = keras.saving.deserialize_keras_object(config["net"])
        return cls(**config)
