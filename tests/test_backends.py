"""Every model, loss and metric on TensorFlow, JAX and PyTorch: build, fit, save, load, and the same logits.

Keras fixes its backend once per process, so each backend's checks run in a
subprocess with `KERAS_BACKEND` set (`python -m tests.test_backends BACKEND
DIR`). The TensorFlow run also leaves its fitted models, inputs and logits in
DIR; the JAX and PyTorch runs load those `.keras` files and must give the
same logits, and save their own fitted models, which a last TensorFlow run
loads back (trained anywhere, exported from TensorFlow).

The nets are tiny (4-8 filters, 32x32 images, one step of batch 2); the
EfficientNet-Lite0 models are the real architecture at a small input.
"""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.helpers import REPO

SIZE = 32
# EffNetUNet alone takes a minute on JAX (building Lite0 there is slow on CPU): a slow test.
DEFAULT_MODELS = ("unet", "resunet", "superres", "deeplab_tiny", "deeplab_lite0_plus")


# === The checks, run inside one backend's process ===

def _models():
    """name -> (build function, input size): one of each kind the package trains."""
    from keras_cnn.colorization.colorizer import Colorizer
    from keras_cnn.colorization.effnet_unet import EffNetUNet
    from keras_cnn.colorization.models import PoolUpsampleNet, UNet
    from keras_cnn.colorization.resunet import ResUNet
    from keras_cnn.segmentation.deeplab_v3 import DeepLabV3Segmenter
    from keras_cnn.segmentation.registry import make_backbone

    return {
        "unet": lambda: Colorizer(UNet(num_filters=4, num_colours=5)),
        "resunet": lambda: Colorizer(ResUNet(num_filters=4, num_colours=5, encoder_blocks=1,
                                             dilations=(1, 2), decoder_blocks=1)),
        "superres": lambda: Colorizer(PoolUpsampleNet(num_filters=4, num_colours=5, num_in_channels=3), "downsize"),
        "effnet_unet": lambda: Colorizer(EffNetUNet(num_filters=4, num_colours=5, upsample=1)),
        # 48 px at stride 8: a 6x6 map, so ASPP's rate 4 is a dilated conv and rate 8 the sum of 1x1 taps.
        "deeplab_tiny": lambda: DeepLabV3Segmenter(make_backbone("tiny", 48, 8), 2, aspp_rates=(1, 4, 8),
                                                   aspp_channels=8),
        "deeplab_lite0_plus": lambda: DeepLabV3Segmenter(make_backbone("efficientnet_lite0", SIZE, 16), 2,
                                                         aspp_channels=8, low_level_channels=8),
    }


def _data(model, seed=0):
    rng = np.random.RandomState(seed)
    size = model.input_shape[1] or SIZE
    images = rng.randint(0, 256, (2, size, size, 3)).astype(np.uint8)
    if hasattr(model, "num_colours"):
        labels = rng.randint(0, model.num_colours, (2, size, size)).astype(np.uint8)
    else:
        labels = (images[..., 0] > 127).astype(np.int32)
        labels[:, 0, :] = 255  # an ignored row
    return images, labels


def _compile(model):
    import keras

    if hasattr(model, "num_colours"):
        from keras_cnn.colorization.losses import PixelCrossEntropy

        loss, metrics = PixelCrossEntropy([1.0, 2.0, 0.5, 1.0, 1.5]), ["accuracy"]
    else:
        from keras_cnn.segmentation.metrics import segmentation_loss, segmentation_metrics

        loss, metrics = segmentation_loss(), segmentation_metrics(2)
    model.compile(keras.optimizers.Adam(1e-3), loss, metrics=metrics,
                  run_eagerly=keras.backend.backend() == "tensorflow")


def _logits(model, images):
    from keras import ops

    return ops.convert_to_numpy(model(images, training=False))


def _colour_maths():
    """The colour maths in `keras.ops` on this backend against NumPy."""
    from keras import ops

    from keras_cnn.colorization import color
    from keras_cnn.colorization.palette import Palette

    rng = np.random.RandomState(0)
    images = rng.randint(0, 256, (2, 8, 8, 3)).astype(np.uint8)
    logits = rng.normal(0, 2, (2, 8, 8, 4)).astype(np.float32)
    worst = 0.0
    for palette in (Palette(rng.uniform(0, 1, (4, 3))), Palette(rng.uniform(-60, 60, (4, 2)))):
        for mode in ("argmax", "annealed"):
            got = [ops.convert_to_numpy(palette.decode(logits, color.grey(images, xp), mode, xp=xp))
                   for xp in ("keras", "numpy")]
            worst = max(worst, float(np.abs(got[0].astype(int) - got[1]).max()))
        assert (ops.convert_to_numpy(palette.labels(images, "keras")) == palette.labels(images, "numpy")).all()
    errors = [np.array([float(ops.convert_to_numpy(v)) for v in color.colour_errors(images, images[::-1], xp)])
              for xp in ("keras", "numpy")]
    np.testing.assert_allclose(errors[0], errors[1], rtol=1e-5)
    assert worst <= 1, worst  # uint8 colours: at most a rounding step apart


def _resize_check(out_dir, backend):
    """`BilinearResize` (`tf.image.resize` on TensorFlow, `keras.ops` elsewhere) on fixed input."""
    from keras import ops

    from keras_cnn.colorization.effnet_unet import BilinearResize

    x = np.random.RandomState(2).normal(size=(2, 5, 7, 3)).astype(np.float32)
    reference = np.zeros((1, 9, 13, 1), np.float32)
    for name, y in (("scale", BilinearResize(2)(x)), ("reference", BilinearResize()(x, reference))):
        np.save(os.path.join(out_dir, f"resize_{name}_{backend}.npy"), ops.convert_to_numpy(y))


# `evaluate` of `_fixed_colourizer` as the TensorFlow-only code before the port computed it (a tf.function
# step, TensorFlow colour maths), for an RGB and an ab palette, both decodings.
FIXED_EVALUATION = {
    "rgb/argmax": {"loss": 1.7795415719350178, "accuracy": 0.16666666666666666, "delta_e": 80.21207682291667,
                   "psnr": 8.351030667622885},
    "rgb/annealed": {"loss": 1.7795415719350178, "accuracy": 0.16666666666666666, "delta_e": 70.98072814941406,
                     "psnr": 9.727911313374838},
    "ab/argmax": {"loss": 1.3965830008188884, "accuracy": 0.4609375, "delta_e": 58.046976725260414,
                  "psnr": 12.161075909932455},
    "ab/annealed": {"loss": 1.3965830008188884, "accuracy": 0.4609375, "delta_e": 57.22685750325521,
                    "psnr": 12.79781182607015},
}


def _fixed_evaluation():
    """`evaluate` of a UNet colourizer with fixed weights (the same on every backend) on fixed images."""
    from keras_cnn.colorization.colorizer import Colorizer
    from keras_cnn.colorization.evaluate import evaluate
    from keras_cnn.colorization.models import UNet
    from keras_cnn.colorization.palette import Palette

    rng = np.random.RandomState(0)
    images = rng.randint(0, 256, (6, 8, 8, 3)).astype(np.uint8)
    model = Colorizer(UNet(num_filters=4, num_colours=5))
    model.set_weights([rng.uniform(0.5, 1.5, w.shape) if "variance" in v.path else rng.normal(0, 0.3, w.shape)
                       for v, w in zip(model.weights, model.get_weights())])
    palettes = {"rgb": Palette(rng.uniform(0, 1, (5, 3))), "ab": Palette(rng.uniform(-60, 60, (5, 2)))}
    return {f"{space}/{mode}": evaluate(model, images, palette, batch_size=4, decode=mode)
            for space, palette in palettes.items() for mode in ("argmax", "annealed")}


def run_checks(out_dir, reference_dir=None, models="", fit=True):
    """Builds, fits, saves and loads the named models on this process's backend (unless not `fit`),
    loads the other backends' models in `reference_dir` and compares their logits; writes a JSON report."""
    import keras

    import keras_cnn  # noqa: F401  (registers the package's classes for load_model)
    from keras_cnn.colorization.evaluate import evaluate
    from keras_cnn.colorization.palette import Palette

    backend = keras.backend.backend()
    report = {"backend": backend, "models": {}, "parity": {}}
    if fit:
        _colour_maths()
        _resize_check(out_dir, backend)
        report["fixed_evaluation"] = _fixed_evaluation()
    for name in models.split(",") if fit and models else ():
        build = _models()[name]
        start = time.perf_counter()
        keras.utils.set_random_seed(0)
        model = build()
        images, labels = _data(model)
        _compile(model)
        history = model.fit(images, labels, batch_size=2, epochs=1, verbose=0, shuffle=False)
        loss = history.history["loss"][-1]
        assert np.isfinite(loss), (name, loss)
        path = os.path.join(out_dir, f"{name}_{backend}.keras")
        model.save(path)
        loaded = keras.saving.load_model(path)
        assert type(loaded) is type(model)
        before, after = _logits(model, images), _logits(loaded, images)
        np.testing.assert_allclose(after, before, atol=1e-5, err_msg=name)
        np.save(os.path.join(out_dir, f"{name}_{backend}_images.npy"), images)
        np.save(os.path.join(out_dir, f"{name}_{backend}_logits.npy"), before)
        entry = {"loss": float(loss), "fit_save_load_s": round(time.perf_counter() - start, 1)}
        if hasattr(model, "num_colours"):
            palette = Palette(np.random.RandomState(1).uniform(0, 1, (model.num_colours, 3)))
            entry["evaluate"] = evaluate(model, images, palette, batch_size=2)
        else:  # the metrics of the training step
            entry["evaluate"] = {k: float(v[-1]) for k, v in history.history.items()}
        entry["seconds"] = round(time.perf_counter() - start, 1)
        report["models"][name] = entry
    for path in sorted(os.listdir(reference_dir)) if reference_dir else ():
        if not path.endswith(".keras") or path.endswith(f"_{backend}.keras"):
            continue
        stem = path[:-len(".keras")]
        model = keras.saving.load_model(os.path.join(reference_dir, path))
        got = _logits(model, np.load(os.path.join(reference_dir, f"{stem}_images.npy")))
        want = np.load(os.path.join(reference_dir, f"{stem}_logits.npy"))
        report["parity"][stem] = float(np.abs(got - want).max() / max(np.abs(want).max(), 1.0))
    with open(os.path.join(out_dir, f"report_{backend}.json"), "w") as f:
        json.dump(report, f, indent=1)
    return report


# === The tests, each backend in its own process ===

def run_backend(backend, out_dir, reference_dir=None, models=DEFAULT_MODELS, fit=True, timeout=600):
    path = os.pathsep.join(p for p in (REPO, os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": path}
    args = [sys.executable, "-m", "tests.test_backends", str(out_dir), str(reference_dir or ""),
            ",".join(models), str(int(fit))]
    start = time.perf_counter()
    done = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{backend} failed:\n{done.stderr[-4000:]}"
    print(f"{backend}: {time.perf_counter() - start:.0f} s", "fit" if fit else "load only")
    with open(os.path.join(out_dir, f"report_{backend}.json")) as f:
        return json.load(f)


def check_report(report, backend, models):
    assert report["backend"] == backend
    for key, want in FIXED_EVALUATION.items():  # the evaluation step gives the numbers it gave on TensorFlow
        for metric, value in want.items():
            assert report["fixed_evaluation"][key][metric] == pytest.approx(value, rel=1e-5), (key, metric)
    assert set(report["models"]) == set(models)
    for name, entry in report["models"].items():
        assert all(np.isfinite(v) for v in entry["evaluate"].values()), (name, entry)


def check_parity(report, trained_on, models):
    # The same weights give the same logits on both backends: float32 rounding only.
    assert set(report["parity"]) == {f"{name}_{trained_on}" for name in models}
    assert max(report["parity"].values()) < 1e-4, report["parity"]


def on_every_backend(tmp_path, models, backends=("jax", "torch")):
    """Runs `models` on TensorFlow, then on each of `backends` against TensorFlow's files and back."""
    for backend in backends:
        pytest.importorskip(backend, reason=f"the {backend} backend needs {backend} installed "
                                            f"(pip install -e .[{backend}])")
    reference = tmp_path / "tensorflow"
    reference.mkdir()
    check_report(run_backend("tensorflow", reference, models=models), "tensorflow", models)
    for backend in backends:
        out = tmp_path / backend
        out.mkdir()
        report = run_backend(backend, out, reference, models)
        check_report(report, backend, models)
        check_parity(report, "tensorflow", models)
        for name in ("scale", "reference"):
            np.testing.assert_allclose(np.load(out / f"resize_{name}_{backend}.npy"),
                                       np.load(reference / f"resize_{name}_tensorflow.npy"), atol=1e-5)
        # Trained here, loaded on TensorFlow (where export happens): the same logits.
        back = tmp_path / f"{backend}_on_tensorflow"
        back.mkdir()
        check_parity(run_backend("tensorflow", back, out, fit=False), backend, models)


# JAX is installed with the tests (requirements-test.txt); PyTorch is an extra, and its row skips without it.
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_every_model_fits_saves_loads_and_agrees_on_every_backend(tmp_path, backend):
    on_every_backend(tmp_path, DEFAULT_MODELS, (backend,))


@pytest.mark.slow
def test_effnet_unet_on_every_backend(tmp_path):
    on_every_backend(tmp_path, ("effnet_unet",))


NO_TENSORFLOW = """
import importlib.abc, sys
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "tensorflow":
            raise ImportError("no TensorFlow on this machine")
sys.meta_path.insert(0, Refuse())
import keras, numpy as np
import keras_cnn
from keras_cnn.colorization import Colorizer, EffNetUNet, Palette, PixelCrossEntropy, ResUNet, UNet, grey  # noqa
from keras_cnn.colorization.color import colour_errors
from keras_cnn.segmentation.deeplab_v3 import DeepLabV3Segmenter
from keras_cnn.segmentation.metrics import segmentation_loss, segmentation_metrics
from keras_cnn.segmentation.registry import make_backbone  # EfficientNet-Lite and every backbone
images = np.random.RandomState(0).randint(0, 256, (2, 8, 8, 3)).astype(np.uint8)
model = Colorizer(UNet(num_filters=4, num_colours=5))
model.compile("adam", PixelCrossEntropy())
model.fit(images, np.zeros((2, 8, 8), np.uint8), verbose=0)
palette = Palette(np.random.RandomState(0).uniform(0, 1, (5, 3)))
colours = palette.decode(keras.ops.convert_to_numpy(model(images)), grey(images, "numpy"), xp="numpy")
colour_errors(images, colours, "numpy")
segmenter = DeepLabV3Segmenter(make_backbone("tiny", 32, 8), 2, aspp_channels=8)
segmenter.compile("adam", segmentation_loss(), metrics=segmentation_metrics(2))
assert not any(name.split(".")[0] == "tensorflow" for name in sys.modules)
"""


def test_models_losses_metrics_and_colour_maths_need_no_tensorflow():
    """A GPU machine may have Keras and JAX but no TensorFlow: the models train there all the same."""
    env = {**os.environ, "KERAS_BACKEND": "jax",
           "PYTHONPATH": os.pathsep.join(p for p in (REPO, os.environ.get("PYTHONPATH")) if p)}
    done = subprocess.run([sys.executable, "-c", NO_TENSORFLOW], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]


if __name__ == "__main__":
    run_checks(sys.argv[1], sys.argv[2] or None, sys.argv[3], sys.argv[4] == "1")
