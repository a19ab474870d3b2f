"""The application-neutral half of a servable: uint8 images in, named outputs out.

A `Servable` wraps a task model with the TensorFlow post-processing that
turns what a client has (a batch of uint8 RGB images) into named outputs.
The models take RGB pixels and normalise them themselves, so nothing here
repeats their preprocessing. The SavedModel signatures and the TFLite graphs
are both built from a servable, so a server and a phone compute the same
thing. Each application's subclass lives in its adapter
(`keras_cnn.export.colorization`, `keras_cnn.export.segmentation`), and
`keras_cnn.export.servable_for(run)` picks the adapter by the run's task.

The TFLite graphs (`tflite_outputs`, fixed size) return what an app needs
without decoding: "classes" (uint8 argmax per pixel: the palette colour or
the segment class), "logits" (float32, or int8 with a scale in the int8
file) and, for an argmax colourizer, "colours" (uint8 RGB, looked up in the
graph). `score` measures any of them against the truth (delta E, IoU).
"""


import os

import numpy as np
import tensorflow as tf

from keras_cnn.errors import UserError
from keras_cnn.fileio import list_images, read_image, readable_images


def folder_name(path):
    """The last part of a folder path: what metadata that ships to servers and phones says of a local folder."""
    return os.path.basename(os.path.normpath(path))


def run_source(run, checkpoint):
    """Where a servable's weights come from, for its metadata: the run folder's name, not its local path."""
    return {"run": folder_name(run.run_dir), "checkpoint": f"{checkpoint}.keras"}


def resize_uint8(images, size):
    """uint8 image(s) (..., H, W, 3) -> (..., size, size, 3): bilinear with antialiasing, as training resized."""
    x = tf.image.resize(images, (size, size), method="bilinear", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(x), 0.0, 255.0), tf.uint8)


def crop_square(image):
    """The central square of one image (H, W, C)."""
    shape = tf.shape(image)
    side = tf.minimum(shape[0], shape[1])
    return tf.image.crop_to_bounding_box(image, (shape[0] - side) // 2, (shape[1] - side) // 2, side, side)


def pad_edge(images, multiple):
    """Pads (N, H, W, C) at the bottom and right to multiples of `multiple`, repeating edge pixels."""
    static = images.shape[1:3]
    if all(d is not None and d % multiple == 0 for d in static):
        return images
    h, w = tf.shape(images)[1], tf.shape(images)[2]
    rows = tf.minimum(tf.range((h + multiple - 1) // multiple * multiple), h - 1)
    cols = tf.minimum(tf.range((w + multiple - 1) // multiple * multiple), w - 1)
    return tf.gather(tf.gather(images, rows, axis=1), cols, axis=2)


class Servable:
    """Base: a Keras model, its fixed export size and its metadata.

    `logits` and `probabilities` run the model on uint8 images. Subclasses
    define `outputs(images)` (any size -> the SavedModel's named outputs),
    `metadata()` and `_split_images(split, count)` (the run's own training or
    validation images).
    """

    application = None
    output_names = ()
    # How one photo of any shape becomes the square export size: "centre_crop"
    # (crop the central square, then resize) or "stretch" (resize as is).
    image_fit = "centre_crop"

    # The local run folder a servable was opened from (not in its metadata); set by the adapters.
    run_dir = None

    def __init__(self, model, image_size, source, images_dir=None):
        self.model = model
        self.image_size = int(image_size)
        self.source = source
        self.images_dir = images_dir

    def logits(self, images):
        """float32 logits of uint8 images (N, H, W, 3), the model in inference mode."""
        return tf.cast(self.model(tf.cast(images, tf.float32), training=False), tf.float32)

    def probabilities(self, images):
        return tf.nn.softmax(self.logits(images), axis=-1)

    def fit(self, image):
        """One decoded uint8 image (H, W, 3) -> (S, S, 3) at the export size, per `image_fit`."""
        if self.image_fit == "centre_crop":
            image = crop_square(image)
        return resize_uint8(image, self.image_size)

    def fit_batch(self, images):
        return tf.map_fn(lambda im: self.fit(im), images,
                         fn_output_signature=tf.TensorSpec((self.image_size, self.image_size, 3),
                                                           tf.uint8))

    def images(self, split, count):
        """Up to `count` real uint8 images (N, S, S, 3) at the export size.

        `split` "train" feeds int8 calibration, "validation" the agreement
        checks. With `images_dir` both come from that folder (calibration from
        its first files, checks from its last), fitted as `fit` does.
        """
        if self.images_dir:
            paths = list_images(self.images_dir, "image folder")
            return self._load_files(paths[:count] if split == "train" else paths[::-1][:count])
        try:
            images = self._split_images(split, count)
        except UserError as e:
            raise UserError(f"cannot load the run's images for calibration and checks ({e}); "
                            "pass --images DIR") from None
        images = np.asarray(images, np.uint8)[:count]
        if len(images) and images.shape[1:3] != (self.image_size, self.image_size):
            images = self.fit_batch(tf.constant(images)).numpy()
        return images

    def _load_files(self, paths):
        """Image files -> uint8 (N, S, S, 3) fitted to the export size; undecodable files skipped."""
        arrays = []
        for path in readable_images(paths, "image folder") if paths else []:
            arrays.append(self.fit(tf.constant(read_image(path))).numpy())
        return np.stack(arrays) if arrays else np.zeros((0, self.image_size, self.image_size, 3), np.uint8)

    # === TFLite ===

    # Whether the app's result is the argmax of the logits (then int8 may clamp
    # logits that can never win; see `export.tflite`).
    decided_by_argmax = True

    def export_logits(self, images):
        """The logits of the TFLite graph (the model's, computed in an int8-friendly form where one exists)."""
        return self.logits(images)

    def tflite_outputs(self, images):
        """Fixed-size uint8 images -> the TFLite graph's outputs (see the module docstring)."""
        logits = tf.cast(self.export_logits(images), tf.float32)
        return {"logits": logits, "classes": tf.cast(tf.argmax(logits, axis=-1), tf.uint8)}

    def reference_outputs(self, images):
        """What the Keras model gives for `images`, under the names of `tflite_outputs`."""
        logits = self.logits(images)
        return {"logits": logits, "classes": tf.cast(tf.argmax(logits, axis=-1), tf.uint8)}

    def check_set(self, count):
        """Up to `count` held-out images (N, S, S, 3) and their truth (or None where there is none)."""
        images = self.images("validation", count)
        return images, self._truth(images, count)

    def _truth(self, images, count):
        return None

    def score(self, outputs, images, truth):
        """Task metrics of `outputs` (a dict as `tflite_outputs` gives) against `truth`; {} without truth."""
        raise NotImplementedError

    def base_metadata(self):
        import keras

        import keras_cnn

        return {
            "application": self.application,
            "model_class": type(self.model).__name__,
            "input": {"key": "images", "dtype": "uint8", "layout": "NHWC RGB"},
            "input_size": [self.image_size, self.image_size],
            "image_fit": self.image_fit,
            "outputs": list(self.output_names),
            "source": self.source,
            "versions": {"keras_cnn": keras_cnn.__version__, "tensorflow": tf.__version__,
                         "keras": keras.__version__},
        }
