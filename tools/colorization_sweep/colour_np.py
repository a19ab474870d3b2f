"""NumPy ports of keras_cnn.colorization.color / palette / evaluate (float32), for the GPU harness."""
import numpy as np

_RGB_TO_XYZ = np.array([[0.412453, 0.357580, 0.180423],
                        [0.212671, 0.715160, 0.072169],
                        [0.019334, 0.119193, 0.950227]], dtype=np.float32)
_WHITE = np.array([0.95047, 1.0, 1.08883], dtype=np.float32)
_XYZ_TO_RGB = np.linalg.inv(_RGB_TO_XYZ).astype(np.float32)


def rgb_to_lab(rgb):
    rgb = rgb.astype(np.float32)
    lin = np.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92).astype(np.float32)
    xyz = (lin @ _RGB_TO_XYZ.T) / _WHITE
    f = np.where(xyz > 0.008856, np.cbrt(np.maximum(xyz, 1e-12)), 7.787 * xyz + 16 / 116)
    L = 116 * f[..., 1] - 16
    return np.stack([L, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1).astype(np.float32)


def lab_to_rgb(lab):
    L, a, b = lab[..., 0], lab[..., 1], lab[..., 2]
    fy = (L + 16) / 116
    fx = fy + a / 500
    fz = np.maximum(fy - b / 200, 0.0)
    f = np.stack([fx, fy, fz], -1)
    xyz = np.where(f > 0.2068966, f ** 3, (f - 16 / 116) / 7.787) * _WHITE
    rgb = xyz @ _XYZ_TO_RGB.T
    rgb = np.where(rgb > 0.0031308, 1.055 * np.maximum(rgb, 1e-12) ** (1 / 2.4) - 0.055, 12.92 * rgb)
    return np.clip(rgb, 0.0, 1.0).astype(np.float32)


def grey(images_uint8):
    return (images_uint8.astype(np.float32) / 256.0).mean(-1, keepdims=True)


def features(images_uint8, palette):
    if palette.shape[1] == 3:
        return images_uint8.astype(np.float32) / 256.0
    return rgb_to_lab(images_uint8.astype(np.float32) / 255.0)[..., 1:]


def labels(images_uint8, palette, chunk=2000):
    out = np.empty(images_uint8.shape[:-1], np.uint8)
    c = palette.astype(np.float32)
    for s in range(0, len(images_uint8), chunk):
        f = features(images_uint8[s:s + chunk], palette)
        scores = (f @ c.T) * 2.0 - (c * c).sum(-1)
        out[s:s + chunk] = scores.argmax(-1)
    return out


def decode(logits, grey_input, palette, mode="annealed", temperature=0.7):
    logits = logits.astype(np.float32)
    if mode == "argmax":
        w = np.eye(len(palette), dtype=np.float32)[logits.argmax(-1)]
    else:
        z = logits / temperature
        z = z - z.max(-1, keepdims=True)
        w = np.exp(z)
        w /= w.sum(-1, keepdims=True)
    colours = w @ palette.astype(np.float32)
    if palette.shape[1] == 3:
        rgb = colours * 256.0 / 255.0
    else:
        L = rgb_to_lab(np.repeat(grey_input * 256.0 / 255.0, 3, -1))[..., :1]
        rgb = lab_to_rgb(np.concatenate([L, colours], -1))
    return np.round(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)


def delta_e(true_uint8, pred_uint8):
    """Mean CIE76 delta E over every pixel."""
    t = rgb_to_lab(true_uint8.astype(np.float32) / 255.0)
    p = rgb_to_lab(pred_uint8.astype(np.float32) / 255.0)
    return float(np.sqrt(((t - p) ** 2).sum(-1)).mean())
