"""evaluate_full_size: predictions resized back to each photo's / mask's own size."""

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_cnn.segmentation.data import MaskDecoder
from keras_cnn.segmentation.evaluate import evaluate_full_size


class RedIsForeground:
    """A stand-in segmenter (the attributes evaluate_full_size uses): class 1 where the input pixel is red."""

    num_classes = 2
    image_size = (16, 16)
    preprocessing = "tf"

    def __init__(self, everything=False):
        self.everything = everything

    def __call__(self, x, training=False):
        red = tf.cast(tf.cast(x[..., 0], tf.float32) > 127.5, tf.float32)  # RGB pixels 0-255 in
        if self.everything:
            red = tf.ones_like(red)
        return tf.stack([-10 * red + 5, 10 * red - 5], axis=-1)


def pair(tmp_path, name, photo_hw, mask_hw, box):
    """A photo with a red box (fractions y0, x0, y1, x1) and its binary mask at another size."""
    def draw(h, w, value, shape):
        a = np.zeros(shape, np.uint8)
        y0, x0, y1, x1 = box
        a[round(y0 * h):round(y1 * h), round(x0 * w):round(x1 * w)] = value
        return a
    photo = tmp_path / f"{name}.png"
    mask = tmp_path / f"{name}_mask.png"
    Image.fromarray(draw(*photo_hw, (255, 0, 0), photo_hw + (3,))).save(photo)
    Image.fromarray(draw(*mask_hw, 255, mask_hw)).save(mask)
    return str(photo), str(mask)


def test_full_size_scores(tmp_path):
    # Boxes on whole pixels at both sizes, so nearest resizing of the mask is exact.
    pairs = [pair(tmp_path, "a", (90, 120), (45, 60), (0.2, 0.25, 0.6, 0.75)),
             pair(tmp_path, "b", (40, 64), (80, 128), (0.0, 0.5, 1.0, 1.0))]
    decode = MaskDecoder(binary=True)
    # (foreground pixels, all pixels) at each size: photo a 36x60 of 90x120, b 40x32 of 40x64;
    # mask a 18x30 of 45x60, b 80x64 of 80x128.
    counts = {"photo": (2160 + 1280, 10800 + 2560), "mask": (540 + 5120, 2700 + 10240)}
    for at, (fg, total) in counts.items():
        good = evaluate_full_size(RedIsForeground(), pairs, decode, batch_size=1, at=at)
        assert good["fg_iou"] > 0.85 and good["examples"] == 2, good  # 16 px logits: soft edges
        # Everything foreground: IoU = pixel accuracy = the foreground share of all pixels.
        flat = evaluate_full_size(RedIsForeground(everything=True), pairs, decode, batch_size=2, at=at)
        assert flat["fg_iou"] == pytest.approx(fg / total, abs=1e-6), (at, flat)
        assert flat["pixel_accuracy"] == pytest.approx(fg / total, abs=1e-6)
        assert flat["mean_iou"] == pytest.approx(fg / total / 2, abs=1e-6)
