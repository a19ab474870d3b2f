"""`tf.data` input pipelines: uint8 images -> (the same images, palette labels).

The model converts the pixels itself (`preprocessing.ColorizerInput`); the
pipeline only shuffles, batches and augments. Each pixel's nearest palette
colour is computed once, before the first epoch (`palette_labels`): the
search used to run in `Dataset.map` every epoch, on the same cores as the
training step. A left-right flip mirrors the labels with the image, which
gives the labels of the flipped image exactly (the search is per pixel).
"""

import numpy as np
import tensorflow as tf

from keras_cnn.colorization.losses import PixelCrossEntropy  # noqa: F401  (the loss these labels go with)


def palette_labels(images_uint8, palette, chunk=1000):
    """Each pixel's palette class, uint8 (or int32 for palettes over 256 colours), (N, H, W)."""
    images = np.asarray(images_uint8, dtype=np.uint8)
    dtype = np.uint8 if len(palette) <= 256 else np.int32
    out = np.empty(images.shape[:-1], dtype)
    for start in range(0, len(images), chunk):
        out[start:start + chunk] = palette.labels(images[start:start + chunk], "tensorflow").numpy()
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
