"""The colourizer's forward pass rewritten so that int8 quantisation keeps the grey input exact.

A colourizer's net sees grey = mean(R, G, B) / 256: 766 levels, which no
8-bit tensor holds. Worse, the UNet and the ResUNet concatenate the grey
image with ReLU activations before their last conv, and TFLite's int8
concatenation gives all its inputs one scale: the grey image then shares the
activations' range and keeps about 32 levels. Measured on a trained course
UNet, rounding the grey input to 32 levels alone flips about 6% of the argmax
decisions; that, not the output, is what costs the int8 model its agreement.

`colourizer_logits(model, images)` computes exactly what `model(images)`
computes (same weights, same float maths up to rounding), in a form whose
int8 version keeps the input exact:

- the net input is the three channels RGB / 256 (each exact in int8 at scale
  1/256) instead of their mean;
- a conv on the grey image becomes the same conv on the three channels with
  its kernel divided by 3 (conv(mean(x), w) == conv(x, w / 3 tiled));
- a concatenation that holds the grey image is not materialised: the conv
  after it becomes one conv per part, summed (conv(concat(a, b), w) ==
  conv(a, w_a) + conv(b, w_b)), so each part keeps its own scale;
- zero padding and cropping pass through the three channels.

Any other use of the grey image gets the plain mean. The graph is walked with
Keras' functional-graph runner, so every net of `colorization/models.py` and
`resunet.py` is covered without a per-net copy; `export.tflite` checks the
rewritten graph against the model before converting it.
"""

import keras
import tensorflow as tf

from keras_cnn.layers import BatchNormalization, Cropping2D


class _Grey:
    """The grey image held as its three channels (N, H, W, 3) / 256; grey = their mean."""

    channels = 1

    def __init__(self, rgb):
        self.rgb = rgb

    def value(self):
        return tf.reduce_mean(self.rgb, axis=-1, keepdims=True)


class _Parts:
    """A channel concatenation (last axis) not yet materialised: tensors and `_Grey`s."""

    def __init__(self, parts):
        self.parts = parts

    def value(self):
        return tf.concat([_value(p) for p in self.parts], axis=-1)


class _ConvTranspose:
    """A Conv2DTranspose output not yet computed, collecting what follows it.

    Cropping, an inference BatchNormalization and a ReLU after a transposed
    conv are folded into it: the BatchNorm into its kernel and bias (the
    converter folds BatchNorm into plain convs itself, but not across the
    crop the nets put between them), the ReLU into the op; the crop is done
    last (both commute with it). int8 then rounds once instead of three times.
    """

    def __init__(self, layer, inputs):
        self.layer, self.inputs = layer, inputs
        self.crop = None
        self.scale = None
        self.shift = None
        self.relu = False

    @property
    def channels(self):
        return self.layer.filters

    def folded(self, bn):
        if self.relu:
            return None
        gamma = bn.gamma if bn.scale else 1.0
        beta = bn.beta if bn.center else 0.0
        scale = tf.convert_to_tensor(gamma) * tf.math.rsqrt(tf.convert_to_tensor(bn.moving_variance) + bn.epsilon)
        shift = tf.convert_to_tensor(beta) - tf.convert_to_tensor(bn.moving_mean) * scale
        if self.scale is not None:
            scale, shift = self.scale * scale, self.shift * scale + shift
        self.scale, self.shift = scale, shift
        return self

    def value(self):
        layer = self.layer
        kernel = tf.convert_to_tensor(layer.kernel)  # (kh, kw, out, in)
        bias = tf.convert_to_tensor(layer.bias) if layer.use_bias else tf.zeros((layer.filters,))
        if self.scale is not None:
            kernel = kernel * self.scale[None, None, :, None]
            bias = bias * self.scale + self.shift
        y = keras.ops.conv_transpose(self.inputs, kernel, layer.strides, layer.padding,
                                     layer.output_padding, layer.data_format, layer.dilation_rate)
        y = layer.activation(tf.nn.bias_add(y, bias))
        if self.relu:
            y = tf.nn.relu(y)
        return self.crop(y) if self.crop is not None else y


def _value(x):
    return x.value() if isinstance(x, (_Grey, _Parts, _ConvTranspose)) else x


def _channels(x):
    return x.channels if isinstance(x, _Grey) else int(x.shape[-1])


def _plain(x):
    """Materialises markers anywhere inside (lists, tuples, dicts) an op's arguments."""
    if isinstance(x, (_Grey, _Parts, _ConvTranspose)):
        return x.value()
    if isinstance(x, (list, tuple)):
        return type(x)(_plain(v) for v in x)
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    return x


def _is_marker(x):
    return isinstance(x, (_Grey, _Parts))


def _conv_split(layer, x):
    """`layer` (a Conv2D) on a `_Grey` or `_Parts`, as one conv per part, summed."""
    parts = x.parts if isinstance(x, _Parts) else [x]
    kernel = tf.convert_to_tensor(layer.kernel)
    total, start = None, 0
    # The bias joins the first conv (TFLite fuses it); the other parts are added.
    for part in parts:
        n = _channels(part)
        k = kernel[:, :, start:start + n, :]
        start += n
        if isinstance(part, _Grey):
            inputs, k = part.rgb, tf.tile(k, [1, 1, 3, 1]) / 3.0
        else:
            inputs = part
        y = tf.nn.convolution(inputs, k, strides=layer.strides, padding=layer.padding.upper(),
                              dilations=layer.dilation_rate)
        if total is None:
            total = tf.nn.bias_add(y, layer.bias) if layer.use_bias else y
        else:
            total = total + y
    return layer.activation(total)


def _rewrite(operation):
    """The callable that replaces `operation` in the graph walk."""
    def call(*args, **kwargs):
        first = args[0] if args else None
        if isinstance(operation, (keras.layers.ZeroPadding2D, keras.layers.Cropping2D)) \
                and isinstance(first, _Grey):
            return _Grey(operation(first.rgb))
        if type(operation) is keras.layers.Conv2DTranspose and len(args) == 1 and not kwargs \
                and not _is_marker(first) and operation.data_format == "channels_last":
            return _ConvTranspose(operation, _value(first))
        if isinstance(first, _ConvTranspose) and len(args) == 1:
            if type(operation) in (keras.layers.Cropping2D, Cropping2D) and first.crop is None and not first.relu:
                first.crop = operation
                return first
            if type(operation) in (keras.layers.BatchNormalization, BatchNormalization) and not kwargs.get("training") \
                    and operation.axis in (-1, 3) and first.folded(operation) is not None:
                return first
            if type(operation) is keras.layers.ReLU and operation.max_value is None \
                    and not operation.negative_slope and not operation.threshold and not first.relu:
                first.relu = True
                return first
        if isinstance(operation, keras.layers.Concatenate) and operation.axis in (-1, 3) \
                and isinstance(first, (list, tuple)) and any(isinstance(p, (_Grey, _Parts)) for p in first):
            parts = []
            for p in first:
                parts.extend(p.parts if isinstance(p, _Parts) else [p if isinstance(p, _Grey) else _value(p)])
            return _Parts(parts)
        if type(operation) is keras.layers.Conv2D and _is_marker(first) and not kwargs \
                and len(args) == 1 and operation.groups == 1 and operation.data_format == "channels_last":
            return _conv_split(operation, first)
        return operation(*_plain(args), **_plain(kwargs))
    return call


def supported(model):
    """Whether `colourizer_logits` applies: a `Colorizer` on grey input with a functional net."""
    from keras_cnn.colorization.colorizer import Colorizer

    return (isinstance(model, Colorizer) and model.input_mode == "grey"
            and hasattr(model.net, "_run_through_graph") and len(model.net.inputs) == 1)


def colourizer_logits(model, images):
    """`model(images)` (a grey-input `Colorizer`) computed in the int8-friendly form above."""
    if not supported(model):
        return model(images, training=False)
    rgb = tf.cast(images, tf.float32) / 256.0
    out = model.net._run_through_graph(_Grey(rgb), operation_fn=_rewrite)
    return _value(out)
