"""CIFAR-10, one class at a time, from three sources.

- `"archive"`: the official `cifar-10-python.tar.gz` (downloaded and cached,
  md5-checked, safely extracted; batches parsed with a plain-data unpickler);
  train = `data_batch_1..5`, validation = `test_batch`.
- `"tfds"`: tensorflow-datasets `cifar10` (train / test splits).
- `"folder"`: a folder of images of any size (centre-cropped square, resized
  to 32x32), split into train / validation deterministically by seed; or,
  with `classes`, a one-folder-per-class tree (`airplane/`, ..., `horse/`,
  the `keras.utils.image_dataset_from_directory` layout), split class by
  class.

Each source gives uint8 arrays of shape (N, 32, 32, 3); `load_class` returns
them as (train, validation).
"""

import os
import warnings

import numpy as np

from keras_cnn.data import safe_pickle
from keras_cnn.data.downloads import download, safe_extract
from keras_cnn.errors import UserError
from keras_cnn.fileio import IMAGE_EXTENSIONS, list_images, read_image, readable_images

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
    # An archive without the class would fail later, fitting a palette to no pixels.
    for images, which in ((train, "training batches (data_batch_1..5)"), (val, "test batch (test_batch)")):
        if len(images) == 0:
            raise UserError(f"{kwargs.get('archive') or kwargs.get('url') or CIFAR10_URL}: its {which} hold no "
                            f"images of class {cls} ({CLASS_NAMES[cls]}); pick another --cifar-class, or "
                            "another --archive")
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
                            "use --dataset archive --archive FILE or --dataset folder --data-dir DIR") from None
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


def _split_folder(folder, val_fraction, seed):
    """(train, validation) images of one folder, split by `split_indices` over its sorted file names."""
    paths = readable_images(list_images(folder), what="image folder")
    images = np.stack([load_image(p) for p in paths])
    train_idx, val_idx = split_indices(len(images), val_fraction, seed)
    return images[train_idx], images[val_idx]


def class_folders(data_dir):
    """The sorted names of the sub-folders of `data_dir` (hidden ones left out): its classes."""
    return sorted(n for n in os.listdir(data_dir)
                  if not n.startswith(".") and os.path.isdir(os.path.join(data_dir, n)))


def resolve_classes(data_dir, classes):
    """The class folder names `classes` ("all", or "horse,deer") picks in `data_dir`, in folder order."""
    if not os.path.isdir(data_dir):
        raise UserError(f"{data_dir}: image folder does not exist or is not a folder")
    existing = class_folders(data_dir)
    if not existing:
        raise UserError(f"{data_dir}: has no class folders (one sub-folder of images per class); "
                        "for a folder of images leave --classes empty")
    wanted = [c.strip() for c in classes.split(",")]
    if "all" in wanted:
        return tuple(existing)
    unknown = [c for c in wanted if c not in existing]
    if unknown:
        raise UserError(f"{data_dir}: no class folder {', '.join(map(repr, unknown))}; it has: "
                        + ", ".join(existing))
    return tuple(c for c in existing if c in wanted)


def _interleave(parts):
    """The arrays of `parts` merged one item of each in turn (0th of each part, then 1st, ...).

    Training shuffles anyway; the order matters for what takes the first images
    (`max_examples`, the per-epoch strip), which then holds every class.
    """
    position = np.concatenate([np.arange(len(p)) for p in parts])
    part = np.concatenate([np.full(len(p), i) for i, p in enumerate(parts)])
    return np.concatenate(parts)[np.lexsort((part, position))]


def load_folder(data_dir, val_fraction=0.1, seed=0, classes=""):
    """(train, validation) images of a folder of images, or of the `classes` folders of a class tree.

    The split is made per class folder, over its sorted file names with the
    same seed, so a class's validation images do not depend on which other
    classes are read, and `horse/` of a class tree splits exactly as the same
    files in a folder of their own.
    """
    if classes:
        names = resolve_classes(data_dir, classes)
        splits = [_split_folder(os.path.join(data_dir, n), val_fraction, seed) for n in names]
        train, val = _interleave([t for t, _ in splits]), _interleave([v for _, v in splits])
    else:
        _refuse_class_tree(data_dir)
        train, val = _split_folder(data_dir, val_fraction, seed)
    if len(train) == 0:
        raise UserError(f"{data_dir}: too few images ({len(train) + len(val)}) to train on")
    if len(val) == 0:
        warnings.warn(f"{data_dir}: validation split is empty ({len(train)} images)")
    return train, val


def _refuse_class_tree(data_dir):
    """A class tree read as a folder of images would say "no image files"; say what to pass instead."""
    if not os.path.isdir(data_dir) or any(n.lower().endswith(IMAGE_EXTENSIONS) for n in os.listdir(data_dir)):
        return
    names = class_folders(data_dir)
    if names:
        raise UserError(f"{data_dir}: holds class folders ({', '.join(names)}), not images; "
                        "pass --classes all or --classes NAME[,NAME...]")


def load_class(source="archive", cls=7, data_dir=None, val_fraction=0.1, seed=0,
               url=CIFAR10_URL, md5=CIFAR10_MD5, cache_dir=None, archive=None, max_examples=0, classes=""):
    """(train, validation) uint8 arrays (N, 32, 32, 3) of one CIFAR-10 class.

    `classes` ("all", "horse", "horse,deer") reads those class folders of a
    folder source's class tree instead (`load_folder`).
    `max_examples` caps the training images only: the validation images stay
    the same, so a shortened run is scored like a full one.
    """
    if classes and source != "folder":
        raise UserError(f"classes {classes!r} pick class folders of --dataset folder; "
                        f"source {source!r} reads one class (--cifar-class)")
    if source == "folder":
        if not data_dir:
            raise UserError("source 'folder' needs --data-dir DIR")
        train, val = load_folder(data_dir, val_fraction, seed, classes)
    elif source == "archive":
        train, val = load_archive(class_index(cls), url=url, md5=md5, cache_dir=cache_dir, archive=archive)
    elif source == "tfds":
        train, val = load_tfds(class_index(cls), data_dir=data_dir)
    else:
        raise UserError(f"unknown data source {source!r}; choose archive, tfds or folder")
    if max_examples:
        train = train[:max_examples]
    return train, val
