"""Segmentation benchmarks: a DeepLabV3 preset trained and timed on an image/mask folder.

Quality trains the preset (the Weizmann horses: `weizmann_scratch`) with the
package's own `train` and reports its validation metrics beside what the
trivial answers score (everything background, everything foreground). Speed
measures `model.fit` images/s at the preset's batch size, the input
pipeline on its own, and inference of the Keras model, the SavedModel and the
TFLite variants exported by `keras_cnn.export`.
"""

import os

import numpy as np

from keras_cnn import state_files
from keras_cnn.benchmarks.timing import timed_training
from keras_cnn.config import resolve

PRESET = "weizmann_scratch"
# One short epoch on a few pairs; the time-based schedule needs a time limit, so it goes.
QUICK = {"epochs": 1, "max_examples": 32, "time_limit_minutes": 0.0, "lr_schedule": "constant",
         "plot_examples": 0}
METRICS = ("loss", "fg_iou", "mean_iou", "pixel_accuracy", "thresholded_iou")


def preset_config(preset, data_dir, quick=False, overrides=None):
    from keras_cnn.segmentation.config import PRESETS, SegmentationConfig

    return resolve(SegmentationConfig, PRESETS, preset,
                   {"data_dir": os.path.abspath(data_dir), **(QUICK if quick else {}), **(overrides or {})})


def train_preset(preset, data_dir, run_dir, quick=False, overrides=None, reuse=False, log=print):
    """Trains into `run_dir` (or reuses a finished run there); returns the metrics and the timing."""
    from keras_cnn.tasks import train

    cfg = preset_config(preset, data_dir, quick, overrides)
    timing = timed_training(train, cfg, run_dir, preset, reuse, log)
    return state_files.read_object(os.path.join(run_dir, "metrics.json"), "run metrics"), timing


def trivial_scores(masks, foreground=1):
    """Pixel accuracy and foreground IoU of answering "all background" and "all foreground".

    Accumulated over all pixels, as the package's IoU metrics accumulate their
    confusion matrix.
    """
    masks = np.asarray(masks)
    fg = float(np.mean(masks == foreground))
    return [{"name": "all background", "pixel_accuracy": 1.0 - fg, "fg_iou": 0.0},
            {"name": "all foreground", "pixel_accuracy": fg, "fg_iou": fg}]


def quality(data_dir, work_dir, preset=PRESET, quick=False, overrides=None, reuse=False, log=print):
    """Trains `preset` and returns its validation row (best checkpoint) and the trivial baselines."""
    from keras_cnn.segmentation.data import load_examples
    from keras_cnn.tasks import get_task

    run_dir = os.path.join(work_dir, "segmentation", preset)
    metrics, timing = train_preset(preset, data_dir, run_dir, quick, overrides, reuse, log)
    cfg = preset_config(preset, data_dir, quick, overrides)
    data = get_task("segmentation").load_data(cfg, splits=("validation",))
    val = data.pairs("validation")
    _, masks = load_examples(val, data.decode_mask, (cfg.image_size, cfg.image_size))
    rows = []
    # The last epoch first: "best" was chosen on these same validation pairs, so it flatters a little.
    for checkpoint, label in (("last", "last epoch"), ("best", "best by val fg IoU")):
        if checkpoint in metrics:
            rows.append({"name": f"{preset} ({label})", "backbone": cfg.backbone, "image_size": cfg.image_size,
                         **{m: metrics[checkpoint].get(m) for m in METRICS},
                         "train_seconds": timing["train_seconds"] if not rows else None,
                         "train_cpu_seconds": timing.get("train_cpu_seconds") if not rows else None,
                         "load_before": timing["load_before"], "load_after": timing["load_after"],
                         "reused": timing["reused"]})
    return {"rows": rows, "baselines": trivial_scores(masks), "validation_pairs": len(val), "run_dir": run_dir}


def training_speed(data_dir, preset=PRESET, quick=False, steps=None, overrides=None, log=print):
    """`model.fit` images/s at the preset's batch size (augmentation on), and the pipeline's own rate."""
    from keras_cnn.benchmarks.timing import pipeline_rate, run_model, training_rate

    steps = steps or (2 if quick else 10)
    cfg = preset_config(preset, data_dir, quick, overrides)
    model, ds, runtime, data = run_model("segmentation", cfg, splits=("train",))
    pairs = data.pairs("train")
    fit = training_rate(model, ds, runtime.global_batch, steps=steps, warmup=2)
    # The pipeline caches decoded images after one pass, as it does after training's first epoch.
    pipe = pipeline_rate(ds, batches=max(10, 3 * steps), warmup=max(2, len(pairs) // runtime.global_batch))
    row = {"name": preset, "model": f"DeepLabV3 {cfg.backbone}", "params": int(model.count_params()),
           "batch": runtime.global_batch, "image_size": cfg.image_size,
           "train_images_per_s": fit["images_per_s"], "step_ms": fit["step_ms"],
           "pipeline_images_per_s": pipe["images_per_s"],
           "pipeline_ratio": pipe["images_per_s"] / fit["images_per_s"]}
    log(f"{preset}: fit {fit['images_per_s']:.1f} images/s at batch {runtime.global_batch}; pipeline alone "
        f"{pipe['images_per_s']:.0f} images/s ({row['pipeline_ratio']:.0f}x)")
    return [row]
