"""The course's three colourization nets, bottom-up.

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

from keras_cnn.colorization import effnet_unet, resunet
from keras_cnn.colorization.blocks import (
    ColourNet,
    bn_relu,
    check_args,
    conv,
    conv_stride2,
    conv_transpose2,
    logits_layer,
    net_inputs,
)
from keras_cnn.errors import UserError

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
        check_args(kernel, num_filters, num_colours, num_in_channels)
        inputs = net_inputs(num_in_channels)
        x = inputs
        for i, filters in enumerate((num_filters, 2 * num_filters), start=1):
            x = conv(x, filters, kernel, f"down{i}")
            if pool_after_activation:
                x = bn_relu(x, f"down{i}")
                x = keras.layers.MaxPooling2D(2, name=f"down{i}_pool")(x)
            else:
                x = keras.layers.MaxPooling2D(2, name=f"down{i}_pool")(x)
                x = bn_relu(x, f"down{i}")
        for i in range(middle_blocks):
            x = bn_relu(conv(x, 2 * num_filters, kernel, f"middle{i + 1}"), f"middle{i + 1}")
        for i, filters in enumerate((num_filters, num_colours), start=1):
            x = conv(x, filters, kernel, f"up{i}")
            x = keras.layers.UpSampling2D(2, name=f"up{i}_upsample")(x)
            x = bn_relu(x, f"up{i}")
        outputs = logits_layer(x, num_colours, kernel)
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
        check_args(kernel, num_filters, num_colours, num_in_channels)
        inputs = net_inputs(num_in_channels)
        outputs = self._body(inputs, kernel, num_filters, num_colours, skips=False)
        super().__init__(inputs, outputs, kernel, num_filters, num_colours, num_in_channels, **kwargs)

    @staticmethod
    def _body(inputs, kernel, num_filters, num_colours, skips):
        down1 = bn_relu(conv_stride2(inputs, num_filters, kernel, "down1"), "down1")
        down2 = bn_relu(conv_stride2(down1, 2 * num_filters, kernel, "down2"), "down2")
        up1 = bn_relu(conv_transpose2(down2, num_filters, kernel, "up1"), "up1")
        if skips:
            up1 = keras.layers.Concatenate(name="skip1")([down1, up1])
        up2 = bn_relu(conv_transpose2(up1, num_colours, kernel, "up2"), "up2")
        if skips:
            up2 = keras.layers.Concatenate(name="skip2")([up2, inputs])
        return logits_layer(up2, num_colours, kernel)


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
        check_args(kernel, num_filters, num_colours, num_in_channels)
        inputs = net_inputs(num_in_channels)
        outputs = ConvTransposeNet._body(inputs, kernel, num_filters, num_colours, skips=True)
        super().__init__(inputs, outputs, kernel, num_filters, num_colours, num_in_channels, **kwargs)


# === Registry ===

def _cnn2020(**kwargs):
    """The 2020 assignment's "CNN": PoolUpsampleNet with one more 2NF block, pooling after ReLU."""
    return PoolUpsampleNet(middle_blocks=1, pool_after_activation=True, **kwargs)


def _resunet(**kwargs):
    """ResUNet (resunet.py): residual blocks, dilated context and image pooling."""
    return resunet.ResUNet(**kwargs)


def _effnet_unet(**kwargs):
    """EffNetUNet (effnet_unet.py): an ImageNet EfficientNet-Lite0 encoder and a UNet decoder."""
    return effnet_unet.EffNetUNet(**kwargs)


MODELS = {
    "pool_upsample": PoolUpsampleNet,
    "conv_transpose": ConvTransposeNet,
    "unet": UNet,
    "cnn2020": _cnn2020,
    "resunet": _resunet,
    "effnet_unet": _effnet_unet,
}


def build_model(name, **kwargs):
    """A colourization net by registry name (see `MODELS`)."""
    if name not in MODELS:
        raise UserError(f"unknown colourization model {name!r}; choose one of: {', '.join(MODELS)}")
    return MODELS[name](**kwargs)
