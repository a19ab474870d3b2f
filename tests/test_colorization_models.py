import json

import keras
import numpy as np
import pytest

from keras_cnn.colorization.models import MODELS, ConvTransposeNet, PoolUpsampleNet, UNet, build_model
from keras_cnn.errors import UserError
from tests import numpy_reference as ref

# Also run in-process under KERAS_BACKEND=jax by .ci/run.
pytestmark = pytest.mark.portable


def test_config_knows_every_model_name():
    # ColorizationConfig spells the names out so --help need not import Keras.
    from keras_cnn.colorization.config import MODEL_NAMES

    assert MODEL_NAMES == tuple(MODELS)


def randomize(model, seed=0):
    """Random weights everywhere, BN statistics included, so parity checks every parameter."""
    rng = np.random.RandomState(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            g, b, m, v = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, g.shape), rng.normal(0, 0.1, b.shape),
                               rng.normal(0, 0.1, m.shape), rng.uniform(0.5, 1.5, v.shape)])
        elif layer.get_weights():
            layer.set_weights([rng.normal(0, 0.2, w.shape) for w in layer.get_weights()])
    return model


def weights(model, name):
    return [w.astype(np.float64) for w in model.get_layer(name).get_weights()]


def bn_relu(model, name, x):
    return ref.relu(ref.batchnorm(x, *weights(model, f"{name}_bn")))


def reference_pool_upsample(model, x, middle_blocks=0, pool_after=False):
    for name in ("down1", "down2"):
        x = ref.conv2d(x, *weights(model, name))
        x = ref.maxpool2(bn_relu(model, name, x)) if pool_after else bn_relu(model, name, ref.maxpool2(x))
    for i in range(middle_blocks):
        x = bn_relu(model, f"middle{i + 1}", ref.conv2d(x, *weights(model, f"middle{i + 1}")))
    for name in ("up1", "up2"):
        x = bn_relu(model, name, ref.upsample2(ref.conv2d(x, *weights(model, name))))
    return ref.conv2d(x, *weights(model, "final"))


def reference_conv_transpose(model, x, skips=False):
    down1 = bn_relu(model, "down1", ref.conv2d(x, *weights(model, "down1"), stride=2))
    down2 = bn_relu(model, "down2", ref.conv2d(down1, *weights(model, "down2"), stride=2))
    up1 = bn_relu(model, "up1", ref.conv_transpose2d(down2, *weights(model, "up1")))
    if skips:
        up1 = np.concatenate([down1, up1], axis=-1)
    up2 = bn_relu(model, "up2", ref.conv_transpose2d(up1, *weights(model, "up2")))
    if skips:
        up2 = np.concatenate([up2, x], axis=-1)
    return ref.conv2d(up2, *weights(model, "final"))


CASES = {
    "pool_upsample": lambda m, x: reference_pool_upsample(m, x),
    "cnn2020": lambda m, x: reference_pool_upsample(m, x, middle_blocks=1, pool_after=True),
    "conv_transpose": lambda m, x: reference_conv_transpose(m, x),
    "unet": lambda m, x: reference_conv_transpose(m, x, skips=True),
}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("kernel,channels", [(3, 1), (5, 3)])
def test_numerical_parity_with_numpy_reference(name, kernel, channels):
    model = randomize(build_model(name, kernel=kernel, num_filters=4, num_colours=5, num_in_channels=channels))
    x = np.random.RandomState(1).uniform(0, 1, (2, 8, 12, channels)).astype(np.float32)
    got = keras.ops.convert_to_numpy(model(x, training=False))
    for i in range(len(x)):
        np.testing.assert_allclose(got[i], CASES[name](model, x[i].astype(np.float64)), atol=2e-4, rtol=1e-4)


def test_course_parameter_counts():
    counts = {n: sum(int(np.prod(w.shape)) for w in build_model(n).trainable_weights)
              for n in ("pool_upsample", "conv_transpose", "unet")}
    assert counts == {"pool_upsample": 49_728, "conv_transpose": 49_728, "unet": 56_856}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_shapes_config_round_trip_and_keras_file(name, tmp_path):
    model = build_model(name, num_filters=4, num_colours=6)
    x = np.random.RandomState(0).uniform(0, 1, (3, 16, 20, 1)).astype(np.float32)
    y = model(x)
    assert y.shape == (3, 16, 20, 6) and y.dtype == "float32"
    config = model.get_config()
    clone = type(model).from_config(config)
    assert json.dumps(clone.get_config(), sort_keys=True) == json.dumps(config, sort_keys=True)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert type(loaded) is type(model)
    np.testing.assert_allclose(loaded(x), y, atol=1e-6)


def test_one_fit_step_lowers_loss():
    from keras_cnn.colorization.pipeline import PixelCrossEntropy

    keras.utils.set_random_seed(0)
    model = UNet(num_filters=8, num_colours=4)
    model.compile(keras.optimizers.Adam(1e-2), PixelCrossEntropy())
    x = np.random.RandomState(0).uniform(0, 1, (8, 16, 16, 1)).astype(np.float32)
    y = (x[..., 0] * 4).astype(np.int32).clip(0, 3)
    first = model.train_on_batch(x, y)
    for _ in range(20):
        last = model.train_on_batch(x, y)
    assert last < first


def test_bad_arguments():
    with pytest.raises(UserError, match="kernel must be odd"):
        ConvTransposeNet(kernel=4)
    with pytest.raises(UserError, match="unknown colourization model 'vgg'"):
        build_model("vgg")
    assert isinstance(build_model("cnn2020"), PoolUpsampleNet)
