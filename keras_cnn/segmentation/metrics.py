"""Segmentation metrics as Keras metrics, for `fit` and `evaluate`.

All take integer masks `y_true` of shape `(batch, H, W)` (or `(batch, H, W,
1)`) and logits or probabilities `y_pred` of shape `(batch, H, W, classes)`;
the predicted class is the argmax. Pixels labelled `IGNORE_LABEL` (255) count
for nothing: that is how unlabelled trimap pixels are left out.

- `ForegroundIoU`: IoU of the foreground class over the whole dataset
  (accumulated intersection / accumulated union).
- `MeanIoU`: the per-class IoUs averaged over classes present in the labels
  or the predictions.
- `PixelAccuracy`: fraction of labelled pixels whose class is right.
- `ThresholdedIoU`: the course assignment's "mIOU" (see the class).

`confusion_matrix` and `confusion_scores` are the NumPy twins for class ids
that are already decided (full-size evaluation, exported TFLite files).
`segmentation_loss` is the loss they go with.
"""

import keras
import numpy as np
from keras import ops

# Label value ignored by the loss and every metric (the PASCAL VOC convention).
IGNORE_LABEL = 255


def confusion_matrix(labels, predicted, num_classes):
    """(num_classes, num_classes) pixel counts [true, predicted] of integer masks; labels
    `>= num_classes` (`IGNORE_LABEL`) are left out."""
    labels = np.asarray(labels).astype(np.int64).ravel()
    predicted = np.asarray(predicted).astype(np.int64).ravel()
    keep = labels < num_classes
    return np.bincount(labels[keep] * num_classes + predicted[keep],
                       minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def confusion_scores(confusion):
    """fg_iou (class 1, or 0 with one class), mean_iou (over the classes present in the labels) and
    pixel_accuracy of a `confusion_matrix` summed over a dataset."""
    tp = np.diag(confusion).astype(np.float64)
    union = confusion.sum(0) + confusion.sum(1) - tp
    present = confusion.sum(1) > 0
    iou = np.where(union > 0, tp / np.maximum(union, 1), 0.0)
    return {"fg_iou": float(iou[1 if len(iou) > 1 else 0]),
            "mean_iou": float(iou[present].mean()) if present.any() else 0.0,
            "pixel_accuracy": float(tp.sum() / max(confusion.sum(), 1))}


def _labels(y_true):
    y_true = ops.convert_to_tensor(y_true)
    if len(y_true.shape) == 4 and y_true.shape[-1] == 1:
        y_true = ops.squeeze(y_true, axis=-1)
    return ops.cast(y_true, "int32")


@keras.saving.register_keras_serializable(package="keras_cnn")
class ForegroundIoU(keras.metrics.IoU):
    """IoU of one class (the foreground) accumulated over all pixels seen.

    Args:
        num_classes: number of classes the model predicts.
        foreground_class: the class whose IoU is reported.
        ignore_class: label value left out (255 by default).
        name: metric name (`fg_iou`).

    Example:
        m = ForegroundIoU()
        m.update_state([[[0, 1, 1]]], [[[[1, 0], [0, 1], [1, 0]]]])
        m.result()  # I = 1, U = 2 -> 0.5

    Reference:
        Everingham et al. 2010, "The PASCAL Visual Object Classes (VOC) Challenge".
    """

    def __init__(self, num_classes=2, foreground_class=1, ignore_class=IGNORE_LABEL, name="fg_iou",
                 dtype=None):
        super().__init__(num_classes=num_classes, target_class_ids=[foreground_class], name=name,
                         dtype=dtype, ignore_class=ignore_class, sparse_y_true=True,
                         sparse_y_pred=False)
        self.foreground_class = foreground_class

    def update_state(self, y_true, y_pred, sample_weight=None):
        return super().update_state(_labels(y_true), y_pred, sample_weight)

    def get_config(self):
        return {"num_classes": self.num_classes, "foreground_class": self.foreground_class,
                "ignore_class": self.ignore_class, "name": self.name, "dtype": self.dtype}


@keras.saving.register_keras_serializable(package="keras_cnn")
class MeanIoU(keras.metrics.MeanIoU):
    """Mean over classes of the per-class IoU, from logits (argmax) with 255 ignored.

    Classes that appear neither in the labels nor in the predictions are left
    out of the mean (their IoU is undefined).

    Args:
        num_classes: number of classes the model predicts.
        ignore_class: label value left out (255 by default).
        name: metric name (`mean_iou`).

    Example:
        m = MeanIoU(num_classes=2)
        m.update_state([[[0, 1, 1]]], [[[[1, 0], [0, 1], [1, 0]]]])
        m.result()  # background 1/2, foreground 1/2 -> 0.5

    Reference:
        Everingham et al. 2010, "The PASCAL Visual Object Classes (VOC) Challenge".
    """

    def __init__(self, num_classes=2, ignore_class=IGNORE_LABEL, name="mean_iou", dtype=None):
        super().__init__(num_classes=num_classes, name=name, dtype=dtype, ignore_class=ignore_class,
                         sparse_y_true=True, sparse_y_pred=False)

    def update_state(self, y_true, y_pred, sample_weight=None):
        return super().update_state(_labels(y_true), y_pred, sample_weight)

    def get_config(self):
        return {"num_classes": self.num_classes, "ignore_class": self.ignore_class,
                "name": self.name, "dtype": self.dtype}


@keras.saving.register_keras_serializable(package="keras_cnn")
class PixelAccuracy(keras.metrics.Metric):
    """Fraction of labelled pixels whose argmax class equals the label.

    Args:
        ignore_class: label value left out (255 by default; None keeps all).
        name: metric name (`pixel_accuracy`).

    Example:
        m = PixelAccuracy()
        m.update_state([[[0, 1, 255]]], [[[[1, 0], [1, 0], [0, 1]]]])
        m.result()  # 1 of 2 labelled pixels right -> 0.5
    """

    def __init__(self, ignore_class=IGNORE_LABEL, name="pixel_accuracy", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.ignore_class = ignore_class
        self.correct = self.add_variable(shape=(), initializer="zeros", name="correct",
                                         dtype="float32")
        self.total = self.add_variable(shape=(), initializer="zeros", name="total", dtype="float32")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = _labels(y_true)
        y_pred = ops.cast(ops.argmax(y_pred, axis=-1), "int32")
        valid = ops.ones_like(y_true, dtype="float32")
        if self.ignore_class is not None:
            valid = ops.cast(ops.not_equal(y_true, self.ignore_class), "float32")
        if sample_weight is not None:
            valid = valid * ops.cast(ops.reshape(sample_weight, (-1,) + (1,) * (len(y_true.shape) - 1)),
                                     "float32")
        hits = ops.cast(ops.equal(y_true, y_pred), "float32") * valid
        self.correct.assign_add(ops.sum(hits))
        self.total.assign_add(ops.sum(valid))

    def result(self):
        return ops.divide_no_nan(self.correct, self.total)

    def reset_state(self):
        self.correct.assign(0.0)
        self.total.assign(0.0)

    def get_config(self):
        return {"ignore_class": self.ignore_class, "name": self.name, "dtype": self.dtype}


@keras.saving.register_keras_serializable(package="keras_cnn")
class ThresholdedIoU(keras.metrics.Metric):
    """The course assignment's "mIOU": thresholded foreground IoU, averaged over images.

    Per image, foreground IoU = (I + 1e-6) / (U + 1e-6) over its labelled
    pixels (an image with no foreground in label or prediction scores 1);
    the image scores the fraction of the thresholds 0.5, 0.55, ..., 0.95
    that its IoU exceeds; the metric is the mean score over all images seen.
    The assignment wrote this as `ceil(clamp(20 * (iou - 0.5), 0, 10)) / 10`,
    which is the same number except exactly at a threshold, where float
    rounding decides for the formula but "exceeds" (strictly greater)
    decides here. Averaging over images (not over batches, as the notebook
    did) makes the value independent of the batch size.

    Args:
        foreground_class: the class scored.
        ignore_class: label value left out (255 by default).
        name: metric name (`thresholded_iou`).

    Example:
        m = ThresholdedIoU()
        m.update_state(y_true, logits)  # an image with IoU 0.72 scores 0.5
        m.result()

    Reference:
        CSC413/2516 "Convolutional Neural Networks" assignment, part C
        (`iou_pytorch`, after https://www.kaggle.com/iezepov/fast-iou-scoring-metric-in-pytorch-and-numpy).
    """

    THRESHOLDS = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
    SMOOTH = 1e-6

    def __init__(self, foreground_class=1, ignore_class=IGNORE_LABEL, name="thresholded_iou",
                 dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.foreground_class = foreground_class
        self.ignore_class = ignore_class
        self.score_sum = self.add_variable(shape=(), initializer="zeros", name="score_sum",
                                           dtype="float32")
        self.images = self.add_variable(shape=(), initializer="zeros", name="images", dtype="float32")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = _labels(y_true)
        y_pred = ops.cast(ops.argmax(y_pred, axis=-1), "int32")
        batch = ops.shape(y_true)[0]
        y_true = ops.reshape(y_true, (batch, -1))
        y_pred = ops.reshape(y_pred, (batch, -1))
        valid = ops.ones_like(y_true, dtype="bool")
        if self.ignore_class is not None:
            valid = ops.not_equal(y_true, self.ignore_class)
        true_fg = ops.logical_and(ops.equal(y_true, self.foreground_class), valid)
        pred_fg = ops.logical_and(ops.equal(y_pred, self.foreground_class), valid)
        inter = ops.sum(ops.cast(ops.logical_and(true_fg, pred_fg), "float32"), axis=1)
        union = ops.sum(ops.cast(ops.logical_or(true_fg, pred_fg), "float32"), axis=1)
        iou = (inter + self.SMOOTH) / (union + self.SMOOTH)
        thresholds = ops.convert_to_tensor(self.THRESHOLDS, dtype="float32")
        score = ops.mean(ops.cast(ops.greater(iou[:, None], thresholds[None, :]), "float32"), axis=1)
        weights = ops.ones_like(score)
        if sample_weight is not None:
            weights = ops.cast(ops.reshape(sample_weight, (-1,)), "float32") * weights
        self.score_sum.assign_add(ops.sum(score * weights))
        self.images.assign_add(ops.sum(weights))

    def result(self):
        return ops.divide_no_nan(self.score_sum, self.images)

    def reset_state(self):
        self.score_sum.assign(0.0)
        self.images.assign(0.0)

    def get_config(self):
        return {"foreground_class": self.foreground_class, "ignore_class": self.ignore_class,
                "name": self.name, "dtype": self.dtype}


def segmentation_loss():
    """The loss segmenters train with: pixel-wise cross-entropy on the logits, `IGNORE_LABEL` pixels left out."""
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=IGNORE_LABEL)


def segmentation_metrics(num_classes, foreground_class=1):
    """The metrics every segmentation run reports, in display order."""
    return [ForegroundIoU(num_classes, foreground_class), MeanIoU(num_classes),
            PixelAccuracy(), ThresholdedIoU(foreground_class)]
