"""Colourize photos of any size in bounded memory, and the assignment's activation-map and super-resolution figures.

The nets are fully convolutional with two 2x downsamplings, so an image is
padded (edge-replicated) to a multiple of 4, colourized, and cropped back. A
colour photo is turned grey first (the course's RGB mean), so the result can be
shown beside the original.

Big photos are colourized in tiles (`TILE_SIZE` pixels a side, on the 4-pixel
grid) each run with a border of `tile_halo(model)` pixels of real image
around it, which is dropped afterwards: the border covers the net's receptive
field, so every output pixel sees exactly what it would in one whole-image
pass, and the result is the whole-image result (up to float rounding) while
memory stays that of one tile. A net with image-level context (ResUNet's
global pooling) sees each tile's context instead of the whole photo's. The
tiling is `keras_cnn.full_size`'s, which the TFLite runtime shares.
"""

import os

import numpy as np
from keras import ops

from keras_cnn import full_size, plots
from keras_cnn.colorization.color import grey
from keras_cnn.colorization.preprocessing import downsize
from keras_cnn.errors import UserError
from keras_cnn.fileio import atomic_path, image_size, list_images, read_image

# Core tile side in pixels (a multiple of 4); photos of at most this many
# pixels squared run in one pass.
TILE_SIZE = 512
# The widest border a tile gets (nets that see the whole image get this one).
MAX_HALO = full_size.MAX_HALO
# Rows converted at a time when building the grey | colour | original strip.
_BAND_ROWS = 512


def write_png(path, image_uint8):
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(np.asarray(image_uint8, np.uint8)).save(tmp, format="PNG")


def _pad_to_multiple(images, multiple=4):
    h, w = images.shape[1:3]
    ph, pw = (-h) % multiple, (-w) % multiple
    return np.pad(images, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge"), (h, w)


def receptive_radius(model, probe=192):
    """How many pixels each side of it an output pixel of `model` sees, measured; None if it sees everything.

    One input pixel is changed at each of the 4 phases of the net's 4-pixel
    grid, and the farthest output pixel that changes gives the radius. A
    change that reaches the probe's border means image-level context (global
    pooling). Cached on the model.
    """
    cached = getattr(model, "_keras_cnn_receptive_radius", False)
    if cached is not False:
        return cached
    rng = np.random.RandomState(0)
    base = rng.randint(0, 256, (probe, probe, 3)).astype(np.uint8)
    centre = probe // 2
    batch = np.repeat(base[None], 5, axis=0)
    for k in range(4):
        batch[k + 1, centre + k, centre + k] = 255 - batch[k + 1, centre + k, centre + k]
    logits = np.asarray(model(batch, training=False), np.float32)
    radius = 0
    for k in range(4):
        rows, cols = np.nonzero(np.any(logits[k + 1] != logits[0], axis=-1))
        if len(rows):
            radius = max(radius, int(np.max(np.abs(rows - centre - k))), int(np.max(np.abs(cols - centre - k))))
    result = None if radius >= centre - 8 else radius
    try:
        model._keras_cnn_receptive_radius = result
    except AttributeError:
        pass
    return result


def tile_halo(model):
    """The border each tile is run with: the receptive radius plus one 4-pixel step, on the 4-pixel grid."""
    return full_size.halo(receptive_radius(model))


def _decode(model, palette, pixels, decode, temperature):
    """uint8 pixels -> decoded uint8 colours (NumPy), computed on the model's backend."""
    logits = model(pixels, training=False)
    return ops.convert_to_numpy(palette.decode(logits, grey(pixels, "keras"), decode, temperature, xp="keras"))


def colorize(model, palette, images_uint8, decode="argmax", temperature=0.38, tile_size=TILE_SIZE):
    """uint8 RGB (N, H, W, 3) -> colourized uint8 RGB of the same size (input colours are dropped).

    `model` is a `Colorizer` (it converts the pixels itself). Images of more
    than `tile_size` squared pixels are colourized tile by tile (see the module
    doc), so memory stays that of one tile whatever the photo's size;
    `tile_size=None` runs every image in one pass.
    """
    images = np.asarray(images_uint8, np.uint8)
    h, w = images.shape[1:3]
    big_h, big_w = h + (-h) % 4, w + (-w) % 4  # the padded size the net sees
    if tile_size is None or big_h * big_w <= tile_size * tile_size:
        padded, _ = _pad_to_multiple(images)
        return _decode(model, palette, padded, decode, temperature)[:, :h, :w]

    def run(view, core):
        logits = model(view, training=False)[:, core[0], core[1]]
        pixels = view[:, core[0], core[1]]
        return ops.convert_to_numpy(palette.decode(logits, grey(pixels, "keras"), decode, temperature, xp="keras"))

    return full_size.run_tiled(run, images, tile_size, tile_halo(model))


COMPARE_LABELS = ("grey input", "colourized", "original")


def _label_font(size):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size
        return ImageFont.load_default()


def label_band(width, labels, height):
    """uint8 (height, len(labels) * width, 3): each label centred over its `width`-pixel panel, black on white.

    The font shrinks until the longest label fits a panel (down to 6 px).
    """
    from PIL import Image, ImageDraw

    band = Image.new("RGB", (width * len(labels), height), "white")
    draw = ImageDraw.Draw(band)
    size = max(6, int(height * 0.75))
    font = _label_font(size)
    while size > 6 and max(draw.textlength(t, font=font) for t in labels) > width - 2:
        size -= 1
        font = _label_font(size)
    for i, text in enumerate(labels):
        x = i * width + max(0.0, (width - draw.textlength(text, font=font)) / 2)
        draw.text((x, height / 2), text, fill="black", font=font, anchor="lm")
    return np.asarray(band, np.uint8)


def label_height(width):
    """The height of the label band over panels `width` pixels wide: 12 to 40 pixels."""
    return int(min(40, max(12, width // 10)))


def compare_strip(original, coloured, labels=COMPARE_LABELS):
    """grey | colourized | original side by side under a band naming each panel, uint8 (B + H, 3W, 3).

    Built in row bands, so a big photo's strip costs little more than the
    strip itself. `labels=None` leaves the band out.
    """
    h, w = original.shape[:2]
    top = label_height(w) if labels else 0
    strip = np.empty((top + h, 3 * w, 3), np.uint8)
    if labels:
        strip[:top] = label_band(w, labels, top)
    for r in range(0, h, _BAND_ROWS):
        band = original[r:r + _BAND_ROWS]
        strip[top + r:top + r + len(band), :w] = np.round(
            band.mean(-1, keepdims=True, dtype=np.float32)).astype(np.uint8)
    strip[top:, w:2 * w] = coloured
    strip[top:, 2 * w:] = original
    return strip


def colorize_files(model, palette, inputs, out_dir, batch_size=16, decode="argmax", temperature=0.38,
                   compare=True, tile_size=TILE_SIZE):
    """Colourizes an image file or every image in a folder; returns the written paths.

    Images of the same size are batched together (photos bigger than one tile
    go one at a time, in tiles); each is read when its batch runs, so memory
    holds one batch, not the folder. Writes NAME_color.png and, with
    `compare`, NAME_compare.png (grey | colourized | original, labelled). A
    super-resolution model sees the 4x-downsized colour photo instead of the
    grey one.
    """
    if not os.path.exists(inputs):
        raise UserError(f"{inputs}: no such file or folder")
    paths = list_images(inputs) if os.path.isdir(inputs) else [inputs]
    by_size = {}
    for p in paths:
        width, height = image_size(p)  # the header only: checked, not decoded
        by_size.setdefault((height, width), []).append(p)
    written = []
    for (height, width), group in by_size.items():
        step = batch_size if tile_size is None or height * width <= tile_size * tile_size else 1
        for start in range(0, len(group), step):
            chunk = group[start:start + step]
            batch = np.stack([read_image(p) for p in chunk])
            result = colorize(model, palette, batch, decode, temperature, tile_size)
            for p, original, coloured in zip(chunk, batch, result):
                stem = os.path.join(out_dir, os.path.splitext(os.path.basename(p))[0])
                write_png(f"{stem}_color.png", coloured)
                written.append(f"{stem}_color.png")
                if compare:
                    write_png(f"{stem}_compare.png", compare_strip(original, coloured))
                    written.append(f"{stem}_compare.png")
            del batch, result
    return written


def _grid(maps):
    """Feature maps (H, W, C) tiled into one image, each map scaled to [0, 1].

    The gaps between maps and the cells after the last map are NaN, which
    `plots.feature_grid` draws blank: any colour of the map scale there would
    read as an activation.
    """
    h, w, c = maps.shape
    cols = int(np.ceil(np.sqrt(c)))
    rows = int(np.ceil(c / cols))
    lo = maps.min(axis=(0, 1), keepdims=True)
    hi = maps.max(axis=(0, 1), keepdims=True)
    maps = (maps - lo) / np.maximum(hi - lo, 1e-8)
    grid = np.full((rows * (h + 1) - 1, cols * (w + 1) - 1), np.nan)
    for i in range(c):
        r, q = divmod(i, cols)
        grid[r * (h + 1):r * (h + 1) + h, q * (w + 1):q * (w + 1) + w] = maps[..., i]
    return grid


def _repeats_its_input(layer):
    """Whether a layer's maps look like its input's once each map is scaled to its own range.

    BatchNorm and the linear "logits" layer are per-channel affine maps, and
    padding, cropping and concatenation only move pixels: their grids would
    be (near-)copies of the layer before, so they are not drawn.
    """
    import keras

    if isinstance(layer, (keras.layers.BatchNormalization, keras.layers.ZeroPadding2D, keras.layers.Cropping2D,
                          keras.layers.Concatenate, keras.layers.InputLayer)):
        return True
    return isinstance(layer, keras.layers.Activation) and layer.get_config().get("activation") == "linear"


def save_activations(model, palette, image_uint8, out_dir):
    """The assignment's activation maps of a `Colorizer`'s net: one titled grid per layer, plus input/truth/output.

    Layers whose maps would repeat the previous picture (`_repeats_its_input`)
    are skipped; each map is scaled to its own range, and the title says so.
    """
    import keras

    net = model.net
    layers = [layer for layer in net.layers if not _repeats_its_input(layer)]
    probe = keras.Model(net.inputs, [layer.output for layer in layers] + [net.output])
    x = model.preprocessor(image_uint8[None])
    *outputs, logits = probe(x, training=False)
    written = []
    for i, (layer, act) in enumerate(zip(layers, outputs)):
        path = os.path.join(out_dir, f"{i:02d}_{layer.name}.png")
        maps = ops.convert_to_numpy(act[0]).astype(np.float32)
        plots.feature_grid(_grid(maps), path, f"{layer.name} ({type(layer).__name__}): {maps.shape[-1]} maps of "
                                              f"{maps.shape[0]}x{maps.shape[1]}, each scaled to its own range")
        written.append(path)
    out = ops.convert_to_numpy(palette.decode(logits, grey(image_uint8[None], "keras"), xp="keras"))[0]
    net_in = np.round(ops.convert_to_numpy(x[0]) * 256).clip(0, 255).astype(np.uint8)
    for name, img in (("input", np.repeat(net_in, 3, -1) if net_in.shape[-1] == 1 else net_in),
                      ("truth", image_uint8), ("output", out)):
        write_png(os.path.join(out_dir, f"{name}.png"), img)
        written.append(os.path.join(out_dir, f"{name}.png"))
    return written


def superres_figure(model, palette, images_uint8, path):
    """Super-resolution strip: downsized input / bilinear upscaling / prediction / truth."""
    images_uint8 = np.asarray(images_uint8, np.uint8)
    small = ops.average_pool(ops.cast(images_uint8, "float32") / 255.0, 4, 4, padding="valid")
    bilinear = ops.convert_to_numpy(ops.image.resize(small, images_uint8.shape[1:3], interpolation="bilinear",
                                                     antialias=False))
    pred = _decode(model, palette, images_uint8, "argmax", None)
    plots.image_strip([ops.convert_to_numpy(downsize(images_uint8)) * 256 / 255, bilinear, pred / 255.0,
                       images_uint8 / 255.0], ["input", "bilinear", "predicted", "truth"], path)
