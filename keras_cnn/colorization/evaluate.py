"""Colourization quality: palette metrics and palette-independent colour metrics.

- `loss`, `accuracy`: cross-entropy and pixel accuracy against palette labels
  (the course's metrics).
- `delta_e`: mean CIE76 colour difference between the decoded colour image
  and the *unquantised* true image, in Lab; `psnr`: mean PSNR (dB) of the
  decoded image. These do not depend on the palette, so nets with different
  palettes (RGB, ab) compare fairly, and so do the trivial baselines.
"""

import numpy as np
import tensorflow as tf

from keras_cnn.colorization import color
from keras_cnn.colorization.palette import grey
from keras_cnn.colorization.pipeline import make_dataset


def colour_errors(true_uint8, pred_uint8):
    """(sum of per-pixel delta E, sum of per-image PSNR) for one batch."""
    t = tf.cast(true_uint8, tf.float32) / 255.0
    p = tf.cast(pred_uint8, tf.float32) / 255.0
    de = color.delta_e76(color.rgb_to_lab(t), color.rgb_to_lab(p))
    # PSNR of identical images is inf; cap at 100 dB so means stay finite.
    ps = tf.minimum(color.psnr(t, p), 100.0)
    return tf.reduce_sum(de), tf.reduce_sum(ps)


class _Totals:
    def __init__(self):
        self.sums = {}
        self.counts = {}

    def add(self, name, total, count):
        self.sums[name] = self.sums.get(name, 0.0) + float(total)
        self.counts[name] = self.counts.get(name, 0) + int(count)

    def means(self):
        return {k: self.sums[k] / max(self.counts[k], 1) for k in self.sums}


def evaluation_step(model, palette, decode="argmax", temperature=0.38):
    """The compiled per-batch step of `evaluate`; made once and reused, it is traced only once.

    (uint8 images, labels) -> sums of cross-entropy, correct pixels, delta E and PSNR.
    """
    @tf.function(reduce_retracing=True)
    def step(images, y):
        y = tf.cast(y, tf.int32)
        logits = tf.cast(model(images, training=False), tf.float32)
        ce = tf.keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), y),
                                        tf.float32))
        decoded = palette.decode(logits, grey(images), decode, temperature)
        de, ps = colour_errors(images, decoded)
        return tf.reduce_sum(ce), correct, de, ps
    return step


def evaluate(model, images_uint8, palette, batch_size=100, decode="argmax", temperature=0.38, step=None):
    """Loss, pixel accuracy, mean delta E and PSNR of a `Colorizer` on uint8 images (N, H, W, 3).

    `step`: an `evaluation_step` of the same model and decoding, for callers
    that evaluate every epoch (tracing it anew each time costs as much as
    evaluating).
    """
    totals = _Totals()
    step = step or evaluation_step(model, palette, decode, temperature)
    for images, y in make_dataset(images_uint8, palette, batch_size):
        ce, correct, de, ps = step(images, y)
        n, pixels = int(images.shape[0]), int(np.prod(y.shape))
        totals.add("loss", ce, pixels)
        totals.add("accuracy", correct, pixels)
        totals.add("delta_e", de, pixels)
        totals.add("psnr", ps, n)
    return totals.means()


def baselines(images_uint8, palette, batch_size=500):
    """What doing nothing, and the best possible argmax, score on the same metrics.

    - `grey_input`: the grey input itself shown as a colour image (R = G = B).
    - `palette_truth`: the true colours snapped to the palette, the ceiling of
      any argmax decoding with this palette (accuracy 1 by definition).
    """
    totals = _Totals()
    for start in range(0, len(images_uint8), batch_size):
        images = tf.constant(images_uint8[start:start + batch_size])
        y = palette.labels(images)
        n, pixels = int(images.shape[0]), int(np.prod(y.shape))
        g = tf.cast(tf.round(grey(images) * 256.0), tf.uint8)
        grey_rgb = tf.repeat(tf.minimum(g, 255), 3, axis=-1)
        for name, pred in (("grey_input", grey_rgb), ("palette_truth", palette.quantize(images))):
            de, ps = colour_errors(images, pred)
            correct = tf.reduce_sum(tf.cast(tf.equal(palette.labels(pred), y), tf.float32))
            totals.add(f"{name}/accuracy", correct, pixels)
            totals.add(f"{name}/delta_e", de, pixels)
            totals.add(f"{name}/psnr", ps, n)
    means = totals.means()
    out = {}
    for key, value in means.items():
        name, metric = key.split("/")
        out.setdefault(name, {})[metric] = value
    return out
