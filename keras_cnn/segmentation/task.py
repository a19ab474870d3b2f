"""The segmentation task: image/mask folders or Oxford 17 Flowers in, a DeepLabV3 out.

`metrics.json` holds the validation metrics of the best and last checkpoints.
Training itself is the shared loop (`keras_cnn.tasks.train`); this module
says what is particular to segmentation: the data, the segmenter (new, or a
trained one adapted with a new head), the optimizer, the fine-tuning mode and
the time budget.
"""

import dataclasses
import json
import math
import os
import time

import keras
import numpy as np

from keras_cnn import plots, state_files, tasks
from keras_cnn.errors import UserError
from keras_cnn.fileio import atomic_write_text, check_photos, photos_one_by_one
from keras_cnn.segmentation import config as config_lib
from keras_cnn.segmentation import data as data_lib
from keras_cnn.segmentation.deeplab_v3 import DeepLabV3Segmenter, build_segmenter, flip_averaged, set_finetune_mode
from keras_cnn.segmentation.evaluate import evaluate, evaluate_full_size, majority_baseline
from keras_cnn.segmentation.metrics import segmentation_loss, segmentation_metrics
from keras_cnn.segmentation.predict import predict_labels
from keras_cnn.training.optimizers import scale_learning_rate

MONITOR = "val_fg_iou"


@dataclasses.dataclass
class SegmentationData:
    """Checked `(image, mask)` pairs per split and the mask decoder they share."""

    splits: dict
    decode_mask: object

    def pairs(self, split):
        if not self.splits.get(split):
            raise UserError(f"this dataset has no {split!r} split (it has: "
                            f"{', '.join(k for k, v in self.splits.items() if v)})")
        return self.splits[split]


def load_data(cfg, splits=("train", "validation")):
    """The dataset `cfg` names, with every file of the wanted `splits` checked."""
    if cfg.dataset == "folder":
        if not cfg.data_dir:
            raise UserError("dataset 'folder' needs --data-dir (a folder with images/ and masks/)")
        pairs = data_lib.folder_pairs(cfg.data_dir)
        train, val = data_lib.split_pairs(pairs, cfg.val_fraction)
        all_splits = {"train": train, "validation": val}
        decoder = data_lib.folder_mask_decoder([m for _, m in pairs], cfg.num_classes)
    elif cfg.dataset == "flowers17":
        from keras_cnn.segmentation import flowers

        all_splits, decoder = flowers.load_flowers17(cfg)
    else:
        raise UserError(f"unknown dataset {cfg.dataset!r}")
    if cfg.max_examples:
        # Training only: validation and test stay whole, so the metrics compare with a full run's.
        all_splits = {**all_splits, "train": all_splits["train"][:cfg.max_examples]}
    for split in splits:
        if all_splits.get(split):
            data_lib.check_pairs(all_splits[split], decoder)
    return SegmentationData(all_splits, decoder)


def make_optimizer(cfg, learning_rate, total_steps, model=None):
    """The optimizer `cfg` names; with `model`, its backbone at `cfg.backbone_lr_multiplier` x the rate."""
    optimizer = _base_optimizer(cfg, learning_rate, total_steps)
    if model is not None:
        scale_learning_rate(optimizer, model.backbone.trainable_weights, cfg.backbone_lr_multiplier)
    return optimizer


def _base_optimizer(cfg, learning_rate, total_steps):
    lr = learning_rate
    if cfg.lr_schedule == "cosine":
        # Decays to 1% of the peak over the whole run.
        lr = keras.optimizers.schedules.CosineDecay(learning_rate, max(total_steps, 1), alpha=0.01)
    if cfg.optimizer == "adam":
        return keras.optimizers.Adam(lr)
    if cfg.optimizer == "adamw":
        return keras.optimizers.AdamW(lr, weight_decay=cfg.weight_decay)
    return keras.optimizers.SGD(lr, momentum=0.9, weight_decay=cfg.weight_decay or None)


def compile_segmenter(model, optimizer="adam", jit_compile=False):
    """Compiles with pixel-wise cross-entropy and the segmentation metrics; 255 is ignored."""
    model.compile(
        optimizer=optimizer,
        loss=segmentation_loss(), metrics=segmentation_metrics(model.num_classes), jit_compile=jit_compile)


def strip_drawer(images, masks, num_classes):
    """`draw(model, path)` for `plots.EpochStrip`: image / true mask / predicted mask rows."""
    from keras_cnn.segmentation.predict import colorize

    inputs = np.asarray(images, np.float32)

    def draw(model, path):
        pred = keras.ops.convert_to_numpy(keras.ops.argmax(model(inputs, training=False), axis=-1))
        plots.image_strip([images / 255.0, colorize(masks, num_classes), colorize(pred, num_classes)],
                          ["image", "true mask", "predicted"], path,
                          title=os.path.basename(path)[:-4].replace("_", " "))

    return draw


class TimeBudget(keras.callbacks.Callback):
    """Stops training after the first epoch that ends past `minutes` of training time.

    With `peak_lr` set it also anneals the learning rate by a cosine over the
    *time* budget instead of the epochs (down to 1% of the peak), so a run
    ends annealed however fast the (shared) machine turns out to be: the
    fixed-budget recipe of Li et al. 2020, "Budgeted Training". The training
    time spent so far is kept in `time_budget.json` in the run folder, so a
    resumed run continues the same clock.
    """

    def __init__(self, minutes, run_dir, peak_lr=None):
        super().__init__()
        self.seconds = minutes * 60.0
        self.path = os.path.join(run_dir, state_files.TIME_BUDGET)
        self.peak_lr = peak_lr
        self.spent = 0.0
        self.start = None

    def _elapsed(self):
        return self.spent + time.time() - self.start

    def on_train_begin(self, logs=None):
        self.spent = state_files.time_budget_seconds(self.path)  # checked: a bad file is one line naming it
        self.start = time.time()

    def on_train_batch_begin(self, batch, logs=None):
        if self.peak_lr is not None:
            fraction = min(self._elapsed() / self.seconds, 1.0)
            lr = self.peak_lr * (0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * fraction)))
            self.model.optimizer.learning_rate.assign(lr)

    def on_epoch_end(self, epoch, logs=None):
        elapsed = self._elapsed()
        atomic_write_text(self.path, json.dumps({"seconds": round(elapsed, 1)}) + "\n")
        if elapsed > self.seconds:
            print(f"time budget: stopping after epoch {epoch + 1} ({elapsed / 60:.1f} min of training)")
            self.model.stop_training = True


class SegmentationTask(tasks.Task):
    name = "segmentation"
    config_class = config_lib.SegmentationConfig
    presets = config_lib.PRESETS
    monitor = "val_fg_iou"
    monitor_mode = "max"

    # === Training ===
    def load_data(self, cfg, splits=("train", "validation")):
        return load_data(cfg, splits)

    def build_model(self, cfg, data, assets, runtime):
        if cfg.lr_schedule == "cosine_time" and cfg.time_limit_minutes <= 0:
            raise UserError("lr_schedule cosine_time needs --time-limit-minutes")
        model = build_segmenter(cfg)
        set_finetune_mode(model, cfg.finetune)
        steps = self.steps_per_epoch(data, runtime)
        compile_segmenter(model, make_optimizer(cfg, runtime.learning_rate, steps * cfg.epochs, model),
                          jit_compile=runtime.jit_compile)
        return model

    @staticmethod
    def steps_per_epoch(data, runtime):
        return max(len(data.pairs("train")) // runtime.global_batch, 1)

    def datasets(self, cfg, data, assets, model, runtime):
        size = model.image_size
        augment = data_lib.Augment(cfg.min_crop, True, cfg.color_jitter) if cfg.augment else None
        train_ds = data_lib.make_dataset(data.pairs("train"), data.decode_mask, size, runtime.global_batch,
                                         training=True, augment=augment, seed=cfg.seed)
        val_pairs = data.splits.get("validation")
        val_ds = (data_lib.make_dataset(val_pairs, data.decode_mask, size, runtime.global_batch)
                  if val_pairs else None)
        return train_ds, val_ds

    def callbacks(self, cfg, data, assets, model, run_dir, runtime):
        extra = []
        if cfg.time_limit_minutes > 0:
            peak = runtime.learning_rate if cfg.lr_schedule == "cosine_time" else None
            extra.append(TimeBudget(cfg.time_limit_minutes, run_dir, peak))
        val_pairs = data.splits.get("validation")
        if cfg.plot_examples and val_pairs:
            images, masks = data_lib.load_examples(val_pairs[:cfg.plot_examples], data.decode_mask,
                                                   model.image_size)
            extra.append(plots.EpochStrip(strip_drawer(images, masks, model.num_classes), run_dir))
        return extra

    def describe(self, cfg, data, model, runtime):
        trained = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
        rates = ""
        if cfg.backbone_lr_multiplier != 1:
            rates = f"; backbone at {cfg.backbone_lr_multiplier:g} x the learning rate"
        return (f"data: {len(data.pairs('train'))} training and {len(data.splits.get('validation') or [])} "
                f"validation pairs, {self.steps_per_epoch(data, runtime)} steps of {runtime.global_batch} per "
                f"epoch; model: {model.count_params():,} parameters, {trained:,} trained ({cfg.finetune}){rates}")

    def final_metrics(self, run, data, runtime):
        history = plots.read_history_csv(run.path("history.csv"))
        plots.history_curves(history, run.path(os.path.join("plots", plots.CURVES_FILE)),
                             metrics=("loss", "fg_iou", "mean_iou"), title=f"DeepLabV3 {run.config.backbone}")
        val_pairs = data.splits.get("validation") or []
        results = {}
        if val_pairs:
            for checkpoint in ("best", "last"):
                if os.path.exists(run.checkpoint_path(checkpoint)):
                    model = run.load_model(checkpoint)
                    results[checkpoint] = evaluate(model, val_pairs, data.decode_mask, runtime.global_batch)
            results["baselines"] = {"majority_class": majority_baseline(val_pairs, data.decode_mask, model.image_size,
                                                                        model.num_classes)}
        results["validation_pairs"] = len(val_pairs)
        return results

    # === Using a run ===
    def adapt_model(self, model, run):
        if not isinstance(model, DeepLabV3Segmenter):
            raise UserError(f"{run.run_dir}: its model is a {type(model).__name__}, not a DeepLabV3 segmenter")
        compile_segmenter(model)
        return model

    def evaluate(self, run, checkpoint="best", split="validation", batch_size=None, full_size=False,
                 flip_tta=False):
        return self.evaluate_model(run.load_model(checkpoint), run.config, split, batch_size, full_size,
                                   flip_tta)

    def evaluate_model(self, model, cfg, split="validation", batch_size=None, full_size=False, flip_tta=False):
        """Metrics of a segmenter on `split` of the data `cfg` names (the split training held out).

        With `full_size`, also "photo_size" and "mask_size": the predictions
        resized back to each photo's own size and to each mask's own size
        (`evaluate.evaluate_full_size`), the figures a user of `segment` sees.
        With `flip_tta`, the model's logits are averaged with those of the
        mirrored photo (`deeplab_v3.flip_averaged`).
        """
        if split not in ("train", "validation", "test"):
            raise UserError(f"unknown split {split!r}; choose train, validation or test")
        if not isinstance(model, DeepLabV3Segmenter):
            raise UserError(f"not a DeepLabV3 segmenter (it is a {type(model).__name__})")
        if flip_tta:
            model = flip_averaged(model)
        compile_segmenter(model)
        data = self.load_data(cfg, splits=(split,))
        pairs, batch_size = data.pairs(split), batch_size or cfg.batch_size
        results = evaluate(model, pairs, data.decode_mask, batch_size)
        results["examples"] = len(pairs)
        if full_size:
            for at in ("photo", "mask"):
                results[f"{at}_size"] = evaluate_full_size(model, pairs, data.decode_mask, batch_size, at=at)
        return results

    def predict(self, run, images, flip_tta=False):
        """uint8 RGB (H, W, 3) or (N, H, W, 3), any size -> uint8 class labels (H, W) per image.

        With `flip_tta`, each photo's logits are averaged with those of its mirror image. A list of
        photos of different sizes (or of paths) gives a list of label maps, each at its photo's own size.
        """
        own_sizes = photos_one_by_one(images)
        if own_sizes is not None:
            return [self.predict(run, image, flip_tta) for image in own_sizes]
        images = check_photos(images)  # a path, one photo or a batch; anything else is one line
        model = flip_averaged(run.model) if flip_tta else run.model
        if images.ndim == 3:
            return predict_labels(model, images)
        return np.stack([predict_labels(model, image) for image in images])


TASK = SegmentationTask()
