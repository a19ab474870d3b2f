"""The training library in-process: modes of the recipe on tiny data."""

import dataclasses
import json

import numpy as np
import pytest

from keras_cnn.colorization.config import PRESETS, ColorizationConfig
from keras_cnn.config import resolve
from keras_cnn.errors import UserError
from keras_cnn.tasks import open_run, train
from tests.helpers import write_images


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    rng = np.random.RandomState(0)
    images = rng.randint(0, 256, (24, 4, 4, 3)).astype(np.uint8).repeat(8, 1).repeat(8, 2)
    return str(write_images(tmp_path_factory.mktemp("d") / "imgs", images))


def tiny(data_dir, **overrides):
    fields = dict(source="folder", data_dir=data_dir, epochs=1, batch_size=8, num_colours=5, num_filters=4,
                  val_fraction=0.25)
    return resolve(ColorizationConfig, PRESETS, "cifar10_unet", {**fields, **overrides})


@pytest.mark.parametrize("overrides", [
    dict(downsize_input=True),
    dict(palette_space="ab", class_rebalance=0.5, decode="annealed"),
    dict(model="pool_upsample", kernel=5),
])
def test_training_modes(data_dir, tmp_path, overrides):
    metrics = train(tiny(data_dir, **overrides), str(tmp_path / "run"), verbose=0, log=lambda *_: None)
    assert np.isfinite(metrics["validation"]["loss"])
    run = open_run(str(tmp_path / "run"))
    model, palette, cfg = run.model, run.assets["palette"], run.config
    # The saved model takes RGB pixels and converts them itself.
    assert model.input_shape[-1] == 3
    assert model.net.input_shape[-1] == (3 if overrides.get("downsize_input") else 1)
    assert palette.colours.shape == (5, 2 if overrides.get("palette_space") == "ab" else 3)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved.pop("task") == "colorization" and run.task.name == "colorization"
    assert dataclasses.asdict(cfg) == saved


def test_same_seed_same_result(data_dir, tmp_path):
    a = train(tiny(data_dir), str(tmp_path / "a"), verbose=0, log=lambda *_: None)
    b = train(tiny(data_dir), str(tmp_path / "b"), verbose=0, log=lambda *_: None)
    assert a["validation"] == pytest.approx(b["validation"], rel=1e-5)
    np.testing.assert_array_equal(np.load(tmp_path / "a" / "palette.npy"), np.load(tmp_path / "b" / "palette.npy"))


def test_config_overrides_are_checked():
    with pytest.raises(UserError, match="unknown config key"):
        resolve(ColorizationConfig, PRESETS, "cifar10_unet", {"epochz": 3})
    with pytest.raises(UserError, match="wants int"):
        resolve(ColorizationConfig, PRESETS, "cifar10_unet", {"epochs": "many"})
    with pytest.raises(UserError, match="unknown preset"):
        resolve(ColorizationConfig, PRESETS, "imagenet_unet", {})
    cfg = resolve(ColorizationConfig, PRESETS, "cifar10_pool_upsample", {"learning_rate": 1})
    assert cfg.learning_rate == 1.0 and cfg.model == "pool_upsample" and cfg.batch_size == 100


def test_tensorboard_gets_the_epoch_strips_and_the_task_metrics(data_dir, tmp_path):
    import glob

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(tiny(data_dir, epochs=2), str(tmp_path / "run"), verbose=0, log=lambda *_: None)
    (folder,) = glob.glob(str(tmp_path / "run" / "logs" / "validation_strips"))
    events = EventAccumulator(folder, size_guidance={"images": 0, "tensors": 0}).Reload()
    tags = events.Tags()
    # tf.summary writes images and scalars as tensors in TF2 event files.
    assert {"validation/strip", "validation/delta_e", "validation/psnr"} <= set(tags["tensors"])
    delta_e = [float(np.asarray(tf_value)) for tf_value in
               (tensor_event_value(e) for e in events.Tensors("validation/delta_e"))]
    # On the steps of Keras' own epoch scalars (0-based), so TensorBoard shows an epoch's strip beside its loss.
    keras_steps = [e.step for e in EventAccumulator(str(tmp_path / "run" / "logs" / "validation"),
                                                    size_guidance={"tensors": 0}).Reload().Tensors("epoch_loss")]
    assert keras_steps == [0, 1]
    assert [e.step for e in events.Tensors("validation/delta_e")] == keras_steps
    assert all(0 < d < 100 for d in delta_e)
    strip = events.Tensors("validation/strip")
    assert [e.step for e in strip] == keras_steps
    # An image summary holds width, height and the PNG bytes of the strip written to plots/.
    width, height, png = strip[-1].tensor_proto.string_val[:3]
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and int(width) > 0 and int(height) > 0
    import io

    from PIL import Image

    logged = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    written = np.asarray(Image.open(tmp_path / "run" / "plots" / "epoch_002.png").convert("RGB"))
    np.testing.assert_array_equal(logged, written)


def tensor_event_value(event):
    import tensorflow as tf

    return tf.make_ndarray(event.tensor_proto)
