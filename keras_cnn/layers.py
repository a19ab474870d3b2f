"""Faster twins of two Keras layers, under the same names: the same weights, config and maths.

Profiling a training step of the course UNet on CPU (`docs/BENCHMARKS.md`,
"Where training time goes") showed two Keras 3 layers spending far more
than their arithmetic needs:

- `keras.layers.BatchNormalization` computes the batch moments and the
  normalisation as a dozen separate element-wise ops (forward and backward);
  TensorFlow's `FusedBatchNormV3` does it in one kernel each way (oneDNN's on
  x86). Only training on the TensorFlow backend uses it: in inference Keras'
  multiply-add was faster, and JAX and PyTorch run Keras' own code.
- `keras.layers.Cropping2D` slices with `StridedSlice`, whose gradient
  (`StridedSliceGrad`) was the single most expensive op of the UNet's step;
  `keras.ops.slice` is `tf.slice` there, which has a `Pad` for its gradient,
  and a plain slice on the other backends.

`BatchNormalization` and `Cropping2D` subclass the Keras layers and keep
their class names on purpose: a `.keras` file stores each layer's weights
under a path made from its class name, so files written with Keras' layers
load into these (and the other way round). Every `isinstance` check, weight
loader and saved config works unchanged. Both fall back to the
Keras code for anything they do not cover (synchronised or renormalised
BatchNorm, masks, other axes or ranks, channels-first data).

TensorFlow is imported only by the fused path, so the module (and every net
built from it) loads where TensorFlow is not installed.
"""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_cnn")
class BatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` training on TensorFlow's fused kernel (NHWC, last axis).

    Same outputs, gradients and moving statistics as the Keras layer to float
    rounding (tested): the fused kernel returns the unbiased batch variance,
    which is turned back into the biased one Keras averages. Like Keras, it
    computes in float32 under a mixed-precision policy. Inference, a frozen
    layer, and the JAX and PyTorch backends run Keras' own code.
    """

    def _fusable(self, inputs, mask):
        return (keras.backend.backend() == "tensorflow" and mask is None and not self.renorm
                and not self.synchronized and self.scale and self.center
                and len(inputs.shape) == 4 and self.axis in (-1, 3))

    def call(self, inputs, training=None, mask=None):
        # Inference stays on Keras' code: a per-channel multiply-add, which TensorFlow
        # fuses into the layers around it; the fused kernel made the UNet's predict 28% slower.
        if not (training and self.trainable) or not self._fusable(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        return self._fused_call(inputs)

    def _fused_call(self, inputs):
        import tensorflow as tf

        x = tf.cast(inputs, "float32")
        gamma, beta = tf.cast(self.gamma, "float32"), tf.cast(self.beta, "float32")
        y, mean, variance, *_ = tf.raw_ops.FusedBatchNormV3(
            x=x, scale=gamma, offset=beta, mean=tf.zeros_like(gamma), variance=tf.ones_like(gamma),
            epsilon=self.epsilon, exponential_avg_factor=1.0, data_format="NHWC", is_training=True)
        # The kernel's variance output has Bessel's correction (n - 1); Keras averages the biased one.
        n = tf.cast(tf.reduce_prod(tf.shape(x, out_type="int64")[:-1]), "float32")
        variance = variance * tf.maximum(n - 1.0, 0.0) / n
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        return tf.cast(y, self.compute_dtype)


@keras.saving.register_keras_serializable(package="keras_cnn")
class Cropping2D(keras.layers.Cropping2D):
    """`keras.layers.Cropping2D` (channels last) as `keras.ops.slice`: `tf.slice` on TensorFlow (a `Pad` gradient)."""

    def call(self, inputs):
        if self.data_format != "channels_last" or len(inputs.shape) != 4:
            return super().call(inputs)
        (top, bottom), (left, right) = self.cropping
        n, h, w, c = ops.shape(inputs)
        return ops.slice(inputs, [0, top, left, 0], [n, h - top - bottom, w - left - right, c])
