"""MirroredStrategy over two logical CPUs vs the default strategy (run by test_mirrored.py).

    python tests/mirrored_worker.py OUT.json

Logical devices can only be set before TensorFlow initialises, and a second
MirroredStrategy in one process collides with the first one's collective
keys, so this runs in its own process with one strategy for everything.
Each model trains 4 steps of global batch 8 through `keras_cnn.training.fit`
from the same initial weights on the same data, once per strategy; OUT.json
gets the largest weight difference of each pair.
"""

import json
import os
import sys
import tempfile

# keras_cnn is imported as an installed package (pip install --no-deps -e .).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_cnn import distribute, training  # noqa: E402
from keras_cnn.colorization.models import build_model  # noqa: E402
from keras_cnn.colorization.pipeline import PixelCrossEntropy  # noqa: E402
from keras_cnn.segmentation.deeplab_v3 import DeepLabV3Segmenter  # noqa: E402
from keras_cnn.segmentation.registry import make_backbone  # noqa: E402

GLOBAL_BATCH = 8


def colourizer():
    # The bare net on its own input (grey / 256 lies in [0, 1)).
    return build_model("unet", num_filters=8, num_colours=5), PixelCrossEntropy(), 1, 5, 1.0


def segmenter():
    # Dropout off: each replica would draw its own mask.
    model = DeepLabV3Segmenter(make_backbone("tiny", 32, output_stride=8), 2, aspp_channels=8,
                               dropout=0.0)
    # The segmenter takes RGB pixels 0-255 and normalises them itself.
    return model, keras.losses.SparseCategoricalCrossentropy(from_logits=True), 3, 2, 255.0


def train(strategy, make, sync_batchnorm=True):
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model, loss, channels, classes, scale = make()
        # Plain SGD: Adam divides by the root of tiny squared gradients (the
        # conv biases before a BatchNorm get ~0 gradient), which turns float
        # rounding noise into full-size steps and hides what is compared here.
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss)
    rng = np.random.RandomState(1)
    x = (rng.rand(4 * GLOBAL_BATCH, 32, 32, channels) * scale).astype("float32")
    y = rng.randint(0, classes, (4 * GLOBAL_BATCH, 32, 32))
    initial = [w.copy() for w in model.get_weights()]
    with tempfile.TemporaryDirectory() as run_dir:
        training.fit(model, tf.data.Dataset.from_tensor_slices((x, y)).batch(GLOBAL_BATCH), None, 1,
                     run_dir, monitor="loss", verbose=0, sync_batchnorm=sync_batchnorm, log=lambda *_: None)
    return initial, model.get_weights()


def max_diff(a, b):
    return float(max(np.abs(p - q).max() for p, q in zip(a, b)))


def main(out_path):
    default = distribute.get_strategy("default")
    mirrored = distribute.get_strategy("mirrored")
    result = {"replicas": mirrored.num_replicas_in_sync,
              "devices": list(mirrored.extended.worker_devices)}
    for name, make in (("colourizer", colourizer), ("segmenter", segmenter)):
        init_d, final_d = train(default, make)
        init_m, final_m = train(mirrored, make)
        result[name] = {"initial_diff": max_diff(init_d, init_m), "final_diff": max_diff(final_d, final_m),
                        "moved": max_diff(init_d, final_d)}
    # Per-replica BatchNorm statistics: what synchronising them buys.
    result["colourizer"]["final_diff_unsynced_bn"] = max_diff(
        train(default, colourizer)[1], train(mirrored, colourizer, sync_batchnorm=False)[1])
    # XLA cannot compile the all-reduce of CPU replicas: a clear error up front.
    from keras_cnn.colorization.config import PRESETS, ColorizationConfig
    from keras_cnn.config import resolve
    from keras_cnn.errors import UserError

    try:
        training.setup_runtime(resolve(ColorizationConfig, PRESETS, "cifar10_unet",
                                       dict(strategy="mirrored", jit_compile=True)), log=lambda *_: None)
        result["xla_error"] = None
    except UserError as e:
        result["xla_error"] = str(e)
    with open(out_path, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(sys.argv[1])
