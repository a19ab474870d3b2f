"""DeepLabV3: atrous spatial pyramid pooling on a dilated backbone.

Bottom-up: `SpatialPyramidPooling` (ASPP with image pooling, the projection and
its dropout), then `DeepLabV3Segmenter`, the task model that puts ASPP, a
3x3 conv and the 1x1 classifier on any backbone of `backbones.py` and
upsamples the logits to the input size. With `low_level_channels` it becomes
DeepLabV3+: the 3x3 conv and the classifier run at stride 4 on the upsampled
ASPP output joined with the backbone's projected stride-4 features. The
segmenter's input is RGB pixels 0-255 (uint8 or float): its first layer
normalises them as its backbone expects (`preprocessing.ImageNormalization`);
its output is float32 logits `(batch, H, W, num_classes)`.
"""

import keras
from keras import ops

from keras_cnn.errors import UserError
from keras_cnn.layers import BatchNormalization
from keras_cnn.segmentation.backbones import BN_MOMENTUM
from keras_cnn.segmentation.preprocessing import ImageNormalization, check_mode

# DeepLabV3's ASPP rates (Chen et al. 2017, as torchvision): 6/12/18 at output stride 16, doubled at stride 8.
DEFAULT_RATES = {8: (12, 24, 36), 16: (6, 12, 18), 32: (3, 6, 9)}


# From this rate up, `atrous_conv2d` sums shifted 1x1 convolutions instead of TensorFlow's dilated
# convolution. Forward + backward, 8 x 20 x 20 x 256 -> 256 on 2 CPU cores: rate 2 and 4 about equal
# (150 ms), rate 12 266 -> 155 ms, rate 24 547 -> 54 ms; at 40 x 40, rate 12 1034 -> 639 ms.
DECOMPOSE_FROM_RATE = 8


def atrous_conv2d(filters, kernel_size, dilation_rate, **kwargs):
    """A "same" dilated `Conv2D` that computes itself as a sum of one 1x1 convolution per kernel tap.

    The same layer class, weights and function (to float rounding) as
    `keras.layers.Conv2D(..., padding="same")`; only its `convolution_op`
    is replaced, so `.keras` files written before load into it unchanged
    (Keras names saved sublayers by their class). TensorFlow runs a dilated
    convolution as SpaceToBatch -> convolution -> BatchToSpace, padding the
    feature map to a multiple of the rate: at DeepLabV3's ASPP rates on
    small maps that is mostly padding, and the gradient on CPU costs up to
    10x the plain convolution. Here each tap of the kernel is a 1x1
    convolution of the shifted map, and a tap whose shift is at least the
    map's size (it only ever reads the zero padding) is left out: at a rate
    as large as the map, the branch is the 1x1 convolution of its centre
    tap, as it is in exact arithmetic. Rates under `DECOMPOSE_FROM_RATE` or
    unknown map sizes use `Conv2D`'s own convolution.
    """
    conv = keras.layers.Conv2D(filters, kernel_size, dilation_rate=dilation_rate, padding="same", **kwargs)
    plain = conv.convolution_op

    def convolution_op(inputs, kernel):
        (kh, kw), (rh, rw) = conv.kernel_size, conv.dilation_rate
        if (max(rh, rw) < DECOMPOSE_FROM_RATE or conv.data_format != "channels_last" or conv.groups != 1
                or tuple(conv.strides) != (1, 1) or kh % 2 == 0 or kw % 2 == 0
                or inputs.shape[1] is None or inputs.shape[2] is None):
            return plain(inputs, kernel)
        height, width = int(inputs.shape[1]), int(inputs.shape[2])
        # Shifts (tap index, offset) that reach inside the map at all.
        rows = [(i, (i - kh // 2) * rh) for i in range(kh) if abs((i - kh // 2) * rh) < height]
        cols = [(j, (j - kw // 2) * rw) for j in range(kw) if abs((j - kw // 2) * rw) < width]
        pad_h, pad_w = max(abs(d) for _, d in rows), max(abs(d) for _, d in cols)
        padded = inputs if pad_h == pad_w == 0 else ops.pad(inputs, [[0, 0], [pad_h, pad_h], [pad_w, pad_w], [0, 0]])
        batch, channels = ops.shape(inputs)[0], ops.shape(inputs)[3]
        out = None
        for i, dy in rows:
            for j, dx in cols:
                # ops.slice, not [] indexing: on TensorFlow it is tf.slice, whose gradient is a Pad,
                # StridedSlice's a much slower StridedSliceGrad.
                window = ops.slice(padded, [0, pad_h + dy, pad_w + dx, 0], [batch, height, width, channels])
                term = ops.conv(window, kernel[i:i + 1, j:j + 1], padding="valid")
                out = term if out is None else out + term
        return out

    conv.convolution_op = convolution_op
    return conv


@keras.saving.register_keras_serializable(package="keras_cnn")
class SpatialPyramidPooling(keras.layers.Layer):
    """Atrous spatial pyramid pooling with an image-pooling branch.

    Five parallel branches over the backbone features, each `num_channels`
    wide with BatchNorm and ReLU: a 1x1 conv, one 3x3 conv per dilation rate,
    and global average pooling -> 1x1 conv, broadcast back to the feature
    size. They are concatenated and projected by a 1x1 conv (BN, ReLU) and
    dropout.

    The pooled branch is broadcast rather than resized, so the layer has no
    resize op and exports to SavedModel and TFLite with built-in ops only.

    Args:
        dilation_rates: rates of the 3x3 branches, e.g. (6, 12, 18).
        num_channels: width of every branch and of the projection.
        dropout: dropout rate after the projection.

    Example:
        aspp = SpatialPyramidPooling(dilation_rates=(6, 12, 18), num_channels=256)
        aspp(np.zeros((2, 14, 14, 2048))).shape  # (2, 14, 14, 256)

    Reference:
        Chen et al. 2017, "Rethinking Atrous Convolution for Semantic Image
        Segmentation", section 3.3.
    """

    def __init__(self, dilation_rates=(6, 12, 18), num_channels=256, dropout=0.5, **kwargs):
        super().__init__(**kwargs)
        self.dilation_rates = tuple(int(r) for r in dilation_rates)
        self.num_channels = num_channels
        self.dropout = dropout

        def conv_bn(kernel, rate, prefix):
            conv = atrous_conv2d(num_channels, kernel, rate, use_bias=False, name=f"{prefix}_conv")
            bn = BatchNormalization(momentum=BN_MOMENTUM, epsilon=1e-5, name=f"{prefix}_bn")
            return conv, bn

        # === Layers ===
        self.branches = [conv_bn(1, 1, "branch0")]
        self.branches += [conv_bn(3, r, f"branch{i + 1}") for i, r in enumerate(self.dilation_rates)]
        self.pool_conv, self.pool_bn = conv_bn(1, 1, "pool")
        self.project_conv, self.project_bn = conv_bn(1, 1, "project")
        self.dropout_layer = keras.layers.Dropout(dropout, name="dropout")

    def build(self, input_shape):
        for conv, bn in self.branches + [(self.pool_conv, self.pool_bn)]:
            conv.build(input_shape)
            bn.build(input_shape[:-1] + (self.num_channels,))
        concat_channels = self.num_channels * (len(self.branches) + 1)
        self.project_conv.build(input_shape[:-1] + (concat_channels,))
        self.project_bn.build(input_shape[:-1] + (self.num_channels,))

    def call(self, inputs, training=None):
        outputs = [ops.relu(bn(conv(inputs), training=training)) for conv, bn in self.branches]
        pooled = ops.mean(inputs, axis=(1, 2), keepdims=True)
        pooled = ops.relu(self.pool_bn(self.pool_conv(pooled), training=training))
        outputs.append(ops.broadcast_to(pooled, ops.shape(outputs[0])))
        x = ops.concatenate(outputs, axis=-1)
        x = ops.relu(self.project_bn(self.project_conv(x), training=training))
        return self.dropout_layer(x, training=training)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.num_channels,)

    def get_config(self):
        config = super().get_config()
        config.update({"dilation_rates": list(self.dilation_rates),
                       "num_channels": self.num_channels, "dropout": self.dropout})
        return config


@keras.saving.register_keras_serializable(package="keras_cnn")
class DeepLabV3Segmenter(keras.Model):
    """DeepLabV3: backbone -> ASPP -> 3x3 conv -> 1x1 classifier -> bilinear upsampling.

    The head follows torchvision's `DeepLabHead`: ASPP (see
    `SpatialPyramidPooling`), a 3x3 conv of `aspp_channels` with BN and ReLU,
    then the 1x1 classifier conv (layer name "classifier": the layer the
    assignment's fine-tuning replaces). Logits are resized bilinearly to the
    fixed input size, so the model exports with static shapes.

    Args:
        backbone: a `Backbone` (fixes the input size and the output stride).
        num_classes: number of output classes (2 for object/background).
        aspp_rates: dilation rates of ASPP; None for DeepLabV3's rates at the
            backbone's stride (6/12/18 at 16, 12/24/36 at 8).
        aspp_channels: width of ASPP and of the 3x3 conv (256 in the paper).
        dropout: dropout after the ASPP projection (0.5 in torchvision).
        preprocessing: the input normalisation in the model's first layer
            ("imagenet", "caffe" or "tf", see `preprocessing.preprocess`);
            None takes the backbone's own.
        low_level_channels: 0 for DeepLabV3; otherwise DeepLabV3+ (Chen et
            al. 2018): the backbone's stride-4 features (its
            `low_level_layer`) are projected to this many channels (48 in
            the paper; layers "low_level_conv"/"low_level_bn"), joined with
            the ASPP output upsampled to stride 4, and the 3x3 conv and the
            classifier run there. The logits' resolution, not the features,
            limits IoU on thin parts: round-tripping the true Weizmann masks
            through a 14x14 grid (224 px at stride 16) scores 0.83, through
            56x56 (stride 4) 0.98 (docs/SEGMENTATION_RESULTS.md).

    Example:
        backbone = make_backbone("resnet101", 224, output_stride=16)
        model = DeepLabV3Segmenter(backbone, num_classes=2)
        logits = model(images_uint8)  # (N, 224, 224, 2)

        model = DeepLabV3Segmenter.from_run("runs/horses_quick")  # trained
        labels = model.segment(keras_cnn.read_image("photo.jpg"))  # (h, w) at the photo's size
        model = DeepLabV3Segmenter.from_preset("presets/horses")  # trained, from `export --preset-dir`
        model = DeepLabV3Segmenter.from_recipe("weizmann_scratch")  # the recipe's net, untrained

    Reference:
        Chen et al. 2017, "Rethinking Atrous Convolution for Semantic Image
        Segmentation", arXiv:1706.05587; Chen et al. 2018, "Encoder-Decoder
        with Atrous Separable Convolution for Semantic Image Segmentation"
        (DeepLabV3+), arXiv:1802.02611.
    """

    # The fine-tuning mode `set_finetune_mode` last set (None: every layer trains). It is part of the
    # saved config, so a loaded checkpoint trains the same weights as the run that wrote it and its
    # optimizer state fits them (Keras otherwise skips it with a warning on `load_model`).
    finetune = None
    # One name per class, where known (a preset folder records them); not saved with the model.
    class_names = None

    def __init__(self, backbone, num_classes, aspp_rates=None, aspp_channels=256, dropout=0.5,
                 preprocessing=None, low_level_channels=0, **kwargs):
        if num_classes < 1:
            raise UserError(f"num_classes must be at least 1, got {num_classes}")
        preprocessing = check_mode(preprocessing or backbone.preprocessing)
        rates = tuple(aspp_rates) if aspp_rates else DEFAULT_RATES[backbone.output_stride]
        height, width = backbone.image_shape[:2]

        # === Layers ===
        aspp = SpatialPyramidPooling(rates, aspp_channels, dropout, name="aspp")
        decoder_conv = keras.layers.Conv2D(aspp_channels, 3, padding="same", use_bias=False,
                                           name="decoder_conv")
        decoder_bn = BatchNormalization(momentum=BN_MOMENTUM, epsilon=1e-5, name="decoder_bn")
        classifier = keras.layers.Conv2D(num_classes, 1, name="classifier")
        upsample = keras.layers.Resizing(height, width, interpolation="bilinear", name="upsample",
                                         dtype="float32")

        # === Functional model ===
        # A .keras file of the earlier layout (normalised input) loads into
        # this one unchanged: the normalisation layer has no weights.
        inputs = keras.Input(shape=tuple(backbone.image_shape), name="images")
        x = ImageNormalization(preprocessing, name="normalize")(inputs)
        if low_level_channels:
            low_name = getattr(backbone, "low_level_layer", None)
            if not low_name:
                raise UserError(f"backbone {backbone.name} has no stride-4 features for the "
                                "DeepLabV3+ decoder; use low_level_channels=0")
            # One model with both outputs; its layers are the backbone's own.
            features = keras.Model(backbone.inputs, [backbone.get_layer(low_name).output, backbone.output],
                                   name=f"{backbone.name}_features")
            low, x = features(x)
            x = aspp(x)
            x = keras.layers.Resizing(low.shape[1], low.shape[2], interpolation="bilinear",
                                      name="aspp_upsample")(x)
            low = keras.layers.Conv2D(low_level_channels, 1, use_bias=False, name="low_level_conv")(low)
            low = BatchNormalization(momentum=BN_MOMENTUM, epsilon=1e-5, name="low_level_bn")(low)
            low = keras.layers.ReLU(name="low_level_relu")(low)
            x = keras.layers.Concatenate(name="decoder_concat")([x, low])
        else:
            x = aspp(backbone(x))
        x = keras.layers.ReLU(name="decoder_relu")(decoder_bn(decoder_conv(x)))
        outputs = upsample(classifier(x))
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

        # === Config ===
        self.backbone = backbone
        self.num_classes = num_classes
        self.aspp_rates = rates
        self.aspp_channels = aspp_channels
        self.dropout = dropout
        self.preprocessing = preprocessing
        self.low_level_channels = low_level_channels

    @property
    def image_size(self):
        return tuple(self.backbone.image_shape[:2])

    @classmethod
    def from_run(cls, run_dir, checkpoint="best"):
        """The trained segmenter of a run folder ("best" or "last" checkpoint)."""
        from keras_cnn.tasks import open_run

        return open_run(run_dir, task="segmentation").load_model(checkpoint)

    @classmethod
    def from_preset(cls, preset, checkpoint=None):
        """The trained segmenter of a preset folder, with its class names, as keras-hub's `from_preset`.

        Args:
            preset: a folder `keras-cnn export --preset-dir` wrote (or a
                training run folder: then as `from_run`).
            checkpoint: for a run folder only, "best" (default) or "last".

        A recipe name ("weizmann_scratch") is refused: a recipe has no
        weights; `from_recipe` builds its untrained net. The model comes
        uncompiled; `class_names` holds one name per class.
        """
        import os

        from keras_cnn import presets
        from keras_cnn.segmentation.config import PRESETS

        model, metadata = presets.open_trained(cls, preset, "segmentation", PRESETS, checkpoint)
        if metadata is None:  # a run folder
            return model
        preset = os.fspath(preset)
        model.class_names = presets.class_names(metadata, model.num_classes, preset)
        return model

    @classmethod
    def from_recipe(cls, recipe, **overrides):
        """An untrained segmenter as a training recipe of `SegmentationConfig` builds it.

        Args:
            recipe: a recipe name ("weizmann_scratch", "weizmann_effnet_decoder",
                "smoke", ...; see `keras_cnn.segmentation.PRESETS`, the
                `--preset` of `keras-cnn train-segmentation`).
            **overrides: config fields to change (`image_size=224`,
                `num_classes=3`, `backbone="mobilenetv2"`, ...), checked as the
                command line checks them.

        The backbone carries the recipe's pretrained weights, if it names
        any (`backbone_weights`); the rest is freshly initialised.
        """
        from keras_cnn import presets
        from keras_cnn.segmentation.config import PRESETS, SegmentationConfig

        return build_segmenter(presets.recipe_config(recipe, "segmentation", SegmentationConfig, PRESETS, overrides))

    def segment(self, image):
        """Class labels, uint8 (h, w), for one uint8 RGB photo at its own size (as the `segment` command)."""
        from keras_cnn.segmentation.predict import predict_labels

        return predict_labels(self, image)

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "num_classes": self.num_classes,
            "aspp_rates": list(self.aspp_rates),
            "aspp_channels": self.aspp_channels,
            "dropout": self.dropout,
            "preprocessing": self.preprocessing,
            "low_level_channels": self.low_level_channels,
            "finetune": self.finetune,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        finetune = config.pop("finetune", None)
        model = cls(**config)
        if finetune:
            set_finetune_mode(model, finetune)
        return model


# Layers each fine-tuning mode trains; everything else is frozen. A frozen
# BatchNormalization runs in inference mode in Keras 3 (moving statistics,
# no updates), which is what fine-tuning on small batches needs.
# "all_frozen_bn" trains everything except the backbone's BatchNorm layers:
# they keep their ImageNet statistics and scales instead of re-estimating
# them from batches of 8 (DeepLabV3 freezes them for the same reason).
FINETUNE_MODES = {
    "head": ("classifier",),
    "decoder": ("aspp", "low_level_conv", "low_level_bn", "decoder_conv", "decoder_bn", "classifier"),
    "all": None,
    "all_frozen_bn": None,
}


def set_finetune_mode(model, mode):
    """Freezes the layers `mode` ("head", "decoder", "all" or "all_frozen_bn") does not train."""
    if mode not in FINETUNE_MODES:
        raise UserError(f"unknown fine-tuning mode {mode!r}; choose one of: {', '.join(FINETUNE_MODES)}")
    trained = FINETUNE_MODES[mode]
    # The model itself stays trainable: a frozen model reports no trainable
    # weights at all, whatever its layers say.
    model.trainable = True
    for layer in model.layers:
        # Every nested layer by name: a backbone rebuilt from its config (a loaded checkpoint) does not
        # pass its own flag down to its layers.
        for sub in layer._flatten_layers(include_self=True):
            sub.trainable = trained is None or layer.name in trained
    if mode == "all_frozen_bn":
        for layer in model.backbone.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False
    model.finetune = mode


def rebuild(model, num_classes=None, image_size=None, source=""):
    """A copy of `model` with a new classifier and/or input size, other weights kept.

    A new `num_classes` gets a freshly initialised classifier (the
    assignment's "replace the last conv"); a new `image_size` rebuilds the
    backbone at that size (conv weights do not depend on it).
    """
    config = model.get_config()
    if image_size and tuple(image_size) != model.image_size:
        config["backbone"]["config"]["image_shape"] = [image_size[0], image_size[1], 3]
    new_head = num_classes is not None and num_classes != model.num_classes
    if new_head:
        config["num_classes"] = num_classes
    new = DeepLabV3Segmenter.from_config(config)
    for old_layer, new_layer in zip(model.layers, new.layers):
        if new_head and old_layer.name == "classifier":
            continue
        try:
            new_layer.set_weights(old_layer.get_weights())
        except ValueError as e:
            raise UserError(f"{source or model.name}: cannot reuse layer {old_layer.name} ({e})") from None
    return new


def flip_averaged(model):
    """`model` with left-right flip test-time augmentation: a Keras model of the same input and output.

    Its logits are the mean of `model`'s logits for the image and, mirrored
    back, for the image mirrored left to right: two passes per image. It
    keeps the segmenter's `image_size`, `num_classes` and `preprocessing`,
    so evaluation, `segment` and export take it in place of the segmenter.
    The averaged logits go through the same softmax and argmax; averaging
    logits rather than probabilities keeps the loss defined on them.

    Example:
        tta = flip_averaged(keras_cnn.open_run("runs/horses").model)
        labels = keras.ops.argmax(tta(images_uint8), axis=-1)
    """
    if getattr(model, "flip_tta", False):
        return model
    inputs = keras.Input(shape=tuple(model.input_shape[1:]), name="images")
    logits = model(inputs)
    mirrored = ops.flip(model(ops.flip(inputs, axis=2)), axis=2)
    outputs = keras.layers.Average(name="flip_average", dtype="float32")([logits, mirrored])
    tta = keras.Model(inputs, outputs, name=f"{model.name}_flip_tta")
    tta.image_size = model.image_size
    tta.num_classes = model.num_classes
    tta.preprocessing = model.preprocessing
    tta.flip_tta = True
    return tta


def _rates(cfg):
    if not cfg.aspp_rates:
        return None
    try:
        return tuple(int(r) for r in cfg.aspp_rates.split(","))
    except ValueError:
        raise UserError(f"aspp_rates must be integers like '6,12,18', got {cfg.aspp_rates!r}") from None


def build_segmenter(cfg):
    """A new DeepLabV3 from `cfg` (a `SegmentationConfig`), or `cfg.base_model` adapted to it."""
    from keras_cnn.segmentation.registry import make_backbone
    from keras_cnn.training.saving import load_model

    preprocessing = None if cfg.preprocessing == "auto" else cfg.preprocessing
    size = (cfg.image_size, cfg.image_size)
    if cfg.base_model:
        base = load_model(cfg.base_model)
        if not isinstance(base, DeepLabV3Segmenter):
            raise UserError(f"{cfg.base_model}: not a DeepLabV3 segmenter of this project "
                            f"(it is a {type(base).__name__})")
        if not cfg.new_head and cfg.num_classes > base.num_classes:
            raise UserError(f"{cfg.base_model}: the model predicts {base.num_classes} classes but "
                            f"num_classes={cfg.num_classes}; pass --new-head to replace its classifier")
        num_classes = cfg.num_classes if cfg.new_head else base.num_classes
        model = rebuild(base, num_classes=num_classes, image_size=size, source=cfg.base_model)
        if preprocessing and preprocessing != model.preprocessing:
            raise UserError(f"{cfg.base_model}: was trained with {model.preprocessing!r} "
                            f"preprocessing, not {preprocessing!r}")
        return model
    if cfg.finetune == "head":
        raise UserError("finetune=head trains only the new classifier, so it needs a trained "
                        "segmenter to start from: pass --base-model PATH.keras "
                        "(or --finetune decoder/all)")
    backbone = make_backbone(cfg.backbone, cfg.image_size, cfg.output_stride, cfg.backbone_weights)
    return DeepLabV3Segmenter(backbone, cfg.num_classes, aspp_rates=_rates(cfg),
                              aspp_channels=cfg.aspp_channels, dropout=cfg.dropout,
                              preprocessing=preprocessing, low_level_channels=cfg.low_level_channels,
                              name="deeplab_v3")
