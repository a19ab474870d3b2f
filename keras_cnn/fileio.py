"""Atomic file and folder writes, image-file listing, and the one image reader.

Every output of this package is written under a temporary name in the same
folder and renamed into place, so a crash or a bad input never leaves a
half-written file behind that a later run would mistake for a good one.
"""

import contextlib
import os
import shutil
import uuid
import warnings

from keras_cnn.errors import UserError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")

# The largest photo read, in pixels (10,000 x 10,000). A decoded RGB image
# takes 3 bytes a pixel, so this bounds one read at 300 MB; a small file that
# claims more (a decompression bomb) is refused before it is decoded.
MAX_IMAGE_PIXELS = 100_000_000


@contextlib.contextmanager
def atomic_path(path, overwrite=True):
    """Yields a temporary path beside `path`; renames it to `path` on success.

    Works for files and folders alike: whatever the body writes at the
    temporary path replaces `path` only if the body returns normally. With
    `overwrite=False` an existing `path` is a `UserError`, checked before the
    body runs and again before the rename (for outputs that must never be
    replaced, such as a served model version).
    """
    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    if not overwrite and os.path.lexists(path):
        raise UserError(f"{path}: already exists; not overwriting it")
    os.makedirs(parent, exist_ok=True)
    base = os.path.basename(path)
    # Keep the real suffix last: writers such as `model.save` insist on it.
    tmp = os.path.join(parent, f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}-{base}")
    try:
        yield tmp
        if not overwrite:
            if os.path.lexists(path):
                raise UserError(f"{path}: appeared while writing it; not overwriting it")
            # os.rename, unlike os.replace on a file, refuses a non-empty folder.
            os.rename(tmp, path)
            return
        if os.path.isdir(path) and os.path.isdir(tmp):
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_bytes(path, data):
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def atomic_write_text(path, text):
    atomic_write_bytes(path, text.encode("utf-8"))


def read_json(path, what="JSON file"):
    """The parsed content of a JSON file, or a one-line `UserError` naming it."""
    import json

    try:
        with open(path) as f:
            return json.load(f)
    except OSError as e:
        raise UserError(f"{path}: cannot read {what} ({e.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        detail = f"{e.msg} at line {e.lineno}" if isinstance(e, json.JSONDecodeError) else e.reason
        raise UserError(f"{path}: {what} is not valid JSON ({detail})") from None


def check_input(path, what, kind="file"):
    """`path` (given as `what`, e.g. "--data-dir") exists as a `kind`, else a `UserError`.

    `kind`: "file", "folder", or "file or folder".
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise UserError(f"{what} {path}: no such {kind}")
    if kind == "folder" and not os.path.isdir(path):
        raise UserError(f"{what} {path}: not a folder")
    if kind == "file" and os.path.isdir(path):
        raise UserError(f"{what} {path}: is a folder, not a file")


def check_output(path, what, kind="file"):
    """`path` can be written as a `kind` ("file" or "folder"), else a `UserError` naming `what`.

    Commands call this before any work, so a typo in an output path costs a
    second, not an hour of training. Missing parent folders are fine (they
    are made when the output is written); the nearest existing one must be a
    writable folder. Nothing is created here.
    """
    path = os.fspath(path)
    if not path:
        raise UserError(f"{what}: empty path")
    if os.path.exists(path):
        if kind == "folder" and not os.path.isdir(path):
            raise UserError(f"{what} {path}: exists and is not a folder")
        if kind == "file" and os.path.isdir(path):
            raise UserError(f"{what} {path}: is a folder, not a file")
    ancestor = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(ancestor):
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        raise UserError(f"{what} {path}: {ancestor} is a file, not a folder")
    target = path if kind == "folder" and os.path.isdir(path) else ancestor
    if not os.access(target, os.W_OK | os.X_OK):
        raise UserError(f"{what} {path}: {target} is not writable")


def list_images(folder, what="image folder"):
    """Sorted image files directly inside `folder`; fails clearly if none."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise UserError(f"{folder}: {what} does not exist or is not a folder")
    names = sorted(
        n for n in os.listdir(folder)
        if n.lower().endswith(IMAGE_EXTENSIONS) and not n.startswith(".")
    )
    if not names:
        raise UserError(f"{folder}: {what} holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
    return [os.path.join(folder, n) for n in names]


def _open_image(path, max_pixels):
    """`PIL.Image` of `path`, size-checked before decoding, or a `UserError` naming the file."""
    from PIL import Image, UnidentifiedImageError

    try:
        im = Image.open(path)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise UserError(f"{path}: cannot be decoded as an image ({type(e).__name__})") from None
    width, height = im.size
    if width * height > max_pixels:
        im.close()
        raise UserError(f"{path}: image is {width}x{height} pixels, more than the {max_pixels:,} "
                        "this package reads (keras_cnn.fileio.MAX_IMAGE_PIXELS)")
    return im


def image_size(path, max_pixels=None):
    """(width, height) of an image file from its header, without decoding it; checked as `read_image` checks."""
    with _open_image(path, max_pixels or MAX_IMAGE_PIXELS) as im:
        return im.size


def read_image(path, mode="RGB", max_pixels=None):
    """The pixels of an image file: uint8 (H, W, 3) for mode "RGB" (grey files repeated).

    The one image reader of the package. `mode` is a Pillow mode ("RGB",
    "L", or None for the stored values, e.g. a palette PNG's indices).
    Unreadable, truncated or oversized files (more than `MAX_IMAGE_PIXELS`)
    are a one-line `UserError` naming the file.
    """
    import numpy as np

    im = _open_image(path, max_pixels or MAX_IMAGE_PIXELS)
    try:
        with im:
            if mode and im.mode != mode:
                im = im.convert(mode)
            return np.asarray(im).copy()
    except (OSError, SyntaxError, ValueError) as e:
        raise UserError(f"{path}: cannot be decoded as an image ({type(e).__name__})") from None


def check_image_file(path):
    """Returns None if `path` decodes as an image, else a short reason."""
    try:
        with _open_image(path, MAX_IMAGE_PIXELS) as im:
            im.load()
    except UserError as e:
        return str(e).split(": ", 1)[-1]
    except (OSError, SyntaxError, ValueError) as e:
        return f"cannot be decoded as an image ({type(e).__name__})"
    return None


def readable_images(paths, what="image folder"):
    """Drops files that do not decode, warning once per file.

    Checked up front with Pillow because an undecodable file inside a running
    `tf.data` pipeline surfaces as an opaque InvalidArgumentError mid-epoch.
    """
    good = []
    for p in paths:
        reason = check_image_file(p)
        if reason:
            warnings.warn(f"{p}: skipped, {reason}", stacklevel=2)
        else:
            good.append(p)
    if not good:
        folder = os.path.dirname(paths[0]) if paths else "?"
        raise UserError(f"{folder}: no readable images left in the {what}")
    return good
