"""`tf.data` input pipelines: uint8 images -> (the same images, palette labels), and the loss.

The model converts the pixels itself (`colorizer.ColorizerInput`); the
pipeline only augments and computes each pixel's nearest palette colour, in
TensorFlow inside `Dataset.map`, vectorised per batch.
"""

import keras
import numpy as np
import tensorflow as tf


def make_dataset(images_uint8, palette, batch_size, shuffle=False, seed=0, flip=False):
    """Batched `(uint8 images, labels)` pairs.

    `flip` mirrors each image left-right with probability 1/2 before the
    input and the labels are made from it (training-time augmentation).

    Batching comes before the map so the palette search runs once per batch.
    """
    ds = tf.data.Dataset.from_tensor_slices(np.asarray(images_uint8, dtype=np.uint8))
    if shuffle:
        ds = ds.shuffle(len(images_uint8), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)

    def to_pairs(images):
        if flip:
            # On a 4-D batch each image is flipped (or not) on its own.
            images = tf.image.random_flip_left_right(images, seed=seed)
        return images, palette.labels(images)

    ds = ds.map(to_pairs, num_parallel_calls=tf.data.AUTOTUNE)
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
        loss = keras.losses.sparse_categorical_crossentropy(y_true, tf.cast(y_pred, tf.float32),
                                                            from_logits=True)
        if self.class_weights is not None:
            loss = loss * tf.gather(tf.constant(self.class_weights, tf.float32), y_true)
        return loss

    def get_config(self):
        return {**super().get_config(), "class_weights": self.class_weights}
