"""Quantisation-aware fine-tuning of the course UNet, measured (`scripts/int8_study.py --qat-epochs N`).

Post-training quantisation leaves the course UNet's int8 file at about 94%
argmax agreement with its Keras model (`docs/TFLITE.md`). This study asks
what fine-tuning through an int8 simulation buys. `Int8Twin` computes the
UNet's forward pass as the shipped int8 TFLite file does: BatchNorm folded
into each convolution, per-channel symmetric int8 weights, every tensor the
file quantises fake-quantised with min / max ranges calibrated on the same
training images (the concatenation at one shared range, the final conv as
two parts and a sum, as `int8_graph` builds it). Its argmax agrees with the
real int8 file to within about 0.1 point (the study prints both).

Fine-tuning (Adam, straight-through gradients, BatchNorm statistics
frozen) minimises two cross-entropies over the training images:

- the float net's logits against the Keras model's own argmax before
  fine-tuning (self-distillation: keep the model's decisions), plus
- `consistency` times the twin's int8-simulated logits against the float
  net's current argmax: the int8 file should decide as the float model does.

With `consistency` 0 the int8 simulation is trained on the decisions
instead (plain quantisation-aware training against the teacher's labels),
which improves both models' delta E but not their agreement. After each
epoch the fine-tuned Keras model is exported to int8 exactly as
`scripts/export.py` does and checked on held-out images. The run folder is
never written: the model is changed in memory only.

Only the course UNet (`models.UNet`) has a twin; the study is a measurement,
not an export option.
"""

import os
import tempfile
import time

import numpy as np
import tensorflow as tf

from keras_cnn.errors import UserError

_PAD = [[0, 0], [1, 1], [1, 1], [0, 0]]
COLUMNS = [("epoch", "epoch", None), ("train loss", "train_loss", ".4f"), ("Keras delta E", "keras_delta_e", ".3f"),
           ("int8 delta E", "int8_delta_e", ".3f"),
           ("int8 argmax agreement", "argmax_agreement", lambda v: f"{100 * v:.2f}%"),
           ("twin's agreement", "twin_agreement", lambda v: f"{100 * v:.2f}%")]


def _folded(conv, bn, out_axis):
    """The kernel and bias of `conv` followed by inference-mode `bn`, folded into one."""
    scale = bn.gamma / tf.sqrt(bn.moving_variance + bn.epsilon)
    shape = [1, 1, 1, 1]
    shape[out_axis] = -1
    return conv.kernel * tf.reshape(scale, shape), (conv.bias - bn.moving_mean) * scale + bn.beta


def _fake_quant_weights(w, out_axis):
    """Per-channel symmetric int8 rounding (the converter's), with a straight-through gradient."""
    axes = [i for i in range(4) if i != out_axis]
    scale = tf.maximum(tf.reduce_max(tf.abs(w), axis=axes, keepdims=True), 1e-12) / 127.0
    return w + tf.stop_gradient(tf.round(w / scale) * scale - w)


class Int8Twin:
    """The course UNet's int8 TFLite computation in float TensorFlow, on the net's own variables.

    `logits(grey)` is the float net (to rounding) when `ranges` is None, and
    the int8 simulation once `calibrate(grey)` has set the activation ranges.
    """

    def __init__(self, net):
        from keras_cnn.colorization.models import UNet

        if type(net) is not UNet or net.kernel != 3:
            raise UserError("quantisation-aware fine-tuning has an int8 twin of the course UNet (model unet, "
                            f"kernel 3) only, not of {type(net).__name__}")
        self.layers = {layer.name: layer for layer in net.layers}
        self.ranges = None
        self.variables = [v for name in ("down1", "down2", "up1", "up2", "final")
                          for v in self.layers[name].trainable_weights] + \
                         [v for name in ("down1_bn", "down2_bn", "up1_bn", "up2_bn")
                          for v in (self.layers[name].gamma, self.layers[name].beta)]

    def _act(self, name, t, seen):
        if seen is not None:
            seen[name] = t
        if self.ranges is None:
            return t
        low, high = self.ranges[name]
        return tf.quantization.fake_quant_with_min_max_args(t, low, high, num_bits=8)

    def logits(self, grey, seen=None):
        L = self.layers
        quant = self.ranges is not None
        q = _fake_quant_weights if quant else (lambda w, axis: w)
        w, b = _folded(L["down1"], L["down1_bn"], 3)
        d1 = self._act("down1", tf.nn.relu(tf.nn.conv2d(tf.pad(grey, _PAD), q(w, 3), 2, "VALID") + b), seen)
        w, b = _folded(L["down2"], L["down2_bn"], 3)
        d2 = self._act("down2", tf.nn.relu(tf.nn.conv2d(tf.pad(d1, _PAD), q(w, 3), 2, "VALID") + b), seen)

        def up(t, name):
            # PyTorch's transposed conv (padding 1, output_padding 1): the "valid" result less its
            # first row and column.
            w, b = _folded(L[name], L[f"{name}_bn"], 2)
            n = tf.shape(t)
            y = tf.nn.conv2d_transpose(t, q(w, 2), [n[0], 2 * n[1] + 1, 2 * n[2] + 1, w.shape[2]], 2, "VALID")
            return self._act(name, tf.nn.relu(y[:, 1:, 1:, :] + b), seen)

        skip = self._act("skip1", tf.concat([d1, up(d2, "up1")], -1), seen)
        u2 = up(skip, "up2")
        kernel, c = L["final"].kernel, u2.shape[-1]
        # As int8_graph builds it: one conv per part of concat(up2, grey), the bias on the first, then a sum.
        first = self._act("final_up2", tf.nn.conv2d(u2, q(kernel[:, :, :c], 3), 1, "SAME") + L["final"].bias, seen)
        second = self._act("final_grey", tf.nn.conv2d(grey, q(kernel[:, :, c:], 3), 1, "SAME"), seen)
        return self._act("logits", first + second, seen)

    def calibrate(self, grey, logits_range):
        """Min / max of every simulated tensor on `grey` (float), the logits on `logits_range`, as export does."""
        self.ranges, seen = None, {}
        self.logits(grey, seen)
        self.ranges = {name: (min(0.0, float(tf.reduce_min(t))), max(0.0, float(tf.reduce_max(t))))
                       for name, t in seen.items()}
        self.ranges["logits"] = tuple(float(v) for v in logits_range)


def _int8_check(servable, check, truth, reps, logits_range):
    """The int8 file export writes for the servable's current weights, checked against its Keras model."""
    from keras_cnn.benchmarks.int8 import _outputs
    from keras_cnn.export import tflite

    with tempfile.TemporaryDirectory(prefix="keras_cnn_qat_") as scratch:
        path = tflite.write_fixed_saved_model(servable, os.path.join(scratch, "shipped"))
        model = tflite.convert(path, "int8", reps, logits_range)
    reference = {k: v.numpy() for k, v in servable.reference_outputs(tf.constant(check)).items()}
    got = _outputs(model, check)
    return reference, {"keras_delta_e": servable.score(reference, check, truth)["delta_e"],
                       "int8_delta_e": servable.score(got, check, truth)["delta_e"],
                       "argmax_agreement": float(np.mean(got["classes"] == reference["classes"]))}


def study(servable, epochs=3, learning_rate=1e-4, consistency=4.0, check_count=500, representative_count=200,
          batch=100, log=print):
    """Rows per epoch (0 = before fine-tuning) of the fine-tuned model and its int8 file; changes the
    servable's model in memory."""
    import keras

    from keras_cnn.colorization.palette import grey
    from keras_cnn.export import tflite

    if servable.application != "colorization" or not servable.decided_by_argmax:
        raise UserError("--qat-epochs: quantisation-aware fine-tuning is for argmax-decoded colourizers")
    twin = Int8Twin(servable.model.net)
    net = servable.model.net
    check, truth = servable.check_set(check_count)
    train = servable.images("train", 10 ** 9)
    reps = train[:representative_count]
    grey_train = grey(tf.constant(train))
    # Self-distillation: the labels are the model's own decisions before fine-tuning.
    labels = tf.concat([tf.argmax(net(grey_train[i:i + 500], training=False), -1, output_type=tf.int32)
                        for i in range(0, len(train), 500)], 0)
    optimizer = keras.optimizers.Adam(learning_rate)

    def cross_entropy(labels, logits):
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))

    def step(x, y):
        with tf.GradientTape() as tape:
            simulated = twin.logits(x)
            if consistency:
                ranges, twin.ranges = twin.ranges, None
                exact = twin.logits(x)
                twin.ranges = ranges
                decided = tf.stop_gradient(tf.argmax(exact, -1, output_type=tf.int32))
                loss = cross_entropy(y, exact) + consistency * cross_entropy(decided, simulated)
            else:
                loss = cross_entropy(y, simulated)
        optimizer.apply_gradients(zip(tape.gradient(loss, twin.variables), twin.variables))
        return loss

    def row(epoch, loss, seconds):
        logits_range = tflite.calibration_logit_range(servable, reps)
        reference, checked = _int8_check(servable, check, truth, reps, logits_range)
        twin.calibrate(grey(tf.constant(reps)), logits_range)
        simulated = np.argmax(twin.logits(grey(tf.constant(check))).numpy(), -1)
        checked.update({"epoch": epoch, "train_loss": loss, "train_seconds": seconds,
                        "twin_agreement": float(np.mean(simulated == reference["classes"]))})
        log(f"epoch {epoch}: Keras delta E {checked['keras_delta_e']:.3f}, int8 delta E "
            f"{checked['int8_delta_e']:.3f}, int8 agreement {100 * checked['argmax_agreement']:.2f}% "
            f"(the twin's {100 * checked['twin_agreement']:.2f}%)")
        return checked

    rows = [row(0, None, 0.0)]
    rng = np.random.RandomState(0)
    for epoch in range(1, epochs + 1):
        start, losses = time.perf_counter(), []
        # The ranges follow the weights: row() recalibrated them, and a new trace takes them in as constants.
        traced = tf.function(step)
        order = rng.permutation(len(train))
        for i in range(0, len(train), batch):
            idx = order[i:i + batch]
            losses.append(float(traced(tf.gather(grey_train, idx), tf.gather(labels, idx))))
        rows.append(row(epoch, float(np.mean(losses)), time.perf_counter() - start))
    return {"rows": rows, "epochs": epochs, "learning_rate": learning_rate, "consistency": consistency,
            "train_images": int(len(train)), "check_images": int(len(check)), "representative_images": int(len(reps))}
