"""Matplotlib figures saved as PNG (no display needed).

`image_strip` draws rows of images (grey / true / predicted for colourization,
image / true mask / predicted mask for segmentation); `history_curves` draws
metric curves from a History or `history.csv` (`plots/curves.png` of every
run). `EpochStrip` calls a figure
function at the end of every epoch and puts the picture, and the task's own
metrics, into TensorBoard too.
"""

import os

import keras
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from keras_cnn import state_files  # noqa: E402
from keras_cnn.fileio import atomic_path  # noqa: E402


def _save(fig, path):
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight", dpi=100)
    plt.close(fig)


def image_strip(rows, row_titles, path, title=None):
    """One row per entry of `rows` (each an array of N images, HxW or HxWx3 in [0, 1]).

    The images are tiled into one mosaic (white gaps) drawn on a single axes:
    a strip of 3 x 10 subplots took about a second to lay out and save, and
    training draws one every epoch.
    """
    n = len(rows[0])
    tiles = []
    for images in rows:
        row = []
        for c in range(n):
            img = np.clip(np.asarray(images[c], dtype=np.float32), 0.0, 1.0)
            if img.ndim == 3 and img.shape[-1] == 1:
                img = img[..., 0]
            row.append(np.repeat(img[..., None], 3, axis=-1) if img.ndim == 2 else img)
        tiles.append(row)
    h = max(t.shape[0] for row in tiles for t in row)
    w = max(t.shape[1] for row in tiles for t in row)
    gap = max(1, min(h, w) // 16)
    mosaic = np.ones((len(rows) * (h + gap) - gap, n * (w + gap) - gap, 3), np.float32)
    for r, row in enumerate(tiles):
        for c, t in enumerate(row):
            y, x = r * (h + gap), c * (w + gap)
            mosaic[y:y + t.shape[0], x:x + t.shape[1]] = t
    fig, ax = plt.subplots(figsize=(1.2 * n, 1.3 * len(rows)))
    ax.imshow(mosaic, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([(h + gap) * r + h / 2 for r in range(len(rows))])
    ax.set_yticklabels(row_titles, fontsize=8)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title:
        ax.set_title(title, fontsize=9)
    _save(fig, path)


def _number(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def read_history_csv(path):
    """Column name -> its numbers in `history.csv`.

    Cells that are not numbers (Keras writes "NA" in the `val_` columns of a
    run without validation data) are skipped, and columns with no number are
    left out.
    """
    _, rows = state_files.read_csv(path, "training log")
    columns = {}
    for key in (rows[0] if rows else {}):
        values = [v for v in (_number(r.get(key)) for r in rows) if v is not None]
        if key is not None and values:
            columns[key] = values
    return columns


CURVES_FILE = "curves.png"


def history_curves(history, path, metrics=("loss",), title=None):
    """Train and validation curves for each metric name, one panel each.

    Every epoch is a marker, so a one-epoch run shows its two points instead
    of empty axes; epochs are whole numbers on the axis.
    """
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 3.2), squeeze=False)
    for ax, name in zip(axes[0], metrics):
        plotted = 0
        for key, style in ((name, "o-"), (f"val_{name}", "s--")):
            if history.get(key):
                ax.plot(range(1, len(history[key]) + 1), history[key], style, label=key, markersize=4)
                plotted = max(plotted, len(history[key]))
        ax.set_xlim(0.5, max(plotted, 1) + 0.5)
        if plotted <= 10:
            ax.set_xticks(range(1, max(plotted, 1) + 1))
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_title(name)
        if plotted:
            ax.legend()
    if title:
        fig.suptitle(title, y=1.03)  # above the panels' own titles
    _save(fig, path)


def feature_grid(grid, path, title, min_pixels=560):
    """A tiled grid of feature maps (values in [0, 1]) as a titled PNG, enlarged so small maps can be read."""
    h, w = grid.shape
    inches = max(min_pixels / 100.0, w / 100.0)
    fig, ax = plt.subplots(figsize=(inches, inches * h / w + 0.6))
    # NaN cells (gaps, unused cells of the grid) are blank, not a colour of the scale.
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="white")
    ax.imshow(grid, cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.axis("off")
    _save(fig, path)


class EpochStrip(keras.callbacks.Callback):
    """After every epoch: `draw(model, path)` writes `plots/epoch_NNN.png`, and TensorBoard gets it.

    The same picture goes to TensorBoard as the image "validation/strip" and
    `metrics(model)` (a dict of task metrics, e.g. delta E and PSNR) as
    scalars "validation/<name>", at the same epoch, under `logs/validation_strips`
    (beside the Keras TensorBoard callback's `logs/train` and `logs/validation`).
    """

    def __init__(self, draw, run_dir, metrics=None):
        super().__init__()
        self.draw = draw
        self.metrics = metrics
        self.plot_dir = os.path.join(run_dir, "plots")
        self.log_dir = os.path.join(run_dir, "logs", "validation_strips")
        self._writer = None

    def on_epoch_end(self, epoch, logs=None):
        import tensorflow as tf

        path = os.path.join(self.plot_dir, f"epoch_{epoch + 1:03d}.png")
        self.draw(self.model, path)
        scalars = self.metrics(self.model) if self.metrics else {}
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        # Step = Keras' 0-based epoch, as its TensorBoard callback logs epoch_loss: the strip of an epoch
        # sits on the same step as that epoch's scalars. (The PNG file names count from 1.)
        with self._writer.as_default(step=epoch):
            tf.summary.image("validation/strip", tf.io.decode_png(tf.io.read_file(path), channels=3)[None])
            for name, value in scalars.items():
                tf.summary.scalar(f"validation/{name}", float(value))
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None
