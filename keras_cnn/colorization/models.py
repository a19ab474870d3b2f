"""The course's three colourization nets (SPEC part A), bottom-up.

All take channels-last images (N, H, W, num_in_channels) (grey /256, or the
3-channel downsized colour image in super-resolution mode) and return logits
(N, H, W, num_colours) over the palette. H and W must be multiples of 4.

They are ported from the PyTorch assignment layer for layer, including
PyTorch's padding arithmetic: a stride-2 conv pads `kernel // 2` on every side
and a transposed conv is PyTorch's `padding=kernel // 2, output_padding=1`, so
weights move between the two frameworks without a one-pixel shift (Keras'
`padding="same"` pads only at the end for stride 2). BatchNorm uses PyTorch's
momentum 0.1 and epsilon 1e-5.
"""

import keras

from keras_cnn.errors import UserError

_BN = dict(momentum=0.9, epsilon=1e-5)  # PyTorch BatchNorm2d defaults


# === Blocks ===

def _conv(x, filters, kernel, name):
    return keras.layers.Conv2D(filters, kernel, padding="same", name=name)(x)


def _conv_stride2(x, filters, kernel, name):
    x = keras.layers.ZeroPadding2D(kernel // 2, name=f"{name}_pad")(x)
    return keras.layers.Conv2D(filters, kernel, strides=2, padding="valid", name=name)(x)


def _conv_transpose2(x, filters, kernel, name):
    # "valid" gives 2n + kernel - 2 pixels; PyTorch's padding p = kernel // 2
    # with output_padding 1 keeps pixels p .. p + 2n - 1 of them.
    x = keras.layers.Conv2DTranspose(filters, kernel, strides=2, padding="valid", name=name)(x)
    p = kernel // 2
    return keras.layers.Cropping2D(((p, kernel - 2 - p), (p, kernel - 2 - p)), name=f"{name}_crop")(x)


def _bn_relu(x, name):
    x = keras.layers.BatchNormalization(name=f"{name}_bn", **_BN)(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def _logits(x, num_colours, kernel):
    x = _conv(x, num_colours, kernel, "final")
    # Under a mixed-precision policy the nets compute in float16/bfloat16; the
    # logits (and so the loss and the softmax) stay float32.
    return keras.layers.Activation("linear", dtype="float32", name="logits")(x)


def _check(kernel, num_filters, num_colours, num_in_channels):
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


def _inputs(num_in_channels):
    # Named so exported signatures get a stable input key.
    return keras.Input((None, None, num_in_channels), name="images")


# === Nets ===

@keras.saving.register_keras_serializable(package="keras_cnn")
class PoolUpsampleNet(ColourNet):
    """Conv -> MaxPool -> BN -> ReLU down twice, Conv -> Upsample -> BN -> ReLU up twice.

    NF@H/2, 2NF@H/4, NF@H/2, NC@H, then a final conv to NC logits. With the
    defaults: 49,728 trainable parameters.

    Args:
        kernel: convolution kernel size (odd).
        num_filters: NF, filters of the first block.
        num_colours: NC, palette size (output channels).
        num_in_channels: 1 for grey input, 3 in super-resolution mode.
        middle_blocks: extra 2NF -> 2NF Conv-BN-ReLU blocks at H/4 (the 2020
            "CNN" has one).
        pool_after_activation: Conv -> BN -> ReLU -> MaxPool (the 2020 order).

    Example:
        model = PoolUpsampleNet()
        logits = model(np.zeros((2, 32, 32, 1), "float32"))  # (2, 32, 32, 24)

    Reference: CSC413/2516 "Convolutional Neural Networks" assignment.
    """

    def __init__(self, kernel=3, num_filters=32, num_colours=24, num_in_channels=1,
                 middle_blocks=0, pool_after_activation=False, **kwargs):
        _check(kernel, num_filters, num_colours, num_in_channels)
        inputs = _inputs(num_in_channels)
        x = inputs
        for i, filters in enumerate((num_filters, 2 * num_filters), start=1):
            x = _conv(x, filters, kernel, f"down{i}")
            if pool_after_activation:
                x = _bn_relu(x, f"down{i}")
                x = keras.layers.MaxPooling2D(2, name=f"down{i}_pool")(x)
            else:
                x = keras.layers.MaxPooling2D(2, name=f"down{i}_pool")(x)
                x = _bn_relu(x, f"down{i}")
        for i in range(middle_blocks):
            x = _bn_relu(_conv(x, 2 * num_filters, kernel, f"middle{i + 1}"), f"middle{i + 1}")
        for i, filters in enumerate((num_filters, num_colours), start=1):
            x = _conv(x, filters, kernel, f"up{i}")
            x = keras.layers.UpSampling2D(2, name=f"up{i}_upsample")(x)
            x = _bn_relu(x, f"up{i}")
        outputs = _logits(x, num_colours, kernel)
        super().__init__(inputs, outputs, kernel, num_filters, num_colours, num_in_channels, **kwargs)
        self.middle_blocks = middle_blocks
        self.pool_after_activation = pool_after_activation

    def get_config(self):
        return {**super().get_config(), "middle_blocks": self.middle_blocks,
                "pool_after_activation": self.pool_after_activation}


@keras.saving.register_keras_serializable(package="keras_cnn")
class ConvTransposeNet(ColourNet):
    """Stride-2 convs down, stride-2 transposed convs up, each with BN and ReLU.

    NF@H/2, 2NF@H/4, NF@H/2, NC@H, then a final conv. With the defaults:
    49,728 trainable parameters. Args as `PoolUpsampleNet`.

    Example:
        model = ConvTransposeNet(num_colours=16)
    """

    def __init__(self, kernel=3, num_filters=32, num_colours=24, num_in_channels=1, **kwargs):
        _check(kernel, num_filters, num_colours, num_in_channels)
        inputs = _inputs(num_in_channels)
        outputs = self._body(inputs, kernel, num_filters, num_colours, skips=False)
        super().__init__(inputs, outputs, kernel, num_filters, num_colours, num_in_channels, **kwargs)

    @staticmethod
    def _body(inputs, kernel, num_filters, num_colours, skips):
        down1 = _bn_relu(_conv_stride2(inputs, num_filters, kernel, "down1"), "down1")
        down2 = _bn_relu(_conv_stride2(down1, 2 * num_filters, kernel, "down2"), "down2")
        up1 = _bn_relu(_conv_transpose2(down2, num_filters, kernel, "up1"), "up1")
        if skips:
            up1 = keras.layers.Concatenate(name="skip1")([down1, up1])
        up2 = _bn_relu(_conv_transpose2(up1, num_colours, kernel, "up2"), "up2")
        if skips:
            up2 = keras.layers.Concatenate(name="skip2")([up2, inputs])
        return _logits(up2, num_colours, kernel)


@keras.saving.register_keras_serializable(package="keras_cnn")
class UNet(ColourNet):
    """ConvTransposeNet with two skip connections.

    concat(first down output, first up output) feeds the second up layer;
    concat(second up output, the input image) feeds the final conv. With the
    defaults: 56,856 trainable parameters. Args as `PoolUpsampleNet`.

    Example:
        model = UNet()

    Reference: Ronneberger et al., "U-Net", MICCAI 2015.
    """

    def __init__(self, kernel=3, num_filters=32, num_colours=24, num_in_channels=1, **kwargs):
        _check(kernel, num_filters, num_colours, num_in_channels)
        inputs = _inputs(num_in_channels)
        outputs = ConvTransposeNet._body(inputs, kernel, num_filters, num_colours, skips=True)
        super().__init__(inputs, outputs, kernel, num_filters, num_colours, num_in_channels, **kwargs)


# === Registry ===

def _cnn2020(**kwargs):
    """The 2020 assignment's "CNN": PoolUpsampleNet with one more 2NF block, pooling after ReLU."""
    return PoolUpsampleNet(middle_blocks=1, pool_after_activation=True, **kwargs)


# ResUNet lives in resunet.py and builds on the blocks above, so it is imported
# after them (importing it also registers it for `keras.saving.load_model`); it
# is looked up at call time so either module may be imported first.
from keras_cnn.colorization import resunet  # noqa: E402


def _resunet(**kwargs):
    """ResUNet (resunet.py): residual blocks, dilated context and image pooling."""
    return resunet.ResUNet(**kwargs)


MODELS = {
    "pool_upsample": PoolUpsampleNet,
    "conv_transpose": ConvTransposeNet,
    "unet": UNet,
    "cnn2020": _cnn2020,
    "resunet": _resunet,
}


def build_model(name, **kwargs):
    """A colourization net by registry name (see `MODELS`)."""
    if name not in MODELS:
        raise UserError(f"unknown colourization model {name!r}; choose one of: {', '.join(MODELS)}")
    return MODELS[name](**kwargs)
