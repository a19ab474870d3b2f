"""The PyTorch nets of the benchmark's peer (`peer_torch.py`): the course UNet's twin, torchvision's DeepLabV3.

This module imports torch at the top, so only the peer imports it, and only
after checking that torch is installed: keras_cnn never needs torch.

`UNet` is layer for layer the same net as `keras_cnn.colorization.models.UNet`.

The twin is the course's own PyTorch net (*UNet*): stride-2 convs
with padding `kernel // 2` down, stride-2 transposed convs with `padding=
kernel // 2, output_padding=1` up (which is what the Keras net's ZeroPadding
+ valid conv and valid transposed conv + Cropping compute), BatchNorm with
momentum 0.1 and epsilon 1e-5, concat(down1, up1) and concat(up2, input).
Its modules carry the Keras layer names (`down1`, `down1_bn`, ...), so
`copy_keras_weights` maps them by name. `TorchColorizer` puts the Keras
`ColorizerInput` in front (RGB 0-255 -> grey = mean / 256), so both
frameworks take the same uint8 pixels and do the same work per image.
"""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from keras_cnn.errors import UserError

# PyTorch's BatchNorm2d defaults, which the Keras nets copy (blocks.BN_ARGS: momentum 0.9 = 1 - 0.1).
BN_MOMENTUM = 0.1
# One difference remains, in training only: torch updates running_var with the unbiased batch variance,
# Keras with the biased one (a factor n / (n - 1), n = batch x height x width; tests/test_torch_peer.py).
BN_EPSILON = 1e-5
# Keras' Adam epsilon; torch's default is 1e-8. The peer uses Keras' so both run the same recipe.
KERAS_ADAM_EPSILON = 1e-7


class UNet(nn.Module):
    """NCHW net input (grey / 256) -> NCHW logits; 56,856 trainable parameters with the defaults."""

    def __init__(self, kernel=3, num_filters=32, num_colours=24, num_in_channels=1):
        super().__init__()
        p = kernel // 2
        nf, nc = num_filters, num_colours

        def bn(channels):
            return nn.BatchNorm2d(channels, eps=BN_EPSILON, momentum=BN_MOMENTUM)

        self.down1 = nn.Conv2d(num_in_channels, nf, kernel, stride=2, padding=p)
        self.down1_bn = bn(nf)
        self.down2 = nn.Conv2d(nf, 2 * nf, kernel, stride=2, padding=p)
        self.down2_bn = bn(2 * nf)
        self.up1 = nn.ConvTranspose2d(2 * nf, nf, kernel, stride=2, padding=p, output_padding=1)
        self.up1_bn = bn(nf)
        self.up2 = nn.ConvTranspose2d(2 * nf, nc, kernel, stride=2, padding=p, output_padding=1)
        self.up2_bn = bn(nc)
        self.final = nn.Conv2d(nc + num_in_channels, nc, kernel, padding=p)

    def forward(self, x):
        down1 = F.relu(self.down1_bn(self.down1(x)))
        down2 = F.relu(self.down2_bn(self.down2(down1)))
        up1 = F.relu(self.up1_bn(self.up1(down2)))
        up2 = F.relu(self.up2_bn(self.up2(torch.cat([down1, up1], dim=1))))
        return self.final(torch.cat([up2, x], dim=1))


class TorchColorizer(nn.Module):
    """uint8 RGB (N, H, W, 3) -> logits (N, K, H, W): Keras' `ColorizerInput` (grey mode) + a net."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, images):
        # The same arithmetic as keras_cnn.colorization.palette.grey: /256 first, then the mean of R, G, B.
        grey = (images.float() / 256.0).mean(dim=-1, keepdim=True)
        return self.net(grey.permute(0, 3, 1, 2))


# ImageNet statistics, as keras_cnn.segmentation.preprocessing normalises ("imagenet" mode).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class TorchvisionSegmenter(nn.Module):
    """torchvision's `deeplabv3_resnet{depth}` taking what our segmenter takes: RGB (N, H, W, 3) 0-255.

    Normalises with the ImageNet mean / std inside, as our `DeepLabV3Segmenter`
    does in its first layer, and returns the "out" logits (N, K, H, W).
    """

    def __init__(self, depth=50, num_classes=2):
        super().__init__()
        from torchvision.models import segmentation

        self.net = getattr(segmentation, f"deeplabv3_resnet{depth}")(
            weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255.0)

    def forward(self, images):
        x = (images.permute(0, 3, 1, 2).float() - self.mean) / self.std
        return self.net(x)["out"]


def parameter_count(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _torch_arrays(layer):
    """The Keras layer's weights in PyTorch's layout, by torch parameter / buffer name."""
    import keras

    w = [np.asarray(v) for v in layer.weights]
    if isinstance(layer, keras.layers.BatchNormalization):
        # gamma, beta, moving mean, moving variance (the Keras nets keep center and scale on).
        return dict(zip(("weight", "bias", "running_mean", "running_var"), w))
    if isinstance(layer, (keras.layers.Conv2D, keras.layers.Conv2DTranspose)):
        # Conv2D kernel HWIO -> OIHW; Conv2DTranspose kernel (H, W, out, in) -> torch's (in, out, H, W).
        # The same transpose serves both, and neither flips: both frameworks' transposed
        # convolution is the gradient of the forward one.
        return {"weight": w[0].transpose(3, 2, 0, 1), "bias": w[1]}
    raise UserError(f"layer {layer.name!r} ({type(layer).__name__}) has no PyTorch counterpart here")


def copy_keras_weights(keras_model, torch_model):
    """Copies a Keras `UNet` (or a `Colorizer` around one) into the torch twin, every tensor, by name.

    Raises `UserError` if the two nets do not have the same tensors with the
    same shapes, so a twin that drifted from the Keras net cannot pass silently.
    """
    net = getattr(keras_model, "net", keras_model)
    target = getattr(torch_model, "net", torch_model)
    modules = dict(target.named_children())
    state = target.state_dict()
    filled = set()
    for layer in net.layers:
        if not layer.weights:
            continue
        if layer.name not in modules:
            raise UserError(f"Keras layer {layer.name!r} has no module of that name in the PyTorch twin")
        for key, value in _torch_arrays(layer).items():
            name = f"{layer.name}.{key}"
            if tuple(state[name].shape) != value.shape:
                raise UserError(f"{name}: Keras gives shape {value.shape}, the PyTorch twin has "
                                f"{tuple(state[name].shape)}")
            state[name] = torch.from_numpy(np.ascontiguousarray(value, np.float32))
            filled.add(name)
    # num_batches_tracked only matters for BatchNorm with momentum=None; Keras has no counterpart.
    missing = [k for k in state if k not in filled and not k.endswith("num_batches_tracked")]
    if missing:
        raise UserError(f"the Keras net has no weights for {', '.join(missing)} of the PyTorch twin")
    target.load_state_dict(state)
    return torch_model
