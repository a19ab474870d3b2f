"""Atomic file and folder writes, image-file listing, and the one image reader.

Every output of this package is written under a temporary name in the same
folder and renamed into place, so a crash or a bad input never leaves a
half-written file behind that a later run would mistake for a good one.
"""

import contextlib
import errno
import os
import shutil
import stat
import threading
import uuid
import warnings

from keras_cnn.errors import UserError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")

# The largest photo read, in pixels (10,000 x 10,000). A decoded RGB image
# takes 3 bytes a pixel, so this bounds one read at 300 MB; a small file that
# claims more (a decompression bomb) is refused before it is decoded.
MAX_IMAGE_PIXELS = 100_000_000

# The files a training run keeps in its folder (a folder is a run once it holds config.json). No
# command's output may replace one of them, nor anything inside backup/: `--out RUN/config.json`
# would break the run. New files beside them (an evaluation's JSON) are fine.
RUN_FILES = ("config.json", "best.keras", "last.keras", "palette.npy", "history.csv", "metrics.json",
             "time_budget.json", "int8_finetune.json")
RUN_PRIVATE_DIRS = ("backup",)

# The longest file name most file systems take (NAME_MAX, in bytes).
NAME_MAX = 255


def temporary_name(base):
    """`.tmp-<pid>-<random>-<base>`, shortened in the middle of `base` to fit `NAME_MAX` bytes.

    The real suffix stays last (writers such as `model.save` insist on it),
    so a legal 250-byte output name still gets a legal temporary one.
    """
    prefix = f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}-"
    name = prefix + base
    if len(os.fsencode(name)) <= NAME_MAX:
        return name
    dot = base.find(".", max(len(base) - 24, 0))
    head, suffix = (base[:dot], base[dot:]) if dot > 0 else (base, "")
    while head and len(os.fsencode(prefix + head + suffix)) > NAME_MAX:
        head = head[:-1]
    return prefix + head + suffix


def _file_type(mode):
    """What a non-regular file is, in words."""
    for test, words in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                        (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
                        (stat.S_ISDIR, "a folder")):
        if test(mode):
            return words
    return "not a regular file"


def replace_problem(path, folder_ok=False):
    """Why writing a file at `path` must not replace what is there, or None if it may.

    Only a regular file (or a symlink to one) or a missing name may be
    replaced; a FIFO, a device (`/dev/null`), a socket, a symlink to one of
    them or to nothing is never replaced (renaming over `/dev/null` as root
    would replace the system's). `folder_ok`: a folder may be replaced by a
    folder (export builds).
    """
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        return f"cannot be looked at ({e.strerror})"
    link = stat.S_ISLNK(st.st_mode)
    if link:
        try:
            st = os.stat(path)
        except OSError as e:
            if e.errno == errno.ELOOP:
                return "is a symlink loop"
            return "is a symlink to nothing" if isinstance(e, FileNotFoundError) else \
                f"is a symlink that cannot be followed ({e.strerror})"
    if stat.S_ISREG(st.st_mode) or (folder_ok and stat.S_ISDIR(st.st_mode)):
        return None
    what = _file_type(st.st_mode)
    return f"is {'a symlink to ' if link else ''}{what}; only a regular file is ever replaced"


def run_folder_of(path):
    """The run folder (a folder holding config.json) whose own file `path` is, else None.

    Own files: `RUN_FILES` in the run folder, and anything inside its `backup/`.
    """
    path = os.path.abspath(path)
    parent, name = os.path.split(path)
    if name in RUN_FILES and os.path.isfile(os.path.join(parent, "config.json")):
        return parent
    folder = parent
    while True:
        up, here = os.path.split(folder)
        if here in RUN_PRIVATE_DIRS and os.path.isfile(os.path.join(up, "config.json")):
            return up
        if up == folder:
            return None
        folder = up


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
    problem = replace_problem(path, folder_ok=True)
    if problem:
        raise UserError(f"{path}: {problem}; not writing over it")
    base = os.path.basename(path)
    # Keep the real suffix last: writers such as `model.save` insist on it.
    tmp = os.path.join(parent, temporary_name(base))
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
        problem = replace_problem(path, folder_ok=True)
        if problem:  # it appeared while the body ran
            raise UserError(f"{path}: {problem}; not writing over it")
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


def missing_reason(path, kind="file"):
    """Why `path`, which cannot be opened, is not there: "no such file", or the symlink problem it is."""
    try:
        os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "is a symlink loop (it points, through links, back at itself)"
        if os.path.islink(path):
            return f"is a symlink to {os.readlink(path)}, which does not exist"
        if e.errno == errno.EACCES:
            return "cannot be looked at (permission denied)"
    return f"no such {kind}"


def check_input(path, what, kind="file"):
    """`path` (given as `what`, e.g. "--data-dir") exists as a `kind`, else a `UserError`.

    `kind`: "file", "folder", or "file or folder".
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise UserError(f"{what} {path}: {missing_reason(path, kind)}")
    if kind == "folder" and not os.path.isdir(path):
        raise UserError(f"{what} {path}: not a folder")
    if kind == "file" and os.path.isdir(path):
        raise UserError(f"{what} {path}: is a folder, not a file")


def _same_file(a, b):
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def _inside(path, folder):
    """Whether `path` is somewhere inside `folder` (symlinks followed)."""
    real, top = os.path.realpath(path), os.path.realpath(folder)
    return real.startswith(top.rstrip(os.sep) + os.sep)


def check_output(path, what, kind="file", inputs=()):
    """`path` can be written as a `kind` ("file" or "folder"), else a `UserError` naming `what`.

    Commands call this before any work, so a typo in an output path costs a
    second, not an hour of training. Missing parent folders are fine (they
    are made when the output is written); the nearest existing one must be a
    writable folder. Nothing is created here.

    The one output rule of every command: an output file never replaces
    one of the call's `inputs` (files, or an image inside an input folder), a file of a run folder
    (`run_folder_of`), or anything that is not a regular file
    (`replace_problem`: a FIFO, a device, a symlink to one).
    """
    path = os.fspath(path)
    if not path:
        raise UserError(f"{what}: empty path")
    try:
        os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise UserError(f"{what} {path}: is a symlink loop") from None
    if os.path.exists(path):
        if kind == "folder" and not os.path.isdir(path):
            raise UserError(f"{what} {path}: exists and is not a folder")
        if kind == "file" and os.path.isdir(path):
            raise UserError(f"{what} {path}: is a folder, not a file")
    if kind == "file" and os.path.lexists(path):
        run = run_folder_of(path)
        if run:
            raise UserError(f"{what} {path}: is a file of the run folder {run}; writing over it would "
                            "break the run, so write the output elsewhere")
        for source in inputs:
            if source and _same_file(path, source):
                raise UserError(f"{what} {path}: is an input of this command ({source}); "
                                "write the output elsewhere")
            if source and os.path.isdir(source) and _inside(path, source) \
                    and path.lower().endswith(IMAGE_EXTENSIONS):
                raise UserError(f"{what} {path}: is an input of this command (an image of {source}); "
                                "write the output elsewhere")
        problem = replace_problem(path)
        if problem:
            raise UserError(f"{what} {path}: {problem}; not writing over it")
    ancestor = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(ancestor):
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        raise UserError(f"{what} {path}: {ancestor} is a file, not a folder")
    target = path if kind == "folder" and os.path.isdir(path) else ancestor
    if not os.access(target, os.W_OK | os.X_OK):
        raise UserError(f"{what} {path}: {target} is not writable")


def output_paths(inputs, out_dir, suffixes, what="--out-dir"):
    """The files a command writes for each of its input files: `[[out_dir/STEM_SUFFIX.png, ...], ...]`.

    The plan of a call, made before any work: every output passes
    `check_output` (never an input of the call, a run folder's file or
    anything but a regular file), and two inputs that would write the same
    output name (`a/x.jpg` and `b/x.jpg`, or `x.jpg` and `x.png`) are refused
    with a line naming both, rather than one result silently replacing the
    other: the user picks which to keep, or runs them in two calls with two
    output folders.
    """
    plans, owner = [], {}
    for source in inputs:
        stem = os.path.splitext(os.path.basename(source))[0]
        outs = [os.path.join(out_dir, f"{stem}_{suffix}.png") for suffix in suffixes]
        for out in outs:
            key = os.path.normcase(os.path.abspath(out))
            if key in owner:
                raise UserError(f"{owner[key]} and {source} would both be written as {out}; pass them in "
                                f"separate calls with different {what}, or rename one")
            owner[key] = source
            check_output(out, what, "file", inputs)
        plans.append(outs)
    return plans


def image_inputs(paths, what="--input"):
    """The image files named by `paths` (files, and folders read with `list_images`), in order."""
    files = []
    for p in paths:
        if os.path.isdir(p):
            files += list_images(p, "input folder")
        elif not os.path.exists(p):
            check_input(p, what, "file or folder")
            raise UserError(f"{what} {p}: no such file or folder")
        elif not p.lower().endswith(IMAGE_EXTENSIONS):
            raise UserError(f"{p}: not an image file ({', '.join(IMAGE_EXTENSIONS)})")
        else:
            files.append(p)
    return files


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


# Held while Pillow's global pixel limit is lifted to read a refused file's size.
_PILLOW_LIMIT_LOCK = threading.Lock()


def _bomb_size(path):
    """(width, height) from the header of a file Pillow refused as a decompression bomb."""
    from PIL import Image

    with _PILLOW_LIMIT_LOCK:
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            with Image.open(path) as im:
                return im.size
        except Exception:  # noqa: BLE001 (only the size was wanted)
            return None
        finally:
            Image.MAX_IMAGE_PIXELS = saved


@contextlib.contextmanager
def _pillow_limits_are_ours():
    """Pillow's own pixel limit (a warning above 89 M pixels, an error above 179 M) is silenced: this
    package checks `MAX_IMAGE_PIXELS` itself and says so in its own line."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield


def _too_big(path, width, height, max_pixels):
    return UserError(f"{path}: image is {width}x{height} pixels, more than the {max_pixels:,} "
                     "this package reads (keras_cnn.fileio.MAX_IMAGE_PIXELS)")


def _open_image(path, max_pixels):
    """`PIL.Image` of `path`, size-checked before decoding, or a `UserError` naming the file."""
    from PIL import Image, UnidentifiedImageError

    try:
        with _pillow_limits_are_ours():
            im = Image.open(path)
    except FileNotFoundError:
        raise UserError(f"{path}: {missing_reason(path)}") from None
    except Image.DecompressionBombError:
        size = _bomb_size(path)
        if size:
            raise _too_big(path, *size, max_pixels) from None
        raise UserError(f"{path}: image is more than the {max_pixels:,} pixels this package reads "
                        "(keras_cnn.fileio.MAX_IMAGE_PIXELS)") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise UserError(f"{path}: {missing_reason(path)}") from None
        raise UserError(f"{path}: cannot be decoded as an image ({type(e).__name__})") from None
    except (UnidentifiedImageError, SyntaxError, ValueError) as e:
        raise UserError(f"{path}: cannot be decoded as an image ({type(e).__name__})") from None
    width, height = im.size
    if width * height > max_pixels:
        im.close()
        raise _too_big(path, width, height, max_pixels)
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
        with im, _pillow_limits_are_ours():
            if mode and im.mode in _WIDE_MODES:
                im = _wide_to_8bit(im, path)
            if mode and im.mode != mode:
                im = im.convert(mode)
            return np.asarray(im).copy()
    except (OSError, SyntaxError, ValueError) as e:
        if isinstance(e, UserError):
            raise
        raise UserError(f"{path}: cannot be decoded as an image ({type(e).__name__})") from None


def as_photos(images, what="images"):
    """`(batch, single)`: `images` as uint8 RGB photos (N, H, W, 3), and whether one photo was given.

    What the Python API's predict functions take: one photo (H, W, 3), a
    batch (N, H, W, 3) or a list of same-size photos, with values 0..255
    (uint8, or numbers that round to them); or the path of an image file
    (str or `os.PathLike`), read with `read_image` as one photo. Anything
    else (a grey (H, W) array, RGBA, an empty image, values outside 0..255)
    is a one-line `UserError` saying what was given and what to do.
    """
    import numpy as np

    if isinstance(images, (str, bytes, os.PathLike)):
        return read_image(images)[None], True
    try:
        a = np.asarray(images)
    except ValueError:  # a nested list of photos of different sizes (a plain list is `photos_one_by_one`'s)
        raise UserError(f"{what}: photos of different sizes do not make one array; pass them as a list "
                        "of (H, W, 3) photos") from None
    if a.dtype.kind not in "uifb":
        raise UserError(f"{what} must be numbers (uint8 RGB 0..255), got an array of {a.dtype}")
    if a.ndim == 2:
        raise UserError(f"{what} has shape {a.shape}, one grey image; photos are RGB, (H, W, 3) or (N, H, W, 3) "
                        "(a grey one as RGB: np.repeat(image[..., None], 3, axis=-1))")
    if a.ndim not in (3, 4) or a.shape[-1] != 3:
        hint = " (RGBA: drop the alpha channel, image[..., :3])" if a.ndim in (3, 4) and a.shape[-1] == 4 else ""
        raise UserError(f"{what} must be RGB photos, (H, W, 3) or (N, H, W, 3), got shape {a.shape}{hint}")
    if 0 in a.shape:
        raise UserError(f"{what} has shape {a.shape}: " + ("no photos" if a.ndim == 4 and not len(a)
                                                           else "an image of 0 pixels"))
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise UserError(f"{what} holds NaN or infinite values")
    low, high = a.min(), a.max()
    if low < 0 or high > 255:
        raise UserError(f"{what} must hold values 0..255, got {low:g}..{high:g}")
    if a.dtype != np.uint8:
        a = np.rint(a).astype(np.uint8) if a.dtype.kind == "f" else a.astype(np.uint8)
    return (a if a.ndim == 4 else a[None]), a.ndim == 3


def photos_one_by_one(images):
    """A list or tuple of photos to take one at a time (different sizes, or paths), as a list; else None.

    The Python API's predict functions give such a list back as a list, each
    result at its own photo's size: `run.predict([small, big])` or
    `run.predict(["a.jpg", "b.png"])`. Photos of one size in a list stay one
    batch (an array back), as before.
    """
    import numpy as np

    if not isinstance(images, (list, tuple)) or not images:
        return None
    if any(isinstance(i, (str, bytes, os.PathLike)) for i in images):
        return list(images)
    return list(images) if len({np.shape(i) for i in images}) > 1 else None


def check_photos(images, what="images"):
    """`images` as `as_photos` checks them, in the shape given: (H, W, 3) for one photo or a path, else (N, H, W, 3)."""
    batch, single = as_photos(images, what)
    return batch[0] if single else batch


def check_image_file(path):
    """Returns None if `path` decodes as an image, else a short reason."""
    try:
        with _open_image(path, MAX_IMAGE_PIXELS) as im, _pillow_limits_are_ours():
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
