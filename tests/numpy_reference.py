"""An independent NumPy implementation of the colourization nets' layers.

Written from PyTorch's definitions (Conv2d with symmetric padding, ConvTranspose2d
with padding and output_padding, MaxPool2d, nearest Upsample, BatchNorm2d in
eval mode), for numerical parity tests of the Keras ports. Images are (H, W, C).
"""

import numpy as np


def conv2d(x, w, b, stride=1, pad=None):
    """w: (k, k, cin, cout) as Keras stores it; PyTorch-style symmetric zero padding."""
    k = w.shape[0]
    pad = k // 2 if pad is None else pad
    xp = np.pad(x, ((pad, pad), (pad, pad), (0, 0)))
    h_out = (xp.shape[0] - k) // stride + 1
    w_out = (xp.shape[1] - k) // stride + 1
    out = np.zeros((h_out, w_out, w.shape[3]))
    for a in range(k):
        for c in range(k):
            patch = xp[a:a + stride * h_out:stride, c:c + stride * w_out:stride]
            out += patch @ w[a, c]
    return out + b


def conv_transpose2d(x, w, b, stride=2, pad=None, output_padding=1):
    """PyTorch ConvTranspose2d: y[i*s + a - p] += x[i] w[a]; w: (k, k, cout, cin) as Keras stores it."""
    k = w.shape[0]
    pad = k // 2 if pad is None else pad
    h, wd = x.shape[:2]
    full = np.zeros(((h - 1) * stride + k + output_padding, (wd - 1) * stride + k + output_padding, w.shape[2]))
    for i in range(h):
        for j in range(wd):
            for a in range(k):
                for c in range(k):
                    full[i * stride + a, j * stride + c] += w[a, c] @ x[i, j]
    h_out = (h - 1) * stride - 2 * pad + k + output_padding
    w_out = (wd - 1) * stride - 2 * pad + k + output_padding
    return full[pad:pad + h_out, pad:pad + w_out] + b


def maxpool2(x):
    h, w, c = x.shape
    return x.reshape(h // 2, 2, w // 2, 2, c).max(axis=(1, 3))


def upsample2(x):
    return x.repeat(2, axis=0).repeat(2, axis=1)


def batchnorm(x, gamma, beta, mean, var, eps=1e-5):
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def relu(x):
    return np.maximum(x, 0)
