"""Evaluating a segmenter: loss, foreground IoU, mean IoU, pixel accuracy, "mIOU".

`evaluate(model, pairs, decode_mask)` runs `model.evaluate` on checked
image/mask pairs at the model's own input size. The model must be compiled
with the segmentation loss and metrics (`SegmentationTask.compile`); a run
folder is evaluated through `keras_cnn.tasks.open_run(run_dir).evaluate()`,
which uses exactly the split training held out.
"""

from keras_cnn.segmentation import data as data_lib

# Metric names in reporting order.
METRICS = ("loss", "fg_iou", "mean_iou", "pixel_accuracy", "thresholded_iou")


def evaluate(model, pairs, decode_mask, batch_size=16):
    """A dict of the metrics over `pairs` (the whole set; no partial batch dropped)."""
    ds = data_lib.make_dataset(pairs, decode_mask, model.image_size, batch_size, cache=False)
    values = model.evaluate(ds, return_dict=True, verbose=0)
    return {k: round(float(values[k]), 6) for k in METRICS if k in values}
