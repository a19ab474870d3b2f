"""Each segmentation metric against a hand-computed example, and inside compile/evaluate."""

import keras
import numpy as np
import pytest

from keras_cnn.segmentation.metrics import (
    ForegroundIoU,
    MeanIoU,
    PixelAccuracy,
    ThresholdedIoU,
    segmentation_metrics,
)

# Also run in-process under KERAS_BACKEND=jax by .ci/run.
pytestmark = pytest.mark.portable


def logits_for(pred):
    """One-hot 'logits' whose argmax is `pred` (classes 0..2)."""
    return np.eye(3, dtype="float32")[np.asarray(pred)] * 4.0 - 2.0


# Two 2x3 images. Labels (255 = ignore) and predictions:
#   image 0: true [[1, 1, 0], [0, 0, 255]]   pred [[1, 0, 0], [1, 0, 1]]
#   image 1: true [[1, 1, 1], [1, 0, 0]]     pred [[1, 1, 1], [1, 0, 0]]
Y_TRUE = np.array([[[1, 1, 0], [0, 0, 255]], [[1, 1, 1], [1, 0, 0]]])
Y_PRED = np.array([[[1, 0, 0], [1, 0, 1]], [[1, 1, 1], [1, 0, 0]]])


def run(metric, y_true=Y_TRUE, y_pred=Y_PRED, classes=2):
    metric.update_state(y_true, logits_for(y_pred)[..., :classes] if classes == 2 else logits_for(y_pred))
    return float(metric.result())


def test_foreground_iou_by_hand():
    # Labelled pixels only. Foreground: I = 1 + 4 = 5; U = (1 TP, 1 FN, 1 FP) + 4 = 7.
    assert run(ForegroundIoU()) == pytest.approx(5 / 7)


def test_mean_iou_by_hand():
    # Background: TP = 2 + 2 = 4, FN (true 0, pred 1) = 1, FP (true 1, pred 0) = 1 -> 4/6.
    assert run(MeanIoU(num_classes=2)) == pytest.approx((5 / 7 + 4 / 6) / 2)


def test_pixel_accuracy_by_hand():
    # 11 labelled pixels, wrong: (0,0,1) and (0,1,0) -> 9 / 11.
    assert run(PixelAccuracy()) == pytest.approx(9 / 11)
    # Without ignoring, the 255 pixel counts as a miss: 9 / 12.
    assert run(PixelAccuracy(ignore_class=None)) == pytest.approx(9 / 12)


def test_thresholded_iou_by_hand():
    # Image 0: I = 1, U = 3 -> 0.33, exceeds no threshold -> 0.
    # Image 1: I = U = 4 -> 1.0, exceeds all ten -> 1. Mean over images: 0.5.
    assert run(ThresholdedIoU()) == pytest.approx(0.5)


@pytest.mark.parametrize("inter,union,score", [
    (72, 100, 0.5),    # 0.72 exceeds 0.5 ... 0.7
    (51, 100, 0.1),    # just above 0.5
    (50, 100, 0.0),    # exactly 0.5 does not exceed 0.5
    (96, 100, 1.0),
    (0, 0, 1.0),       # no foreground anywhere: (0 + 1e-6) / (0 + 1e-6) = 1
    (0, 10, 0.0),
])
def test_thresholded_iou_per_image_score(inter, union, score):
    # A 1x100 image: `inter` pixels both, `union - inter` predicted only.
    true = np.zeros((1, 1, 100), int)
    pred = np.zeros((1, 1, 100), int)
    true[0, 0, :inter] = 1
    pred[0, 0, :union] = 1
    assert run(ThresholdedIoU(), true, pred) == pytest.approx(score)


def test_thresholded_iou_matches_the_assignment_formula_off_the_thresholds():
    rng = np.random.RandomState(0)
    true = (rng.rand(64, 8, 8) > 0.5).astype(int)
    pred = np.where(rng.rand(64, 8, 8) > 0.3, true, 1 - true)
    iou = ((true & pred).sum((1, 2)) + 1e-6) / ((true | pred).sum((1, 2)) + 1e-6)
    # Away from the thresholds the two definitions agree exactly (see the class).
    away = np.all(np.abs(iou[:, None] - np.array(ThresholdedIoU.THRESHOLDS)[None]) > 1e-3, axis=1)
    assert away.sum() >= 32
    reference = np.mean(np.ceil(np.clip(20 * (iou[away] - 0.5), 0, 10)) / 10)
    assert run(ThresholdedIoU(), true[away], pred[away]) == pytest.approx(reference)


def test_metrics_accept_a_channel_axis_and_accumulate():
    m = ForegroundIoU()
    m.update_state(Y_TRUE[:1, ..., None], logits_for(Y_PRED[:1])[..., :2])
    m.update_state(Y_TRUE[1:, ..., None], logits_for(Y_PRED[1:])[..., :2])
    assert float(m.result()) == pytest.approx(5 / 7)
    m.reset_state()
    assert float(m.result()) == 0.0


def test_multi_class_mean_iou():
    true = np.array([[[0, 1, 2, 2]]])
    pred = np.array([[[0, 2, 2, 2]]])
    # class 0: 1/1, class 1: 0/1, class 2: 2/3.
    assert run(MeanIoU(num_classes=3), true, pred, classes=3) == pytest.approx((1 + 0 + 2 / 3) / 3)


@pytest.mark.parametrize("metric", segmentation_metrics(2))
def test_config_round_trip(metric):
    again = type(metric).from_config(metric.get_config())
    assert again.get_config() == metric.get_config()
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(metric))
    assert type(restored) is type(metric)


def test_metrics_in_compile_and_evaluate():
    inputs = keras.Input((2, 3, 2))
    model = keras.Model(inputs, keras.layers.Identity()(inputs))
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=255),
                  metrics=segmentation_metrics(2))
    values = model.evaluate(logits_for(Y_PRED)[..., :2], Y_TRUE, batch_size=1, return_dict=True, verbose=0)
    assert values["fg_iou"] == pytest.approx(5 / 7)
    assert values["mean_iou"] == pytest.approx((5 / 7 + 4 / 6) / 2)
    assert values["pixel_accuracy"] == pytest.approx(9 / 11)
    assert values["thresholded_iou"] == pytest.approx(0.5)
