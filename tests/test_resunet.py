"""ResUNet against an independent NumPy forward pass, plus its registry entry and size."""

import keras
import numpy as np
import pytest

from keras_cnn.colorization.models import build_model
from keras_cnn.colorization.resunet import ResUNet
from keras_cnn.errors import UserError
from tests import numpy_reference as ref
from tests.test_colorization_models import bn_relu, randomize, weights

# Also run in-process under KERAS_BACKEND=jax by .ci/run.
pytestmark = pytest.mark.portable


def dilated_conv(x, w, dilation):
    """A dilated 'same' conv as a plain conv with zeros between the kernel taps."""
    k = w.shape[0]
    wide = np.zeros(((k - 1) * dilation + 1, (k - 1) * dilation + 1) + w.shape[2:])
    wide[::dilation, ::dilation] = w
    return ref.conv2d(x, wide, np.zeros(w.shape[-1]))


def residual(model, name, x, dilation):
    y = bn_relu(model, f"{name}_1", dilated_conv(x, *weights(model, f"{name}_conv1"), dilation))
    y = ref.batchnorm(dilated_conv(y, *weights(model, f"{name}_conv2"), dilation),
                      *weights(model, f"{name}_2_bn"))
    return ref.relu(x + y)


def reference_resunet(model, x, encoder_blocks, dilations, decoder_blocks, global_context):
    stem = bn_relu(model, "stem", ref.conv2d(x, *weights(model, "stem")))
    h = bn_relu(model, "down1", ref.conv2d(stem, *weights(model, "down1"), stride=2))
    for i in range(encoder_blocks):
        h = residual(model, f"enc{i + 1}", h, 1)
    skip = h
    h = bn_relu(model, "down2", ref.conv2d(h, *weights(model, "down2"), stride=2))
    for i, rate in enumerate(dilations):
        h = residual(model, f"ctx{i + 1}", h, rate)
    if global_context:
        (w,) = weights(model, "image_pool_conv")
        h = h + bn_relu(model, "image_pool", h.mean(axis=(0, 1)) @ w[0, 0])
    h = bn_relu(model, "up1", ref.conv_transpose2d(h, *weights(model, "up1")))
    h = bn_relu(model, "fuse1", ref.conv2d(np.concatenate([skip, h], -1), *weights(model, "fuse1")))
    for i in range(decoder_blocks):
        h = residual(model, f"dec{i + 1}", h, 1)
    h = bn_relu(model, "up2", ref.conv_transpose2d(h, *weights(model, "up2")))
    h = bn_relu(model, "fuse2", ref.conv2d(np.concatenate([stem, h, x], -1), *weights(model, "fuse2")))
    return ref.conv2d(h, *weights(model, "final"))


@pytest.mark.parametrize("kwargs", [
    dict(kernel=3, encoder_blocks=2, dilations=(1, 2, 4, 1), decoder_blocks=1, global_context=True),
    dict(kernel=5, encoder_blocks=0, dilations=(3,), decoder_blocks=2, global_context=False),
])
def test_numerical_parity_with_numpy_reference(kwargs):
    model = randomize(ResUNet(num_filters=3, num_colours=5, **kwargs))
    x = np.random.RandomState(1).uniform(0, 1, (2, 8, 12, 1)).astype(np.float32)
    got = keras.ops.convert_to_numpy(model(x, training=False))
    arch = {k: v for k, v in kwargs.items() if k != "kernel"}
    for i in range(len(x)):
        np.testing.assert_allclose(got[i], reference_resunet(model, x[i].astype(np.float64), **arch),
                                   atol=5e-4, rtol=1e-4)


def test_registry_and_parameter_count():
    model = build_model("resunet", num_colours=24)
    assert isinstance(model, ResUNet)
    assert model.count_params() == ResUNet(num_colours=24).count_params() == 1_709_432
    assert model.get_config()["dilations"] == [1, 2, 4, 1]


def test_bad_arguments():
    with pytest.raises(UserError, match="dilation rates must be >= 1"):
        ResUNet(dilations=(1, 0))
    with pytest.raises(UserError, match="block counts must be >= 0"):
        ResUNet(encoder_blocks=-1)
