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
- zero padding and cropping pass through the three channels;
- a cropped stride-2 transposed conv becomes one conv and a depth-to-space
  (sub-pixel convolution): the same sums, but TFLite runs int8 convs fast
  and int8 transposed convs slowly;
- a conv's (or transposed conv's) output is not computed until something
  other than what TFLite fuses into it reads it: an inference BatchNorm after
  it is folded into its kernel and bias, a ReLU into the op, the crop after a
  transposed conv done last (it commutes with both). The converter folds
  BatchNorm into a plain conv itself, but not across a crop or into a conv
  split into parts; int8 then rounds once per conv instead of up to three
  times. An Add followed by a ReLU is one fused op the same way.

Any other use of the grey image gets the plain mean. The graph is walked with
Keras' functional-graph runner, so every net of `colorization/models.py` and
`resunet.py` is covered without a per-net copy; `export.tflite` checks the
rewritten graph against the model before converting it.

`Int8Simulation` runs the same walk as the int8 file computes it, in float
TensorFlow on the model's own variables: every tensor the file quantises
(each materialised op output above, in walk order) fake-quantised at ranges
calibrated on the same images as the converter's, each conv kernel rounded
per output channel to int8, straight-through gradients. Quantisation-aware
fine-tuning (`keras_cnn.export.colorization.qat`) trains through it.
"""

import keras
import tensorflow as tf

from keras_cnn.layers import BatchNormalization, Cropping2D


class _Float:
    """The walk without quantisation: `colourizer_logits`' float graph."""

    def start(self):
        pass

    def act(self, t):
        return t

    def weights(self, w, out_axis):
        return w


_FLOAT = _Float()


class Int8Simulation(_Float):
    """What the int8 TFLite file of `colourizer_logits` computes, in float (see the module docstring).

    `ranges` (low, high) per quantised tensor, in walk order, come from
    `calibrate`: min / max over the images, as the converter calibrates; the
    last one is the logits', which export sets to `tflite.argmax_logit_range`
    for argmax decoders (pass it as `logits_range`). Without ranges the walk
    computes in float (kernels still rounded to int8).
    """

    def __init__(self):
        self.ranges = None
        self._seen = None
        self._index = 0

    def start(self):
        self._index = 0

    def act(self, t):
        i, self._index = self._index, self._index + 1
        if self._seen is not None:
            low, high = float(tf.reduce_min(t)), float(tf.reduce_max(t))
            if i < len(self._seen):
                low, high = min(low, self._seen[i][0]), max(high, self._seen[i][1])
                self._seen[i] = (low, high)
            else:
                self._seen.append((low, high))
            return t
        if self.ranges is None:
            return t
        # TFLite's asymmetric int8 ranges always hold 0; fake_quant nudges the range onto a grid holding it too.
        low, high = self.ranges[i]
        return tf.quantization.fake_quant_with_min_max_args(t, low, high, num_bits=8)

    def weights(self, w, out_axis):
        # The converter's per-channel symmetric int8 kernels ([-127, 127]), with a straight-through gradient.
        axes = [i for i in range(len(w.shape)) if i != out_axis]
        scale = tf.maximum(tf.reduce_max(tf.abs(w), axis=axes, keepdims=True), 1e-12) / 127.0
        return w + tf.stop_gradient(tf.round(w / scale) * scale - w)

    def calibrate(self, model, images, logits_range=None, batch=100):
        """Min / max of every quantised tensor on `images` (uint8 RGB); the logits' is `logits_range` if given."""
        self.ranges, self._seen = None, []
        try:
            for i in range(0, len(images), batch):
                colourizer_logits(model, tf.constant(images[i:i + batch]), self)
            ranges = [(min(0.0, low), max(0.0, high)) for low, high in self._seen]
        finally:
            self._seen = None
        if logits_range is not None:
            ranges[-1] = (min(0.0, float(logits_range[0])), max(0.0, float(logits_range[1])))
        self.ranges = ranges


class _Grey:
    """The grey image held as its three channels (N, H, W, 3) / 256; grey = their mean."""

    channels = 1

    def __init__(self, rgb):
        self.rgb = rgb

    def value(self):
        return tf.reduce_mean(self.rgb, axis=-1, keepdims=True)


class _Parts:
    """A channel concatenation (last axis) not yet materialised: tensors and `_Grey`s."""

    def __init__(self, parts, sim):
        self.parts, self.sim = parts, sim

    def value(self):
        return self.sim.act(tf.concat([_value(p) for p in self.parts], axis=-1))


class _Lazy:
    """An op output not yet computed; `with_relu` / `folded` / `cropped` return a new one with more fused."""

    relu = False

    def _copy(self, **changes):
        new = object.__new__(type(self))
        new.__dict__.update({**self.__dict__, "_cached": None, **changes})
        return new

    def with_relu(self):
        return None if self.relu else self._copy(relu=True)

    def value(self):
        # Computed (and, simulated, quantised) once, however many ops read it.
        if self._cached is None:
            self._cached = self._compute()
        return self._cached


class _Sum(_Lazy):
    """An Add's output: TFLite fuses a following ReLU into ADD."""

    def __init__(self, tensors, sim):
        self.tensors, self.sim, self._cached = tensors, sim, None

    def _compute(self):
        total = self.tensors[0]
        for t in self.tensors[1:]:
            total = total + t
        return self.sim.act(tf.nn.relu(total) if self.relu else total)


class _Conv(_Lazy):
    """A Conv2D / Conv2DTranspose output not yet computed: the sum of one conv per part, plus the bias.

    `parts`: (inputs, kernel slice) pairs; a `_Grey` part is the conv on its
    three channels with the kernel / 3 tiled. A folded BatchNorm scales the
    kernels and moves the bias; the ReLU and a transposed conv's crop come last.
    """

    def __init__(self, layer, parts, sim, subpixel=True):
        self.layer, self.parts, self.sim, self.subpixel = layer, parts, sim, subpixel
        self.scale = self.shift = self.crop = None
        self._cached = None

    @property
    def channels(self):
        return self.layer.filters

    @property
    def transposed(self):
        return isinstance(self.layer, keras.layers.Conv2DTranspose)

    def folded(self, bn):
        if self.relu:
            return None
        gamma = bn.gamma if bn.scale else 1.0
        beta = bn.beta if bn.center else 0.0
        scale = tf.convert_to_tensor(gamma) * tf.math.rsqrt(tf.convert_to_tensor(bn.moving_variance) + bn.epsilon)
        shift = tf.convert_to_tensor(beta) - tf.convert_to_tensor(bn.moving_mean) * scale
        if self.scale is not None:
            scale, shift = self.scale * scale, self.shift * scale + shift
        return self._copy(scale=scale, shift=shift)

    def cropped(self, crop):
        return self._copy(crop=crop) if self.transposed and self.crop is None and not self.relu else None

    def _bias(self):
        layer = self.layer
        bias = tf.convert_to_tensor(layer.bias) if layer.use_bias else tf.zeros((layer.filters,))
        return bias * self.scale + self.shift if self.scale is not None else bias

    def _compute(self):
        taps = _subpixel_taps(self.layer, self.crop) if self.transposed and self.subpixel else None
        if taps is not None:
            return self._compute_subpixel(taps)
        layer, sim = self.layer, self.sim
        out_axis = 2 if self.transposed else 3  # kernels: (kh, kw, out, in) / (kh, kw, in, out)
        bias = self._bias()
        outputs = []
        for inputs, kernel in self.parts:
            if self.scale is not None:
                kernel = kernel * tf.reshape(self.scale, [-1 if a == out_axis else 1 for a in range(4)])
            kernel = sim.weights(kernel, out_axis)
            if self.transposed:
                y = keras.ops.conv_transpose(inputs, kernel, layer.strides, layer.padding,
                                             layer.output_padding, layer.data_format, layer.dilation_rate)
            else:
                y = tf.nn.convolution(inputs, kernel, strides=layer.strides, padding=layer.padding.upper(),
                                      dilations=layer.dilation_rate)
            # The bias joins the first conv (TFLite fuses it); the other parts are added, each add an op.
            outputs.append(tf.nn.bias_add(y, bias) if not outputs else y)
        total = outputs[0]
        if len(outputs) > 1:
            total = sim.act(total)
            for i, y in enumerate(outputs[1:], 2):
                total = total + sim.act(y)
                if i < len(outputs):
                    total = sim.act(total)
        if self.relu:
            total = tf.nn.relu(total)
        if self.crop is not None:
            total = self.crop(total)
        return sim.act(total)

    def _compute_subpixel(self, taps):
        """The cropped stride-2 transposed conv as one conv to 4x the channels, then depth-to-space.

        Output pixel (2m + rh, 2n + rw) of the cropped result reads inputs near
        (m, n) through the taps of phase (rh, rw) only (sub-pixel convolution,
        Shi et al. 2016), so the four phases are one ordinary conv on the input
        with a (W, W, in, 4 * out) kernel, and DEPTH_TO_SPACE interleaves them.
        Same maths; but TFLite's int8 TRANSPOSE_CONV is no faster than float32 on
        XNNPACK, while its int8 CONV_2D is about 5x faster (docs/TFLITE.md).
        """
        (low_h, taps_h), (low_w, taps_w) = taps  # `_subpixel_taps`
        (inputs, kernel), = self.parts
        if self.scale is not None:
            kernel = kernel * self.scale[None, None, :, None]
        kernel = tf.transpose(kernel, [0, 1, 3, 2])  # (kh, kw, in, out)
        zeros = tf.zeros_like(kernel[0, 0])
        rows = []
        for row_h in taps_h:  # window row j: the kernel row each output phase reads there, or None
            cols = []
            for row_w in taps_w:
                cols.append(tf.concat([kernel[th, tw] if th is not None and tw is not None else zeros
                                       for th in row_h for tw in row_w], axis=-1))
            rows.append(tf.stack(cols))
        kernel = self.sim.weights(tf.stack(rows), 3)
        high_h, high_w = low_h + len(taps_h) - 1, low_w + len(taps_w) - 1
        padded = tf.pad(inputs, [[0, 0], [-low_h, high_h], [-low_w, high_w], [0, 0]])
        y = tf.nn.bias_add(tf.nn.convolution(padded, kernel, padding="VALID"), tf.tile(self._bias(), [4]))
        if self.relu:
            y = tf.nn.relu(y)
        return self.sim.act(tf.nn.depth_to_space(y, 2))


def _phase_taps(k, start):
    """One axis of a stride-2 transposed conv (kernel `k`) cropped by `start` in front (2n outputs kept).

    Returns (low, rows): kept output 2m + r is the sum over window offsets d of
    input m + d times kernel tap t = r + start - 2d; rows[j][r] is that tap for
    d = low + j (None where outside the kernel).
    """
    offsets = {(r, t): (r + start - t) // 2 for r in (0, 1) for t in range(k) if (r + start - t) % 2 == 0}
    low, high = min(offsets.values()), max(offsets.values())
    rows = [[next((t for (rr, t), d in offsets.items() if rr == r and d == low + j), None) for r in (0, 1)]
            for j in range(high - low + 1)]
    return low, rows


def _subpixel_taps(layer, crop):
    """Per axis `_phase_taps` if `layer` + `crop` is the nets' cropped stride-2 transposed conv, else None."""
    if crop is None or tuple(layer.strides) != (2, 2) or layer.padding != "valid" \
            or layer.output_padding is not None or tuple(layer.dilation_rate) != (1, 1):
        return None
    (top, bottom), (left, right) = crop.cropping
    kh, kw = layer.kernel_size
    if top + bottom != kh - 2 or left + right != kw - 2:  # the kept size must be exactly 2n
        return None
    return _phase_taps(kh, top), _phase_taps(kw, left)


_MARKERS = (_Grey, _Parts, _Lazy)
# Ops whose int8 output keeps its input's scale (TFLite requires it): nothing new is rounded.
_SAME_SCALE = (keras.layers.ZeroPadding2D, keras.layers.Cropping2D, keras.layers.MaxPooling2D,
               keras.layers.UpSampling2D, keras.layers.Reshape, keras.layers.InputLayer)


def _value(x):
    return x.value() if isinstance(x, _MARKERS) else x


def _channels(x):
    return x.channels if isinstance(x, _Grey) else int(x.shape[-1])


def _plain(x):
    """Materialises markers anywhere inside (lists, tuples, dicts) an op's arguments."""
    if isinstance(x, _MARKERS):
        return x.value()
    if isinstance(x, (list, tuple)):
        return type(x)(_plain(v) for v in x)
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    return x


def _conv_parts(layer, x):
    """(inputs, kernel) per part of `layer` (a Conv2D or Conv2DTranspose) on `x`."""
    kernel = tf.convert_to_tensor(layer.kernel)
    if isinstance(x, _Grey):
        x = _Parts([x], None)
    if not isinstance(x, _Parts):
        return [(_value(x), kernel)]
    parts, start = [], 0
    for part in x.parts:
        n = _channels(part)
        k = kernel[:, :, start:start + n, :]
        start += n
        parts.append((part.rgb, tf.tile(k, [1, 1, 3, 1]) / 3.0) if isinstance(part, _Grey) else (part, k))
    return parts


def _fusable_conv(operation, args, kwargs):
    return (type(operation) in (keras.layers.Conv2D, keras.layers.Conv2DTranspose) and len(args) == 1
            and not kwargs and operation.data_format == "channels_last"
            and operation.activation is keras.activations.linear
            and (type(operation) is keras.layers.Conv2DTranspose
                 or (operation.groups == 1 and operation.padding in ("same", "valid")))
            # A transposed conv takes one plain tensor; only a Conv2D splits into parts.
            and (type(operation) is keras.layers.Conv2D or not isinstance(args[0], (_Grey, _Parts))))


def _rewrite(operation, sim, subpixel=True):
    """The callable that replaces `operation` in the graph walk."""
    def call(*args, **kwargs):
        first = args[0] if args else None
        if isinstance(operation, (keras.layers.ZeroPadding2D, keras.layers.Cropping2D)) \
                and isinstance(first, _Grey):
            return _Grey(operation(first.rgb))
        if _fusable_conv(operation, args, kwargs):
            return _Conv(operation, _conv_parts(operation, first), sim, subpixel)
        if isinstance(first, _Lazy) and len(args) == 1:
            fused = None
            if type(operation) in (keras.layers.Cropping2D, Cropping2D) and isinstance(first, _Conv):
                fused = first.cropped(operation)
            elif type(operation) in (keras.layers.BatchNormalization, BatchNormalization) \
                    and isinstance(first, _Conv) and not kwargs.get("training") and operation.axis in (-1, 3):
                fused = first.folded(operation)
            elif type(operation) is keras.layers.ReLU and operation.max_value is None \
                    and not operation.negative_slope and not operation.threshold:
                fused = first.with_relu()
            if fused is not None:
                return fused
        if isinstance(operation, keras.layers.Concatenate) and operation.axis in (-1, 3) \
                and isinstance(first, (list, tuple)) and any(isinstance(p, (_Grey, _Parts)) for p in first):
            parts = []
            for p in first:
                parts.extend(p.parts if isinstance(p, _Parts) else [p if isinstance(p, _Grey) else _value(p)])
            return _Parts(parts, sim)
        if type(operation) is keras.layers.Add and len(args) == 1 and not kwargs:
            return _Sum([_value(t) for t in first], sim)
        out = operation(*_plain(args), **_plain(kwargs))
        linear = isinstance(operation, keras.layers.Activation) and operation.activation is keras.activations.linear
        if isinstance(operation, _SAME_SCALE) or linear or not tf.is_tensor(out):
            return out
        return sim.act(out)
    return call


def supported(model):
    """Whether `colourizer_logits` applies: a `Colorizer` on grey input with a functional net."""
    from keras_cnn.colorization.colorizer import Colorizer

    return (isinstance(model, Colorizer) and model.input_mode == "grey"
            and hasattr(model.net, "_run_through_graph") and len(model.net.inputs) == 1)


def colourizer_logits(model, images, simulation=None, subpixel=True):
    """`model(images)` (a grey-input `Colorizer`) computed in the int8-friendly form above.

    `simulation`: an `Int8Simulation` to compute it as the int8 file does.
    `subpixel=False` keeps the transposed convs (the int8 study's comparison row).
    """
    if not supported(model):
        if simulation is not None:
            raise ValueError("an int8 simulation needs a grey-input Colorizer with a functional net")
        return model(images, training=False)
    sim = simulation or _FLOAT
    sim.start()
    rgb = tf.cast(images, tf.float32) / 256.0
    out = model.net._run_through_graph(_Grey(rgb), operation_fn=lambda op: _rewrite(op, sim, subpixel))
    return _value(out)
