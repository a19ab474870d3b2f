"""Segmenting photos with a trained model: a mask PNG and an overlay PNG per photo.

The photo is resized to the model's input size (the model normalises it
itself), and the logits are resized back to the photo's own size
(bilinearly, before the argmax) so the mask lines up with the original.
The resizes run in TensorFlow and NumPy, whatever backend the model runs on.

Memory stays bounded for big photos: the resize to the model's size runs in
row bands (width first, then height: the antialiased bilinear resize is
separable), and the logits are brought back to the photo's size and turned
into labels a band of rows at a time (`keras_cnn.full_size.labels_at_size`,
which the TFLite runtime shares), so no float copy of the whole photo or of
its full-size logits is ever made. The results are those of
`tf.image.resize` on the whole photo, up to float rounding.
"""

import numpy as np
import tensorflow as tf
from keras import ops

from keras_cnn.errors import UserError
from keras_cnn.fileio import atomic_path, check_photos, image_inputs, output_paths, read_image
from keras_cnn.full_size import labels_at_size
from keras_cnn.segmentation.metrics import IGNORE_LABEL

# Rows of the photo handled at a time by the resizes, the argmax and the overlay.
BAND_ROWS = 256

# Class colours for masks with more than two classes (PASCAL VOC's first colours).
PALETTE = np.array([
    (0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0), (0, 0, 128), (128, 0, 128),
    (0, 128, 128), (128, 128, 128), (64, 0, 0), (192, 0, 0), (64, 128, 0), (192, 128, 0),
], dtype=np.float32) / 255.0


def colorize(labels, num_classes):
    """Label maps `(..., H, W)` -> RGB in [0, 1]: white object on black for two classes,
    the VOC palette otherwise; ignored pixels (255) grey."""
    labels = np.asarray(labels)
    if num_classes <= 2:
        rgb = np.repeat((labels == 1)[..., None], 3, axis=-1).astype(np.float32)
    else:
        rgb = PALETTE[np.mod(labels, len(PALETTE))]
    rgb[labels == IGNORE_LABEL] = 0.5
    return rgb


def overlay(image, labels, alpha=0.5):
    """The photo (uint8 RGB) with every non-background pixel tinted (red for class 1), in row bands."""
    out = np.empty_like(image, dtype=np.uint8)
    for r in range(0, image.shape[0], BAND_ROWS):
        lab = labels[r:r + BAND_ROWS]
        tint = (PALETTE[np.mod(lab, len(PALETTE))] * 255.0).astype(np.float32)
        tint[lab == 1] = (255.0, 0.0, 0.0)
        band = image[r:r + BAND_ROWS].astype(np.float32)
        fg = lab > 0
        band[fg] = (1 - alpha) * band[fg] + alpha * tint[fg]
        out[r:r + BAND_ROWS] = np.clip(band, 0, 255).astype(np.uint8)
    return out


def resize_to_model(image, size):
    """uint8 RGB (h, w, 3) -> float32 (S, S, 3): `tf.image.resize(bilinear, antialias=True)` in row bands.

    The width is resized first, `BAND_ROWS` rows at a time (a resize that
    keeps the height is exact per row), then the height of the (h, S) result:
    no float copy of the whole photo.
    """
    h, w = image.shape[:2]
    if h * w <= BAND_ROWS * BAND_ROWS:
        return tf.image.resize(image, size, method="bilinear", antialias=True)
    narrow = np.empty((h, size[1], image.shape[2]), np.float32)
    for r in range(0, h, BAND_ROWS):
        band = image[r:r + BAND_ROWS]
        narrow[r:r + len(band)] = tf.image.resize(band, (len(band), size[1]), method="bilinear",
                                                  antialias=True).numpy()
    return tf.image.resize(narrow, size, method="bilinear", antialias=True)


def predict_labels(model, image):
    """Class labels `(h, w)` for one uint8 RGB photo (or its path) at its own size, in memory bounded by the
    model's size."""
    image = check_photos(image, "image")
    if image.ndim != 3:
        raise UserError(f"image has shape {image.shape}: give one photo (H, W, 3) at a time")
    x = np.clip(np.round(np.asarray(resize_to_model(image, model.image_size))), 0, 255)
    logits = model(x[None], training=False)
    return labels_at_size(ops.convert_to_numpy(logits[0]), image.shape[0], image.shape[1])


def _save_png(array, path):
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")


def segment_paths(model, paths, out_dir):
    """Writes `NAME_mask.png` and `NAME_overlay.png` into `out_dir` for every photo.

    The mask PNG holds 0/255 for a two-class model (255 = object) and the
    class index otherwise. Returns the list of written files.
    """
    written = []
    photos = image_inputs(paths)
    plan = output_paths(photos, out_dir, ("mask", "overlay"))  # no output replaces an input or another
    for path, outs in zip(photos, plan):
        image = read_image(path)
        labels = predict_labels(model, image)
        mask = (labels * 255).astype(np.uint8) if model.num_classes == 2 else labels
        for out, array in zip(outs, (mask, overlay(image, labels))):
            _save_png(array, out)
            written.append(out)
    return written
