"""Input normalisation of the segmenters, as a layer of the model.

Each backbone's pretrained weights expect their own normalisation of RGB
pixels (a backbone's `preprocessing` names it). `DeepLabV3Segmenter` starts
with an `ImageNormalization` layer, as keras-hub attaches an image converter
to a task, so a saved segmenter takes RGB pixels 0-255 and training, serving
and phones cannot drift apart.
"""

import keras
from keras import ops

from keras_cnn.errors import UserError

# ImageNet statistics in RGB order (torchvision's normalisation).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# keras.applications ResNet ("caffe"): BGR order, mean subtracted, no scaling.
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)

PREPROCESSING_MODES = ("imagenet", "caffe", "tf")

# In words, for app developers and `metadata.json`.
FORMULAS = {"imagenet": "(x / 255 - mean) / std", "caffe": "RGB -> BGR, then x - mean_bgr",
            "tf": "x / 127.5 - 1"}
CONSTANTS = {"imagenet": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
             "caffe": {"mean_bgr": list(CAFFE_MEAN_BGR)}, "tf": {}}


def check_mode(mode):
    if mode not in PREPROCESSING_MODES:
        raise UserError(f"unknown preprocessing {mode!r}; choose one of: {', '.join(PREPROCESSING_MODES)}")
    return mode


def preprocess(images, mode="imagenet"):
    """RGB pixels 0-255 -> a backbone's input.

    Args:
        images: uint8 or float RGB, `(..., H, W, 3)`, values 0-255.
        mode: "imagenet": `(x / 255 - mean) / std` with the ImageNet mean
            (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225) (as
            torchvision); "caffe": RGB -> BGR minus (103.939, 116.779,
            123.68), what the `keras.applications` ResNet weights expect;
            "tf": `x / 127.5 - 1`, what MobileNetV2 and EfficientNet-Lite expect.

    Returns:
        float32 tensor of the same shape.

    Example:
        x = preprocess(np.full((1, 2, 2, 3), 255, np.uint8))  # ~ (2.25, 2.43, 2.64) per pixel
    """
    check_mode(mode)
    x = ops.cast(images, "float32")
    if mode == "imagenet":
        return (x / 255.0 - ops.array(IMAGENET_MEAN, "float32")) / ops.array(IMAGENET_STD, "float32")
    if mode == "caffe":
        return ops.flip(x, axis=-1) - ops.array(CAFFE_MEAN_BGR, "float32")
    return x / 127.5 - 1.0


@keras.saving.register_keras_serializable(package="keras_cnn")
class ImageNormalization(keras.layers.Layer):
    """`preprocess` as a weightless layer, computed in float32 under any precision policy."""

    def __init__(self, mode="imagenet", **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        self.mode = check_mode(mode)

    def call(self, images):
        return preprocess(images, self.mode)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}
