"""Parameter counts and shapes of DeepLabV3 on each backbone, beside torchvision's published figures.

`summarize(...)` builds each segmenter (random weights, nothing downloaded)
and reports backbone / head / total parameters, the feature and logit shapes,
and the forward multiply-accumulates of the convolutions.
"""

import keras
import numpy as np

from keras_cnn.segmentation.deeplab_v3 import DEFAULT_RATES, DeepLabV3Segmenter, SpatialPyramidPooling
from keras_cnn.segmentation.registry import make_backbone

# torchvision's published figures (with its auxiliary FCN head, trained on
# COCO with 21 classes), for comparison only.
PUBLISHED_FIGURES = {
    "resnet101": "torchvision deeplabv3_resnet101: 61.0 M parameters, 258.7 GFLOPs at 520 px "
                 "(stride 8, with its auxiliary FCN head: ~2.4 M parameters, ~10 G at 520 px)",
    "mobilenetv2": "torchvision deeplabv3_mobilenet_v3_large (a MobileNetV3): 11.0 M parameters",
}


def _conv_macs(layer, spatial=None):
    """Multiply-accumulates of all convolutions in `layer` for one image.

    A Conv2D kernel is (kh, kw, in, out) and a DepthwiseConv2D kernel
    (kh, kw, in, multiplier): either way one output pixel costs the product
    of the kernel's dimensions. The convs inside ASPP are not graph nodes;
    they run at ASPP's output size, the pooled branch at 1x1.
    """
    if isinstance(layer, SpatialPyramidPooling):
        height, width = layer.output.shape[1:3]
        return sum(_conv_macs(conv, (1, 1) if conv is layer.pool_conv else (height, width))
                   for conv in [c for c, _ in layer.branches] + [layer.pool_conv, layer.project_conv])
    if isinstance(layer, keras.Model):
        return sum(_conv_macs(sub) for sub in layer.layers)
    if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)):
        height, width = spatial or layer.output.shape[1:3]
        return int(height) * int(width) * int(np.prod(layer.kernel.shape))
    return 0


DEFAULT_BACKBONES = ("resnet50", "resnet101", "mobilenetv2", "efficientnet_lite0", "efficientnet_lite1",
                     "efficientnet_lite2", "small_resnet", "tiny")


def summarize(backbones=DEFAULT_BACKBONES,
              image_size=224, output_stride=16, num_classes=21, aspp_channels=256):
    """One dict per backbone: parameters, shapes and MACs of its DeepLabV3."""
    rows = []
    for name in backbones:
        backbone = make_backbone(name, image_size, output_stride)
        model = DeepLabV3Segmenter(backbone, num_classes, aspp_channels=aspp_channels)
        backbone_params = backbone.count_params()
        rows.append({
            "backbone": name,
            "image_size": image_size,
            "output_stride": output_stride,
            "aspp_rates": list(DEFAULT_RATES[output_stride]),
            "feature_shape": list(backbone.feature_shape),
            "output_shape": list(model.output.shape[1:]),
            "backbone_params": backbone_params,
            "head_params": model.count_params() - backbone_params,
            "total_params": model.count_params(),
            "conv_gmacs": round(_conv_macs(model) / 1e9, 2),
            "published": PUBLISHED_FIGURES.get(name, ""),
        })
        keras.backend.clear_session()
    return rows
