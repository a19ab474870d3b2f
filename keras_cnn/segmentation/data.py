"""Segmentation data: image/mask folders, mask checks, and the `tf.data` pipeline.

A dataset here is a list of `(image_path, mask_path)` pairs plus a
`decode_mask(path) -> uint8 labels (h, w)` function (class indices, with
`IGNORE_LABEL` = 255 for pixels the loss and metrics leave out). Two sources
produce them: `folder_pairs` for the user's own `images/` + `masks/` folders,
and `keras_cnn.segmentation.flowers` for Oxford 17 Flowers and its trimaps.

Every file is decoded once up front (`check_pairs`), so an unreadable photo
or an invalid mask is a one-line error naming the file instead of an opaque
failure in the middle of an epoch. `make_dataset` then builds the pipeline:
decode -> resize (image bilinear with antialiasing, mask nearest) -> cache ->
shuffle -> batch -> augment (random scale-crop, flip, colour jitter) ->
prefetch. Images stay RGB 0-255: the segmenter normalises them itself
(`preprocessing.ImageNormalization`).
"""

import concurrent.futures
import dataclasses
import hashlib
import os
import warnings

import numpy as np
import tensorflow as tf

from keras_cnn.errors import UserError
from keras_cnn.fileio import list_images, read_image
from keras_cnn.segmentation.metrics import IGNORE_LABEL

# === Files ===


def read_mask_values(path):
    """The stored values of a mask file as a 2-D uint8 array.

    Palette PNGs give their palette indices (the PASCAL VOC convention),
    greyscale PNGs their grey values, 1-bit PNGs 0/255. A colour mask whose
    channels differ is refused: it needs a loader that knows its colours.
    """
    values = read_image(path, mode=None)
    if values.dtype == bool:  # 1-bit PNG
        values = values.astype(np.uint8) * 255
    if values.ndim == 3:
        if values.shape[-1] in (2, 4):  # LA / RGBA: the alpha channel is not a label
            values = values[..., :-1]
        if not all(np.array_equal(values[..., 0], values[..., c]) for c in range(1, values.shape[-1])):
            raise UserError(f"{path}: mask is a colour image; save it as a greyscale or "
                            "palette PNG of class indices (or 0/255)")
        values = values[..., 0]
    if values.ndim != 2:
        raise UserError(f"{path}: mask has shape {values.shape}, wanted one channel")
    if values.max(initial=0) > 255:
        raise UserError(f"{path}: mask value {int(values.max())} does not fit a class index (0-255)")
    return values.astype(np.uint8)


@dataclasses.dataclass(frozen=True)
class MaskDecoder:
    """Stored mask values -> labels: `binary` maps 0/255 to 0/1, else values are classes.

    In class-index masks 255 stays 255, which the loss and metrics ignore
    (the PASCAL VOC "void" convention).
    """

    binary: bool

    def __call__(self, path):
        values = read_mask_values(path)
        return (values == 255).astype(np.uint8) if self.binary else values


def folder_pairs(root):
    """`(image, mask)` pairs of `root/images/NAME.ext` and `root/masks/NAME.png`.

    Every image needs its mask and every mask its image: a missing partner is
    an error naming the file, as is a name used twice.
    """
    root = os.fspath(root)
    images = list_images(os.path.join(root, "images"), "images folder")
    masks = list_images(os.path.join(root, "masks"), "masks folder")

    def by_stem(paths):
        out = {}
        for p in paths:
            stem = os.path.splitext(os.path.basename(p))[0]
            if stem in out:
                raise UserError(f"{p}: name {stem!r} used twice (also {out[stem]})")
            out[stem] = p
        return out

    images, masks = by_stem(images), by_stem(masks)
    for stem, path in images.items():
        if stem not in masks:
            raise UserError(f"{path}: image has no mask (expected {os.path.join(root, 'masks', stem + '.png')})")
    for stem, path in masks.items():
        if stem not in images:
            raise UserError(f"{path}: mask has no image in {os.path.join(root, 'images')}")
    return [(images[s], masks[s]) for s in sorted(images)]


def split_pairs(pairs, val_fraction):
    """Deterministic (train, validation) split: the validation share is chosen by name hash.

    Pairs are ordered by the MD5 of their file name and the first
    `round(n * val_fraction)` go to validation: the same files whatever the
    listing order or the machine, and adding a file does not reshuffle the rest.
    Names are hashed as the file system's bytes (`os.fsencode`), so names that
    are not UTF-8 work too.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise UserError(f"val_fraction must be in [0, 1), got {val_fraction}")
    order = sorted(pairs, key=lambda p: hashlib.md5(os.fsencode(os.path.basename(p[0]))).hexdigest())
    n_val = int(round(len(pairs) * val_fraction))
    val = sorted(order[:n_val])
    train = sorted(order[n_val:])
    if not train or (val_fraction > 0 and not val):
        folder = (os.path.commonpath([os.path.dirname(os.path.abspath(os.fsdecode(p[0]))) for p in pairs])
                  if pairs else "the data folder")
        need = next(n for n in range(1, 1_000_000)
                    if n - int(round(n * val_fraction)) >= 1 and int(round(n * val_fraction)) >= 1)
        raise UserError(f"{folder}: {len(pairs)} image/mask pair(s) are too few for --val-fraction {val_fraction}, "
                        f"which needs at least {need} (one or more for validation and for training); add pairs, "
                        "or pass --val-fraction 0 to train on all of them")
    return train, val


def folder_mask_decoder(mask_paths, num_classes):
    """Checks every mask and returns the `MaskDecoder` they call for.

    If every value in every mask is 0 or 255 the masks are binary (255 =
    foreground); otherwise they hold class indices, each below `num_classes`
    (or 255 = ignore). Any other value is an error naming the file.
    """
    values = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        for path, v in zip(mask_paths, pool.map(lambda p: np.unique(read_mask_values(p)), mask_paths)):
            values[path] = set(int(x) for x in v)
    union = set().union(*values.values()) if values else set()
    if union <= {0, 255}:
        if num_classes < 2:
            raise UserError("binary 0/255 masks need num_classes of at least 2")
        return MaskDecoder(binary=True)
    for path, v in values.items():
        bad = sorted(x for x in v if x >= num_classes and x != IGNORE_LABEL)
        if bad:
            raise UserError(f"{path}: mask values {bad[:5]} are neither binary (0/255) nor class "
                            f"indices below num_classes={num_classes}")
    return MaskDecoder(binary=False)


def check_pairs(pairs, decode_mask):
    """Decodes every image and mask once; one that fails is a `UserError` naming the file.

    Also warns when an image and its mask differ in aspect ratio by more than
    5%, which usually means a mismatched pair (sizes may differ: both are
    resized to the model's input size).
    """

    def check(pair):
        image_path, mask_path = pair
        image = read_image(image_path)
        mask = decode_mask(mask_path)
        ratio = (image.shape[1] / image.shape[0]) / (mask.shape[1] / mask.shape[0])
        if abs(ratio - 1.0) > 0.05:
            warnings.warn(f"{mask_path}: aspect ratio differs from its image {image_path} "
                          f"({mask.shape[1]}x{mask.shape[0]} vs {image.shape[1]}x{image.shape[0]})",
                          stacklevel=3)

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(check, pairs))


# === Pipeline ===


@dataclasses.dataclass(frozen=True)
class Augment:
    """Training augmentation, applied per image on batches after the cache.

    Attributes:
        min_crop: a random square crop of side `min_crop..1` times the image
            is taken and resized back (a random zoom-in of up to 1/min_crop);
            1.0 disables it.
        flip: random left-right flip.
        color_jitter: random brightness and contrast change of up to this
            fraction, per image (0 disables it).
    """

    min_crop: float = 0.5
    flip: bool = True
    color_jitter: float = 0.0


def _path_bytes(path):
    # TensorFlow strings are bytes: a file name that is not UTF-8 (held by Python as surrogate
    # escapes) goes in as the file system's own bytes and comes back out by `_path_str`.
    return os.fsencode(path)


def _path_str(value):
    # numpy_function hands over bytes in a pipeline, a 0-d array when eager.
    value = value.item() if isinstance(value, np.ndarray) else value
    return os.fsdecode(value) if isinstance(value, bytes) else str(value)


def _decode_pair(decode_mask, size):
    def load(image_path, mask_path):
        def py_load(ip, mp):
            return read_image(_path_str(ip)), decode_mask(_path_str(mp))

        image, mask = tf.numpy_function(py_load, [image_path, mask_path], [tf.uint8, tf.uint8])
        image.set_shape([None, None, 3])
        mask.set_shape([None, None])
        image = tf.image.resize(image, size, method="bilinear", antialias=True)
        image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
        mask = tf.image.resize(mask[..., None], size, method="nearest")[..., 0]
        return image, mask

    return load


def augment_batch(images, masks, augment):
    """Random scale-crop + flip (one `crop_and_resize` per batch) and colour jitter."""
    n = tf.shape(images)[0]
    size = tf.shape(images)[1:3]
    side = tf.random.uniform([n], augment.min_crop, 1.0)
    y0 = tf.random.uniform([n]) * (1.0 - side)
    x0 = tf.random.uniform([n]) * (1.0 - side)
    x1 = x0 + side
    if augment.flip:
        # A box with x1 < x0 samples the crop mirrored left-right.
        flip = tf.random.uniform([n]) < 0.5
        x0, x1 = tf.where(flip, x1, x0), tf.where(flip, x0, x1)
    boxes = tf.stack([y0, x0, y0 + side, x1], axis=1)
    index = tf.range(n)
    images = tf.image.crop_and_resize(tf.cast(images, tf.float32), boxes, index, size, method="bilinear")
    masks = tf.image.crop_and_resize(tf.cast(masks[..., None], tf.float32), boxes, index, size,
                                     method="nearest")[..., 0]
    if augment.color_jitter > 0:
        j = augment.color_jitter
        brightness = tf.random.uniform([n, 1, 1, 1], -j, j) * 255.0
        contrast = tf.random.uniform([n, 1, 1, 1], 1.0 - j, 1.0 + j)
        mean = tf.reduce_mean(images, axis=[1, 2, 3], keepdims=True)
        images = tf.clip_by_value((images - mean) * contrast + mean + brightness, 0.0, 255.0)
    return images, tf.cast(masks, tf.uint8)


def make_dataset(pairs, decode_mask, image_size, batch_size, training=False, augment=None, seed=0,
                 cache=True):
    """A batched `tf.data.Dataset` of (float32 RGB 0-255 images, int32 label masks).

    Args:
        pairs: `(image_path, mask_path)` list (check it with `check_pairs` first).
        decode_mask: `path -> uint8 labels (h, w)`.
        image_size: `(height, width)` of the model input.
        batch_size: global batch size.
        training: shuffle every epoch, drop the last partial batch, augment.
        augment: an `Augment`, or None for no augmentation.
        seed: shuffle seed.
        cache: keep decoded, resized examples in memory after the first epoch.

    Returns:
        Dataset of `(float32 (B, H, W, 3), int32 (B, H, W))`.

    Example:
        ds = make_dataset(train_pairs, MaskDecoder(binary=True), (128, 128), 16, training=True,
                          augment=Augment())
    """
    if not pairs:
        raise UserError("no image/mask pairs to build a dataset from")
    size = tuple(int(s) for s in image_size)
    images = [_path_bytes(p[0]) for p in pairs]
    masks = [_path_bytes(p[1]) for p in pairs]
    ds = tf.data.Dataset.from_tensor_slices((images, masks))
    ds = ds.map(_decode_pair(decode_mask, size), num_parallel_calls=tf.data.AUTOTUNE)
    if cache:
        ds = ds.cache()
    if training:
        ds = ds.shuffle(len(pairs), seed=seed, reshuffle_each_iteration=True)
    # A last batch of a few images gives BatchNorm noisy statistics; training drops it.
    ds = ds.batch(batch_size, drop_remainder=training and len(pairs) >= batch_size)
    if training and augment is not None:
        ds = ds.map(lambda x, y: augment_batch(x, y, augment), num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), tf.cast(y, tf.int32)),
                num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def load_examples(pairs, decode_mask, image_size):
    """Eagerly loads pairs as (uint8 images (N, H, W, 3), uint8 masks (N, H, W)) for plots."""
    load = _decode_pair(decode_mask, tuple(image_size))
    images, masks = zip(*(load(tf.constant(_path_bytes(i)), tf.constant(_path_bytes(m))) for i, m in pairs))
    return np.stack([i.numpy() for i in images]), np.stack([m.numpy() for m in masks])
