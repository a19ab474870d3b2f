"""torchvision's DeepLabV3-ResNet-50/101 in Keras, and loading its `.pth` state dicts.

The assignment starts from torchvision's `deeplabv3_resnet101` with its
COCO_WITH_VOC_LABELS weights (`deeplabv3_resnet101_coco-586e9e4e.pth`, 21
classes). Here that network is `DeepLabV3Segmenter` (whose head already is
torchvision's `DeepLabHead`: ASPP 12/24/36 with image pooling, projection
with dropout 0.5, 3x3 conv, 1x1 classifier, bilinear upsampling) on a
`TorchvisionResNetBackbone` at output stride 8, and the file's weights are
copied into it by name:

    backbone.conv1 / bn1 / layerK.B.{conv1,bn1,conv2,bn2,conv3,bn3,downsample.0,downsample.1}
        -> the backbone layer of the same name (`layerK_B_conv1`, ...)
    classifier.0.convs.0.0/1     -> ASPP 1x1 branch conv / BN
    classifier.0.convs.{1,2,3}.0/1 -> ASPP dilated branches conv / BN
    classifier.0.convs.4.1/2     -> ASPP image-pooling conv / BN
    classifier.0.project.0/1     -> ASPP projection conv / BN
    classifier.1 / 2 / 4         -> decoder_conv / decoder_bn / classifier
    aux_classifier.0 / 1 / 4     -> aux_conv / aux_bn / aux_classifier (FCNHead on layer3)

A conv weight is OIHW in PyTorch and HWIO in Keras; a BatchNorm's weight,
bias, running_mean and running_var are Keras' gamma, beta, moving_mean and
moving_variance; `num_batches_tracked` has no Keras counterpart (it only
matters for momentum=None) and is ignored.

The auxiliary FCN head (torchvision's `aux_loss=True`) only feeds a training
loss; it is built on request (`DeepLabV3WithAuxHead`, `aux=True`) so the
parity check covers every tensor of the file, and left out of the segmenter
the assignment fine-tunes.
"""

import keras
import numpy as np

from keras_cnn.errors import UserError
from keras_cnn.fileio import atomic_path
from keras_cnn.layers import BatchNormalization
from keras_cnn.segmentation.backbones import BN_MOMENTUM
from keras_cnn.segmentation.deeplab_v3 import DeepLabV3Segmenter
from keras_cnn.segmentation.torchvision_resnet import (
    RESNET_BLOCKS,
    TORCH_BN_EPSILON,
    TorchvisionResNetBackbone,
)
from keras_cnn.weights.torch_checkpoint import load_torch_state_dict

# torchvision's DeepLabHead: ASPP at rates 12/24/36 (output stride 8), 256 wide.
TORCHVISION_ASPP_RATES = (12, 24, 36)
TORCHVISION_ASPP_CHANNELS = 256
TORCHVISION_DROPOUT = 0.5
# torchvision's FCNHead (the auxiliary head): 3x3 conv to in/4 channels, dropout 0.1.
AUX_CHANNELS = 256
AUX_DROPOUT = 0.1
BN_KEYS = ("weight", "bias", "running_mean", "running_var")
# What a training checkpoint of torch.nn.DataParallel / DistributedDataParallel prefixes.
WRAPPER_PREFIX = "module."


def build_torchvision_deeplabv3(depth=101, num_classes=21, image_size=520, output_stride=8,
                                name=None):
    """torchvision's `deeplabv3_resnet{depth}` as a (randomly initialised) `DeepLabV3Segmenter`.

    Args:
        depth: 50 or 101.
        num_classes: classes of the 1x1 classifier (21 for the COCO/VOC weights).
        image_size: square input size, or `(height, width)`.
        output_stride: 8 (torchvision's) or 16; ASPP keeps torchvision's
            rates 12/24/36 either way, as torchvision's `DeepLabHead` does.
        name: model name (default `deeplabv3_resnet{depth}`).
    """
    height, width = (image_size, image_size) if np.isscalar(image_size) else tuple(image_size)
    backbone = TorchvisionResNetBackbone(depth=depth, output_stride=output_stride,
                                         image_shape=(height, width, 3),
                                         name=f"torchvision_resnet{depth}")
    return DeepLabV3Segmenter(backbone, num_classes, aspp_rates=TORCHVISION_ASPP_RATES,
                              aspp_channels=TORCHVISION_ASPP_CHANNELS, dropout=TORCHVISION_DROPOUT,
                              preprocessing="imagenet", name=name or f"deeplabv3_resnet{depth}")


class DeepLabV3WithAuxHead(keras.Model):
    """torchvision's DeepLabV3 with its auxiliary head: `{"out": ..., "aux": ...}` as torchvision returns.

    "out" is `segmenter`'s logits; "aux" is torchvision's `FCNHead` on the
    backbone's layer3 features (3x3 conv 1024 -> 256 without bias, BN, ReLU,
    dropout 0.1, 1x1 conv to the classes), upsampled bilinearly to the input
    size. The segmenter's layers are reused, not copied, so weights loaded
    into this model are the segmenter's (`.segmenter`); the backbone runs once
    for both outputs. torchvision trains the auxiliary head as a second loss
    and ignores it at inference; here it serves the parity check (every
    tensor of a `.pth` file is compared) and torchvision's parameter count.
    Save and fine-tune `.segmenter`; this model has no config of its own.

    Args:
        segmenter: a `DeepLabV3Segmenter` on a `TorchvisionResNetBackbone`.
        num_classes: classes of the auxiliary classifier (default the segmenter's).
    """

    def __init__(self, segmenter, num_classes=None, **kwargs):
        backbone = segmenter.backbone
        if not isinstance(backbone, TorchvisionResNetBackbone):
            raise UserError(f"{segmenter.name}: the auxiliary head needs a TorchvisionResNetBackbone, "
                            f"not a {type(backbone).__name__}")
        num_classes = num_classes or segmenter.num_classes
        height, width = segmenter.image_size
        # The backbone's layer3 and layer4 outputs from one pass.
        features = keras.Model(backbone.inputs,
                               [backbone.get_layer(backbone.aux_layer_name).output, backbone.output],
                               name=f"{backbone.name}_layer3_layer4")
        inputs = keras.Input(shape=tuple(backbone.image_shape), name="images")
        # The segmenter is a chain (images -> [...] -> backbone -> head
        # layers); replay it with the two-output backbone.
        x, layer3 = inputs, None
        for layer in segmenter.layers:
            if isinstance(layer, keras.layers.InputLayer):
                continue
            if layer is backbone:
                layer3, x = features(x)
            else:
                x = layer(x)
        y = keras.layers.Conv2D(AUX_CHANNELS, 3, padding="same", use_bias=False, name="aux_conv")(layer3)
        y = BatchNormalization(momentum=BN_MOMENTUM, epsilon=TORCH_BN_EPSILON, name="aux_bn")(y)
        y = keras.layers.ReLU(name="aux_relu")(y)
        y = keras.layers.Dropout(AUX_DROPOUT, name="aux_dropout")(y)
        y = keras.layers.Conv2D(num_classes, 1, name="aux_classifier")(y)
        aux = keras.layers.Resizing(height, width, interpolation="bilinear", name="aux_upsample",
                                    dtype="float32")(y)
        kwargs.setdefault("name", f"{segmenter.name}_aux")
        super().__init__(inputs, {"out": x, "aux": aux}, **kwargs)
        self.segmenter = segmenter
        self.aux_num_classes = num_classes


def torchvision_layer_table(model):
    """`(torchvision module path, Keras layer)` for every weighted layer of `model`.

    Args:
        model: a segmenter from `build_torchvision_deeplabv3`, or a
            `DeepLabV3WithAuxHead` (then `aux_classifier.*` are included).

    Returns:
        A list in torchvision's state-dict order, e.g.
        `("backbone.layer1.0.conv1", <Conv2D layer1_0_conv1>)`,
        `("classifier.0.convs.4.1", <Conv2D pool_conv>)`.
    """
    aux_model = model if isinstance(model, DeepLabV3WithAuxHead) else None
    segmenter = model.segmenter if aux_model is not None else model
    backbone = getattr(segmenter, "backbone", None)
    if not isinstance(backbone, TorchvisionResNetBackbone):
        raise UserError(f"{model.name}: torchvision weights need a DeepLabV3Segmenter on a "
                        f"TorchvisionResNetBackbone, not {type(backbone).__name__}")
    table = [(f"backbone.{path}", backbone.get_layer(n)) for n, path in backbone.torchvision_layers]
    aspp = segmenter.get_layer("aspp")
    for i, (conv, bn) in enumerate(aspp.branches):
        table += [(f"classifier.0.convs.{i}.0", conv), (f"classifier.0.convs.{i}.1", bn)]
    pool = len(aspp.branches)  # ASPPPooling = (AdaptiveAvgPool2d, conv, BN, ReLU)
    table += [(f"classifier.0.convs.{pool}.1", aspp.pool_conv),
              (f"classifier.0.convs.{pool}.2", aspp.pool_bn),
              ("classifier.0.project.0", aspp.project_conv), ("classifier.0.project.1", aspp.project_bn),
              ("classifier.1", segmenter.get_layer("decoder_conv")),
              ("classifier.2", segmenter.get_layer("decoder_bn")),
              ("classifier.4", segmenter.get_layer("classifier"))]
    if aux_model is not None:
        table += [("aux_classifier.0", aux_model.get_layer("aux_conv")),
                  ("aux_classifier.1", aux_model.get_layer("aux_bn")),
                  ("aux_classifier.4", aux_model.get_layer("aux_classifier"))]
    return table


def _torch_tensors(path, layer):
    """`[(state-dict key, torch shape, to_keras)]` of one layer, in Keras' weight order."""
    if isinstance(layer, keras.layers.BatchNormalization):
        # gamma, beta, moving_mean, moving_variance
        return [(f"{path}.{k}", tuple(layer.gamma.shape), np.asarray) for k in BN_KEYS]
    if isinstance(layer, keras.layers.Conv2D):
        h, w, cin, cout = layer.kernel.shape
        tensors = [(f"{path}.weight", (cout, cin, h, w), lambda a: np.transpose(a, (2, 3, 1, 0)))]
        if layer.use_bias:
            tensors.append((f"{path}.bias", (cout,), np.asarray))
        return tensors
    raise TypeError(f"no torchvision mapping for {type(layer).__name__} {layer.name}")


def torchvision_state_dict_shapes(model):
    """The state dict torchvision's model of this architecture has: `{key: shape}`.

    Leaves out `num_batches_tracked` (a counter, not a weight). Tests build
    synthetic checkpoints from it; the loader checks files against it.
    """
    return {key: shape for path, layer in torchvision_layer_table(model)
            for key, shape, _ in _torch_tensors(path, layer)}


def _describe(keys, limit=6):
    keys = sorted(keys)
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def load_torchvision_weights(model, state_dict, source, skip=()):
    """Copies a torchvision DeepLabV3 state dict into `model`.

    Every weight of the Keras model is assigned; anything missing from the
    file, any tensor of the wrong shape, and any key of the file the model
    has no place for is one `UserError` naming `source` (checked before
    anything is assigned). `aux_classifier.*` keys are skipped when `model`
    is a plain segmenter (torchvision's COCO file has them: it was trained
    with the auxiliary loss), and `num_batches_tracked` always.

    Args:
        model: from `build_torchvision_deeplabv3`, or its `DeepLabV3WithAuxHead`.
        state_dict: `{key: numpy array}` (a leading "module." is removed).
        source: the file name, for error messages.
        skip: module paths not to load (they keep their initialisation), e.g.
            `("classifier.4",)` for a new classifier.

    Returns:
        The number of tensors assigned.
    """
    if state_dict and all(k.startswith(WRAPPER_PREFIX) for k in state_dict):
        state_dict = {k[len(WRAPPER_PREFIX):]: v for k, v in state_dict.items()}
    with_aux = isinstance(model, DeepLabV3WithAuxHead)
    table = [(p, layer) for p, layer in torchvision_layer_table(model) if p not in skip]
    expected = {key: (shape, convert, layer) for path, layer in table
                for key, shape, convert in _torch_tensors(path, layer)}
    skipped_prefixes = tuple(f"{p}." for p in skip) + (() if with_aux else ("aux_classifier.",))
    present = {k for k in state_dict
               if not k.endswith(".num_batches_tracked") and not k.startswith(skipped_prefixes)}
    missing = set(expected) - present
    unexpected = present - set(expected)
    wrong = {k: (tuple(np.shape(state_dict[k])), expected[k][0]) for k in present & set(expected)
             if tuple(np.shape(state_dict[k])) != expected[k][0]}
    if missing or unexpected or wrong:
        problems = []
        if missing:
            problems.append(f"{len(missing)} missing ({_describe(missing)})")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected ({_describe(unexpected)})")
        if wrong:
            shown = [f"{k} {list(got)} instead of {list(want)}" for k, (got, want) in sorted(wrong.items())[:4]]
            more = f" and {len(wrong) - 4} more" if len(wrong) > 4 else ""
            problems.append(f"{len(wrong)} of the wrong shape ({', '.join(shown)}{more})")
        segmenter = model.segmenter if with_aux else model
        arch = f"{segmenter.name}, {segmenter.num_classes} classes"
        raise UserError(f"{source}: not a torchvision state dict of this model ({arch}): "
                        + "; ".join(problems))
    for path, layer in table:
        tensors = _torch_tensors(path, layer)
        layer.set_weights([convert(np.asarray(state_dict[key], dtype=np.float32))
                           for key, _, convert in tensors])
    return len(expected)


def _file_architecture(state_dict, source):
    """(depth, num_classes) of a torchvision DeepLabV3 state dict, from its keys and shapes."""
    if state_dict and all(k.startswith(WRAPPER_PREFIX) for k in state_dict):
        state_dict = {k[len(WRAPPER_PREFIX):]: v for k, v in state_dict.items()}
    classifier = state_dict.get("classifier.4.weight")
    if classifier is None or np.ndim(classifier) != 4:
        raise UserError(f"{source}: not a torchvision DeepLabV3 state dict (no 4-d "
                        "classifier.4.weight; it has e.g. "
                        f"{_describe(list(state_dict)[:3], 3) or 'no tensors'})")
    blocks = {k.split(".")[2] for k in state_dict if k.startswith("backbone.layer3.")}
    depths = {n_blocks[2]: depth for depth, n_blocks in RESNET_BLOCKS.items()}
    if len(blocks) not in depths:
        raise UserError(f"{source}: backbone.layer3 has {len(blocks)} blocks; torchvision's "
                        "ResNet-50 has 6 and ResNet-101 23")
    return depths[len(blocks)], int(np.shape(classifier)[0])


def deeplabv3_from_state_dict(state_dict, source, image_size=520, output_stride=8, aux=False,
                              num_classes=None):
    """`load_torchvision_deeplabv3` for a state dict already in memory (`{key: numpy array}`)."""
    depth, file_classes = _file_architecture(state_dict, source)
    num_classes = num_classes or file_classes
    new_head = num_classes != file_classes
    segmenter = build_torchvision_deeplabv3(depth, num_classes, image_size, output_stride)
    model = DeepLabV3WithAuxHead(segmenter) if aux else segmenter
    skip = ("classifier.4", "aux_classifier.4") if new_head else ()
    load_torchvision_weights(model, state_dict, source, skip=skip)
    return model


def load_torchvision_deeplabv3(path, image_size=520, output_stride=8, aux=False, num_classes=None):
    """torchvision's DeepLabV3-ResNet-50/101 with the weights of a `.pth` file, in Keras.

    Reads the file without torch (`keras_cnn.weights.torch_checkpoint`),
    recognises the depth and the number of classes from its tensors, builds
    the same network (`build_torchvision_deeplabv3`) and copies every tensor.

    Args:
        path: a state dict saved by `torch.save` (zip or legacy format), e.g.
            `deeplabv3_resnet101_coco-586e9e4e.pth` as torchvision downloads it.
        image_size: square input size (or `(height, width)`); the weights do
            not depend on it. torchvision evaluates at 520.
        output_stride: 8 (as torchvision builds the model) or 16 (4x fewer
            multiply-adds in layer4 and the head, slightly different outputs).
        aux: False: the `DeepLabV3Segmenter` (what gets fine-tuned and
            exported). True: a `DeepLabV3WithAuxHead` with torchvision's
            outputs `{"out", "aux"}` and the `aux_classifier.*` tensors
            loaded too; its `.segmenter` is the former.
        num_classes: None keeps the file's classifier; another number gets a
            newly initialised 1x1 classifier of that size (the assignment's
            replacement of the last layer), everything else from the file.

    Returns:
        A `DeepLabV3Segmenter` taking RGB pixels 0-255 (its first layer applies
        torchvision's ImageNet normalisation), or a `DeepLabV3WithAuxHead`.
    """
    return deeplabv3_from_state_dict(load_torch_state_dict(path), path, image_size=image_size,
                                     output_stride=output_stride, aux=aux, num_classes=num_classes)


def torch_parameter_count(model):
    """Parameters as PyTorch counts them: every weight but the BatchNorm moving statistics.

    Keras' `count_params()` also counts `moving_mean` and `moving_variance`,
    which torch keeps as buffers, not parameters.
    """
    stats = {id(v) for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)
             for v in (layer.moving_mean, layer.moving_variance)}
    return int(sum(np.prod(v.shape) for v in model.weights if id(v) not in stats))


def convert_torchvision_deeplabv3(weights, out, image_size=520, output_stride=8, num_classes=None):
    """Writes the `.keras` segmenter of a torchvision DeepLabV3 `.pth` file; returns the model.

    The file appears at `out` only once complete (written beside it under a
    temporary name, then renamed), so an interrupted conversion never leaves
    a truncated `.keras` that training would try to start from.
    """
    if not str(out).endswith(".keras"):
        raise UserError(f"{out}: the output must be a .keras file")
    model = load_torchvision_deeplabv3(weights, image_size=image_size, output_stride=output_stride,
                                       num_classes=num_classes)
    with atomic_path(out) as tmp:
        model.save(tmp)
    return model
