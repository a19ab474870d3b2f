"""CIFAR-10, one class at a time, from three sources.

- `"archive"`: the official `cifar-10-python.tar.gz` (downloaded and cached,
  md5-checked, safely extracted; batches parsed with a plain-data unpickler);
  train = `data_batch_1..5`, validation = `test_batch`.
- `"tfds"`: tensorflow-datasets `cifar10` (train / test splits).
- `"folder"`: a folder of images of any size (centre-cropped square, resized
  to 32x32), split into train / validation deterministically by seed.

Each source gives uint8 arrays of shape (N, 32, 32, 3); `load_class` returns
them as (train, validation).
"""

import os
import warnings

import numpy as np

from keras_cnn.data import safe_pickle
from keras_cnn.data.downloads import download, safe_extract
from keras_cnn.errors import UserError
from keras_cnn.fileio import list_images, read_image, readable_images

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer",
               "dog", "frog", "horse", "ship", "truck")
IMAGE_SIZE = 32


def class_index(cls):
    """7, "7" and "horse" all name class 7."""
    if isinstance(cls, str) and cls.strip().isdigit():
        cls = int(cls)
    if isinstance(cls, (int, np.integer)):
        if not 0 <= cls < len(CLASS_NAMES):
            raise UserError(f"CIFAR-10 class number {cls} is out of range 0..9")
        return int(cls)
    name = str(cls).strip().lower()
    if name not in CLASS_NAMES:
        raise UserError(f"unknown CIFAR-10 class {cls!r}; choose a number 0..9 or one of: "
                        + ", ".join(CLASS_NAMES))
    return CLASS_NAMES.index(name)


def parse_batch(path):
    """(images uint8 (N, 32, 32, 3), labels int64 (N,)) from one pickled batch file."""
    d = safe_pickle.load(path)
    if not isinstance(d, dict) or b"data" not in d or b"labels" not in d:
        raise UserError(f"{path}: not a CIFAR-10 batch (expected a dict with b'data' and b'labels')")
    data = np.asarray(d[b"data"])
    labels = np.asarray(d[b"labels"], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * IMAGE_SIZE**2 \
            or len(labels) != len(data):
        raise UserError(f"{path}: CIFAR-10 batch has data {data.dtype}{data.shape} and "
                        f"{len(labels)} labels; expected uint8 (N, 3072) and N labels")
    # Each row is the R plane, then G, then B, each 32x32 row-major.
    images = data.reshape(-1, 3, IMAGE_SIZE, IMAGE_SIZE).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def archive_folder(url=CIFAR10_URL, md5=CIFAR10_MD5, cache_dir=None, archive=None):
    """The extracted `cifar-10-batches-py` folder (downloading if needed).

    `archive` is a local `cifar-10-python.tar.gz` to use instead of the URL;
    it is checked against `md5` all the same.
    """
    from keras_cnn.data.downloads import verify

    if archive:
        if not os.path.isfile(archive):
            raise UserError(f"{archive}: archive file does not exist")
        verify(archive, md5)
        path = archive
    else:
        path = download(url, "cifar-10-python.tar.gz", md5, cache_dir, local_flag="--archive")
    # One extraction folder per archive content, so a changed archive is never
    # mixed up with an old extraction.
    dest = safe_extract(path, os.path.join(os.path.dirname(path),
                                           f"cifar-10-python-{(md5 or 'unchecked')[:12]}"))
    folder = os.path.join(dest, "cifar-10-batches-py")
    if not os.path.isdir(folder):
        raise UserError(f"{path}: archive has no cifar-10-batches-py/ folder")
    return folder


def _from_batches(folder, names, cls):
    parts = []
    for name in names:
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            raise UserError(f"{path}: CIFAR-10 batch file missing")
        images, labels = parse_batch(path)
        parts.append(images[labels == cls])
    return np.concatenate(parts)


def load_archive(cls=7, **kwargs):
    folder = archive_folder(**kwargs)
    train = _from_batches(folder, [f"data_batch_{i}" for i in range(1, 6)], cls)
    val = _from_batches(folder, ["test_batch"], cls)
    return train, val


def load_tfds(cls=7, data_dir=None):
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise UserError("source 'tfds' needs tensorflow-datasets (pip install tensorflow-datasets)") from None
    out = []
    for split in ("train", "test"):
        try:
            ds = tfds.load("cifar10", split=split, data_dir=data_dir, as_supervised=True)
        except Exception as e:  # tfds raises many types when offline or missing
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise UserError(f"tensorflow-datasets cifar10 unavailable ({first[:160]}); offline? "
                            "use --source archive --archive FILE or --source folder --data-dir DIR") from None
        ds = ds.filter(lambda image, label: label == cls).map(lambda image, label: image)
        out.append(np.stack(list(ds.as_numpy_iterator())))
    return out[0], out[1]


def load_image(path, size=IMAGE_SIZE):
    """An image file as uint8 (size, size, 3): centre-cropped to a square, then resized."""
    from PIL import Image

    with Image.fromarray(read_image(path)) as im:
        w, h = im.size
        s = min(w, h)
        if (w, h) != (s, s):
            left, top = (w - s) // 2, (h - s) // 2
            im = im.crop((left, top, left + s, top + s))
        if s != size:
            im = im.resize((size, size), Image.Resampling.BICUBIC if s < size else Image.Resampling.BOX)
        return np.asarray(im, dtype=np.uint8)


def split_indices(n, val_fraction, seed):
    """Deterministic (train, validation) index arrays for `n` items."""
    if not 0.0 <= val_fraction < 1.0:
        raise UserError(f"validation fraction must be in [0, 1), got {val_fraction}")
    order = np.random.RandomState(seed).permutation(n)
    n_val = int(round(n * val_fraction))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def load_folder(data_dir, val_fraction=0.1, seed=0):
    paths = readable_images(list_images(data_dir), what="image folder")
    images = np.stack([load_image(p) for p in paths])
    train_idx, val_idx = split_indices(len(images), val_fraction, seed)
    if len(train_idx) == 0:
        raise UserError(f"{data_dir}: too few images ({len(images)}) to train on")
    if len(val_idx) == 0:
        warnings.warn(f"{data_dir}: validation split is empty ({len(images)} images)")
    return images[train_idx], images[val_idx]


def load_class(source="archive", cls=7, data_dir=None, val_fraction=0.1, seed=0,
               url=CIFAR10_URL, md5=CIFAR10_MD5, cache_dir=None, archive=None, max_examples=0):
    """(train, validation) uint8 arrays (N, 32, 32, 3) of one CIFAR-10 class.

    `max_examples` caps the training images only: the validation images stay
    the same, so a shortened run is scored like a full one.
    """
    if source == "folder":
        if not data_dir:
            raise UserError("source 'folder' needs --data-dir DIR")
        train, val = load_folder(data_dir, val_fraction, seed)
    elif source == "archive":
        train, val = load_archive(class_index(cls), url=url, md5=md5, cache_dir=cache_dir, archive=archive)
    elif source == "tfds":
        train, val = load_tfds(class_index(cls), data_dir=data_dir)
    else:
        raise UserError(f"unknown data source {source!r}; choose archive, tfds or folder")
    if max_examples:
        train = train[:max_examples]
    return train, val
