"""Building blocks shared by the colourization nets (`models.py`, `resunet.py`).

Convolutions follow PyTorch's padding arithmetic so weights move between the
course's PyTorch nets and these without a one-pixel shift: a stride-2 conv
pads `kernel // 2` on every side (Keras' `padding="same"` pads only at the end
for stride 2) and a transposed conv is PyTorch's `padding=kernel // 2,
output_padding=1`. BatchNorm uses PyTorch's momentum 0.1 and epsilon 1e-5.
`ColourNet` is the base class of every net: a functional model on the
*net input* (grey / 256, or the 4x-downsized colour image) whose constructor
arguments are its config.
"""

import keras

from keras_cnn.errors import UserError
from keras_cnn.layers import BatchNormalization, Cropping2D

BN_ARGS = dict(momentum=0.9, epsilon=1e-5)  # PyTorch BatchNorm2d defaults


# === Blocks ===

def conv(x, filters, kernel, name):
    return keras.layers.Conv2D(filters, kernel, padding="same", name=name)(x)


def conv_stride2(x, filters, kernel, name):
    x = keras.layers.ZeroPadding2D(kernel // 2, name=f"{name}_pad")(x)
    return keras.layers.Conv2D(filters, kernel, strides=2, padding="valid", name=name)(x)


def conv_transpose2(x, filters, kernel, name):
    # "valid" gives 2n + kernel - 2 pixels; PyTorch's padding p = kernel // 2
    # with output_padding 1 keeps pixels p .. p + 2n - 1 of them.
    x = keras.layers.Conv2DTranspose(filters, kernel, strides=2, padding="valid", name=name)(x)
    p = kernel // 2
    return Cropping2D(((p, kernel - 2 - p), (p, kernel - 2 - p)), name=f"{name}_crop")(x)


def bn_relu(x, name):
    x = BatchNormalization(name=f"{name}_bn", **BN_ARGS)(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def logits_layer(x, num_colours, kernel):
    x = conv(x, num_colours, kernel, "final")
    # Under a mixed-precision policy the nets compute in float16/bfloat16; the
    # logits (and so the loss and the softmax) stay float32.
    return keras.layers.Activation("linear", dtype="float32", name="logits")(x)


def check_args(kernel, num_filters, num_colours, num_in_channels):
    if kernel < 3 or kernel % 2 == 0:
        raise UserError(f"kernel must be odd and >= 3, got {kernel}")
    for name, v in (("num_filters", num_filters), ("num_colours", num_colours),
                    ("num_in_channels", num_in_channels)):
        if v < 1:
            raise UserError(f"{name} must be >= 1, got {v}")


class ColourNet(keras.Model):
    """Base of the colourization nets: stores the constructor arguments.

    Subclasses build a functional graph in `__init__` (as keras-hub models do),
    so `model.layers` exposes every intermediate activation by name.
    """

    def __init__(self, inputs, outputs, kernel, num_filters, num_colours, num_in_channels, **kwargs):
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self.kernel = kernel
        self.num_filters = num_filters
        self.num_colours = num_colours
        self.num_in_channels = num_in_channels

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable, "kernel": self.kernel,
                "num_filters": self.num_filters, "num_colours": self.num_colours,
                "num_in_channels": self.num_in_channels}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def net_inputs(num_in_channels):
    # Named so exported signatures get a stable input key.
    return keras.Input((None, None, num_in_channels), name="images")
