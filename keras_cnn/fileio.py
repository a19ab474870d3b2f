"""Atomic file and folder writes, image-file listing, and the one image reader.

Every output of this package is written under a temporary name in the same
folder and renamed into place, so a crash or a bad input never leaves a
half-written file behind that a later run would mistake for a good one.
"""

import contextlib
import errno
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
        try:
            yield tmp
        except OSError as e:
            # A write deep inside a library (h5py, zipfile, f.write) names no file, or names the
            # temporary one: the error names the output instead.
            named = named_os_error(e, path, tmp, unnamed=True)
            if named is e:
                raise
            raise named from e
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


def named_os_error(e, path, tmp=None, unnamed=False):
    """`e`, an `OSError`, as one that names the file the user knows; `e` itself if it already does.

    A file name inside the temporary `tmp` (of `atomic_path`, or a folder
    built beside its target) becomes the same name inside `path`; with
    `unnamed`, an error that names no file (a failed `write()`) names `path`.
    A full disk reported only in the message (h5py: "errno = 28, error
    message = 'No space left on device'") gets its errno, so that
    `keras_cnn.cli` words it as a full disk.
    """
    filename = e.filename if e.filename is None else os.fspath(e.filename)
    if tmp and isinstance(filename, str) and (filename == tmp or filename.startswith(tmp + os.sep)):
        filename = os.path.join(path, filename[len(tmp) + 1:]) if filename != tmp else path
    elif filename is None and unnamed:
        filename = path
    code = e.errno
    if code is None and "No space left on device" in str(e):
        code = errno.ENOSPC
    if filename == e.filename and code == e.errno:
        return e
    # OSError(errno, ...) gives the subclass of that errno (FileNotFoundError...).
    return OSError(code, e.strerror or (os.strerror(code) if code else " ".join(str(e).split())), filename,
                   None, e.filename2)


def atomic_write_bytes(path, data):
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def atomic_write_text(path, text):
    atomic_write_bytes(path, text.encode("utf-8"))


def read_json(path, what="JSON file"):
    """The parsed content of a JSON file, or a one-line `UserError` naming it (`state_files.read_json`)."""
    from keras_cnn import state_files

    return state_files.read_json(path, what)


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


def _wide_to_8bit(im, path):
    """A grey image of more than 8 bits a pixel (Pillow modes I;16*, I, F) as 8-bit "L", scaled.

    Pillow's own `convert` clips these at 255, so a 16-bit PNG (values up to
    65535) came out all white. Scaled instead:

    - I;16 (16-bit PNG and TIFF): the high byte, v // 256, as Pillow (and
      libpng) read 16-bit colour PNGs, so grey and colour files agree;
    - I (32-bit integers): the same when every value is in 0..65535 (how
      16-bit files are often decoded), else min..max -> 0..255;
    - F (32-bit floats): values in 0..1 -> 0..255, values in 0..255 kept,
      anything else min..max -> 0..255; NaN or infinity is a `UserError`.
    """
    import numpy as np
    from PIL import Image

    values = np.asarray(im)
    if values.size == 0:
        return Image.fromarray(values.astype(np.uint8), "L")
    if im.mode == "F":
        values = values.astype(np.float64)
        if not np.isfinite(values).all():
            raise UserError(f"{path}: floating-point image holds NaN or infinite values")
        low, high = float(values.min()), float(values.max())
        if low >= 0 and high <= 1:
            values = values * 255
        elif low < 0 or high > 255:
            values = (values - low) * (255 / (high - low) if high > low else 0)
        return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), "L")
    low, high = int(values.min()), int(values.max())
    if im.mode == "I" and (low < 0 or high > 65535):
        scaled = (values.astype(np.int64) - low) * 255 // max(high - low, 1)
    else:
        scaled = values >> 8  # 16 bits -> 8, in the file's own integer type (no 8-byte copy)
    return Image.fromarray(scaled.astype(np.uint8), "L")


# Pillow modes of more than 8 bits a channel: read through `_wide_to_8bit`.
_WIDE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


def read_image(path, mode="RGB", max_pixels=None):
    """The pixels of an image file: uint8 (H, W, 3) for mode "RGB" (grey files repeated).

    The one image reader of the package. `mode` is a Pillow mode ("RGB",
    "L", or None for the stored values, e.g. a palette PNG's indices).
    Grey images of 16 or 32 bits a pixel are scaled to 8 bits (see
    `_wide_to_8bit`), not clipped; 16-bit colour PNGs are read by Pillow at 8
    bits a channel. Unreadable, truncated or oversized files (more than
    `MAX_IMAGE_PIXELS`) are a one-line `UserError` naming the file.
    """
    import numpy as np

    im = _open_image(path, max_pixels or MAX_IMAGE_PIXELS)
    try:
        with im:
            if mode and im.mode in _WIDE_MODES:
                im = _wide_to_8bit(im, path)
            if mode and im.mode != mode:
                im = im.convert(mode)
            return np.asarray(im).copy()
    except (OSError, SyntaxError, ValueError) as e:
        if isinstance(e, UserError):
            raise
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
