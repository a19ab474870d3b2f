"""Segmentation (SPEC part B): DeepLabV3 on dilated backbones, Oxford 17 Flowers
and image/mask folders, IoU metrics, training, evaluation and prediction.

Importing the package registers the custom Keras objects, so `.keras` files of
segmenters load with `keras_cnn.training.load_model`.
"""

from keras_cnn.segmentation.backbones import (  # noqa: F401
    BACKBONES,
    MobileNetV2Backbone,
    ResidualBackbone,
    ResNetBackbone,
    make_backbone,
)
from keras_cnn.segmentation.data import preprocess  # noqa: F401
from keras_cnn.segmentation.efficientnet_lite import (  # noqa: F401
    EfficientNetLiteBackbone,
    efficientnet_lite0_classifier,
)
from keras_cnn.segmentation.deeplab_v3 import (  # noqa: F401
    DeepLabV3Segmenter,
    SpatialPyramidPooling,
    set_finetune_mode,
)
from keras_cnn.segmentation.metrics import (  # noqa: F401
    IGNORE_LABEL,
    ForegroundIoU,
    MeanIoU,
    PixelAccuracy,
    ThresholdedIoU,
)
