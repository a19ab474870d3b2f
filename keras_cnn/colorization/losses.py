"""The colourizers' loss: per-pixel cross-entropy over the palette classes, in `keras.ops` (any backend)."""

import keras
from keras import ops


def _true_logit(logits, labels):
    """Each pixel's logit of its true class, (..., H, W)."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        # Keras' take_along_axis on TensorFlow made the loss's forward and backward about 25% slower
        # (batch 100 x 32 x 32 x 24, 2 cores); the result is the same.
        return tf.squeeze(tf.experimental.numpy.take_along_axis(logits, labels[..., None], -1), -1)
    return ops.squeeze(ops.take_along_axis(logits, labels[..., None], axis=-1), -1)


@keras.saving.register_keras_serializable(package="keras_cnn")
class PixelCrossEntropy(keras.losses.Loss):
    """Per-pixel softmax cross-entropy over palette classes, optionally class-weighted.

    Args:
        class_weights: None, or one weight per class (Zhang's rebalancing,
            `Palette.class_weights`); each pixel's loss is scaled by the
            weight of its true class.

    Example:
        model.compile("adam", loss=PixelCrossEntropy())  # labels (N, H, W), logits (N, H, W, K)
    """

    def __init__(self, class_weights=None, name="pixel_cross_entropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.class_weights = None if class_weights is None else [float(w) for w in class_weights]

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "int32")
        logits = ops.cast(y_pred, "float32")
        # log-sum-exp minus the true class's logit: the same cross-entropy as
        # sparse_categorical_crossentropy(from_logits=True), but on TensorFlow its forward
        # and backward ran in 9 ms against the fused Eigen kernel's 13.5 ms at batch
        # 100 x 32 x 32 x 24 on 2 cores (docs/BENCHMARKS.md, "Where training time goes").
        loss = ops.logsumexp(logits, axis=-1) - _true_logit(logits, y_true)
        if self.class_weights is not None:
            loss = loss * ops.take(ops.array(self.class_weights, "float32"), y_true)
        return loss

    def get_config(self):
        return {**super().get_config(), "class_weights": self.class_weights}
