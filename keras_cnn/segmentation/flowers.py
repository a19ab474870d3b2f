"""Oxford 17 Flowers with its segmentation trimaps (the course's fine-tuning data).

Three files from https://www.robots.ox.ac.uk/~vgg/data/flowers/17/:

    17flowers.tgz   jpg/image_0001.jpg ... jpg/image_1360.jpg (+ jpg/files.txt)
    trimaps.tgz     trimaps/image_XXXX.png for 848 of the photos (+ imlist.mat)
    datasplits.mat  MATLAB index vectors trn1..3, val1..3, tst1..3 (1-based
                    image numbers)

They are downloaded once with `keras.utils.get_file` (cached, checksum
verified) and extracted with `keras_cnn.data.downloads.safe_extract`, which
refuses members escaping the folder. A `data_dir` that already holds `jpg/`,
`trimaps/` and `datasplits.mat` is read in place, with no download.

Only photos with a trimap are used. A trimap pixel is flower (class 1) when
it is exactly (128, 0, 0); with `ignore_unlabelled`, pixels of any colour
that is neither flower nor a labelled background colour (black by default)
get `IGNORE_LABEL` and are left out of the loss and the metrics; otherwise
everything that is not flower is background, as in the assignment.

Splits: `split=0` is the assignment's: train = trn1 + trn2 + trn3,
validation = val1, test = tst1. Those three training lists are three
*different* random partitions, so their union contains most of val1 (the
loader reports how many). `split=1..3` is the dataset's own clean split N:
trnN / valN / tstN.
"""

import collections
import os
import warnings

import numpy as np

from keras_cnn.data import downloads
from keras_cnn.errors import UserError
from keras_cnn.fileio import read_image
from keras_cnn.segmentation.metrics import IGNORE_LABEL

URL = "https://www.robots.ox.ac.uk/~vgg/data/flowers/17/"
# md5 of the files as served by VGG (as also pinned by torchvision-style
# loaders). No checksum is published for trimaps.tgz: it is checked by its
# size and contents instead; pin one with `flowers_hashes` if you have it.
MD5 = {
    "17flowers.tgz": "b59a65d8d1a99cd66944d474e1289eab",
    "trimaps.tgz": None,
    "datasplits.mat": "4828cddfd0d803c5abbdebcb1e148a1e",
}
SIZES = {"trimaps.tgz": 3_915_787}
FOREGROUND = (128, 0, 0)
SPLIT_KEYS = [f"{kind}{n}" for kind in ("trn", "val", "tst") for n in (1, 2, 3)]


def parse_hashes(text):
    """'name=hash,name=hash' -> dict; names must be the three Oxford 17 files."""
    out = {}
    for item in filter(None, (t.strip() for t in (text or "").split(","))):
        name, sep, value = item.partition("=")
        if not sep or name not in MD5 or len(value) not in (32, 64):
            raise UserError(f"flowers_hashes item {item!r} is not FILE=md5_or_sha256 "
                            f"with FILE one of {', '.join(MD5)}")
        out[name] = value.lower()
    return out


def parse_colours(text):
    """'r,g,b;r,g,b' -> list of (r, g, b) tuples."""
    colours = []
    for item in filter(None, (t.strip() for t in (text or "").split(";"))):
        try:
            rgb = tuple(int(v) for v in item.split(","))
        except ValueError:
            rgb = ()
        if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
            raise UserError(f"trimap colour {item!r} is not 'r,g,b' with values 0-255")
        colours.append(rgb)
    return colours


class TrimapDecoder:
    """Trimap PNG (palette or RGB) -> labels: 1 flower, 0 background, 255 unlabelled.

    Args:
        ignore_unlabelled: give pixels that are neither flower nor a
            `background` colour the ignore label; False makes them background.
        background: colours that are labelled background.
    """

    def __init__(self, ignore_unlabelled=False, background=((0, 0, 0),)):
        self.ignore_unlabelled = ignore_unlabelled
        self.background = [tuple(c) for c in background]

    def __call__(self, path):
        rgb = read_image(path)
        flower = np.all(rgb == FOREGROUND, axis=-1)
        labels = flower.astype(np.uint8)
        if self.ignore_unlabelled:
            labelled = flower.copy()
            for colour in self.background:
                labelled |= np.all(rgb == colour, axis=-1)
            labels[~labelled] = IGNORE_LABEL
        return labels


def read_splits(path):
    """The nine index vectors of `datasplits.mat` as lists of ints."""
    from scipy.io import loadmat

    try:
        mat = loadmat(path)
    except Exception as e:  # scipy raises ValueError, TypeError, MatReadError...
        raise UserError(f"{path}: not a readable MATLAB file ({type(e).__name__}: {str(e)[:120]})") from None
    missing = [k for k in SPLIT_KEYS if k not in mat]
    if missing:
        raise UserError(f"{path}: missing key(s) {', '.join(missing)}; expected the Oxford 17 "
                        "datasplits.mat with trn1..3, val1..3, tst1..3")
    splits = {}
    for key in SPLIT_KEYS:
        values = np.asarray(mat[key]).ravel()
        if values.size == 0 or not np.all(np.isfinite(values)) or np.any(values != np.round(values)) \
                or values.min() < 1:
            raise UserError(f"{path}: {key} does not hold 1-based image numbers")
        splits[key] = [int(v) for v in values]
    return splits


# Where the photos, the trimaps and the split file are.
Flowers17Files = collections.namedtuple("Flowers17Files", "jpg trimaps splits")


def local_files(root):
    """The files of an already extracted copy in `root`, or None."""
    files = Flowers17Files(*(os.path.join(root, p) for p in ("jpg", "trimaps", "datasplits.mat")))
    return files if all(os.path.exists(p) for p in files) else None


def fetch(cache_dir=None, url=URL, hashes=None):
    """Downloads (once) and extracts the three files; returns their `Flowers17Files`.

    Files go to `<cache_dir>/datasets/` (default `~/.keras/datasets/`), the
    archives are extracted beside them. `hashes` overrides the expected
    md5/sha256 per file name.
    """
    expected = dict(MD5)
    expected.update(hashes or {})
    base = url if url.endswith("/") else url + "/"
    paths = {}
    for name, file_hash in expected.items():
        paths[name] = downloads.download(base + name, name, file_hash, cache_dir, local_flag="--data-dir")
        if file_hash is None and name in SIZES and os.path.getsize(paths[name]) != SIZES[name]:
            size = os.path.getsize(paths[name])
            os.remove(paths[name])
            raise UserError(f"{base + name}: {size} bytes, expected {SIZES[name]}; the download is "
                            f"corrupt or another file (pin its checksum with --flowers-hashes {name}=...)")
    folders = {}
    for archive, inner in (("17flowers.tgz", "jpg"), ("trimaps.tgz", "trimaps")):
        # One folder per archive content: a re-downloaded archive is never
        # mistaken for the one an older folder was extracted from.
        digest = downloads.file_digest(paths[archive], "md5")[:12]
        dest = os.path.join(os.path.dirname(paths[archive]), f"{archive[:-4]}-{digest}")
        folder = os.path.join(downloads.safe_extract(paths[archive], dest), inner)
        if not os.path.isdir(folder):
            raise UserError(f"{paths[archive]}: archive has no {inner}/ folder; not the Oxford 17 {archive}")
        folders[inner] = folder
    return Flowers17Files(folders["jpg"], folders["trimaps"], paths["datasplits.mat"])


def flowers17_pairs(files, split=0):
    """`{"train", "validation", "test"}` -> `(photo, trimap)` pairs of the split.

    A trimap whose photo is missing is an error naming the trimap; photos
    without a trimap are simply not used.
    """
    jpg, trimaps = files.jpg, files.trimaps
    available = {}
    for name in sorted(os.listdir(trimaps)):
        if not name.lower().endswith(".png"):
            continue
        stem = name[:-4]
        photo = os.path.join(jpg, stem + ".jpg")
        if not os.path.exists(photo):
            raise UserError(f"{os.path.join(trimaps, name)}: trimap has no photo (expected {photo})")
        try:
            number = int(stem.split("_")[-1])
        except ValueError:
            raise UserError(f"{os.path.join(trimaps, name)}: trimap name is not image_NNNN.png") from None
        available[number] = (photo, os.path.join(trimaps, name))
    if not available:
        raise UserError(f"{trimaps}: no trimap PNGs")
    index = read_splits(files.splits)
    if split == 0:
        wanted = {"train": index["trn1"] + index["trn2"] + index["trn3"],
                  "validation": index["val1"], "test": index["tst1"]}
    elif split in (1, 2, 3):
        wanted = {"train": index[f"trn{split}"], "validation": index[f"val{split}"],
                  "test": index[f"tst{split}"]}
    else:
        raise UserError(f"Oxford 17 split must be 0 (the assignment's), 1, 2 or 3; got {split}")
    # sorted(set(...)): the union of three partitions repeats images.
    pairs = {k: [available[i] for i in sorted(set(v)) if i in available] for k, v in wanted.items()}
    overlap = len(set(p[0] for p in pairs["train"]) & set(p[0] for p in pairs["validation"]))
    if overlap:
        warnings.warn(f"Oxford 17 split {split}: {overlap} of {len(pairs['validation'])} validation "
                      "images are also training images (the assignment's trn1+trn2+trn3 vs val1); "
                      "use flowers_split 1-3 for a clean split", stacklevel=2)
    return pairs


def load_flowers17(cfg):
    """(pairs per split, `TrimapDecoder`) for a `SegmentationConfig`."""
    files = local_files(cfg.data_dir) if cfg.data_dir else None
    if files is None:
        files = fetch(cache_dir=cfg.data_dir or None, url=cfg.flowers_url,
                      hashes=parse_hashes(cfg.flowers_hashes))
    decoder = TrimapDecoder(cfg.ignore_unlabelled, parse_colours(cfg.trimap_background))
    return flowers17_pairs(files, cfg.flowers_split), decoder
