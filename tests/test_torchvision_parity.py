"""Parity with torchvision itself: the same DeepLabV3 weights, the same photos, the same logits.

A developer extra: needs torch and torchvision (`pip install -e .[bench]`;
skipped without them; keras_cnn never imports torch). A `torchvision.models.segmentation.deeplabv3_resnet*`
with `aux_loss=True`, random weights and random BatchNorm statistics (see
`torchvision_reference.synthetic_state_dict`: they keep the logits at a trained
network's scale, where a 1e-4 bound means something) is saved with
`torch.save` (zip, or the legacy layout), read back by keras_cnn's torch-free
reader into the Keras model, and both models run in float32 on the same
ImageNet-normalised Weizmann horse photos. The logits must agree within 1e-4
and so must the predicted classes, except at pixels whose two best logits are
closer than float32 can decide (within twice the logit difference; torch's
own float32 result swaps such pixels against float64 too, which the slow
cases measure):

    python -m pytest -q -s tests/test_torchvision_parity.py          # ResNet-50, 96 px
    python -m pytest -q -s -m slow tests/test_torchvision_parity.py  # ResNet-101, 224 / 520 px

`-s` prints one `parity` line per case with the measured differences and times.
"""

import json
import os
import time

import numpy as np
import pytest

from tests.helpers import shared_data_dir
from tests.torchvision_reference import synthetic_state_dict

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
segmentation = pytest.importorskip("torchvision.models.segmentation")

from keras_cnn.segmentation import torchvision_deeplab as tvd  # noqa: E402

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
PHOTOS = 2
TOLERANCE = 1e-4


def photos(size):
    """The first Weizmann horse photos, resized (bilinear): RGB pixels 0-255 (what the Keras model takes)."""
    from PIL import Image

    folder = os.path.join(shared_data_dir(), "weizmann-horses", "images")
    if not os.path.isdir(folder):
        pytest.skip(f"real photos not found at {folder} (set KERAS_CNN_SHARED_DATA)")
    names = sorted(n for n in os.listdir(folder) if n.lower().endswith((".jpg", ".png")))[:PHOTOS]
    images = np.stack([np.asarray(Image.open(os.path.join(folder, n)).convert("RGB")
                                  .resize((size, size), Image.BILINEAR), np.float32) for n in names])
    return images


def normalised(pixels):
    """What torchvision's transforms give the torch model: (x / 255 - mean) / std."""
    return ((pixels / 255.0 - IMAGENET_MEAN) / IMAGENET_STD).astype(np.float32)


def margin(logits):
    """Per pixel: best logit minus the second best."""
    top2 = np.sort(logits, axis=-1)[..., -2:]
    return top2[..., 1] - top2[..., 0]


def torchvision_model(depth, output_stride=8, aux=True, seed=0):
    """torchvision's DeepLabV3 in eval mode with random weights and BN statistics."""
    if output_stride == 8:
        model = getattr(segmentation, f"deeplabv3_resnet{depth}")(
            weights=None, weights_backbone=None, aux_loss=aux)
    else:
        # torchvision's builders fix stride 8; the same network at 16 from its parts.
        backbone = getattr(torchvision.models, f"resnet{depth}")(
            weights=None, replace_stride_with_dilation=[False, False, True])
        model = segmentation.deeplabv3._deeplabv3_resnet(backbone, 21, aux)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    state = {k: torch.from_numpy(v) for k, v in synthetic_state_dict(shapes, seed).items()}
    model.load_state_dict(state, strict=True)
    return model.eval()


def run_parity(tmp_path, depth, size, layout, output_stride=8, float64=False):
    model = torchvision_model(depth, output_stride)
    path = str(tmp_path / f"deeplabv3_resnet{depth}_{layout}.pth")
    torch.save(model.state_dict(), path, _use_new_zipfile_serialization=(layout == "zip"))
    with open(path, "rb") as f:
        assert (f.read(2) == b"PK") == (layout == "zip")
    pixels = photos(size)
    x = normalised(pixels)

    start = time.perf_counter()
    with torch.no_grad():
        want = {k: v.numpy().transpose(0, 2, 3, 1) for k, v in model(torch.from_numpy(x.transpose(0, 3, 1, 2))).items()}
    torch_s = time.perf_counter() - start
    start = time.perf_counter()
    keras_model = tvd.load_torchvision_deeplabv3(path, image_size=size, output_stride=output_stride, aux=True)
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    # The Keras model normalises in its first layer, as keras_cnn's segmenters all do.
    got = {k: np.asarray(v) for k, v in keras_model(pixels, training=False).items()}
    keras_s = time.perf_counter() - start

    figures = {"depth": depth, "size": size, "output_stride": output_stride, "layout": layout,
               "photos": len(x), "torch_forward_s": round(torch_s, 2), "keras_build_load_s": round(load_s, 2),
               "keras_forward_s": round(keras_s, 2)}
    for name in ("out", "aux"):
        assert got[name].shape == want[name].shape == (len(x), size, size, 21)
        figures[f"{name}_max_abs_diff"] = float(np.abs(got[name] - want[name]).max())
        figures[f"{name}_max_abs_logit"] = float(np.abs(want[name]).max())
        differ = got[name].argmax(-1) != want[name].argmax(-1)
        figures[f"{name}_argmax_mismatches"] = int(differ.sum())
        figures[f"{name}_mismatch_max_margin"] = float(margin(want[name])[differ].max()) if differ.any() else 0.0
        figures[f"{name}_pixels"] = int(differ.size)
        figures[f"{name}_classes_predicted"] = len(np.unique(want[name].argmax(-1)))
    if float64:
        with torch.no_grad():
            exact = model.double()(torch.from_numpy(x.transpose(0, 3, 1, 2)).double())
        for name in ("out", "aux"):
            e = exact[name].numpy().transpose(0, 2, 3, 1)
            figures[f"{name}_torch32_vs_float64"] = float(np.abs(want[name] - e).max())
            figures[f"{name}_keras32_vs_float64"] = float(np.abs(got[name] - e).max())
            figures[f"{name}_torch32_argmax_mismatches_vs_float64"] = int((want[name].argmax(-1) != e.argmax(-1)).sum())
            figures[f"{name}_keras32_argmax_mismatches_vs_float64"] = int((got[name].argmax(-1) != e.argmax(-1)).sum())
    for name in ("out", "aux"):
        assert figures[f"{name}_max_abs_diff"] <= TOLERANCE, (name, figures)
        # The same class at every pixel but float32 ties. With logits within d
        # of torch's, a pixel can only change class if its two best classes
        # are within 2d (`mismatch_max_margin` shows how close they were);
        # among 10^5-10^6 pixels a few such ties occur, and torch's own
        # float32 result swaps as many against float64 (the slow cases
        # measure both). More than one pixel in 10^4 would not be ties.
        assert figures[f"{name}_argmax_mismatches"] <= 1e-4 * figures[f"{name}_pixels"], (name, figures)
    # torch's parameter count, with and without the auxiliary head.
    assert tvd.torch_parameter_count(keras_model) == sum(p.numel() for p in model.parameters())
    without_aux = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("aux_classifier."))
    assert tvd.torch_parameter_count(keras_model.segmenter) == without_aux
    if output_stride == 8:  # ...and the figure torchvision publishes with its COCO weights
        published = getattr(segmentation, f"DeepLabV3_ResNet{depth}_Weights").COCO_WITH_VOC_LABELS_V1
        assert tvd.torch_parameter_count(keras_model) == published.meta["num_params"]
    figures.update(torch_params=tvd.torch_parameter_count(keras_model), torch_params_without_aux=without_aux,
                   keras_count_params=keras_model.count_params())
    # The Keras table spells exactly torchvision's state dict (names and shapes).
    torch_shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()
                    if not k.endswith("num_batches_tracked")}
    assert tvd.torchvision_state_dict_shapes(keras_model) == torch_shapes
    print("\nparity " + json.dumps(figures))
    return figures


def test_resnet50_parity_small(tmp_path):
    run_parity(tmp_path, 50, 96, "zip")


@pytest.mark.slow
def test_resnet50_output_stride_16(tmp_path):
    run_parity(tmp_path, 50, 224, "legacy", output_stride=16, float64=True)


@pytest.mark.slow
@pytest.mark.parametrize("size,layout", [(224, "zip"), (224, "legacy"), (520, "zip"), (520, "legacy")])
def test_resnet101_parity(tmp_path, size, layout):
    run_parity(tmp_path, 101, size, layout, float64=(layout == "zip"))
