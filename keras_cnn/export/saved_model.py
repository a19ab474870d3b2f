"""SavedModel export for TensorFlow Serving, and its check against Keras.

Two signatures, both returning the servable's named outputs ("colours" or
"mask", and "probabilities"):

- `serving_default`: input "images", uint8 (N, H, W, 3), any H and W.
- `serving_bytes`: input "image_bytes", string (N,), each an encoded JPEG,
  PNG, GIF or BMP; decoded in the graph and fitted to the export size (the
  images of one request may differ in size).

Built with `keras.export.ExportArchive` (the Keras 3 way to put custom
endpoints into a SavedModel); the metadata goes to `assets.extra/`, the folder
the SavedModel format reserves for files the graph does not load.
"""

import os

import numpy as np
import tensorflow as tf

from keras_cnn import state_files
from keras_cnn.errors import UserError
from keras_cnn.fileio import read_json

IMAGES_KEY = "images"
BYTES_KEY = "image_bytes"
SIGNATURE_INPUTS = {
    "serving_default": {IMAGES_KEY: "uint8 (N, H, W, 3) RGB, any H and W"},
    "serving_bytes": {BYTES_KEY: "string (N,): encoded JPEG, PNG, GIF or BMP files"},
}
METADATA_PATH = os.path.join("assets.extra", "metadata.json")


def decode_images(blobs, servable):
    """Encoded images (N,) -> uint8 (N, S, S, 3) at the servable's export size."""
    def one(blob):
        image = tf.io.decode_image(blob, channels=3, dtype=tf.uint8, expand_animations=False)
        return servable.fit(image)

    size = servable.image_size
    return tf.map_fn(one, blobs, fn_output_signature=tf.TensorSpec((size, size, 3), tf.uint8))


def write_saved_model(servable, path):
    """Writes the SavedModel of `servable` at `path` (a folder that must not exist yet)."""
    import keras

    archive = keras.export.ExportArchive()
    archive.track(servable.model)
    archive.add_endpoint(
        "serving_default", servable.outputs,
        input_signature=[tf.TensorSpec((None, None, None, 3), tf.uint8, name=IMAGES_KEY)])
    archive.add_endpoint(
        "serving_bytes", lambda blobs: servable.outputs(decode_images(blobs, servable)),
        input_signature=[tf.TensorSpec((None,), tf.string, name=BYTES_KEY)])
    archive.write_out(path, verbose=False)


def write_metadata(path, metadata):
    """Writes the export metadata as JSON; a NaN or infinity in it is a one-line `UserError`, not bare NaN."""
    text = state_files.json_text(metadata, path, "export metadata")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def read_metadata(export_dir):
    """The metadata of the SavedModel in `export_dir` (its `assets.extra/metadata.json`)."""
    return read_json(os.path.join(export_dir, METADATA_PATH), "export metadata")


def check_saved_model(path, servable, images, batch_sizes=(1, 4)):
    """Reloads the SavedModel at `path` and compares it with the Keras model.

    Runs `serving_default` on the first `b` of `images` for each batch size
    and returns the largest absolute difference of the probabilities from the
    Keras model's, per batch size.
    """
    images = np.asarray(images, np.uint8)
    if len(images) == 0:
        raise UserError("no images to check the SavedModel with")
    serve = tf.saved_model.load(path).signatures["serving_default"]
    diffs = {}
    for size in sorted({min(b, len(images)) for b in batch_sizes}):
        batch = tf.constant(images[:size])
        got = serve(**{IMAGES_KEY: batch})["probabilities"].numpy()
        want = servable.probabilities(batch).numpy()
        if got.shape != want.shape:
            raise RuntimeError(f"exported probabilities have shape {got.shape}, Keras {want.shape}")
        diffs[str(size)] = float(np.max(np.abs(got - want)))
    return {"images": int(len(images)), "max_abs_diff_probabilities": diffs}
