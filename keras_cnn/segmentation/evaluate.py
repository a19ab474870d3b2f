"""Evaluating a trained segmenter: loss, foreground IoU, mean IoU, pixel accuracy, "mIOU".

`evaluate(model, pairs, decode_mask)` runs `model.evaluate` on checked
image/mask pairs at the model's own input size and preprocessing.
`evaluate_run(run_dir, ...)` does it for a run folder, re-reading the run's
config so the validation split is exactly the one training held out.
"""

import os

from keras_cnn import config as config_lib
from keras_cnn import training
from keras_cnn.errors import UserError
from keras_cnn.segmentation import data as data_lib
from keras_cnn.segmentation.config import SegmentationConfig

# Metric names in reporting order.
METRICS = ("loss", "fg_iou", "mean_iou", "pixel_accuracy", "thresholded_iou")


def evaluate(model, pairs, decode_mask, batch_size=16):
    """A dict of the metrics over `pairs` (the whole set; no partial batch dropped)."""
    from keras_cnn.segmentation.train import compile_segmenter

    compile_segmenter(model)
    ds = data_lib.make_dataset(pairs, decode_mask, model.image_size, batch_size, model.preprocessing,
                               cache=False)
    values = model.evaluate(ds, return_dict=True, verbose=0)
    return {k: round(float(values[k]), 6) for k in METRICS if k in values}


def run_config(run_dir, overrides=None):
    """The saved config of a run folder, with `overrides` (e.g. a moved data_dir) applied."""
    cfg = config_lib.load_config(SegmentationConfig, config_lib.config_path(run_dir))
    if overrides:
        cfg = config_lib.resolve(SegmentationConfig, {"run": cfg}, "run", overrides)
    return cfg


def evaluate_config(cfg, model_path, split="validation"):
    """Evaluates the `.keras` file `model_path` on `split` of the data `cfg` names.

    The split is the one training used: the same hash-chosen validation share
    of a folder, or the same Oxford 17 split.
    """
    from keras_cnn.segmentation.train import load_data

    if split not in ("train", "validation", "test"):
        raise UserError(f"unknown split {split!r}; choose train, validation or test")
    model = training.load_model(model_path)
    data = load_data(cfg, splits=(split,))
    results = evaluate(model, data.pairs(split), data.decode_mask, cfg.batch_size)
    results["examples"] = len(data.pairs(split))
    return results


def evaluate_run(run_dir, checkpoint="best", split="validation", overrides=None):
    """Evaluates `run_dir/<checkpoint>.keras` on a split of the run's own data."""
    cfg = run_config(run_dir, overrides)
    return evaluate_config(cfg, os.path.join(run_dir, f"{checkpoint}.keras"), split)
