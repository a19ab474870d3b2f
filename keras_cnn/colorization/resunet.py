"""ResUNet: a deeper colourization UNet of residual blocks with dilated context.

The course's UNet sees a 7x7 (down) to 15x15 pixel neighbourhood and has
57 k parameters: too little context to know that a 32x32 horse sits on grass
under a sky. This net keeps the course's input/output contract (grey /256 in,
palette logits out, H and W multiples of 4, the same PyTorch-compatible
stride-2 and transposed convs) and adds, bottom-up:

- residual blocks (He et al. 2016) at every level, so it trains deep;
- at H/4, blocks with dilation rates such as 1, 2, 4 whose receptive field
  covers the whole 32x32 image, plus an image-pooling branch (DeepLabV3's
  ASPP image-level feature), added to every position, for global context
  (scene colour, lighting);
- skip connections from the H/2 and H levels and the input image, as in the
  course UNet.

Chroma is smooth (the shared CIFAR JPEGs store it at half resolution), so the
compute sits at H/2 and H/4; the full-resolution level has one conv only.
"""

import keras

from keras_cnn.colorization.blocks import (
    BN_ARGS,
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
from keras_cnn.layers import BatchNormalization

# === Blocks ===

def _residual_block(x, kernel, dilation, name):
    """conv-BN-ReLU-conv-BN, plus the input, then ReLU (ResNet's basic block, dilated)."""
    filters = x.shape[-1]
    y = keras.layers.Conv2D(filters, kernel, padding="same", dilation_rate=dilation,
                            use_bias=False, name=f"{name}_conv1")(x)
    y = bn_relu(y, f"{name}_1")
    y = keras.layers.Conv2D(filters, kernel, padding="same", dilation_rate=dilation,
                            use_bias=False, name=f"{name}_conv2")(y)
    y = BatchNormalization(name=f"{name}_2_bn", **BN_ARGS)(y)
    y = keras.layers.Add(name=f"{name}_add")([x, y])
    return keras.layers.ReLU(name=f"{name}_relu")(y)


def _image_pooling(x, name):
    """The mean feature over the image, projected (1x1-BN-ReLU) and added to every position."""
    g = keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_pool")(x)
    g = keras.layers.Conv2D(x.shape[-1], 1, use_bias=False, name=f"{name}_conv")(g)
    g = bn_relu(g, name)
    # (N, 1, 1, C) broadcasts over (N, H, W, C).
    return keras.layers.Add(name=f"{name}_add")([x, g])


# === Net ===

@keras.saving.register_keras_serializable(package="keras_cnn")
class ResUNet(ColourNet):
    """A residual, dilated UNet for colourization over a palette.

    Levels (NF = `num_filters`): stem conv NF@H; stride-2 conv to 2NF@H/2 and
    `encoder_blocks` residual blocks; stride-2 conv to 4NF@H/4, one residual
    block per entry of `dilations` (that dilation rate), the image-pooling
    branch; transposed conv to 2NF@H/2, concat with the H/2 encoder output,
    conv-BN-ReLU to 2NF and `decoder_blocks` residual blocks; transposed conv
    to NF@H, concat with the stem output and the input image, conv-BN-ReLU
    to NF; a final conv to the logits. With the defaults and 24 colours:
    1,709,432 parameters (BatchNorm statistics included); it trains about
    7.5x slower per image than the course UNet on CPU (docs/BENCHMARKS.md).

    Args:
        kernel: convolution kernel size (odd).
        num_filters: NF, filters at full resolution (x2 at H/2, x4 at H/4).
        num_colours: palette size (output channels).
        num_in_channels: 1 for grey input, 3 in super-resolution mode.
        encoder_blocks: residual blocks at H/2 on the way down.
        dilations: dilation rate of each residual block at H/4.
        decoder_blocks: residual blocks at H/2 on the way up.
        global_context: add the image-pooling branch at H/4.

    Example:
        model = ResUNet(num_colours=32)
        logits = model(np.zeros((2, 32, 32, 1), "float32"))  # (2, 32, 32, 32)

    Reference: He et al., "Deep Residual Learning for Image Recognition",
    CVPR 2016; Chen et al., "Rethinking Atrous Convolution for Semantic Image
    Segmentation", 2017; Zhang et al., "Colorful Image Colorization", ECCV 2016.
    """

    def __init__(self, kernel=3, num_filters=32, num_colours=24, num_in_channels=1,
                 encoder_blocks=2, dilations=(1, 2, 4, 1), decoder_blocks=1, global_context=True,
                 **kwargs):
        check_args(kernel, num_filters, num_colours, num_in_channels)
        dilations = tuple(int(d) for d in dilations)
        if encoder_blocks < 0 or decoder_blocks < 0:
            raise UserError(f"block counts must be >= 0, got encoder_blocks={encoder_blocks}, "
                            f"decoder_blocks={decoder_blocks}")
        if any(d < 1 for d in dilations):
            raise UserError(f"dilation rates must be >= 1, got {list(dilations)}")
        nf = num_filters
        inputs = net_inputs(num_in_channels)
        # === Encoder ===
        stem = bn_relu(conv(inputs, nf, kernel, "stem"), "stem")
        x = bn_relu(conv_stride2(stem, 2 * nf, kernel, "down1"), "down1")
        for i in range(encoder_blocks):
            x = _residual_block(x, kernel, 1, f"enc{i + 1}")
        skip = x
        x = bn_relu(conv_stride2(x, 4 * nf, kernel, "down2"), "down2")
        # === Context at H/4 ===
        for i, rate in enumerate(dilations):
            x = _residual_block(x, kernel, rate, f"ctx{i + 1}")
        if global_context:
            x = _image_pooling(x, "image_pool")
        # === Decoder ===
        x = bn_relu(conv_transpose2(x, 2 * nf, kernel, "up1"), "up1")
        x = keras.layers.Concatenate(name="skip1")([skip, x])
        x = bn_relu(conv(x, 2 * nf, kernel, "fuse1"), "fuse1")
        for i in range(decoder_blocks):
            x = _residual_block(x, kernel, 1, f"dec{i + 1}")
        x = bn_relu(conv_transpose2(x, nf, kernel, "up2"), "up2")
        x = keras.layers.Concatenate(name="skip2")([stem, x, inputs])
        x = bn_relu(conv(x, nf, kernel, "fuse2"), "fuse2")
        outputs = logits_layer(x, num_colours, kernel)
        super().__init__(inputs, outputs, kernel, num_filters, num_colours, num_in_channels, **kwargs)
        self.encoder_blocks = encoder_blocks
        self.dilations = dilations
        self.decoder_blocks = decoder_blocks
        self.global_context = global_context

    def get_config(self):
        return {**super().get_config(), "encoder_blocks": self.encoder_blocks,
                "dilations": list(self.dilations), "decoder_blocks": self.decoder_blocks,
                "global_context": self.global_context}
