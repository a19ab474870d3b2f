"""The colourization task: CIFAR-10 (or any image folder) in, a palette classifier out.

Beside the shared run folder files (`keras_cnn.training.run_folder`) a run
writes `palette.npy`, and `metrics.json` holds the validation metrics of the
best checkpoint beside the trivial baselines.

A run with `base_model` continues a trained colourizer (pre-training then
specialisation): the net, its input mode and its palette (the `palette.npy`
of the base run's folder) carry over; the optimizer starts afresh.
"""

import math
import os

import keras
import numpy as np

from keras_cnn import plots, tasks, training
from keras_cnn.colorization import config as config_lib
from keras_cnn.colorization.colorizer import Colorizer, input_mode, new_colorizer
from keras_cnn.colorization.evaluate import baselines, evaluate, evaluation_step
from keras_cnn.colorization.models import ColourNet, build_model
from keras_cnn.colorization.palette import fit_palette, grey, load_palette, save_palette
from keras_cnn.colorization.pipeline import PixelCrossEntropy, make_dataset
from keras_cnn.colorization.predict import colorize
from keras_cnn.data.cifar10 import load_class, resolve_classes
from keras_cnn.errors import UserError
from keras_cnn.fileio import check_photos, photos_one_by_one

STRIP_SIZE = 10
PALETTE_FILE = "palette.npy"
# Validation images whose delta E and PSNR go to TensorBoard each epoch (all of them up to this).
# Decoding and the Lab conversions cost 3x a validation pass per image, so the whole split would
# add a third to a course UNet's epoch; the final metrics use every validation image.
EPOCH_METRIC_IMAGES = 100


def get_palette(cfg, train_images, run_dir, write=True):
    """The palette of a run: the saved one on resume, the base run's, a given file, or k-means.

    `write=False` (non-chief workers) computes the same palette (k-means is
    seeded) without saving it.
    """
    saved = os.path.join(run_dir, PALETTE_FILE)
    if os.path.exists(saved):
        return load_palette(saved)
    if cfg.base_model:
        palette = base_palette(cfg)
    elif cfg.palette:
        palette = load_palette(cfg.palette, allow_pickle=cfg.allow_pickle_palette)
        _check_palette_space(palette, cfg, cfg.palette)
    else:
        palette = fit_palette(palette_images(cfg, train_images), cfg.num_colours, cfg.palette_space, cfg.seed)
    if write:
        save_palette(saved, palette)
    return palette


def _check_palette_space(palette, cfg, source):
    expected = 3 if cfg.palette_space == "rgb" else 2
    if palette.colours.shape[1] != expected:
        raise UserError(f"{source}: palette has {palette.colours.shape[1]} columns, but "
                        f"palette_space {cfg.palette_space} needs {expected}")


def palette_images(cfg, train_images):
    """The images k-means fits the palette on: the training images, or the `palette_classes` ones' training split."""
    if not cfg.palette_classes or (resolve_classes(cfg.data_dir, cfg.palette_classes)
                                   == resolve_classes(cfg.data_dir, cfg.classes)):
        return train_images
    # The same per-class split as the training data, so no validation image is fitted on.
    return load_class(cfg.source, data_dir=cfg.data_dir, val_fraction=cfg.val_fraction, seed=cfg.seed,
                      max_examples=cfg.max_examples, classes=cfg.palette_classes)[0]


def base_palette(cfg):
    """The palette a `base_model` run goes on with: the base run's own `palette.npy`.

    `--palette` may name it again (or name the palette of a model without its
    run folder); a different palette is refused, since the model's classes
    are that palette's colours.
    """
    beside = os.path.join(os.path.dirname(os.path.abspath(cfg.base_model)), PALETTE_FILE)
    if cfg.palette:
        palette, source = load_palette(cfg.palette, allow_pickle=cfg.allow_pickle_palette), cfg.palette
        if os.path.isfile(beside):
            base = load_palette(beside)
            if base.colours.shape != palette.colours.shape or not np.allclose(base.colours, palette.colours):
                raise UserError(f"{cfg.palette}: not the palette {cfg.base_model} was trained with "
                                f"({beside}, {len(base)} colours); drop --palette to use that one")
    elif os.path.isfile(beside):
        palette, source = load_palette(beside), beside
    else:
        raise UserError(f"{cfg.base_model}: no {PALETTE_FILE} beside it; pass --palette with the palette "
                        "the model was trained with")
    _check_palette_space(palette, cfg, source)
    if len(palette) != cfg.num_colours:
        raise UserError(f"{source}: the base model's palette has {len(palette)} colours but --num-classes is "
                        f"{cfg.num_colours}; pass --num-classes {len(palette)}")
    return palette


def base_colorizer(cfg, palette):
    """`cfg.base_model` loaded, checked against `cfg` and `palette`, to train on."""
    model = training.load_model(cfg.base_model)
    if isinstance(model, ColourNet):  # a `.keras` file of the first layout: the bare net
        model = Colorizer(model, input_mode(cfg), name=f"{cfg.model}_colorizer")
    if not isinstance(model, Colorizer):
        raise UserError(f"{cfg.base_model}: not a colourizer of this project (it is a {type(model).__name__})")
    check_palette(palette, model, cfg.base_model)
    if model.input_mode != input_mode(cfg):
        raise UserError(f"{cfg.base_model}: the model takes {model.input_mode!r} input but this run "
                        f"{input_mode(cfg)!r}; set --downsize-input as the base run did")
    # The run's config must describe the net it trains: the same class and constructor arguments.
    extra = {"upsample": cfg.upsample} if cfg.model == "effnet_unet" else {}
    wanted = build_model(cfg.model, kernel=cfg.kernel, num_filters=cfg.num_filters, num_colours=len(palette),
                         num_in_channels=model.net.num_in_channels, **extra)
    got = {k: v for k, v in model.net.get_config().items() if k != "name"}
    if type(wanted) is not type(model.net) or got != {k: v for k, v in wanted.get_config().items() if k != "name"} \
            or wanted.count_params() != model.net.count_params():
        raise UserError(f"{cfg.base_model}: the model is a {type(model.net).__name__} with "
                        f"{model.net.count_params():,} parameters, but --backbone {cfg.model} --kernel {cfg.kernel} "
                        f"--num-filters {cfg.num_filters} builds a {type(wanted).__name__} with "
                        f"{wanted.count_params():,}; pass the flags the base run was trained with")
    return model


def check_base_split(cfg):
    """Refuses a base run whose validation split differs: it may have trained on this run's validation images.

    Class folders are split on their own by (val_fraction, seed), so equal
    values give each class the same validation images in both runs.
    """
    path = os.path.join(os.path.dirname(os.path.abspath(cfg.base_model)), "config.json")
    if not os.path.isfile(path):
        return
    from keras_cnn.config import load_config, read_task_name

    if read_task_name(os.path.dirname(path)) != "colorization":
        return  # base_colorizer says what the model is
    base = load_config(config_lib.ColorizationConfig, path)
    if base.source == cfg.source == "folder" and (base.val_fraction, base.seed) != (cfg.val_fraction, cfg.seed):
        raise UserError(f"{cfg.base_model}: its run held out validation images with --val-fraction "
                        f"{base.val_fraction} --seed {base.seed}, this run with {cfg.val_fraction} and "
                        f"{cfg.seed}, so the base model may have trained on this run's validation images; "
                        "use the base run's values")


def learning_rate(cfg, num_train, runtime):
    """The run's learning rate: a float, or the cosine schedule over all its steps."""
    if cfg.lr_schedule == "constant":
        return runtime.learning_rate
    # The schedule follows the optimizer's step count, which a resumed run
    # restores, so a resumed run continues the same curve.
    steps = cfg.epochs * max(1, math.ceil(num_train / runtime.global_batch))
    return keras.optimizers.schedules.CosineDecay(runtime.learning_rate, decay_steps=steps)


def strip_drawer(images_uint8, palette, cfg):
    """A function drawing net input / truth / predicted for fixed validation images."""
    images = images_uint8[:STRIP_SIZE]

    def draw(model, path):
        pred = palette.decode(model(images, training=False), grey(images, "keras"), cfg.decode, cfg.temperature,
                              xp="keras")
        # The net input is in the course's /256 units; the plots want [0, 1].
        x = keras.ops.convert_to_numpy(model.preprocessor(images)) * 256 / 255
        plots.image_strip([x, images / 255.0, keras.ops.convert_to_numpy(pred) / 255.0],
                          ["input", "truth", "predicted"], path,
                          title=f"{cfg.model}: {os.path.basename(path)[:-4]}")
    return draw


def check_palette(palette, model, source):
    """A palette must have one colour per output class of the model it decodes."""
    if len(palette) != model.num_colours:
        raise UserError(f"{source}: palette has {len(palette)} colours but the model predicts "
                        f"{model.num_colours}; use the palette.npy of the run that trained the model")


class ColorizationTask(tasks.Task):
    name = "colorization"
    config_class = config_lib.ColorizationConfig
    presets = config_lib.PRESETS

    # === Training ===
    def load_data(self, cfg, splits=("train", "validation")):
        """(train, validation) uint8 images."""
        return load_class(cfg.source, cfg.cifar_class, data_dir=cfg.data_dir, val_fraction=cfg.val_fraction,
                          seed=cfg.seed, url=cfg.url, md5=cfg.md5, cache_dir=cfg.cache_dir,
                          archive=cfg.archive, max_examples=cfg.max_examples, classes=cfg.classes)

    def prepare(self, cfg, data, run_dir, runtime):
        if cfg.base_model:
            check_base_split(cfg)
        return {"palette": get_palette(cfg, data[0], run_dir, write=runtime.chief)}

    def build_model(self, cfg, data, assets, runtime):
        palette, train_images = assets["palette"], data[0]
        weights = None
        if cfg.class_rebalance > 0:
            counts = np.bincount(palette.labels(train_images).numpy().ravel(), minlength=len(palette))
            weights = palette.class_weights(counts, lam=cfg.class_rebalance)
        model = base_colorizer(cfg, palette) if cfg.base_model else new_colorizer(cfg, len(palette))
        model.compile(optimizer=keras.optimizers.Adam(learning_rate(cfg, len(train_images), runtime)),
                      loss=PixelCrossEntropy(weights),
                      metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
                      jit_compile=runtime.jit_compile)
        return model

    def datasets(self, cfg, data, assets, model, runtime):
        (train_images, val_images), palette = data, assets["palette"]
        train_ds = make_dataset(train_images, palette, runtime.global_batch, shuffle=True, seed=cfg.seed,
                                flip=cfg.augment)
        val_ds = make_dataset(val_images, palette, runtime.global_batch) if len(val_images) else None
        return train_ds, val_ds

    def callbacks(self, cfg, data, assets, model, run_dir, runtime):
        val_images = data[1]
        if not len(val_images):
            return []
        palette, images = assets["palette"], val_images[:EPOCH_METRIC_IMAGES]

        step = evaluation_step(model, palette, cfg.decode, cfg.temperature)

        def metrics(model):
            scores = evaluate(model, images, palette, runtime.global_batch, step=step)
            return {"delta_e": scores["delta_e"], "psnr": scores["psnr"]}

        return [plots.EpochStrip(strip_drawer(val_images, palette, cfg), run_dir, metrics)]

    def describe(self, cfg, data, model, runtime):
        classes = f" of {cfg.classes}" if cfg.classes else ""
        start = f", continuing {cfg.base_model}" if cfg.base_model else ""
        return (f"data: {len(data[0])} training and {len(data[1])} validation images{classes}; "
                f"model: {cfg.model}, {model.count_params():,} parameters, {model.num_colours} colours{start}")

    def final_metrics(self, run, data, runtime):
        cfg, val_images = run.config, data[1]
        hist = plots.read_history_csv(run.path("history.csv"))
        plots.history_curves(hist, run.path(os.path.join("plots", "curves.png")), ("loss", "accuracy"),
                             title=cfg.model)
        metrics = {"model": cfg.model, "epochs": len(hist.get("loss", [])), "validation_images": int(len(val_images))}
        if len(val_images):
            best = run.load_model("best")
            metrics["validation"] = evaluate(best, val_images, run.assets["palette"], runtime.global_batch,
                                             cfg.decode, cfg.temperature)
            metrics["baselines"] = baselines(val_images, run.assets["palette"])
        return metrics

    # === Using a run ===
    def load_assets(self, run):
        return {"palette": load_palette(run.path(PALETTE_FILE))}

    def adapt_model(self, model, run):
        if isinstance(model, ColourNet):
            # A `.keras` file of the first layout: the bare net on grey / 256.
            model = Colorizer(model, input_mode(run.config), name=f"{model.name}_colorizer")
        if not isinstance(model, Colorizer):
            raise UserError(f"{run.run_dir}: its model is a {type(model).__name__}, not a colourizer")
        check_palette(run.assets["palette"], model, run.path(PALETTE_FILE))
        return model

    def evaluate(self, run, checkpoint="best", split="validation", decode=None, temperature=None,
                 batch_size=None):
        if split not in ("train", "validation"):
            raise UserError(f"unknown split {split!r}; choose train or validation")
        cfg = run.config
        train_images, val_images = self.load_data(cfg)
        images = train_images if split == "train" else val_images
        if not len(images):
            raise UserError(f"{run.run_dir}: the run has no {split} images (val_fraction 0?)")
        return evaluate(run.load_model(checkpoint), images, run.assets["palette"], batch_size or cfg.batch_size,
                        decode or cfg.decode, cfg.temperature if temperature is None else temperature)

    def predict(self, run, images, decode=None, temperature=None):
        """uint8 RGB (H, W, 3) or (N, H, W, 3), any size -> colourized uint8 RGB of the same shape.

        A list of photos of different sizes (or of paths) gives a list, each at its photo's own size.
        """
        own_sizes = photos_one_by_one(images)
        if own_sizes is not None:
            return [self.predict(run, image, decode, temperature) for image in own_sizes]
        images = check_photos(images)  # a path, one photo or a batch; anything else is one line
        single = images.ndim == 3
        cfg = run.config
        out = colorize(run.model, run.assets["palette"], images[None] if single else images,
                       decode or cfg.decode, cfg.temperature if temperature is None else temperature)
        return out[0] if single else out


TASK = ColorizationTask()
