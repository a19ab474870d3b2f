"""The training knobs of the better-colourizer presets: flip augmentation, cosine schedule, presets."""

import dataclasses

import numpy as np
import pytest

from keras_cnn.colorization.config import PRESETS, ColorizationConfig
from keras_cnn.colorization.palette import Palette
from keras_cnn.colorization.pipeline import make_dataset
from keras_cnn.colorization.task import learning_rate
from keras_cnn.training import Runtime


def test_flip_mirrors_input_labels_and_images_together():
    rng = np.random.RandomState(0)
    images = rng.randint(0, 256, (16, 4, 6, 3)).astype(np.uint8)
    palette = Palette(rng.uniform(0, 1, (5, 3)))
    (seen, y), = make_dataset(images, palette, 16, flip=True)
    flipped = 0
    for i, img in enumerate(images):
        mirrored = bool(np.array_equal(seen[i], img[:, ::-1]))
        assert mirrored or np.array_equal(seen[i], img)
        flipped += mirrored
        np.testing.assert_array_equal(y[i], palette.labels(seen[i]))
    assert 0 < flipped < len(images)
    # Without the flag nothing moves.
    (plain, _), = make_dataset(images, palette, 16)
    np.testing.assert_array_equal(plain, images)


def test_cosine_schedule_spans_every_step_of_the_run():
    cfg = ColorizationConfig(epochs=3, lr_schedule="cosine")
    runtime = Runtime(strategy=None, replicas=2, global_batch=200, learning_rate=0.004, chief=True)
    schedule = learning_rate(cfg, 4500, runtime)
    # 3 epochs x ceil(4500 / 200) = 69 steps: starts at the scaled rate, ends at 0.
    assert float(schedule(0)) == pytest.approx(0.004)
    assert float(schedule(69)) == pytest.approx(0.0, abs=1e-9)
    assert float(schedule(34.5)) == pytest.approx(0.002, rel=1e-4)
    assert learning_rate(dataclasses.replace(cfg, lr_schedule="constant"), 4500, runtime) == 0.004


def test_course_presets_unchanged():
    # The course recipe must not drift when presets are added.
    base = ColorizationConfig()
    assert (base.epochs, base.batch_size, base.learning_rate, base.num_colours, base.palette_space,
            base.decode, base.augment, base.lr_schedule, base.class_rebalance) == \
        (25, 100, 1e-3, 24, "rgb", "argmax", False, "constant", 0.0)
    assert PRESETS["cifar10_unet"] == ColorizationConfig(model="unet")
