"""What a palette's colours may be, checked wherever a palette is read (NumPy only, no TensorFlow).

A palette file can parse and still make no sense: RGB values in 0..255
where this package keeps uint8 / 256 (0..1), negated ones, 1e30, or 24
copies of one colour. A net trained on such a palette learns nothing useful
and reports a fine-looking accuracy, so `problem` names what is wrong and
the readers (`palette.load_palette`, the `.tflite` metadata reader) refuse it.

The ranges:
- **RGB** (K x 3): uint8 / 256, so 0..255/256; anything in 0..1 is taken.
- **ab** (K x 2): CIE Lab a and b; every sRGB colour lies within -128..128.
- Every colour differs from every other by more than `SAME` (in palette units:
  RGB values differ by at least 1/256 between uint8 levels, a and b by about 0.4).
"""

import numpy as np

RGB_RANGE = (0.0, 1.0)
AB_RANGE = (-128.0, 128.0)
SAME = {"rgb": 1e-4, "ab": 1e-2}


def _shown(row):
    return "(" + ", ".join(f"{v:.4g}" for v in row) + ")"


def problem(colours):
    """None if `colours` ((K, 3) RGB in /256 units, or (K, 2) Lab a, b) make a palette, else what is wrong."""
    colours = np.asarray(colours, dtype=np.float64)
    if colours.ndim != 2 or colours.shape[1] not in (2, 3) or colours.shape[0] < 2:
        return f"palette must be (K, 3) RGB or (K, 2) ab with K >= 2, got shape {colours.shape}"
    if not np.all(np.isfinite(colours)):
        return "palette holds non-finite values (NaN or infinity)"
    space = "rgb" if colours.shape[1] == 3 else "ab"
    lo, hi = float(colours.min()), float(colours.max())
    if space == "rgb" and (lo < RGB_RANGE[0] or hi > RGB_RANGE[1]):
        hint = ""
        if lo >= 0 and hi <= 256:
            hint = " (values in 0..255? this package's RGB palettes hold uint8 / 256)"
        elif hi <= 0:
            hint = " (negated?)"
        return f"RGB palette values must lie in 0..1 (uint8 / 256), got {lo:.4g}..{hi:.4g}{hint}"
    if space == "ab" and (lo < AB_RANGE[0] or hi > AB_RANGE[1]):
        return f"ab palette values (CIE Lab a, b) must lie in -128..128, got {lo:.4g}..{hi:.4g}"
    # Colours on a grid of SAME: equal cells are the same colour (sorting, not K x K distances).
    cells = np.round(colours / SAME[space])
    _, first, inverse, counts = np.unique(cells, axis=0, return_index=True, return_inverse=True,
                                          return_counts=True)
    if counts.max() > 1:
        if len(counts) == 1:
            return f"all {len(colours)} palette colours are the same {_shown(colours[0])}"
        group = int(np.argmax(counts > 1))
        i, j = np.flatnonzero(inverse.reshape(-1) == group)[:2]
        return (f"palette colours {i} and {j} are the same {_shown(colours[i])}; a palette needs "
                f"{len(colours)} different colours")
    return None
