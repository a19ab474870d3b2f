"""`tf.data` input pipelines: uint8 images -> (the same images, palette labels), and the loss.

The model converts the pixels itself (`colorizer.ColorizerInput`); the
pipeline only shuffles, batches and augments. Each pixel's nearest palette
colour is computed once, before the first epoch (`palette_labels`): the
search used to run in `Dataset.map` every epoch, on the same cores as the
training step. A left-right flip mirrors the labels with the image, which
gives the labels of the flipped image exactly (the search is per pixel).
"""

import keras
import numpy as np
import tensorflow as tf


def palette_labels(images_uint8, palette, chunk=1000):
    """Each pixel's palette class, uint8 (or int32 for palettes over 256 colours), (N, H, W)."""
    images = np.asarray(images_uint8, dtype=np.uint8)
    dtype = np.uint8 if len(palette) <= 256 else np.int32
    out = np.empty(images.shape[:-1], dtype)
    for start in range(0, len(images), chunk):
        out[start:start + chunk] = palette.labels(images[start:start + chunk]).numpy()
    return out


def make_dataset(images_uint8, palette, batch_size, shuffle=False, seed=0, flip=False):
    """Batched `(uint8 images, labels)` pairs; labels as `palette_labels` gives them.

    `flip` mirrors each image and its labels left-right with probability 1/2
    (training-time augmentation), each image of a batch on its own.
    """
    images = np.asarray(images_uint8, dtype=np.uint8)
    ds = tf.data.Dataset.from_tensor_slices((images, palette_labels(images, palette)))
    if shuffle:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)

    if flip:
        def flip_pairs(x, y):
            mirror = tf.random.uniform(tf.shape(x)[:1], seed=seed) < 0.5
            x = tf.where(mirror[:, None, None, None], tf.reverse(x, axis=[2]), x)
            y = tf.where(mirror[:, None, None], tf.reverse(y, axis=[2]), y)
            return x, y

        ds = ds.map(flip_pairs, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


@keras.saving.register_keras_serializable(package="keras_cnn")
class PixelCrossEntropy(keras.losses.Loss):
    """Per-pixel softmax cross-entropy over palette classes, optionally class-weighted.

    Args:
        class_weights: None, or one weight per class (Zhang's rebalancing,
            `Palette.class_weights`); each pixel's loss is scaled by the
            weight of its true class.
    """

    def __init__(self, class_weights=None, name="pixel_cross_entropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.class_weights = None if class_weights is None else [float(w) for w in class_weights]

    def call(self, y_true, y_pred):
        y_true = tf.cast(y_true, tf.int32)
        logits = tf.cast(y_pred, tf.float32)
        # log-sum-exp minus the true class's logit: the same cross-entropy as
        # sparse_categorical_crossentropy(from_logits=True), but its forward and
        # backward ran in 9 ms against the fused Eigen kernel's 13.5 ms at batch
        # 100 x 32 x 32 x 24 on 2 cores (docs/BENCHMARKS.md, "Where training time goes").
        true_logit = tf.squeeze(tf.experimental.numpy.take_along_axis(logits, y_true[..., None], -1), -1)
        loss = tf.reduce_logsumexp(logits, -1) - true_logit
        if self.class_weights is not None:
            loss = loss * tf.gather(tf.constant(self.class_weights, tf.float32), y_true)
        return loss

    def get_config(self):
        return {**super().get_config(), "class_weights": self.class_weights}
