"""Semantic segmentation: DeepLabV3 on dilated backbones, Oxford 17 Flowers
and image/mask folders, IoU metrics, training, evaluation and prediction.

The public API, for building, training and using segmenters in Python:

    from keras_cnn import segmentation

    backbone = segmentation.make_backbone("small_resnet", 160, output_stride=16)
    model = segmentation.DeepLabV3Segmenter(backbone, num_classes=2)
    model.compile(optimizer="adam", loss=segmentation.segmentation_loss(),
                  metrics=segmentation.segmentation_metrics(2))
    model.fit(train_ds, validation_data=val_ds)      # (uint8 or float RGB, int labels)
    labels = model.segment(photo)                    # at the photo's own size

    model = segmentation.DeepLabV3Segmenter.from_run("runs/horses64")
    model = segmentation.DeepLabV3Segmenter.from_preset("presets/horses")     # trained (`export --preset-dir`)
    model = segmentation.DeepLabV3Segmenter.from_recipe("weizmann_scratch")   # a recipe's net, untrained

`examples/segmentation_deeplabv3.py` is the whole recipe on a folder of
images and masks. The names below are loaded on first use (PEP 562), not
when the package is imported: `keras_cnn.segmentation.config` is read by
every command's `--help`, which must not wait for TensorFlow. Loading a
`.keras` segmenter registers the custom Keras objects once Keras is imported
(see `keras_cnn`).
"""

import importlib

_EXPORTS = {
    "BACKBONES": "config",
    "MobileNetV2Backbone": "backbones",
    "ResidualBackbone": "backbones",
    "ResNetBackbone": "backbones",
    "TorchvisionResNetBackbone": "torchvision_resnet",
    "load_torchvision_deeplabv3": "torchvision_deeplab",
    "make_backbone": "registry",
    "EfficientNetLiteBackbone": "efficientnet_lite",
    "preprocess": "preprocessing",
    "ImageNormalization": "preprocessing",
    "DeepLabV3Segmenter": "deeplab_v3",
    "SpatialPyramidPooling": "deeplab_v3",
    "set_finetune_mode": "deeplab_v3",
    "flip_averaged": "deeplab_v3",
    "IGNORE_LABEL": "metrics",
    "ForegroundIoU": "metrics",
    "MeanIoU": "metrics",
    "PixelAccuracy": "metrics",
    "ThresholdedIoU": "metrics",
    "segmentation_loss": "metrics",
    "segmentation_metrics": "metrics",
    "SegmentationConfig": "config",
    "PRESETS": "config",
    "folder_pairs": "data",
    "split_pairs": "data",
    "folder_mask_decoder": "data",
    "MaskDecoder": "data",
    "Augment": "data",
    "make_dataset": "data",
    "predict_labels": "predict",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
