"""The colour palette: K colours that turn colourization into classification.

Two kinds, told apart by their shape:
- **RGB** (K x 3), the course's: k-means centroids of training pixels in RGB,
  in the course's /256 units (a pixel's value is uint8 / 256).
- **ab** (K x 2), Zhang et al.'s: k-means centroids in the a, b plane of CIE
  Lab; the lightness of a decoded pixel comes from the grey input.

Saved as a plain `.npy` (no pickle). Pixel -> class and class -> colour are
written once for every array namespace of `color` (`xp`: "keras" inside a
model or evaluation step on any backend, "tensorflow" inside `tf.data` and
exported graphs, "numpy" elsewhere).

Reference: Zhang, Isola, Efros, "Colorful Image Colorization", ECCV 2016.
"""

import io
import os

import numpy as np

from keras_cnn.colorization import color, palette_values
from keras_cnn.colorization.color import grey  # noqa: F401  (public here: `keras_cnn.colorization.grey`)
from keras_cnn.errors import UserError
from keras_cnn.fileio import atomic_path

ANNEALED_T = 0.38
DECODINGS = ("argmax", "annealed")


class Palette:
    """K palette colours plus the maps from pixels to classes and back.

    Args:
        colours: array (K, 3) of RGB colours in /256 units, or (K, 2) of Lab
            (a, b) pairs.

    Every method takes `xp`, the array namespace to compute with
    (`color.namespace`: "keras", "tensorflow" (the default) or "numpy"), and
    returns arrays of that namespace.
    """

    def __init__(self, colours):
        colours = np.asarray(colours, dtype=np.float32)
        if colours.ndim != 2 or colours.shape[1] not in (2, 3) or colours.shape[0] < 2:
            raise ValueError(f"palette must be (K, 3) RGB or (K, 2) ab with K >= 2, got {colours.shape}")
        if not np.all(np.isfinite(colours)):
            raise ValueError("palette holds non-finite values")
        self.colours = colours
        self.space = "rgb" if colours.shape[1] == 3 else "ab"

    def __len__(self):
        return len(self.colours)

    def _features(self, images_uint8, xp):
        """Per-pixel coordinates in the palette's own space."""
        pixels = xp.cast(images_uint8, "float32")
        if self.space == "rgb":
            return pixels / 256.0
        return color.rgb_to_lab(pixels / 255.0, xp)[..., 1:]

    def labels(self, images_uint8, xp="tensorflow"):
        """The nearest palette colour (Euclidean) of each pixel, int32 (..., H, W)."""
        xp = color.namespace(xp)
        c = self.colours
        # |f - c|^2 = |f|^2 - 2 f.c + |c|^2; |f|^2 is the same for every class.
        scores = xp.tensordot(self._features(images_uint8, xp), c.T, axes=1) * 2.0 - (c * c).sum(-1)
        return xp.cast(xp.argmax(scores, axis=-1), "int32")

    def quantize(self, images_uint8, xp="tensorflow"):
        """Each pixel snapped to its palette colour, as uint8 RGB (the best an argmax can do)."""
        xp = color.namespace(xp)
        colours = xp.take(self.colours, self.labels(images_uint8, xp), axis=0)
        return self.colours_to_rgb(colours, grey(images_uint8, xp), xp)

    def colours_to_rgb(self, colours, grey_input, xp="tensorflow"):
        """Palette-space colours (..., H, W, 3 or 2) + grey input (/256) -> uint8 RGB."""
        xp = color.namespace(xp)
        colours = xp.cast(colours, "float32")
        if self.space == "rgb":
            rgb = colours * (256.0 / 255.0)
        else:
            grey_rgb = xp.repeat(xp.cast(grey_input, "float32") * (256.0 / 255.0), 3, axis=-1)
            lightness = color.rgb_to_lab(grey_rgb, xp)[..., :1]
            rgb = color.lab_to_rgb(xp.concatenate([lightness, colours], axis=-1), xp)
        return xp.cast(xp.round(xp.clip(rgb, 0.0, 1.0) * 255.0), "uint8")

    def decode(self, logits, grey_input, mode="argmax", temperature=ANNEALED_T, xp="tensorflow"):
        """Logits (N, H, W, K) -> uint8 RGB images.

        `mode="argmax"` takes the most likely colour; `mode="annealed"` takes
        the expectation under softmax(log p / T), Zhang's annealed mean: T -> 0
        is the mode, T = 1 the plain mean (desaturated).
        """
        if mode not in DECODINGS:
            raise UserError(f"unknown decoding {mode!r}; choose argmax or annealed")
        if mode == "annealed" and temperature <= 0:
            raise UserError(f"annealed-mean temperature must be > 0, got {temperature}")
        xp = color.namespace(xp)
        logits = xp.cast(logits, "float32")
        if mode == "argmax":
            colours = xp.take(self.colours, xp.argmax(logits, axis=-1), axis=0)
        else:
            # softmax(log p / T) == softmax(logits / T): log p differs from the
            # logits by a per-pixel constant.
            scaled = logits / temperature
            weights = xp.exp(scaled - xp.max(scaled, axis=-1, keepdims=True))
            weights = weights / xp.sum(weights, axis=-1, keepdims=True)
            colours = xp.tensordot(weights, self.colours, axes=1)
        return self.colours_to_rgb(colours, grey_input, xp)

    def class_weights(self, label_counts, lam=0.5, sigma=5.0):
        """Zhang's rebalancing weights, proportional to ((1 - lam) p + lam / K)^-1.

        `p` is the class frequency smoothed with a Gaussian (`sigma`, in the
        palette's own units for RGB x 256, in Lab units for ab) over the
        palette colours; weights are scaled so their expectation under `p` is 1.
        """
        counts = np.asarray(label_counts, dtype=np.float64)
        p = counts / max(counts.sum(), 1.0)
        pts = self.colours * (256.0 if self.space == "rgb" else 1.0)
        d2 = ((pts[:, None, :] - pts[None, :, :]) ** 2).sum(-1)
        kernel = np.exp(-d2 / (2 * sigma**2))
        p = kernel @ p
        p /= p.sum()
        w = 1.0 / ((1 - lam) * p + lam / len(self))
        w /= (w * p).sum()
        return w.astype(np.float32)


def fit_palette(images_uint8, k=24, space="rgb", seed=0, max_pixels=200_000):
    """K-means palette of the pixels of `images_uint8` (uint8 (N, H, W, 3)).

    Deterministic for a seed: the pixels are subsampled and k-means++ seeded
    with it (scipy.cluster.vq.kmeans2, which always returns K centroids).
    Centroids are sorted (by the first coordinate, then the others) so the
    class numbering is stable too.
    """
    from scipy.cluster.vq import kmeans2

    pixels = np.asarray(images_uint8).reshape(-1, 3)
    rng = np.random.RandomState(seed)
    if len(pixels) > max_pixels:
        pixels = pixels[rng.choice(len(pixels), max_pixels, replace=False)]
    if space == "rgb":
        feats = pixels.astype(np.float64) / 256.0
    elif space == "ab":
        feats = color.rgb_to_lab(pixels.astype(np.float32) / 255.0, "numpy")[:, 1:].astype(np.float64)
    else:
        raise UserError(f"unknown palette space {space!r}; choose rgb or ab")
    if len(np.unique(feats, axis=0)) < k:
        raise UserError(f"cannot fit {k} palette colours: the images hold fewer distinct colours")
    centroids, _ = kmeans2(feats, k, iter=30, minit="++", seed=seed)
    order = np.lexsort(centroids.T[::-1])
    return Palette(centroids[order])


def save_palette(path, palette):
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, palette.colours, allow_pickle=False)


NPY_MAGIC = b"\x93NUMPY"
# A palette is a few hundred bytes (24 colours); a bigger file is read no further.
MAX_PALETTE_BYTES = 2**20


def _load_course_format(path, data):
    """The codebook of the course's `(codebook, distortion)` palette file, read with the plain-data unpickler.

    `data` is the file's bytes: the object array `np.save` writes (the course's
    format), or the same pair pickled without the `.npy` wrapper.
    """
    from keras_cnn.data import safe_pickle

    if data.startswith(NPY_MAGIC):
        f = io.BytesIO(data)
        try:
            version = np.lib.format.read_magic(f)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            _, _, dtype = read_header(f)
        except (ValueError, EOFError) as e:
            raise UserError(f"{path}: not a .npy palette (its header: {e})") from None
        if dtype.kind != "O":  # a pickled object array
            raise UserError(f"{path}: not a palette file")
        data = f.read()
    obj = safe_pickle.loads(data, source=path)
    # The pair (a tuple, or the object array np.save makes of it), or the codebook alone.
    pair = obj.tolist() if isinstance(obj, np.ndarray) and obj.dtype.kind == "O" else obj
    is_pair = isinstance(pair, (tuple, list)) and len(pair) == 2 and np.isscalar(pair[1])
    codebook = pair[0] if is_pair else obj
    try:
        return np.asarray(codebook, dtype=np.float32)
    except (TypeError, ValueError):
        raise UserError(f"{path}: the pickle holds a {type(obj).__name__}, not the course's (codebook, distortion) "
                        "pair with a (K, 3) array of colours") from None


def load_palette(path, allow_pickle=False):
    """A `Palette` from a plain `.npy`; the course's pickled format only with `allow_pickle`.

    Whatever the file holds, a file that is not a palette is one `UserError`
    naming it, and so is one whose colours make no sense (out of range, not
    finite, repeated: `palette_values.problem`). Pickles are read only with
    `allow_pickle`, and then with the plain-data unpickler
    (`keras_cnn.data.safe_pickle`), which builds no objects but plain data
    and NumPy arrays, and only so much of them.
    """
    if not os.path.isfile(path):
        raise UserError(f"{path}: palette file does not exist")
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_PALETTE_BYTES + 1)
    except OSError as e:
        raise UserError(f"{path}: cannot read palette ({e.strerror or e})") from None
    if len(data) > MAX_PALETTE_BYTES:
        raise UserError(f"{path}: over {MAX_PALETTE_BYTES // 2**20} MB, not a palette (a few hundred bytes)")
    pickled = data.startswith(b"\x80")  # a pickle of protocol 2 or later, without the .npy wrapper
    if not data.startswith(NPY_MAGIC) and not pickled:
        raise UserError(f"{path}: not a .npy palette (it does not start as a .npy file does)")
    colours = None
    try:
        if not pickled:
            colours = np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as e:
        if "allow_pickle" not in str(e):
            raise UserError(f"{path}: not a .npy palette ({e})") from None
    except EOFError as e:
        raise UserError(f"{path}: not a .npy palette (cut short: {e})") from None
    if colours is None:
        what = ("a pickle, not a .npy file" if pickled else
                "a pickled object array (the course's (codebook, distortion) format)")
        if not allow_pickle:
            raise UserError(f"{path}: palette is {what}; pass --allow-pickle-palette to read it")
        colours = _load_course_format(path, data)
    try:
        palette = Palette(colours)
    except (TypeError, ValueError) as e:  # TypeError: a structured dtype
        raise UserError(f"{path}: {e}") from None
    # A palette that parses can still make no sense (values in 0..255, negated, 24 copies of one colour).
    wrong = palette_values.problem(palette.colours)
    if wrong:
        raise UserError(f"{path}: {wrong}")
    return palette
