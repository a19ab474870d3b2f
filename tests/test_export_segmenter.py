"""Export of DeepLabV3 (dilated convolutions, bilinear resizes): SavedModel and every TFLite variant.

keras-hub skips its own DeepLabV3 LiteRT export because resizes of unknown
size break it; ours exports at the model's fixed size and must convert with
built-in ops only.
"""

import io
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_cnn import training
from keras_cnn.errors import UserError
from keras_cnn.export import layout, litert_runtime, saved_model, servable_for
from keras_cnn.segmentation.predict import predict_labels
from keras_cnn.tasks import open_run
from tests.export_helpers import blocky_images, segmenter_run


def quiet(*args):
    pass


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("seg")
    run_dir = segmenter_run(str(root))
    # float16 and dynamic range are left to the slow test (the colourizer tests
    # cover them fast): DeepLabV3 conversions are the slow part here.
    formats = ("saved_model", "tflite_float32", "tflite_int8")
    summary = layout.export_model(servable_for(open_run(run_dir), class_names=["background", "horse"]),
                                  str(root / "exported_models"), "seg", formats,
                                  representative_count=8, check_count=4, log=quiet)
    model = training.load_model(os.path.join(run_dir, "best.keras"))
    return model, summary


def keras_probabilities(model, images):
    return tf.nn.softmax(model(images.astype(np.float32), training=False), -1).numpy()


def test_saved_model_matches_keras_at_two_batch_sizes(exported):
    model, summary = exported
    serve = tf.saved_model.load(summary["saved_model"]["path"]).signatures["serving_default"]
    images = blocky_images(3, 32, seed=41)
    for n in (1, 3):
        out = serve(images=tf.constant(images[:n]))
        want = keras_probabilities(model, images[:n])
        assert np.max(np.abs(out["probabilities"].numpy() - want)) < 1e-5
        assert out["mask"].dtype == tf.uint8
        np.testing.assert_array_equal(out["mask"].numpy(), want.argmax(-1))


def test_saved_model_masks_photos_at_their_own_size_like_predict(exported):
    model, summary = exported
    loaded = tf.saved_model.load(summary["saved_model"]["path"])
    photo = blocky_images(1, 64, seed=42)[:, :48]
    out = loaded.signatures["serving_default"](images=tf.constant(photo))
    assert out["mask"].shape == (1, 48, 64)
    # Same pipeline as keras_cnn.segmentation.predict (resize, normalise, logits resized back).
    assert np.mean(out["mask"].numpy()[0] == predict_labels(model, photo[0])) > 0.999
    buf = io.BytesIO()
    Image.fromarray(photo[0]).save(buf, format="JPEG", quality=95)
    by_bytes = loaded.signatures["serving_bytes"](image_bytes=tf.constant([buf.getvalue()]))
    # Sent as a file, the photo's mask comes back at its own size too.
    assert by_bytes["mask"].shape == (1, 48, 64) and by_bytes["sizes"].numpy().tolist() == [[48, 64]]
    decoded = tf.io.decode_image(buf.getvalue(), channels=3).numpy()  # TensorFlow's JPEG decoder, as the graph's
    np.testing.assert_array_equal(by_bytes["mask"].numpy()[0], loaded.signatures["serving_decoded"](
        images=tf.constant(decoded[None]))["mask"].numpy()[0])


def test_every_tflite_variant_converts_with_builtin_ops_and_agrees(exported):
    model, summary = exported
    folder = summary["tflite"]["path"]
    images = blocky_images(3, 32, seed=43)
    want = keras_probabilities(model, images)
    for variant in ("float32", "int8"):
        path = os.path.join(folder, f"seg_{variant}.tflite")
        ops = litert_runtime.op_names(path)
        assert "RESIZE_BILINEAR" in ops and "CONV_2D" in ops, ops
        assert not [op for op in ops if op.startswith("Flex") or op == "CUSTOM"]
        got = litert_runtime.predict_probabilities(litert_runtime.load_interpreter(path), images)
        diff = np.max(np.abs(got - want))
        if variant == "float32":
            assert diff < 1e-5
        else:
            assert np.mean(got.argmax(-1) == want.argmax(-1)) > 0.8  # random weights: weak decisions
        with open(os.path.join(folder, f"seg_{variant}_report.json")) as f:
            report = json.load(f)
        assert report["size_bytes"] == os.path.getsize(path)
        # Scored against the run's validation masks, beside the Keras model's own score.
        assert 0 <= report["task_metrics"]["foreground_iou"] <= 1
        assert set(report["keras_task_metrics"]) == {"foreground_iou", "mean_iou", "pixel_accuracy"}
        classes = litert_runtime.predict(litert_runtime.load_interpreter(path), images)["classes"]
        np.testing.assert_array_equal(classes, got.argmax(-1))
    meta = litert_runtime.read_metadata(os.path.join(folder, "metadata.json"))
    assert meta["application"] == "segmentation" and meta["class_names"] == ["background", "horse"]
    assert meta["input_size"] == [32, 32] and meta["image_fit"] == "stretch"
    pre = saved_model.read_metadata(summary["saved_model"]["path"])["preprocessing"]
    assert pre == {"mode": "imagenet", "formula": "(x / 255 - mean) / std", "in_graph": True,
                   "mean": [0.485, 0.456, 0.406],
                   "std": [0.229, 0.224, 0.225]}


def test_segmenter_export_bad_input(tmp_path):
    run_dir = segmenter_run(str(tmp_path))
    with pytest.raises(UserError, match="exports at its own input size 32, not --image-size 64"):
        servable_for(open_run(run_dir), image_size=64)
    with pytest.raises(UserError, match="3 class names given for a model of 2 classes"):
        servable_for(open_run(run_dir), class_names=["a", "b", "c"])
    os.remove(os.path.join(run_dir, "best.keras"))
    with pytest.raises(UserError, match="best.keras: model file does not exist"):
        servable_for(open_run(run_dir))


@pytest.mark.slow
def test_trained_segmenter_quantised_on_real_horses(tmp_path, shared_data):
    import dataclasses

    from keras_cnn.segmentation.config import PRESETS
    from keras_cnn.tasks import train

    data_dir = os.path.join(shared_data, "weizmann-horses")
    if not os.path.isdir(data_dir):
        pytest.skip(f"{data_dir} not found")
    cfg = dataclasses.replace(PRESETS["smoke"], data_dir=data_dir, image_size=64, epochs=4, max_examples=120,
                              aspp_channels=32)
    run_dir = str(tmp_path / "run")
    train(cfg, run_dir, verbose=0)
    summary = layout.export_model(servable_for(open_run(run_dir)), str(tmp_path / "out"), "horses", layout.FORMATS,
                                  representative_count=100, check_count=40, log=quiet)
    reports = summary["tflite"]["reports"]
    assert set(reports) == {"float32", "float16", "dynamic", "int8"}
    for report in reports.values():
        assert "RESIZE_BILINEAR" in report["ops"] and not [op for op in report["ops"] if op.startswith("Flex")]
    assert reports["float32"]["agreement_with_keras"]["max_abs_diff"] < 1e-5
    assert reports["float16"]["agreement_with_keras"]["argmax_agreement"] >= 0.995
    assert reports["dynamic"]["agreement_with_keras"]["argmax_agreement"] >= 0.97
    assert reports["int8"]["agreement_with_keras"]["argmax_agreement"] >= 0.90


def test_flip_tta_export_matches_the_flip_averaged_keras_model(tmp_path):
    from keras_cnn.segmentation.deeplab_v3 import flip_averaged

    run_dir = segmenter_run(str(tmp_path))
    summary = layout.export_model(servable_for(open_run(run_dir), flip_tta=True), str(tmp_path / "out"), "seg",
                                  ("saved_model", "tflite_float32"), representative_count=4, check_count=4,
                                  log=quiet)
    model = training.load_model(os.path.join(run_dir, "best.keras"))
    images = blocky_images(2, 32, seed=7)
    want = keras_probabilities(flip_averaged(model), images)
    assert np.max(np.abs(want - keras_probabilities(model, images))) > 1e-4  # the mirror pass changes them
    serve = tf.saved_model.load(summary["saved_model"]["path"]).signatures["serving_default"]
    assert np.max(np.abs(serve(images=tf.constant(images))["probabilities"].numpy() - want)) < 1e-5
    path = os.path.join(summary["tflite"]["path"], "seg_float32.tflite")
    got = litert_runtime.predict_probabilities(litert_runtime.load_interpreter(path), images)
    assert np.max(np.abs(got - want)) < 1e-4
    meta = litert_runtime.read_metadata(os.path.join(summary["tflite"]["path"], "metadata.json"))
    assert meta["flip_tta"] is True and meta["backbone"]
