"""The colour maths, written once for three array namespaces: grey, sRGB <-> CIE Lab (D65), delta E, PSNR.

Every function takes `xp`, the namespace it computes with, chosen by the caller:

- `"keras"` (`keras.ops`): inside a Keras model or evaluation step, on
  whatever backend Keras runs (TensorFlow, JAX, PyTorch);
- `"tensorflow"` (`tf.experimental.numpy`, the default): inside `tf.data`
  pipelines and exported TensorFlow graphs, whatever `KERAS_BACKEND` says
  (there `keras.ops` would make JAX or PyTorch arrays);
- `"numpy"`: plain NumPy, where neither Keras nor TensorFlow is wanted.

The three share `where`, `power`, `tensordot`, `clip`, ... under the same
names; `namespace` fills in the two they spell differently (a cast and
rounding). Images are float RGB in [0, 1], channels last; Lab has L in
[0, 100] and a, b roughly in [-128, 127]. The formulas are those of
`skimage.color.rgb2lab` / `lab2rgb` (tested against it, in all three
namespaces).
"""

import numpy as np

# sRGB (linear) -> XYZ, D65 white, as in skimage. NumPy, not tf.constant: a
# TensorFlow op at import would initialise the runtime, after which neither
# MultiWorkerMirroredStrategy nor logical devices can be set up.
_RGB_TO_XYZ = np.array([[0.412453, 0.357580, 0.180423],
                        [0.212671, 0.715160, 0.072169],
                        [0.019334, 0.119193, 0.950227]], dtype=np.float32)
_XYZ_TO_RGB = np.linalg.inv(_RGB_TO_XYZ.astype(np.float64)).astype(np.float32)
_WHITE_D65 = np.array([0.95047, 1.0, 1.08883], dtype=np.float32)

NAMESPACES = ("keras", "tensorflow", "numpy")
# PSNR of identical images is infinite; every PSNR here is capped at this many dB so means stay finite.
MAX_PSNR = 100.0


class _Namespace:
    """An array module plus `cast(x, dtype)` and `round(x)`, the two names that differ between them."""

    def __init__(self, module, cast, round_):
        self._module = module
        self.cast = cast
        self.round = round_

    def __getattr__(self, name):
        return getattr(self._module, name)


_CACHE = {}


def namespace(xp="tensorflow"):
    """The array namespace for `xp`: "keras", "tensorflow" or "numpy" (or one already made by this function)."""
    if isinstance(xp, _Namespace):
        return xp
    if xp not in _CACHE:
        if xp == "numpy":
            _CACHE[xp] = _Namespace(np, lambda x, dtype: np.asarray(x, dtype), np.round)
        elif xp == "keras":
            from keras import ops

            _CACHE[xp] = _Namespace(ops, ops.cast, ops.round)
        elif xp == "tensorflow":
            import tensorflow as tf

            # tf.experimental.numpy's own `round` needs TensorFlow's global NumPy behaviour switched on.
            _CACHE[xp] = _Namespace(tf.experimental.numpy, tf.cast, tf.round)
        else:
            raise ValueError(f"unknown array namespace {xp!r}; choose one of: {', '.join(NAMESPACES)}")
    return _CACHE[xp]


def grey(images_uint8, xp="tensorflow"):
    """The course's grey input: the plain mean of R, G and B, divided by 256, shape (..., H, W, 1)."""
    xp = namespace(xp)
    return xp.mean(xp.cast(images_uint8, "float32") / 256.0, axis=-1, keepdims=True)


def _linearize(rgb, xp):
    return xp.where(rgb > 0.04045, xp.power((rgb + 0.055) / 1.055, 2.4), rgb / 12.92)


def _gamma(rgb, xp):
    return xp.where(rgb > 0.0031308, 1.055 * xp.power(xp.maximum(rgb, 1e-12), 1 / 2.4) - 0.055, 12.92 * rgb)


def rgb_to_lab(rgb, xp="tensorflow"):
    xp = namespace(xp)
    rgb = xp.cast(rgb, "float32")
    xyz = xp.divide(xp.tensordot(_linearize(rgb, xp), _RGB_TO_XYZ.T, axes=1), _WHITE_D65)
    f = xp.where(xyz > 0.008856, xp.power(xp.maximum(xyz, 1e-12), 1 / 3), 7.787 * xyz + 16 / 116)
    fx, fy, fz = f[..., 0], f[..., 1], f[..., 2]
    return xp.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], axis=-1)


def lab_to_rgb(lab, xp="tensorflow"):
    """Lab -> sRGB in [0, 1] (out-of-gamut colours clipped, as skimage does)."""
    xp = namespace(xp)
    lab = xp.cast(lab, "float32")
    fy = (lab[..., 0] + 16) / 116
    fx = fy + lab[..., 1] / 500
    fz = xp.maximum(fy - lab[..., 2] / 200, 0.0)
    f = xp.stack([fx, fy, fz], axis=-1)
    xyz = xp.multiply(xp.where(f > 0.2068966, xp.power(f, 3.0), (f - 16 / 116) / 7.787), _WHITE_D65)
    rgb = xp.tensordot(xyz, _XYZ_TO_RGB.T, axes=1)
    return xp.clip(_gamma(rgb, xp), 0.0, 1.0)


def delta_e76(lab1, lab2, xp="tensorflow"):
    """CIE76 colour difference per pixel: Euclidean distance in Lab."""
    xp = namespace(xp)
    return xp.sqrt(xp.sum(xp.square(xp.cast(lab1, "float32") - xp.cast(lab2, "float32")), axis=-1))


def psnr(rgb_true, rgb_pred, xp="tensorflow"):
    """PSNR in dB per image (..., H, W, C) -> (...), for images in [0, 1]; at most `MAX_PSNR` (identical images)."""
    xp = namespace(xp)
    mse = xp.mean(xp.square(xp.cast(rgb_true, "float32") - xp.cast(rgb_pred, "float32")), axis=(-3, -2, -1))
    # The floor keeps log10 finite (and NumPy quiet); the cap makes it exactly MAX_PSNR.
    return xp.minimum(-10.0 * xp.log10(xp.maximum(mse, 1e-30)), MAX_PSNR)


def colour_errors(true_uint8, pred_uint8, xp="tensorflow"):
    """(sum of per-pixel delta E, sum of per-image PSNR) of uint8 RGB images (N, H, W, 3)."""
    xp = namespace(xp)
    t = xp.cast(true_uint8, "float32") / 255.0
    p = xp.cast(pred_uint8, "float32") / 255.0
    de = delta_e76(rgb_to_lab(t, xp), rgb_to_lab(p, xp), xp)
    return xp.sum(de), xp.sum(psnr(t, p, xp))
