"""Results at a photo's own size from nets that see less of it, in NumPy (no TensorFlow).

Shared by the Keras side (`colorization.predict.colorize`,
`segmentation.predict.predict_labels`) and the phone side
(`export.litert_runtime`, which must not import TensorFlow), so a `.tflite`
file and its Keras model turn a photo into a result the same way.

Colourizers are fully convolutional: a photo is cut into *core* tiles on the
nets' 4-pixel grid, and each core is run inside a *view*, the core plus a
border (`halo`) of real photo on every side where the photo has one; the
border's outputs are dropped. An output pixel sees the input pixels up to
the net's receptive radius away, so with a halo at least that wide every kept
pixel sees what it would in one whole-photo pass, while memory stays that of
one view. Two kinds of net:

- any input size (a Keras model): views are the core plus the halo, cut
  short at the photo's edges, where the net pads as it would for the whole
  photo;
- a fixed input size S (a `.tflite` file): every view is S x S, cores are
  S - 2 * halo a side, and views at the photo's edges shift inwards to stay
  on the photo; a photo smaller than S is padded to S by repeating its edge
  pixels.

Segmenters have a fixed input size and see the whole photo resized to it;
`labels_at_size` brings their logits back to the photo's size (bilinearly,
before the argmax) in row bands.
"""

import numpy as np

# The colourization nets halve the size twice: tiles start on multiples of this.
GRID = 4
# The widest border a tile of an any-size net gets (nets that see the whole image get this one).
MAX_HALO = 128
# Rows of the photo handled at a time when logits are resized back to it.
BAND_ROWS = 256


def _on_grid(n, grid=GRID):
    return n + (-n) % grid


def halo(radius, window=None, grid=GRID):
    """The border each tile is run with, on the grid, for a net whose output pixels see `radius` pixels away.

    `radius` None means the net sees the whole image (global pooling). For
    an any-size net (`window` None) it is the radius plus one grid step,
    at most `MAX_HALO`. For a fixed `window` it is the radius rounded up to
    the grid (the view is cut on the grid, so that is enough), but at most
    what leaves a core of one grid step; with `radius` None, a quarter of
    the window.
    """
    if window is None:
        return MAX_HALO if radius is None else min(MAX_HALO, _on_grid(int(radius) + grid, grid))
    widest = (int(window) - grid) // 2 // grid * grid
    if radius is None:
        return min(widest, int(window) // 4 // grid * grid)
    return min(widest, _on_grid(int(radius), grid))


def tiles(height, width, tile, border, window=None, grid=GRID):
    """The (core, view) boxes `(y0, y1, x0, x1)` covering a photo of `height` x `width`.

    Cores tile the photo padded to the grid; each view holds its core and
    `border` pixels around it. With `window`, every view is `window` pixels
    a side and cores are `window - 2 * border`; `tile` is then ignored.
    """
    big_h, big_w = _on_grid(height, grid), _on_grid(width, grid)
    if window is not None:
        if window % grid or window - 2 * border < grid:
            raise ValueError(f"a {window}-pixel window leaves no core on the {grid}-pixel grid "
                             f"with a {border}-pixel border")
        tile = window - 2 * border
    else:
        tile = max(grid, int(tile) - int(tile) % grid)

    def spans(size):
        for a in range(0, size, tile):
            b = min(a + tile, size)
            if window is None:
                yield (a, b), (max(0, a - border), min(size, b + border))
            else:
                # Kept on the photo (and on the grid: `size` and `window` are multiples of it).
                start = min(max(0, a - border), max(0, size - window))
                yield (a, b), (start, start + window)

    for (y0, y1), (ya, yb) in spans(big_h):
        for (x0, x1), (xa, xb) in spans(big_w):
            yield (y0, y1, x0, x1), (ya, yb, xa, xb)


def crop_padded(images, box):
    """`images[:, ya:yb, xa:xb]`, with rows and columns past the photo repeating its edge pixels."""
    ya, yb, xa, xb = box
    h, w = images.shape[1:3]
    piece = images[:, ya:min(yb, h), xa:min(xb, w)]
    pad_h, pad_w = yb - ya - piece.shape[1], xb - xa - piece.shape[2]
    if pad_h or pad_w:
        piece = np.pad(piece, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return piece


def run_tiled(fn, images, tile, border, window=None, grid=GRID):
    """Applies a per-pixel net to a batch of photos tile by tile; returns (N, H, W, ...) at the photos' size.

    `fn(view_pixels, core)` gets a uint8 view (N, h, w, 3) and the core's
    place in it, `(row slice, column slice)`, and returns the core's result
    (N, core h, core w, ...) as a NumPy array (for example colours decoded
    from the logits it cut to the core).
    """
    images = np.asarray(images)
    n, h, w = images.shape[:3]
    out = None
    for (y0, y1, x0, x1), view in tiles(h, w, tile, border, window, grid):
        ya, _, xa, _ = view
        result = np.asarray(fn(crop_padded(images, view), (slice(y0 - ya, y1 - ya), slice(x0 - xa, x1 - xa))))
        if out is None:
            out = np.empty((n, h, w) + result.shape[3:], result.dtype)
        hh, ww = min(y1, h) - y0, min(x1, w) - x0
        if hh > 0 and ww > 0:
            out[:, y0:y0 + hh, x0:x0 + ww] = result[:, :hh, :ww]
    return out


def _bilinear_weights(out_size, in_size):
    """TensorFlow's half-pixel-centre bilinear sampling along one axis: (lower, upper, lerp)."""
    scale = np.float32(in_size) / np.float32(out_size)
    x = (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
    floor = np.floor(x)
    lower = np.maximum(floor, 0).astype(np.int64)
    upper = np.minimum(np.ceil(x), in_size - 1).astype(np.int64)
    return lower, upper, (x - floor).astype(np.float32)


def labels_at_size(logits, height, width, band_rows=BAND_ROWS):
    """Logits (S, S', K) -> uint8 labels (height, width): bilinear upsampling then argmax, in row bands.

    The same sampling as `tf.image.resize(logits, (height, width), "bilinear")`
    but `band_rows` rows at a time, so the full-size logits never exist.
    """
    logits = np.asarray(logits, np.float32)
    y_lo, y_hi, y_lerp = _bilinear_weights(height, logits.shape[0])
    x_lo, x_hi, x_lerp = _bilinear_weights(width, logits.shape[1])
    x_lerp = x_lerp[None, :, None]
    labels = np.empty((height, width), np.uint8)
    for r in range(0, height, band_rows):
        rows = slice(r, min(r + band_rows, height))
        top, bottom = logits[y_lo[rows]], logits[y_hi[rows]]
        top = top[:, x_lo] + (top[:, x_hi] - top[:, x_lo]) * x_lerp
        bottom = bottom[:, x_lo] + (bottom[:, x_hi] - bottom[:, x_lo]) * x_lerp
        band = top + (bottom - top) * y_lerp[rows][:, None, None]
        labels[rows] = np.argmax(band, axis=-1)
    return labels
