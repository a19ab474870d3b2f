"""torchvision's ResNet-50 / ResNet-101 in Keras, layer for layer, dilated for DeepLabV3.

torchvision's segmentation models (`deeplabv3_resnet50/101`, `fcn_resnet*`)
sit on its own ResNet, which differs from `keras.applications.ResNet*`
(`backbones.ResNetBackbone`) in ways that change every output, so its weights
cannot be poured into the Keras one:

- bottleneck "v1.5": the stride of a downsampling block is on the 3x3 conv,
  not on the first 1x1 conv;
- the convolutions have no bias, and BatchNorm's epsilon is 1e-5 (1.001e-5
  in `keras.applications`);
- explicit symmetric zero padding (3 for the 7x7 stem, 1 for the max-pool,
  the dilation for every 3x3): TensorFlow's "same" padding of a stride-2 conv
  pads more on the bottom/right than on the top/left, so it would shift every
  feature map by a pixel against PyTorch's;
- dilation placed by `replace_stride_with_dilation`: in a dilated stage the
  first block keeps the previous dilation and the others use the new one.

`TorchvisionResNetBackbone` builds exactly that graph, with one Keras layer
per torchvision module and names that spell the module's state-dict key
(`layer3_5_conv2` is `backbone.layer3.5.conv2`); `torchvision_layers` of a
built backbone lists the pairs, which is what
`keras_cnn.segmentation.torchvision_deeplab` loads a `.pth` file with.
"""

import keras

from keras_cnn.errors import UserError
from keras_cnn.layers import BatchNormalization
from keras_cnn.segmentation.backbones import BN_MOMENTUM, Backbone, _check_output_stride, _stage_schedule

# Bottleneck blocks per stage (layer1..layer4), as torchvision's resnet50/101.
RESNET_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
# Width of the 1x1 -> 3x3 part of each stage; the stage outputs 4x this.
STAGE_WIDTHS = (64, 128, 256, 512)
BOTTLENECK_EXPANSION = 4
# torch.nn.BatchNorm2d's default; keras.applications uses 1.001e-5.
TORCH_BN_EPSILON = 1e-5


def torchvision_key(layer_name):
    """The torchvision module path of one of this backbone's weighted layers.

    `layer3_5_downsample_0` -> `layer3.5.downsample.0`; `conv1` -> `conv1`.
    """
    return layer_name.replace("_", ".")


@keras.saving.register_keras_serializable(package="keras_cnn")
class TorchvisionResNetBackbone(Backbone):
    """torchvision's ResNet-50 or ResNet-101, dilated to `output_stride`, as a Keras backbone.

    Output stride 8 is torchvision's `replace_stride_with_dilation=[False,
    True, True]` (what its DeepLabV3 uses: layer3 dilation 2, layer4
    dilation 4), 16 is `[False, False, True]`, 32 the undilated classifier
    network. The output is the 2048-channel `layer4` map; `aux_layer_name`
    names the last layer of `layer3` (1024 channels), where torchvision's
    auxiliary FCN head reads its features.

    The input is the normalised image, `(x / 255 - mean) / std` with the
    ImageNet mean and std (torchvision's `Normalize`), so `preprocessing`
    is "imagenet".

    Args:
        depth: 50 or 101.
        output_stride: 8, 16 or 32.
        image_shape: fixed `(height, width, 3)` of the normalised input.

    Example:
        backbone = TorchvisionResNetBackbone(depth=50, output_stride=8, image_shape=(64, 64, 3))
        backbone(np.zeros((1, 64, 64, 3))).shape  # (1, 8, 8, 2048)

    Reference:
        He et al. 2016, "Deep Residual Learning for Image Recognition";
        torchvision.models.resnet (the v1.5 bottleneck) and
        torchvision.models.segmentation.deeplabv3.
    """

    def __init__(self, depth=101, output_stride=8, image_shape=(520, 520, 3), **kwargs):
        _check_output_stride(output_stride)
        if depth not in RESNET_BLOCKS:
            raise UserError(f"torchvision ResNet depth must be 50 or 101, got {depth!r}")
        kwargs.setdefault("name", f"torchvision_resnet{depth}")
        inputs = keras.Input(shape=tuple(image_shape), name=f"{kwargs['name']}_images")
        weighted = []  # Keras names of the conv / BN layers, in torchvision's order

        def conv(x, filters, kernel, stride, dilation, name):
            # Explicit symmetric padding as torch's `padding=`; 'valid' conv after it.
            pad = dilation * (kernel - 1) // 2
            if pad:
                x = keras.layers.ZeroPadding2D(pad, name=f"{name}_pad")(x)
            weighted.append(name)
            return keras.layers.Conv2D(filters, kernel, strides=stride, dilation_rate=dilation,
                                       padding="valid", use_bias=False, name=name)(x)

        def bn(x, name):
            weighted.append(name)
            return BatchNormalization(momentum=BN_MOMENTUM, epsilon=TORCH_BN_EPSILON,
                                                   name=name)(x)

        # === Stem: conv 7x7/2 (padding 3), BN, ReLU, max-pool 3x3/2 (padding 1) ===
        x = conv(inputs, 64, 7, 2, 1, "conv1")
        x = keras.layers.ReLU(name="relu")(bn(x, "bn1"))
        # torch pads a max-pool with -inf. Zero padding is the same here: the
        # input is a ReLU output (>= 0) and every 3x3 window holds at least one
        # real pixel, so a padded 0 never exceeds the window's true maximum.
        x = keras.layers.ZeroPadding2D(1, name="maxpool_pad")(x)
        x = keras.layers.MaxPooling2D(3, strides=2, padding="valid", name="maxpool")(x)

        # === layer1..layer4: v1.5 bottlenecks ===
        # layer1 keeps the stem's stride 4; layer2..4 each halve it or dilate.
        schedule = [(1, 1, 1)] + _stage_schedule(3, 4, output_stride)
        in_channels = 64
        for stage, (blocks, width, (stride, first_dilation, dilation)) in enumerate(
                zip(RESNET_BLOCKS[depth], STAGE_WIDTHS, schedule), start=1):
            out_channels = width * BOTTLENECK_EXPANSION
            for b in range(blocks):
                p = f"layer{stage}_{b}"
                block_stride = stride if b == 0 else 1
                block_dilation = first_dilation if b == 0 else dilation
                y = conv(x, width, 1, 1, 1, f"{p}_conv1")
                y = keras.layers.ReLU(name=f"{p}_relu1")(bn(y, f"{p}_bn1"))
                # v1.5: the block's stride is on the 3x3 conv.
                y = conv(y, width, 3, block_stride, block_dilation, f"{p}_conv2")
                y = keras.layers.ReLU(name=f"{p}_relu2")(bn(y, f"{p}_bn2"))
                y = bn(conv(y, out_channels, 1, 1, 1, f"{p}_conv3"), f"{p}_bn3")
                shortcut = x
                if b == 0 and (block_stride != 1 or in_channels != out_channels):
                    shortcut = conv(x, out_channels, 1, block_stride, 1, f"{p}_downsample_0")
                    shortcut = bn(shortcut, f"{p}_downsample_1")
                x = keras.layers.Add(name=f"{p}_add")([y, shortcut])
                x = keras.layers.ReLU(name=f"{p}_out")(x)
                in_channels = out_channels

        self._finish(inputs, x, image_shape, output_stride, "imagenet", **kwargs)
        self.depth = depth
        self.aux_layer_name = f"layer3_{RESNET_BLOCKS[depth][2] - 1}_out"
        # (Keras layer name, torchvision module path) of every weighted layer.
        self.torchvision_layers = tuple((n, torchvision_key(n)) for n in weighted)

    def get_config(self):
        config = super().get_config()
        config.update({"depth": self.depth})
        return config
