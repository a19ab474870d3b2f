"""DeepLabV3 and its backbones: shapes, dilation, config and .keras round trips, fine-tuning."""

import json

import keras
import numpy as np
import pytest

from keras_cnn.errors import UserError
from keras_cnn.segmentation.backbones import MobileNetV2Backbone, ResNetBackbone, _stage_schedule
from keras_cnn.segmentation.deeplab_v3 import (
    DeepLabV3Segmenter,
    SpatialPyramidPooling,
    rebuild,
    set_finetune_mode,
)
from keras_cnn.segmentation.registry import make_backbone
from keras_cnn.training import load_model

# Also run in-process under KERAS_BACKEND=jax by .ci/run.
pytestmark = pytest.mark.portable


def tiny_segmenter(size=32, num_classes=2, output_stride=8):
    backbone = make_backbone("tiny", size, output_stride)
    return DeepLabV3Segmenter(backbone, num_classes, aspp_rates=(1, 2, 3), aspp_channels=16)


def test_stage_schedule_dilates_past_the_output_stride():
    # ResNet: conv3..conv5 after a stride-4 stem.
    assert _stage_schedule(3, 4, 32) == [(2, 1, 1), (2, 1, 1), (2, 1, 1)]
    assert _stage_schedule(3, 4, 16) == [(2, 1, 1), (2, 1, 1), (1, 1, 2)]
    assert _stage_schedule(3, 4, 8) == [(2, 1, 1), (1, 1, 2), (1, 2, 4)]


@pytest.mark.parametrize("name,size,output_stride,channels", [
    ("tiny", 32, 8, 32),
    ("small_resnet", 64, 16, 128),
    ("mobilenetv2", 64, 16, 320),
    ("mobilenetv2", 64, 8, 320),
    ("resnet50", 64, 16, 2048),
    ("resnet101", 64, 8, 2048),
])
def test_every_backbone_gives_its_output_stride(name, size, output_stride, channels):
    backbone = make_backbone(name, size, output_stride)
    assert backbone.feature_shape == (size // output_stride, size // output_stride, channels)
    model = DeepLabV3Segmenter(backbone, num_classes=3, aspp_channels=16)
    logits = model(np.random.RandomState(0).rand(2, size, size, 3).astype("float32"))
    assert logits.shape == (2, size, size, 3)
    assert keras.backend.standardize_dtype(logits.dtype) == "float32"
    assert model.input.name == "images"
    # The config rebuilds the same architecture (weights come from the file).
    again = DeepLabV3Segmenter.from_config(json.loads(json.dumps(model.get_config())))
    assert again.count_params() == model.count_params()
    assert json.dumps(again.get_config(), sort_keys=True) == json.dumps(model.get_config(), sort_keys=True)


def test_dilated_resnet_keeps_pretrained_weight_shapes():
    # Dilation changes strides and rates only: weights of the undilated
    # keras.applications net load into the dilated one unchanged.
    plain = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(64, 64, 3))
    dilated = ResNetBackbone(depth=50, output_stride=8, image_shape=(64, 64, 3))
    assert [w.shape for w in plain.weights] == [w.shape for w in dilated.weights]
    assert dilated.get_layer("conv5_block2_2_conv").dilation_rate == (4, 4)
    assert dilated.get_layer("conv4_block1_1_conv").strides == (1, 1)


def test_mobilenet_dilation_keeps_the_feature_size():
    backbone = MobileNetV2Backbone(output_stride=8, image_shape=(64, 64, 3))
    assert backbone.get_layer("block_6_depthwise").strides == (1, 1)
    assert backbone.get_layer("block_14_depthwise").dilation_rate == (4, 4)
    assert backbone.feature_shape == (8, 8, 320)


def test_local_weights_file_loads_into_a_backbone(tmp_path):
    source = make_backbone("tiny", 32, 8)
    path = str(tmp_path / "tiny.weights.h5")
    source.save_weights(path)
    loaded = make_backbone("tiny", 32, 8, weights=path)
    for a, b in zip(source.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(UserError, match="missing.weights.h5: backbone weights file does not exist"):
        make_backbone("tiny", 32, 8, weights=str(tmp_path / "missing.weights.h5"))


def test_imagenet_weights_offline_is_one_clear_line(monkeypatch):
    import keras.src.utils.file_utils as file_utils

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/x.h5: None -- "
                        "[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(file_utils, "get_file", offline)
    with pytest.raises(UserError, match="cannot get ImageNet weights for ResNet-50") as e:
        make_backbone("resnet50", 64, 16, weights="imagenet")
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match="no ImageNet weights"):
        make_backbone("tiny", 32, 8, weights="imagenet")


def test_aspp_config_round_trip_and_shape():
    aspp = SpatialPyramidPooling(dilation_rates=(1, 2, 3), num_channels=8, dropout=0.1, name="aspp")
    out = aspp(np.zeros((2, 5, 5, 4), "float32"))
    assert out.shape == (2, 5, 5, 8)
    again = SpatialPyramidPooling.from_config(aspp.get_config())
    assert again.get_config() == aspp.get_config()
    # 5 branches + projection, each a conv and a BatchNorm (4 variables).
    again(np.zeros((1, 5, 5, 4), "float32"))
    assert len(again.weights) == len(aspp.weights) == 6 * (1 + 4)


def test_keras_file_round_trip(tmp_path):
    model = tiny_segmenter()
    x = np.random.RandomState(1).rand(3, 32, 32, 3).astype("float32")
    path = str(tmp_path / "seg.keras")
    model.save(path)
    loaded = load_model(path)
    assert isinstance(loaded, DeepLabV3Segmenter)
    assert loaded.preprocessing == "imagenet" and loaded.num_classes == 2
    np.testing.assert_allclose(loaded(x), model(x), atol=1e-5)
    with pytest.raises(UserError, match="nope.keras: model file does not exist"):
        load_model(str(tmp_path / "nope.keras"))


def test_rebuild_replaces_head_and_keeps_the_rest():
    model = tiny_segmenter()
    new = rebuild(model, num_classes=5, image_size=(48, 48))
    assert new(np.zeros((1, 48, 48, 3))).shape == (1, 48, 48, 5)
    for name in ("aspp", "decoder_conv"):
        for a, b in zip(model.get_layer(name).get_weights(), new.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)
    for a, b in zip(model.backbone.get_weights(), new.backbone.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("mode,trained", [
    ("head", {"classifier"}),
    ("decoder", {"aspp", "decoder_conv", "decoder_bn", "classifier"}),
])
def test_finetune_modes_freeze_the_rest_and_batchnorm_stays_in_inference(mode, trained):
    model = tiny_segmenter()
    set_finetune_mode(model, mode)
    assert {layer.name for layer in model.layers if layer.trainable and layer.weights} == trained
    model.compile(optimizer=keras.optimizers.Adam(0.05),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    frozen = {w.path: w.numpy().copy() for w in model.backbone.weights}
    x = np.random.RandomState(2).rand(4, 32, 32, 3).astype("float32") * 5
    y = np.random.RandomState(3).randint(0, 2, (4, 32, 32))
    model.fit(x, y, epochs=1, verbose=0)
    # Frozen BatchNorm neither learns nor updates its moving statistics.
    for w in model.backbone.weights:
        np.testing.assert_array_equal(w.numpy(), frozen[w.path])
    # A frozen layer runs in inference mode even inside a training step.
    np.testing.assert_allclose(model.backbone(x, training=True), model.backbone(x, training=False),
                               atol=1e-5)


def test_head_only_training_changes_only_the_classifier():
    model = tiny_segmenter()
    set_finetune_mode(model, "head")
    model.compile(optimizer=keras.optimizers.Adam(0.05),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = {layer.name: [w.copy() for w in layer.get_weights()] for layer in model.layers}
    x = np.random.RandomState(4).rand(4, 32, 32, 3).astype("float32")
    model.fit(x, np.ones((4, 32, 32), "int32"), epochs=1, verbose=0)
    for layer in model.layers:
        changed = any(not np.array_equal(a, b) for a, b in zip(before[layer.name], layer.get_weights()))
        assert changed == (layer.name == "classifier"), layer.name


def test_bad_arguments_are_user_errors():
    with pytest.raises(UserError, match="output_stride must be 8, 16 or 32"):
        make_backbone("tiny", 32, 4)
    with pytest.raises(UserError, match="unknown backbone"):
        make_backbone("vgg", 32, 8)
    with pytest.raises(UserError, match="unknown fine-tuning mode"):
        set_finetune_mode(tiny_segmenter(), "some")


@pytest.mark.tensorflow_only  # tf.GradientTape / TensorFlow kernels; the portable path: tests/test_backends.py
@pytest.mark.parametrize("size,rate", [((20, 20), 12), ((20, 20), 24), ((10, 10), 36), ((9, 23), 12),
                                       ((16, 16), 8), ((8, 8), 2)])
def test_atrous_conv_equals_the_dilated_conv_and_its_gradient(size, rate):
    """The decomposed ASPP convolution is the same function, and trains the same, as Keras' dilated Conv2D."""
    import tensorflow as tf

    from keras_cnn.segmentation.deeplab_v3 import atrous_conv2d

    x = tf.constant(np.random.RandomState(0).normal(size=(2, *size, 6)).astype(np.float32))
    plain = keras.layers.Conv2D(5, 3, dilation_rate=rate, padding="same", use_bias=False)
    fast = atrous_conv2d(5, 3, rate, use_bias=False)
    plain.build(x.shape)
    fast.build(x.shape)
    fast.set_weights(plain.get_weights())
    grads = []
    for layer in (plain, fast):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(y * tf.cos(y))
        grads.append((y, *tape.gradient(loss, [x, layer.kernel])))
    for a, b in zip(*grads):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=2e-5, rtol=1e-5)
