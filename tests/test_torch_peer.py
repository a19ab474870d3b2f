"""The PyTorch peer (keras_cnn/benchmarks/peer_torch.py): the twin is the same net, and the peer measures.

A developer extra: needs torch and torchvision (`pip install -e .[bench]`;
skipped without them; the package and the default CI never import torch). The twin's logits must equal
the Keras UNet's within 1e-4 once the Keras weights are copied in, in eval
mode (running BatchNorm statistics, set to random values so they matter) and
in training mode (batch statistics); a torch training step must lower the
loss; the peer's delta E must be the package's; and the peer, run through the
benchmark suite on a tiny folder, must fill its JSON and tables.

    python -m pytest -q tests/test_torch_peer.py
    python -m pytest -q -m slow tests/test_torch_peer.py   # DeepLabV3-ResNet-50 too
"""

import importlib.util
import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
if importlib.util.find_spec("torchvision") is None:
    pytest.skip("torchvision is not installed", allow_module_level=True)

from keras_cnn.benchmarks import peer_torch  # noqa: E402

# torchvision must load without the Triton crash if TensorFlow is loaded already (see require_torch).
peer_torch.require_torch()

import keras  # noqa: E402

from keras_cnn.benchmarks import report, suite, torch_nets  # noqa: E402
from keras_cnn.colorization.colorizer import Colorizer  # noqa: E402
from keras_cnn.colorization.evaluate import evaluate  # noqa: E402
from keras_cnn.colorization.models import UNet  # noqa: E402
from keras_cnn.colorization.palette import Palette  # noqa: E402
from keras_cnn.errors import UserError  # noqa: E402
from tests.helpers import write_images  # noqa: E402

TOLERANCE = 1e-4


def quiet(msg):
    pass


def keras_colorizer(seed=0, **kwargs):
    """A Keras course UNet with random weights scaled up and random BatchNorm statistics and affine terms."""
    keras.utils.set_random_seed(seed)
    model = Colorizer(UNet(**kwargs))
    rng = np.random.RandomState(seed)
    for layer in model.net.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.gamma.assign(rng.uniform(0.5, 2.0, layer.gamma.shape))
            layer.beta.assign(rng.normal(0, 0.5, layer.beta.shape))
            layer.moving_mean.assign(rng.normal(0, 0.5, layer.moving_mean.shape))
            layer.moving_variance.assign(rng.uniform(0.2, 3.0, layer.moving_variance.shape))
        elif layer.weights:
            # Bigger than Glorot's: logits of a few units, where 1e-4 is a tight bound.
            layer.weights[0].assign(np.asarray(layer.weights[0]) * 3.0)
            layer.weights[1].assign(rng.normal(0, 0.3, layer.weights[1].shape))
    return model


def pixels(n=6, size=32, seed=1):
    return np.random.RandomState(seed).randint(0, 256, (n, size, size, 3)).astype(np.uint8)


def twin_logits(twin, images, train=False):
    twin.train(train)
    with torch.no_grad():
        return twin(torch.from_numpy(images)).permute(0, 2, 3, 1).numpy()


def test_the_twin_is_the_keras_unet_in_eval_and_training_mode():
    model = keras_colorizer()
    twin = torch_nets.TorchColorizer(torch_nets.UNet())
    assert torch_nets.parameter_count(twin) == 56_856
    assert sum(int(np.prod(v.shape)) for v in model.trainable_weights) == 56_856
    torch_nets.copy_keras_weights(model, twin)
    images = pixels()
    ours = np.asarray(model(images, training=False))
    assert 1.0 < np.abs(ours).max() < 100.0  # a scale where the bound means something
    np.testing.assert_allclose(twin_logits(twin, images), ours, atol=TOLERANCE, rtol=0)
    # Any image size that is a multiple of 4, as the Keras net takes.
    wide = pixels(2, 48)
    np.testing.assert_allclose(twin_logits(twin, wide), np.asarray(model(wide, training=False)),
                               atol=TOLERANCE, rtol=0)
    # Training mode normalises with the batch's own statistics in both frameworks.
    np.testing.assert_allclose(twin_logits(twin, images, train=True), np.asarray(model(images, training=True)),
                               atol=TOLERANCE, rtol=0)
    # That step moved the running statistics the same way (Keras momentum 0.9 = torch 0.1), but for one
    # known difference: torch averages the unbiased batch variance, Keras the biased one (n / (n - 1), with
    # n = 6 x 16 x 16 pixels here; 25,600 at batch 100, where it is negligible).
    keras_bn, torch_bn = model.net.get_layer("down1_bn"), twin.net.down1_bn
    np.testing.assert_allclose(torch_bn.running_mean.numpy(), np.asarray(keras_bn.moving_mean), atol=1e-6)
    torch_var, keras_var = torch_bn.running_var.numpy(), np.asarray(keras_bn.moving_variance)
    assert np.all(torch_var > keras_var) and np.allclose(torch_var, keras_var, rtol=1e-3)


def test_copying_into_a_different_net_is_an_error():
    small = keras_colorizer(num_filters=8)
    with pytest.raises(UserError, match=r"down1.weight: Keras gives shape \(8, 1, 3, 3\), the PyTorch twin has "
                                        r"\(32, 1, 3, 3\)"):
        torch_nets.copy_keras_weights(small, torch_nets.TorchColorizer(torch_nets.UNet()))


def test_a_torch_training_step_lowers_the_loss():
    torch.manual_seed(0)
    images = pixels(16)
    labels = Palette(np.random.RandomState(0).uniform(0, 1, (24, 3))).labels(images).numpy().astype(np.int64)
    twin = torch_nets.TorchColorizer(torch_nets.UNet())
    # One batch of all 16 images: every step sees the same data, so the loss must fall.
    loop = peer_torch.TorchLoop(twin, torch.from_numpy(images), torch.from_numpy(labels), 16, 1e-3)
    losses = [float(loop.step().detach()) for _ in range(15)]
    assert losses[-1] < 0.9 * losses[0], losses
    rate = loop.rate(steps=2, warmup=1)
    assert rate["batch"] == 16 and rate["images_per_s"] == pytest.approx(16 * 1000 / rate["step_ms"])


class _Recorder(torch.nn.Module):
    """Logits (B, 2, 1, 1) from the image ids it is fed, remembering the ids."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(2))
        self.seen = []

    def forward(self, ids):
        self.seen.append(ids[:, 0].long().tolist())
        return (ids[:, :1] * self.w).view(-1, 2, 1, 1)


@pytest.mark.parametrize("drop_last,sizes", [(False, [4, 4, 2]), (True, [4, 4])])
def test_each_epoch_visits_the_images_once_in_a_new_order(drop_last, sizes):
    ids = torch.arange(10, dtype=torch.float32).view(10, 1)
    model = _Recorder()
    loop = peer_torch.TorchLoop(model, ids, torch.zeros(10, 1, 1, dtype=torch.int64), 4, 1e-3, drop_last)
    loop.epoch()
    first = model.seen[:]
    loop.epoch()
    second = model.seen[len(first):]
    for epoch in (first, second):
        assert [len(b) for b in epoch] == sizes
        flat = [i for b in epoch for i in b]
        assert len(set(flat)) == len(flat) and (drop_last or sorted(flat) == list(range(10)))
    assert first != second


def test_the_peers_delta_e_is_the_packages():
    model = keras_colorizer()
    palette = Palette(np.random.RandomState(2).uniform(0, 1, (24, 3)))
    images = pixels(12)
    ours = peer_torch.mean_delta_e(model.predict_on_batch, images, palette, batch=5)
    assert ours == pytest.approx(evaluate(model, images, palette, 5)["delta_e"], rel=1e-5)
    twin = torch_nets.copy_keras_weights(model, torch_nets.TorchColorizer(torch_nets.UNet()))
    # The same net: the same argmax colours, but for a pixel whose two best logits tie within float error.
    assert peer_torch.mean_delta_e(peer_torch.torch_logits(twin), images, palette) == pytest.approx(ours, rel=1e-3)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The peer through the benchmark suite, course UNet only, on 40 random images: 2 rounds, 2 epochs."""
    root = tmp_path_factory.mktemp("peer")
    write_images(root / "data" / suite.HORSES, list(pixels(40, seed=3)))
    result = suite.run(str(root / "data"), str(root / "work"), parts=(), quick=True, peer="torch", peer_rounds=2,
                       peer_epochs=2, quality_target=1000.0, peer_nets=("unet",), log=quiet)
    md = suite.write(result, str(root / "peer.json"))
    return result, json.load(open(root / "peer.json")), open(md).read()


def test_the_peer_part_measures_both_sides_in_alternating_rounds(tiny_run):
    result, stored, md = tiny_run
    assert result["parts"] == ["peer"] and stored["peer"] == json.loads(json.dumps(result["peer"]))
    peer = result["peer"]
    assert peer["torch_threads"] == peer["tf_intra_op_threads"] == peer_torch.usable_cpus()
    [net] = peer["nets"]
    assert net["params_ours"] == net["params_peer"] == 56_856 and net["batch"] == 100
    assert [r["first"] for r in net["rounds"]] == ["ours", "peer"]
    for r in net["rounds"]:
        assert r["train_ratio"] == pytest.approx(r["ours_train_images_per_s"] / r["peer_train_images_per_s"])
        assert r["infer_ratio"] == pytest.approx(r["ours_infer_images_per_s"] / r["peer_infer_images_per_s"])
    assert net["train_ratio"] == pytest.approx(np.median([r["train_ratio"] for r in net["rounds"]]))
    # Each framework in its own child: TensorFlow alone takes hundreds of MiB, so the two cannot be equal.
    assert net["ours_peak_rss_mib"] > 100 and net["peer_peak_rss_mib"] > 100
    assert net["ours_peak_rss_mib"] != net["peer_peak_rss_mib"]
    assert net["memory_ratio"] == pytest.approx(net["ours_peak_rss_mib"] / net["peer_peak_rss_mib"])
    assert "### PyTorch peer" in md and "| course UNet (cifar10_unet) | 100 | 56,856 | 56,856 | 2 |" in md


def test_time_to_quality_counts_training_minutes_per_epoch(tiny_run):
    q = tiny_run[0]["peer"]["time_to_quality"]
    rows = q["epochs_rows"]
    assert [r["epoch"] for r in rows] == [1, 2] and q["validation_images"] == 4
    for who in ("ours", "peer"):
        assert rows[1][f"{who}_train_minutes"] == pytest.approx(
            (rows[0][f"{who}_epoch_seconds"] + rows[1][f"{who}_epoch_seconds"]) / 60)
        # A target of 1000 is met after the first epoch; its training minutes are the answer.
        assert q[f"{who}_minutes_to_target"] == rows[0][f"{who}_train_minutes"] > 0
        assert q[f"{who}_final_delta_e"] == rows[1][f"{who}_delta_e"] > 0
    # Both start from the same weights, so after one epoch on the same 36 images their colours are close.
    assert abs(rows[0]["ours_delta_e"] - rows[0]["peer_delta_e"]) < 2.0
    assert q["minutes_ratio"] == pytest.approx(q["ours_minutes_to_target"] / q["peer_minutes_to_target"])
    assert "minutes to delta E 1000" in report.markdown(tiny_run[0])


@pytest.mark.slow
def test_deeplab_resnet50_peer_on_two_horses():
    from tests.helpers import shared_data_dir

    folder = os.path.join(shared_data_dir(), suite.WEIZMANN)
    if not os.path.isdir(folder):
        pytest.skip(f"real photos not found at {folder} (set KERAS_CNN_SHARED_DATA)")
    settings = {**peer_torch.SETTINGS[True], "seg_size": 32, "seg_steps": 1, "seg_warmup": 1}
    images, masks = peer_torch.seg_data(folder, 32, pairs=4)
    assert images.shape == (4, 32, 32, 3) and set(np.unique(masks)) <= {0, 1}
    row = peer_torch.deeplab_speed(images, masks, 1, settings, log=quiet)
    # torchvision's deeplabv3_resnet50 without the auxiliary head, 2 classes, and our port: the same parameters.
    assert row["params_ours"] == row["params_peer"]
    assert row["ours_train_images_per_s"] > 0 and row["peer_infer_images_per_s"] > 0
