"""EffNetUNet: the colourizer on an EfficientNet-Lite0 encoder.

Its encoder must be exactly the ImageNet Lite0 (same layers, same weights, the
same features for a grey image replicated to RGB); its decoder must give
logits at the input's size for any multiple of 4; its options are checked.
"""

import keras
import numpy as np
import pytest

from keras_cnn.colorization.config import PRESETS, ColorizationConfig
from keras_cnn.colorization.effnet_unet import EffNetUNet
from keras_cnn.errors import UserError
from keras_cnn.segmentation.efficientnet_lite import efficientnet_lite_classifier, imagenet_weights_path


@pytest.fixture(scope="module")
def weights_path():
    try:
        return imagenet_weights_path()
    except UserError as e:
        pytest.skip(str(e))


@pytest.mark.parametrize("upsample", [1, 2, 4])
def test_logits_at_the_input_size_for_sides_not_multiples_of_32(upsample):
    model = EffNetUNet(num_filters=4, num_colours=5, upsample=upsample)
    for h, w in ((32, 32), (36, 44), (4, 8)):
        assert model(np.zeros((2, h, w, 1), "float32")).shape == (2, h, w, 5)


def test_encoder_is_the_imagenet_lite0(weights_path):
    """Same weights as the ImageNet classifier, and the same stride-32 features for grey input."""
    net = EffNetUNet(num_colours=6, upsample=2, weights=weights_path)
    classifier = efficientnet_lite_classifier(weights=weights_path, image_shape=(64, 64, 3))
    shared = [layer.name for layer in net.layers if layer.weights and layer.name.startswith(("stem", "block"))]
    # stem conv + BN, 6 per block (expand, depthwise, project; each with BN) but block0 has no expansion
    assert len(shared) == 2 + 16 * 6 - 2
    for name in shared:
        for a, b in zip(net.get_layer(name).weights, classifier.get_layer(name).weights):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

    grey = np.random.RandomState(0).randint(0, 256, (2, 32, 32, 1)).astype("float32")
    features = keras.Model(net.inputs, net.get_layer("block15_project_bn").output)(grey / 256)
    # The net enlarges the replicated grey image (bilinear x2) and scales it to [-1, 1].
    enlarged = keras.layers.UpSampling2D(2, interpolation="bilinear")(np.repeat(grey, 3, axis=-1))
    reference = keras.Model(classifier.inputs, classifier.get_layer("block15_project_bn").output)(
        np.asarray(enlarged) / 127.5 - 1)
    np.testing.assert_allclose(features, reference, atol=2e-4)
    assert np.abs(np.asarray(reference)).max() > 0.5  # the features are not all zero


def test_weights_are_stored_in_the_file_not_the_config(weights_path, tmp_path):
    net = EffNetUNet(num_filters=4, num_colours=6, upsample=1, weights=weights_path)
    assert "weights" not in net.get_config()
    net.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    x = np.random.RandomState(1).uniform(0, 1, (2, 20, 24, 1)).astype("float32")
    np.testing.assert_allclose(loaded(x), net(x), atol=1e-5)


def test_wrong_weights_file_is_one_line(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="bad.pth"):
        EffNetUNet(num_filters=4, weights=str(bad))


def test_options_are_checked():
    with pytest.raises(UserError, match="upsample must be 1, 2 or 4"):
        EffNetUNet(upsample=3)
    with pytest.raises(UserError, match="1 .grey. or 3 input channels"):
        EffNetUNet(num_in_channels=2)
    problems = ColorizationConfig(model="unet", upsample=4).problems()
    assert "--upsample and --backbone-weights are options of --backbone effnet_unet" in problems
    preset = PRESETS["cifar10_effnet"]
    assert preset.model == "effnet_unet" and preset.backbone_weights == "imagenet"
    assert not [p for p in preset.problems() if p]


@pytest.mark.parametrize("scale,reference", [(2, None), (1, (9, 13)), (4, None)])
def test_bilinear_resize_on_tensorflow_equals_keras_resize(scale, reference):
    """BilinearResize keeps tf.image.resize on TensorFlow (exported graphs of unknown size); the other
    backends run keras.ops.image.resize, which must give the same pixels."""
    import keras

    from keras_cnn.colorization.effnet_unet import BilinearResize

    x = np.random.RandomState(0).normal(size=(2, 5, 7, 3)).astype(np.float32)
    ref = None if reference is None else np.zeros((1, *reference, 1), np.float32)
    size = (5 * scale, 7 * scale) if reference is None else reference
    got = BilinearResize(scale)(x, ref)
    want = keras.ops.image.resize(x, size, interpolation="bilinear", antialias=False)
    np.testing.assert_allclose(got, want, atol=1e-6)
