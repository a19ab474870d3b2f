"""Colourize photos of any size, and the assignment's activation-map and super-resolution figures.

The nets are fully convolutional with two 2x downsamplings, so an image is
padded (edge-replicated) to a multiple of 4, colourized, and cropped back. A
colour photo is turned grey first (the course's RGB mean), so the result can be
shown beside the original.
"""

import os

import numpy as np
import tensorflow as tf

from keras_cnn import plots
from keras_cnn.colorization.colorizer import downsize
from keras_cnn.colorization.palette import grey
from keras_cnn.errors import UserError
from keras_cnn.fileio import atomic_path, list_images, read_image


def write_png(path, image_uint8):
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(np.asarray(image_uint8, np.uint8)).save(tmp, format="PNG")


def _pad_to_multiple(images, multiple=4):
    h, w = images.shape[1:3]
    ph, pw = (-h) % multiple, (-w) % multiple
    return np.pad(images, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge"), (h, w)


def colorize(model, palette, images_uint8, decode="argmax", temperature=0.38):
    """uint8 RGB (N, H, W, 3) -> colourized uint8 RGB of the same size (input colours are dropped).

    `model` is a `Colorizer` (it converts the pixels itself).
    """
    padded, (h, w) = _pad_to_multiple(np.asarray(images_uint8, np.uint8))
    logits = model(padded, training=False)
    out = palette.decode(logits, grey(padded), decode, temperature).numpy()
    return out[:, :h, :w]


def colorize_files(model, palette, inputs, out_dir, batch_size=16, decode="argmax", temperature=0.38,
                   compare=True):
    """Colourizes an image file or every image in a folder; returns the written paths.

    Images of the same size are batched together. Writes NAME_color.png and,
    with `compare`, NAME_compare.png (grey | colourized | original). A
    super-resolution model sees the 4x-downsized colour photo instead of the
    grey one.
    """
    if not os.path.exists(inputs):
        raise UserError(f"{inputs}: no such file or folder")
    paths = list_images(inputs) if os.path.isdir(inputs) else [inputs]
    images = {p: read_image(p) for p in paths}
    by_shape = {}
    for p, img in images.items():
        by_shape.setdefault(img.shape, []).append(p)
    written = []
    for group in by_shape.values():
        for start in range(0, len(group), batch_size):
            chunk = group[start:start + batch_size]
            batch = np.stack([images[p] for p in chunk])
            result = colorize(model, palette, batch, decode, temperature)
            for p, original, coloured in zip(chunk, batch, result):
                stem = os.path.join(out_dir, os.path.splitext(os.path.basename(p))[0])
                write_png(f"{stem}_color.png", coloured)
                written.append(f"{stem}_color.png")
                if compare:
                    g = np.repeat(np.round(original.mean(-1, keepdims=True)).astype(np.uint8), 3, -1)
                    write_png(f"{stem}_compare.png", np.concatenate([g, coloured, original], axis=1))
                    written.append(f"{stem}_compare.png")
    return written


def _grid(maps):
    """Feature maps (H, W, C) tiled into one image, each map scaled to [0, 1]."""
    h, w, c = maps.shape
    cols = int(np.ceil(np.sqrt(c)))
    rows = int(np.ceil(c / cols))
    lo = maps.min(axis=(0, 1), keepdims=True)
    hi = maps.max(axis=(0, 1), keepdims=True)
    maps = (maps - lo) / np.maximum(hi - lo, 1e-8)
    grid = np.ones((rows * (h + 1) - 1, cols * (w + 1) - 1))
    for i in range(c):
        r, q = divmod(i, cols)
        grid[r * (h + 1):r * (h + 1) + h, q * (w + 1):q * (w + 1) + w] = maps[..., i]
    return grid


def save_activations(model, palette, image_uint8, out_dir):
    """The assignment's activation maps of a `Colorizer`'s net: one grid PNG per layer, plus input/truth/output."""
    import keras

    net = model.net
    layers = [layer for layer in net.layers if not isinstance(layer, keras.layers.InputLayer)]
    probe = keras.Model(net.inputs, [layer.output for layer in layers])
    x = model.preprocessor(image_uint8[None])
    outputs = probe(x, training=False)
    written = []
    for i, (layer, act) in enumerate(zip(layers, outputs)):
        path = os.path.join(out_dir, f"{i:02d}_{layer.name}.png")
        write_png(path, np.round(_grid(np.asarray(act[0], np.float32)) * 255))
        written.append(path)
    out = palette.decode(outputs[-1], grey(image_uint8[None])).numpy()[0]
    net_in = np.round(np.asarray(x[0]) * 256).clip(0, 255).astype(np.uint8)
    for name, img in (("input", np.repeat(net_in, 3, -1) if net_in.shape[-1] == 1 else net_in),
                      ("truth", image_uint8), ("output", out)):
        write_png(os.path.join(out_dir, f"{name}.png"), img)
        written.append(os.path.join(out_dir, f"{name}.png"))
    return written


def superres_figure(model, palette, images_uint8, path):
    """Super-resolution strip: downsized input / bilinear upscaling / prediction / truth."""
    small = tf.nn.avg_pool2d(tf.cast(images_uint8, tf.float32) / 255.0, 4, 4, "VALID")
    bilinear = tf.image.resize(small, images_uint8.shape[1:3], method="bilinear").numpy()
    pred = palette.decode(model(images_uint8, training=False), grey(images_uint8)).numpy()
    plots.image_strip([downsize(images_uint8).numpy() * 256 / 255, bilinear, pred / 255.0,
                       images_uint8 / 255.0], ["input", "bilinear", "predicted", "truth"], path)
