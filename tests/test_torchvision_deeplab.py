"""torchvision's DeepLabV3 in Keras without torch: layout, state-dict mapping, errors, NumPy parity.

The checkpoints here are written in torch.save's genuine zip and legacy
layouts by `torch_checkpoint_files` (no torch), with torchvision's key names
and shapes taken from the Keras model's own layer table; `torchvision_reference`
is an independent NumPy forward pass written from torchvision's definitions.
The comparison with torchvision itself is `test_torchvision_parity.py`.
"""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_cnn.errors import UserError
from keras_cnn.segmentation import torchvision_deeplab as tvd
from keras_cnn.segmentation.deeplab_v3 import DeepLabV3Segmenter
from keras_cnn.segmentation.torchvision_resnet import TorchvisionResNetBackbone
from tests import torch_checkpoint_files as ckpt
from tests import torchvision_reference as ref

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE, CLASSES = 48, 3


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """ResNet-50 DeepLabV3 with aux head (3 classes) loaded from a synthetic zip-format checkpoint.

    The tensors' names and shapes come from the model's own layer table; the
    file goes through the torch-free reader. (`load_torchvision_deeplabv3`
    itself, which builds the model from the file, is exercised on the legacy
    layout below: building a ResNet costs seconds.)
    """
    from keras_cnn.weights.torch_checkpoint import load_torch_state_dict

    keras.utils.set_random_seed(0)
    model = tvd.DeepLabV3WithAuxHead(tvd.build_torchvision_deeplabv3(50, CLASSES, SIZE))
    state = ref.synthetic_state_dict(tvd.torchvision_state_dict_shapes(model))
    path = str(tmp_path_factory.mktemp("tv") / "deeplabv3_resnet50_synthetic.pth")
    ckpt.write_zip(path, ckpt.state_dict(state))
    tvd.load_torchvision_weights(model, load_torch_state_dict(path), path)
    return {"path": path, "state": state, "model": model}


def test_backbone_strides_dilations_and_padding():
    backbone = TorchvisionResNetBackbone(depth=50, output_stride=16, image_shape=(SIZE, SIZE, 3))
    assert backbone.feature_shape == (SIZE // 16, SIZE // 16, 2048)
    assert backbone.preprocessing == "imagenet"
    layer = backbone.get_layer
    # v1.5: a downsampling block strides its 3x3 conv, not its first 1x1.
    assert layer("layer2_0_conv1").strides == (1, 1) and layer("layer2_0_conv2").strides == (2, 2)
    assert layer("layer3_0_conv2").strides == (2, 2) and layer("layer3_0_downsample_0").strides == (2, 2)
    # Output stride 16 = replace_stride_with_dilation [False, False, True]: layer4's
    # first block keeps dilation 1, the others dilate by 2, padded by the dilation.
    assert layer("layer4_0_conv2").strides == (1, 1) and layer("layer4_0_conv2").dilation_rate == (1, 1)
    assert layer("layer4_1_conv2").dilation_rate == (2, 2)
    assert layer("layer4_1_conv2_pad").padding == ((2, 2), (2, 2))
    # Explicit symmetric padding: 3 for the 7x7 stem, 1 for the max-pool.
    assert layer("conv1_pad").padding == ((3, 3), (3, 3)) and layer("conv1").padding == "valid"
    assert layer("maxpool_pad").padding == ((1, 1), (1, 1))
    bns = [layer(n) for n, _ in backbone.torchvision_layers
           if isinstance(layer(n), keras.layers.BatchNormalization)]
    assert len(bns) == 1 + 16 * 3 + 4 and all(bn.epsilon == 1e-5 for bn in bns)
    # What a .keras file rebuilds it from (the slow test reloads a converted file).
    assert backbone.get_config() == {"name": "torchvision_resnet50", "trainable": True,
                                     "image_shape": [SIZE, SIZE, 3], "output_stride": 16, "depth": 50}


def test_checkpoint_loads_every_weight_from_its_tensor(synthetic):
    model, state = synthetic["model"], synthetic["state"]
    assert isinstance(model, tvd.DeepLabV3WithAuxHead) and isinstance(model.segmenter, DeepLabV3Segmenter)
    assert model.segmenter.num_classes == CLASSES and model.segmenter.backbone.depth == 50
    table = tvd.torchvision_layer_table(model)
    # Every Keras weight has a tensor of the file...
    covered = {id(w) for _, layer in table for w in layer.weights}
    assert covered == {id(w) for w in model.weights}, "Keras weights the torchvision mapping leaves out"
    # ...every tensor of the file (but the BN counters) has a Keras weight...
    assert {k for k in state if not k.endswith("num_batches_tracked")} == set(tvd.torchvision_state_dict_shapes(model))
    # ...and each holds exactly its tensor (all tensors differ, so a swap would show).
    for path, layer in table:
        for got, (key, _, _) in zip(layer.get_weights(), tvd._torch_tensors(path, layer)):
            want = state[key].transpose(2, 3, 1, 0) if state[key].ndim == 4 else state[key]  # OIHW -> HWIO
            np.testing.assert_array_equal(got, want, err_msg=key)
    # torch's parameter count: torchvision's deeplabv3_resnet50 with aux_loss, 3 classes.
    assert tvd.torch_parameter_count(model) == sum(
        v.size for k, v in state.items() if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))


def test_matches_an_independent_numpy_forward_pass(synthetic):
    """Keras (float32) against torchvision's ops re-implemented in NumPy (float64)."""
    image = np.random.default_rng(1).normal(0, 1, (SIZE, SIZE, 3)).astype(np.float32)
    # The segmenter takes pixels and normalises them itself: feed the pixels of `image`.
    pixels = (image * np.array([0.229, 0.224, 0.225]) + np.array([0.485, 0.456, 0.406])) * 255.0
    got = synthetic["model"](pixels[None].astype(np.float32), training=False)
    want = ref.deeplabv3(image, synthetic["state"], depth=50)
    for name in ("out", "aux"):
        out = keras.ops.convert_to_numpy(got[name])[0]
        assert np.abs(out - want[name]).max() <= 1e-4, name
        assert (out.argmax(-1) == want[name].argmax(-1)).all(), name
        assert len(np.unique(want[name].argmax(-1))) > 1, name  # so the argmax check means something


def test_segmenter_alone_and_a_new_classifier(synthetic, tmp_path):
    """Legacy-format file; without aux the aux tensors are ignored; num_classes=2 replaces classifier.4."""
    path = ckpt.write_legacy(str(tmp_path / "legacy.pth"), ckpt.state_dict(synthetic["state"]))
    keras.utils.set_random_seed(1)
    model = tvd.load_torchvision_deeplabv3(path, image_size=SIZE, num_classes=2)
    assert isinstance(model, DeepLabV3Segmenter) and model.num_classes == 2
    assert model.preprocessing == "imagenet"
    state = synthetic["state"]
    np.testing.assert_array_equal(model.get_layer("decoder_conv").kernel.numpy(),
                                  state["classifier.1.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(model.backbone.get_layer("layer4_2_bn3").moving_variance.numpy(),
                                  state["backbone.layer4.2.bn3.running_var"])
    assert model.get_layer("classifier").kernel.shape == (1, 1, 256, 2)
    # The new classifier is freshly initialised (Keras' defaults: zero bias).
    np.testing.assert_array_equal(model.get_layer("classifier").bias.numpy(), np.zeros(2))
    # Without aux, torch's count of the segmenter alone.
    aux_params = sum(state[k].size for k in state if k.startswith("aux_classifier.")
                     and not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    assert tvd.torch_parameter_count(model) == tvd.torch_parameter_count(synthetic["model"]) - aux_params \
        - 256 * (CLASSES - 2) - (CLASSES - 2)


def test_mismatched_files_are_one_line_errors(synthetic, tmp_path):
    state, model = synthetic["state"], synthetic["model"]
    before = model.get_layer("aux_conv").kernel.numpy().copy()

    def error(broken, source="bad.pth"):
        with pytest.raises(UserError) as e:
            tvd.load_torchvision_weights(model, broken, source)
        assert "\n" not in str(e.value) and str(e.value).startswith(f"{source}: ")
        return str(e.value)

    missing = {k: v for k, v in state.items() if k != "backbone.layer2.1.bn2.running_var"}
    assert "1 missing (backbone.layer2.1.bn2.running_var)" in error(missing)
    wrong = dict(state, **{"classifier.1.weight": state["classifier.1.weight"][:, :128]})
    assert "1 of the wrong shape (classifier.1.weight [256, 128, 3, 3] instead of [256, 256, 3, 3])" in error(wrong)
    extra = dict(state, **{"backbone.fc.weight": np.zeros((10, 2048), np.float32)})
    assert "1 unexpected (backbone.fc.weight)" in error(extra)
    # Nothing was assigned by the failed loads.
    np.testing.assert_array_equal(model.get_layer("aux_conv").kernel.numpy(), before)
    # A "module." prefix (DataParallel) is fine.
    tensors = len([k for k in state if not k.endswith("num_batches_tracked")])
    assert tvd.load_torchvision_weights(model, {f"module.{k}": v for k, v in state.items()}, "dp.pth") == tensors

    # Through a file: the message names it. A ResNet classifier checkpoint is not DeepLabV3.
    classifier_only = ckpt.write_zip(str(tmp_path / "resnet50.pth"), ckpt.state_dict(
        {"conv1.weight": np.zeros((64, 3, 7, 7), np.float32), "fc.weight": np.zeros((1000, 2048), np.float32)}))
    with pytest.raises(UserError, match=r"resnet50\.pth: not a torchvision DeepLabV3 state dict"):
        tvd.load_torchvision_deeplabv3(classifier_only, image_size=SIZE)
    three_blocks = {k: v for k, v in state.items() if not k.startswith(("backbone.layer3.4.", "backbone.layer3.5."))}
    with pytest.raises(UserError, match=r"layer3 has 4 blocks; torchvision's ResNet-50 has 6 and ResNet-101 23"):
        tvd.deeplabv3_from_state_dict(three_blocks, "x.pth", image_size=SIZE)


def script(name, *args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, os.path.join(REPO, "scripts", name), *args],
                          capture_output=True, text=True, env=env, timeout=1800)


@pytest.mark.slow
def test_converted_file_fine_tunes_with_the_assignment_preset_and_exports(tmp_path):
    """convert_torchvision.py -> train_segmentation.py --preset flowers17_deeplabv3 --base-model -> export.py.

    A random ResNet-50 DeepLabV3 in torchvision's format (the legacy layout,
    as torchvision's COCO file) stands in for the COCO weights; a generated
    image/mask folder for Oxford 17 (offline).
    """
    from keras_cnn.training import load_model
    from tests.test_segmentation_data import make_folder

    keras.utils.set_random_seed(0)
    template = tvd.DeepLabV3WithAuxHead(tvd.build_torchvision_deeplabv3(50, 21, SIZE))
    weights = ckpt.write_legacy(str(tmp_path / "deeplabv3_resnet50_random.pth"),
                                ckpt.state_dict(ref.synthetic_state_dict(tvd.torchvision_state_dict_shapes(template))))
    out = str(tmp_path / "tv" / "deeplabv3.keras")

    absent = script("convert_torchvision.py", "--weights", str(tmp_path / "absent.pth"), "--out", out)
    assert absent.returncode == 2, absent.stderr
    assert absent.stderr.strip() == f"error: {tmp_path / 'absent.pth'}: checkpoint file does not exist"
    converted = script("convert_torchvision.py", "--weights", weights, "--image-size", "96", "--out", out)
    assert converted.returncode == 0, converted.stderr
    assert "deeplabv3_resnet50, 21 classes, 96x96 input" in converted.stdout
    assert "39,638,869 parameters" in converted.stdout  # torchvision's deeplabv3_resnet50 without aux
    assert [n for n in os.listdir(tmp_path / "tv")] == ["deeplabv3.keras"]  # no temporary left
    model = load_model(out)
    assert model.image_size == (96, 96) and model.num_classes == 21 and model.preprocessing == "imagenet"

    data = make_folder(tmp_path / "data", n=12)
    run_dir = str(tmp_path / "run")
    trained = script("train_segmentation.py", "--preset", "flowers17_deeplabv3", "--base-model", out,
                     "--dataset", "folder", "--data-dir", str(data), "--image-size", "64",
                     "--epochs", "1", "--batch-size", "4", "--plot-examples", "2", "--run-dir", run_dir)
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert "514 trained (head)" in trained.stdout  # only the new 2-class 1x1 classifier: 256 x 2 + 2
    best = load_model(os.path.join(run_dir, "best.keras"))
    assert best.num_classes == 2 and best.image_size == (64, 64)
    # Everything but the classifier is the converted model's.
    np.testing.assert_array_equal(best.backbone.get_layer("layer4_2_conv2").kernel.numpy(),
                                  model.backbone.get_layer("layer4_2_conv2").kernel.numpy())

    exported = script("export.py", "--run-dir", run_dir, "--name", "tv", "--out", str(tmp_path / "exported"),
                      "--formats", "saved_model,tflite_float32", "--check-count", "2",
                      "--representative-count", "2")
    assert exported.returncode == 0, exported.stderr[-2000:]
    assert os.path.isdir(tmp_path / "exported" / "tv" / "1")
