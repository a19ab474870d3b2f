"""SavedModel export for TensorFlow Serving, and its check against Keras.

Three signatures, every photo answered at its own size:

- `serving_default`: input "images", uint8 (N, H, W, 3), any H and W;
  outputs the decoded result ("colours", uint8 RGB, or "mask", uint8 class
  ids) and "probabilities" (float32 per class).
- `serving_decoded`: the same input; outputs the decoded result alone, for
  clients that want the picture: a 800x600 photo's REST reply is a sixth to
  a tenth of `serving_default`'s (docs/EXPORT.md).
- `serving_bytes`: input "image_bytes", string (N,), each an encoded JPEG,
  PNG, GIF or BMP, decoded in the graph at its own size; outputs the decoded
  result and "sizes" (int32 (N, 2): each photo's height and width). Photos of
  one request may differ in size: the results are then padded with zeros at
  the bottom and right to the largest, and "sizes" says where each ends.

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
SIZES_KEY = "sizes"
SIGNATURE_INPUTS = {
    "serving_default": {IMAGES_KEY: "uint8 (N, H, W, 3) RGB, any H and W"},
    "serving_decoded": {IMAGES_KEY: "uint8 (N, H, W, 3) RGB, any H and W"},
    "serving_bytes": {BYTES_KEY: "string (N,): encoded JPEG, PNG, GIF or BMP files, each answered at its own "
                                 "size (results padded to the largest, sizes (N, 2) says each one's)"},
}
METADATA_PATH = os.path.join("assets.extra", "metadata.json")


def decoded_outputs(servable, images):
    """The servable's outputs without "probabilities": the picture a client shows (colours or mask)."""
    return {k: v for k, v in servable.outputs(images).items() if k != "probabilities"}


def outputs_of_encoded(servable, blobs):
    """Encoded images (N,) -> each one's decoded result at its own size, padded to the largest, and "sizes".

    Each photo goes through the servable on its own (a segmenter resizes a
    photo to its input size and back; padding first would change that).
    """
    n = tf.shape(blobs)[0]
    names = [k for k in servable.output_names if k != "probabilities"]
    # Per-image rank of each picture output: colours (H, W, 3), a mask (H, W).
    channels = {"colours": [[0, 0]], "mask": []}

    def decode(i):
        return tf.io.decode_image(blobs[i], channels=3, dtype=tf.uint8, expand_animations=False)

    def first(i, results, sizes):
        image = decode(i)
        out = decoded_outputs(servable, image[None])
        return (i + 1, [r.write(i, out[k][0]) for r, k in zip(results, names)],
                sizes.write(i, tf.shape(image)[:2]))

    results = [tf.TensorArray(tf.uint8, size=n, infer_shape=False, element_shape=None) for _ in names]
    _, results, sizes = tf.while_loop(lambda i, *_: i < n, first,
                                      (tf.constant(0), results, tf.TensorArray(tf.int32, size=n)))
    sizes = sizes.stack()
    height, width = tf.reduce_max(sizes[:, 0]), tf.reduce_max(sizes[:, 1])

    def pad(i, padded):
        out = []
        for r, p, k in zip(results, padded, names):
            value = r.read(i)
            extra = [[0, height - tf.shape(value)[0]], [0, width - tf.shape(value)[1]]] + channels[k]
            out.append(p.write(i, tf.pad(value, extra)))
        return i + 1, out

    padded = [tf.TensorArray(tf.uint8, size=n) for _ in names]
    _, padded = tf.while_loop(lambda i, *_: i < n, pad, (tf.constant(0), padded))
    return {**{k: p.stack() for k, p in zip(names, padded)}, SIZES_KEY: sizes}


def write_saved_model(servable, path):
    """Writes the SavedModel of `servable` at `path` (a folder that must not exist yet)."""
    import keras

    archive = keras.export.ExportArchive()
    archive.track(servable.model)
    archive.add_endpoint(
        "serving_default", servable.outputs,
        input_signature=[tf.TensorSpec((None, None, None, 3), tf.uint8, name=IMAGES_KEY)])
    archive.add_endpoint(
        "serving_decoded", lambda images: decoded_outputs(servable, images),
        input_signature=[tf.TensorSpec((None, None, None, 3), tf.uint8, name=IMAGES_KEY)])
    archive.add_endpoint(
        "serving_bytes", lambda blobs: outputs_of_encoded(servable, blobs),
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
