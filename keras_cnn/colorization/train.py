"""Train a colourization net: data, palette, model, `model.fit`, plots, final metrics.

Writes into the run folder (see `keras_cnn.training`) plus `palette.npy` and
`metrics.json` (validation metrics of the best checkpoint, beside the trivial
baselines).
"""

import json
import math
import os

import keras
import numpy as np

from keras_cnn import plots, training
from keras_cnn.colorization.evaluate import baselines, evaluate
from keras_cnn.colorization.models import build_model
from keras_cnn.colorization.palette import fit_palette, grey, load_palette, save_palette
from keras_cnn.colorization.pipeline import PixelCrossEntropy, make_dataset, net_input
from keras_cnn.data.cifar10 import load_class
from keras_cnn.errors import UserError
from keras_cnn.fileio import atomic_write_text

STRIP_SIZE = 10


def load_data(cfg):
    """(train, validation) uint8 images for `cfg`."""
    return load_class(cfg.source, cfg.cifar_class, data_dir=cfg.data_dir, val_fraction=cfg.val_fraction,
                      seed=cfg.seed, url=cfg.url, md5=cfg.md5, cache_dir=cfg.cache_dir,
                      archive=cfg.archive, max_examples=cfg.max_examples)


def get_palette(cfg, train_images, run_dir, write=True):
    """The palette of a run: the saved one on resume, a given file, or k-means.

    `write=False` (non-chief workers) computes the same palette (k-means is
    seeded) without saving it.
    """
    saved = os.path.join(run_dir, "palette.npy")
    if os.path.exists(saved):
        return load_palette(saved)
    if cfg.palette:
        palette = load_palette(cfg.palette, allow_pickle=cfg.allow_pickle_palette)
        expected = 3 if cfg.palette_space == "rgb" else 2
        if palette.colours.shape[1] != expected:
            raise UserError(f"{cfg.palette}: palette has {palette.colours.shape[1]} columns, but "
                            f"palette_space {cfg.palette_space} needs {expected}")
    else:
        palette = fit_palette(train_images, cfg.num_colours, cfg.palette_space, cfg.seed)
    if write:
        save_palette(saved, palette)
    return palette


def learning_rate(cfg, num_train, runtime):
    """The run's learning rate: a float, or the cosine schedule over all its steps."""
    if cfg.lr_schedule == "constant":
        return runtime.learning_rate
    # The schedule follows the optimizer's step count, which a resumed run
    # restores, so a resumed run continues the same curve.
    steps = cfg.epochs * max(1, math.ceil(num_train / runtime.global_batch))
    return keras.optimizers.schedules.CosineDecay(runtime.learning_rate, decay_steps=steps)


def build_and_compile(cfg, palette, train_images, runtime):
    weights = None
    if cfg.class_rebalance > 0:
        counts = np.bincount(palette.labels(train_images).numpy().ravel(), minlength=len(palette))
        weights = palette.class_weights(counts, lam=cfg.class_rebalance)
    with runtime.strategy.scope():
        model = build_model(cfg.model, kernel=cfg.kernel, num_filters=cfg.num_filters,
                            num_colours=len(palette), num_in_channels=3 if cfg.downsize_input else 1)
        model.compile(optimizer=keras.optimizers.Adam(learning_rate(cfg, len(train_images), runtime)),
                      loss=PixelCrossEntropy(weights),
                      metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
                      jit_compile=cfg.jit_compile)
    return model


def strip_drawer(images_uint8, palette, cfg):
    """A function drawing grey / true / predicted for fixed validation images."""
    images = images_uint8[:STRIP_SIZE]
    x = net_input(images, cfg.downsize_input)

    def draw(model, path):
        pred = palette.decode(model(x, training=False), grey(images), cfg.decode, cfg.temperature)
        # Inputs are in the course's /256 units; the plots want [0, 1].
        rows = [x.numpy() * 256 / 255, images / 255.0, pred.numpy() / 255.0]
        plots.image_strip(rows, ["input", "truth", "predicted"], path,
                          title=f"{cfg.model}: {os.path.basename(path)[:-4]}")
    return draw


def train(cfg, run_dir, resume=False, verbose="auto", log=print):
    """Trains per `cfg` in `run_dir`; returns the final metrics dict."""
    with training.new_run(run_dir, cfg, resume) as cfg:
        runtime = training.setup_runtime(cfg, log)
        train_images, val_images = load_data(cfg)
        palette = get_palette(cfg, train_images, run_dir, write=runtime.chief)
        log(f"data: {len(train_images)} training and {len(val_images)} validation images; "
            f"palette: {len(palette)} {palette.space} colours")
        model = build_and_compile(cfg, palette, train_images, runtime)
    train_ds = make_dataset(train_images, palette, runtime.global_batch, shuffle=True, seed=cfg.seed,
                            downsize_input=cfg.downsize_input, flip=cfg.augment)
    val_ds = make_dataset(val_images, palette, runtime.global_batch, downsize_input=cfg.downsize_input)
    extra = [plots.EpochStrip(strip_drawer(val_images, palette, cfg), run_dir)] if len(val_images) else []
    history = training.fit(model, train_ds, val_ds, cfg.epochs, run_dir, chief=runtime.chief,
                           backup_every_steps=cfg.backup_every_steps, extra_callbacks=extra,
                           verbose=verbose, sync_batchnorm=cfg.sync_batchnorm, log=log)
    if not runtime.chief:
        return history.history
    hist = plots.read_history_csv(os.path.join(run_dir, "history.csv"))
    plots.history_curves(hist, os.path.join(run_dir, "plots", "curves.png"), ("loss", "accuracy"),
                         title=cfg.model)
    best = training.load_model(os.path.join(run_dir, "best.keras"))
    metrics = {"model": cfg.model, "epochs": len(hist.get("loss", [])),
               "validation": evaluate(best, val_images, palette, cfg.downsize_input,
                                      runtime.global_batch, cfg.decode, cfg.temperature),
               "baselines": baselines(val_images, palette)}
    atomic_write_text(os.path.join(run_dir, "metrics.json"), json.dumps(metrics, indent=2) + "\n")
    return metrics


def load_run(run_dir):
    """(model, palette, config) of a finished run folder."""
    from keras_cnn.colorization.config import ColorizationConfig
    from keras_cnn.config import config_path, load_config

    cfg = load_config(ColorizationConfig, config_path(run_dir))
    return training.load_model(os.path.join(run_dir, "best.keras")), \
        load_palette(os.path.join(run_dir, "palette.npy")), cfg

