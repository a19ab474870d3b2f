"""The fused BatchNormalization and slice-based crop against the Keras layers they replace."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_cnn.layers import BatchNormalization, Cropping2D

# Also run in-process under KERAS_BACKEND=jax by .ci/run.
pytestmark = pytest.mark.portable


def bn_pair(momentum=0.9, epsilon=1e-5, channels=5, seed=0, rank=4):
    """A Keras BatchNormalization and a BatchNormalization with the same random weights and statistics."""
    rng = np.random.RandomState(seed)
    weights = [rng.uniform(0.5, 1.5, channels), rng.normal(0, 0.3, channels),
               rng.normal(0, 0.3, channels), rng.uniform(0.5, 1.5, channels)]
    pair = []
    for cls in (keras.layers.BatchNormalization, BatchNormalization):
        layer = cls(momentum=momentum, epsilon=epsilon)
        layer.build((None,) * (rank - 1) + (channels,))
        layer.set_weights(weights)
        pair.append(layer)
    return pair


def images(shape=(4, 6, 7, 5), seed=1):
    return tf.constant(np.random.RandomState(seed).normal(0.5, 2.0, shape).astype("float32"))


def forward_backward(layer, x, training):
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=training)
        loss = tf.reduce_sum(y * tf.cos(y))  # a non-trivial upstream gradient
    grads = tape.gradient(loss, [x, *layer.trainable_weights])
    return y, grads


@pytest.mark.tensorflow_only  # tf.GradientTape / TensorFlow kernels; the portable path: tests/test_backends.py
@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_matches_keras_outputs_gradients_and_statistics(training):
    keras_bn, fused = bn_pair()
    x = images()
    for _ in range(2):  # twice: the second step starts from updated moving statistics
        y_ref, g_ref = forward_backward(keras_bn, x, training)
        y, g = forward_backward(fused, x, training)
        np.testing.assert_allclose(y, y_ref, atol=2e-5)
        for a, b in zip(g, g_ref, strict=True):
            np.testing.assert_allclose(a, b, atol=5e-5)
        for a, b in zip(fused.non_trainable_weights, keras_bn.non_trainable_weights, strict=True):
            np.testing.assert_allclose(a, b, atol=1e-6)
    moved = not np.allclose(keras_bn.moving_variance, bn_pair()[0].moving_variance)
    assert moved == training


def test_frozen_batchnorm_uses_moving_statistics_like_keras():
    keras_bn, fused = bn_pair()
    keras_bn.trainable = fused.trainable = False
    x = images()
    before = [w.numpy().copy() for w in fused.non_trainable_weights]
    np.testing.assert_allclose(fused(x, training=True), keras_bn(x, training=True), atol=2e-5)
    for a, b in zip(fused.non_trainable_weights, before, strict=True):
        np.testing.assert_array_equal(a, b)


def test_batchnorm_under_bfloat16_policy_computes_in_float32():
    keras_bn, fused = bn_pair()
    for layer in (keras_bn, fused):
        layer.dtype_policy = keras.DTypePolicy("mixed_bfloat16")
    x = tf.cast(images(), "bfloat16")
    y, y_ref = fused(x, training=True), keras_bn(x, training=True)
    assert y.dtype == y_ref.dtype == tf.bfloat16
    np.testing.assert_allclose(tf.cast(y, "float32"), tf.cast(y_ref, "float32"), atol=3e-2)
    np.testing.assert_allclose(fused.moving_mean, keras_bn.moving_mean, atol=1e-6)


def test_batchnorm_falls_back_to_keras_where_not_fusable():
    # 2-D input (after a Dense layer): the fused kernel is NHWC only.
    keras_bn, fused = bn_pair(channels=3, rank=2)
    x = tf.constant(np.random.RandomState(2).normal(size=(8, 3)).astype("float32"))
    np.testing.assert_allclose(fused(x, training=True), keras_bn(x, training=True), atol=1e-6)


@pytest.mark.tensorflow_only  # tf.GradientTape / TensorFlow kernels; the portable path: tests/test_backends.py
def test_batchnorm_in_a_traced_function_with_unknown_sizes():
    keras_bn, fused = bn_pair()
    step = tf.function(lambda layer, x: layer(x, training=True),
                       input_signature=None, reduce_retracing=True)
    for shape in ((2, 3, 4, 5), (3, 5, 2, 5)):
        x = images(shape)
        np.testing.assert_allclose(step(fused, x), step(keras_bn, x), atol=2e-5)
    np.testing.assert_allclose(fused.moving_variance, keras_bn.moving_variance, atol=1e-6)


@pytest.mark.parametrize("cropping", [((1, 0), (1, 0)), ((0, 2), (3, 1)), ((0, 0), (0, 0))])
def test_crop_matches_keras_values_and_gradients(cropping):
    x = images((2, 7, 9, 3))
    outputs = []
    for layer in (keras.layers.Cropping2D(cropping), Cropping2D(cropping)):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(y * y)
        outputs.append((y, tape.gradient(loss, x)))
    (y_ref, g_ref), (y, g) = outputs
    assert y.shape == y_ref.shape
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(g, g_ref)


def test_layers_round_trip_through_a_keras_file(tmp_path):
    inputs = keras.Input((None, None, 2))
    x = keras.layers.Conv2DTranspose(5, 3, strides=2)(inputs)
    x = Cropping2D(((1, 0), (1, 0)))(x)
    outputs = BatchNormalization()(x)
    model = keras.Model(inputs, outputs)
    model.layers[-1].set_weights([w + 0.5 for w in model.layers[-1].get_weights()])
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert [type(layer) for layer in loaded.layers[-2:]] == [Cropping2D, BatchNormalization]
    x = images((1, 4, 6, 2))
    np.testing.assert_allclose(loaded(x), model(x), atol=1e-6)


@pytest.mark.tensorflow_only  # tf.GradientTape / TensorFlow kernels; the portable path: tests/test_backends.py
def test_unet_training_step_uses_the_fused_kernels():
    """Guards the speed-up: the UNet's gradient has no StridedSliceGrad and no unfused BatchNormalization."""
    from keras_cnn.colorization.models import UNet

    model = UNet()

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(model(x, training=True))
        return tape.gradient(loss, model.trainable_weights)

    graph = step.get_concrete_function(tf.TensorSpec((None, 32, 32, 1))).graph
    ops = {op.type for op in graph.get_operations()}
    for f in graph._functions.values():  # the gradient may sit in nested functions
        ops |= {node.op for node in f.definition.node_def}
    assert "FusedBatchNormV3" in ops and "FusedBatchNormGradV3" in ops
    assert "StridedSliceGrad" not in ops


def test_weights_saved_with_keras_layers_load_into_ours(tmp_path):
    """A .keras file keys weights by class name: runs saved before this module must still load."""
    def net(bn, crop):
        inputs = keras.Input((None, None, 2))
        x = keras.layers.Conv2DTranspose(5, 3, strides=2, name="up")(inputs)
        x = crop(((1, 0), (1, 0)), name="up_crop")(x)
        return keras.Model(inputs, bn(name="up_bn")(x))

    old = net(keras.layers.BatchNormalization, keras.layers.Cropping2D)
    old.layers[-1].set_weights([w + 0.5 for w in old.layers[-1].get_weights()])
    old.save_weights(str(tmp_path / "old.weights.h5"))
    new = net(BatchNormalization, Cropping2D)
    new.load_weights(str(tmp_path / "old.weights.h5"))
    assert type(new.layers[-1]) is BatchNormalization
    x = images((1, 4, 6, 2))
    np.testing.assert_allclose(new(x), old(x), atol=1e-6)
