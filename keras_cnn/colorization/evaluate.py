"""Colourization quality: palette metrics and palette-independent colour metrics.

- `loss`, `accuracy`: cross-entropy and pixel accuracy against palette labels
  (the course's metrics).
- `delta_e`: mean CIE76 colour difference between the decoded colour image
  and the *unquantised* true image, in Lab; `psnr`: mean PSNR (dB) of the
  decoded image. These do not depend on the palette, so nets with different
  palettes (RGB, ab) compare fairly, and so do the trivial baselines.
"""

import keras
import numpy as np
from keras import ops

from keras_cnn.colorization.color import colour_errors, grey
from keras_cnn.colorization.pipeline import make_dataset


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
    """The per-batch step of `evaluate`: (uint8 images, labels) -> sums of cross-entropy, correct pixels,
    delta E and PSNR.

    In `keras.ops`, so it runs on every backend. On TensorFlow it is a
    `tf.function`, made once and reused (it is traced only once); on JAX and
    PyTorch it runs eagerly, batch by batch, and always sees the model's
    current weights.
    """
    def step(images, y):
        y = ops.cast(y, "int32")
        logits = ops.cast(model(images, training=False), "float32")
        ce = keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
        correct = ops.sum(ops.cast(ops.equal(ops.cast(ops.argmax(logits, axis=-1), "int32"), y), "float32"))
        decoded = palette.decode(logits, grey(images, "keras"), decode, temperature, xp="keras")
        de, ps = colour_errors(images, decoded, "keras")
        return ops.sum(ce), correct, de, ps

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.function(step, reduce_retracing=True)
    return step


def evaluate(model, images_uint8, palette, batch_size=100, decode="argmax", temperature=0.38, step=None):
    """Loss, pixel accuracy, mean delta E and PSNR of a `Colorizer` on uint8 images (N, H, W, 3).

    `step`: an `evaluation_step` of the same model and decoding, for callers
    that evaluate every epoch (tracing it anew each time costs as much as
    evaluating).
    """
    totals = _Totals()
    step = step or evaluation_step(model, palette, decode, temperature)
    for images, y in make_dataset(images_uint8, palette, batch_size).as_numpy_iterator():
        ce, correct, de, ps = (float(ops.convert_to_numpy(v)) for v in step(images, y))
        n, pixels = len(images), int(np.prod(y.shape))
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
        images = np.asarray(images_uint8[start:start + batch_size], np.uint8)
        y = palette.labels(images, "numpy")
        n, pixels = len(images), int(np.prod(y.shape))
        g = np.round(grey(images, "numpy") * 256.0).astype(np.uint8)
        grey_rgb = np.repeat(np.minimum(g, 255), 3, axis=-1)
        for name, pred in (("grey_input", grey_rgb), ("palette_truth", palette.quantize(images, "numpy"))):
            de, ps = colour_errors(images, pred, "numpy")
            correct = np.sum(palette.labels(pred, "numpy") == y)
            totals.add(f"{name}/accuracy", correct, pixels)
            totals.add(f"{name}/delta_e", de, pixels)
            totals.add(f"{name}/psnr", ps, n)
    means = totals.means()
    out = {}
    for key, value in means.items():
        name, metric = key.split("/")
        out.setdefault(name, {})[metric] = value
    return out
