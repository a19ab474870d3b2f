"""Evaluating a segmenter: loss, foreground IoU, mean IoU, pixel accuracy, "mIOU".

`evaluate(model, pairs, decode_mask)` runs `model.evaluate` on checked
image/mask pairs at the model's own input size; `majority_baseline` scores
the answer "the most common class everywhere" on the same masks.
`evaluate_full_size(model, pairs, decode_mask)` scores the same predictions
the way a user sees them: logits resized back to each photo's own size (as
`predict.segment_paths` does) against the mask at that size. The model must be compiled
with the segmentation loss and metrics (`SegmentationTask.compile`); a run
folder is evaluated through `keras_cnn.tasks.open_run(run_dir).evaluate()`,
which uses exactly the split training held out.
"""

import numpy as np
from keras import ops

from keras_cnn.errors import UserError
from keras_cnn.fileio import read_image
from keras_cnn.segmentation import data as data_lib
from keras_cnn.segmentation.metrics import confusion_matrix, confusion_scores

# Metric names in reporting order.
METRICS = ("loss", "fg_iou", "mean_iou", "pixel_accuracy", "thresholded_iou")


def evaluate(model, pairs, decode_mask, batch_size=16):
    """A dict of the metrics over `pairs` (the whole set; no partial batch dropped)."""
    ds = data_lib.make_dataset(pairs, decode_mask, model.image_size, batch_size, cache=False)
    values = model.evaluate(ds, return_dict=True, verbose=0)
    return {k: round(float(values[k]), 6) for k in METRICS if k in values}


def majority_baseline(pairs, decode_mask, image_size, num_classes):
    """What answering the most common class everywhere scores on `pairs` ("all background" on most data).

    The masks are taken at the model's input size, as `evaluate` scores the
    model; `class` in the result is the class answered.
    """
    _, masks = data_lib.load_examples(pairs, decode_mask, image_size)
    labelled = masks[masks < num_classes]
    majority = int(np.argmax(np.bincount(labelled.ravel(), minlength=num_classes))) if labelled.size else 0
    scores = confusion_scores(confusion_matrix(masks, np.full_like(masks, majority), num_classes))
    return {"class": majority, **{k: round(v, 6) for k, v in scores.items()}}


def evaluate_full_size(model, pairs, decode_mask, batch_size=16, at="photo"):
    """Foreground IoU, mean IoU and pixel accuracy at each example's own size.

    Each photo is resized to the model's input (bilinear with antialiasing,
    as in training), and the logits are resized bilinearly back before the
    argmax, as `predict.predict_labels` does. With `at="photo"` they go to
    the photo's size and the mask is brought to it by nearest neighbour
    when the two differ; with `at="mask"` they go to the mask's size, so the
    labels are scored exactly as given (Weizmann masks are stored smaller or
    larger than their photos, at the same aspect ratio). Intersections and
    unions are summed over all pixels of all examples, like `ForegroundIoU`.
    The photos and logits are resized with TensorFlow (the data side),
    whatever backend the model runs on.
    """
    import tensorflow as tf

    if at not in ("photo", "mask"):
        raise UserError(f"at must be 'photo' or 'mask', got {at!r}")
    n = model.num_classes
    confusion = np.zeros((n, n), np.int64)  # [true, predicted]
    size = model.image_size
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start:start + batch_size]
        photos = [read_image(image_path) for image_path, _ in chunk]
        x = tf.stack([tf.cast(tf.clip_by_value(tf.round(
            tf.image.resize(p, size, method="bilinear", antialias=True)), 0, 255), tf.uint8)
            for p in photos]).numpy()
        logits = ops.convert_to_numpy(model(x, training=False))
        for (_, mask_path), photo, one in zip(chunk, photos, logits):
            labels = decode_mask(mask_path)
            target = photo.shape[:2] if at == "photo" else labels.shape
            if labels.shape != tuple(target):
                labels = tf.image.resize(labels[..., None], target, method="nearest")[..., 0].numpy()
            pred = tf.argmax(tf.image.resize(one[None], target, method="bilinear")[0], axis=-1).numpy()
            confusion += confusion_matrix(labels, pred, n)
    scores = {k: round(v, 6) for k, v in confusion_scores(confusion).items()}
    return {**scores, "examples": len(pairs)}
