"""sRGB <-> CIE Lab (D65) in TensorFlow, so it can live inside exported graphs.

Images are float RGB in [0, 1], channels last; Lab has L in [0, 100] and a, b
roughly in [-128, 127]. The formulas are those of `skimage.color.rgb2lab` /
`lab2rgb` (tested against it).
"""

import numpy as np
import tensorflow as tf

# sRGB (linear) -> XYZ, D65 white, as in skimage. NumPy, not tf.constant: a
# TensorFlow op at import would initialise the runtime, after which neither
# MultiWorkerMirroredStrategy nor logical devices can be set up.
_RGB_TO_XYZ = np.array([[0.412453, 0.357580, 0.180423],
                        [0.212671, 0.715160, 0.072169],
                        [0.019334, 0.119193, 0.950227]], dtype=np.float32)
_WHITE_D65 = np.array([0.95047, 1.0, 1.08883], dtype=np.float32)


def _linearize(rgb):
    return tf.where(rgb > 0.04045, tf.pow((rgb + 0.055) / 1.055, 2.4), rgb / 12.92)


def _gamma(rgb):
    return tf.where(rgb > 0.0031308, 1.055 * tf.pow(tf.maximum(rgb, 1e-12), 1 / 2.4) - 0.055,
                    12.92 * rgb)


def rgb_to_lab(rgb):
    rgb = tf.convert_to_tensor(rgb, tf.float32)
    xyz = tf.tensordot(_linearize(rgb), tf.transpose(_RGB_TO_XYZ), axes=1) / _WHITE_D65
    f = tf.where(xyz > 0.008856, tf.pow(tf.maximum(xyz, 1e-12), 1 / 3), 7.787 * xyz + 16 / 116)
    fx, fy, fz = tf.unstack(f, axis=-1)
    L = 116 * fy - 16
    return tf.stack([L, 500 * (fx - fy), 200 * (fy - fz)], axis=-1)


def lab_to_rgb(lab):
    """Lab -> sRGB in [0, 1] (out-of-gamut colours clipped, as skimage does)."""
    lab = tf.convert_to_tensor(lab, tf.float32)
    L, a, b = tf.unstack(lab, axis=-1)
    fy = (L + 16) / 116
    fx = fy + a / 500
    fz = tf.maximum(fy - b / 200, 0.0)
    f = tf.stack([fx, fy, fz], axis=-1)
    xyz = tf.where(f > 0.2068966, tf.pow(f, 3), (f - 16 / 116) / 7.787) * _WHITE_D65
    rgb = tf.tensordot(xyz, tf.transpose(tf.linalg.inv(_RGB_TO_XYZ)), axes=1)
    return tf.clip_by_value(_gamma(rgb), 0.0, 1.0)


def delta_e76(lab1, lab2):
    """CIE76 colour difference per pixel: Euclidean distance in Lab."""
    return tf.norm(tf.convert_to_tensor(lab1) - tf.convert_to_tensor(lab2), axis=-1)


def psnr(rgb_true, rgb_pred):
    """PSNR in dB per image, for images in [0, 1]."""
    return tf.image.psnr(rgb_true, rgb_pred, max_val=1.0)
