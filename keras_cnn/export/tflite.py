"""TFLite export for phones: four variants, built-in ops only, each checked against Keras.

The graph is the servable's `probabilities` at a fixed shape: uint8 RGB
(1, S, S, 3) in, float32 probabilities (1, S, S, K) out, preprocessing
included, so an app only resizes its photo and decodes with `metadata.json`.

Variants (TensorFlow's post-training quantisation modes):
- `float32`: no quantisation.
- `float16`: weights stored as float16, computed in float32.
- `dynamic`: weights int8, activations quantised on the fly.
- `int8`: weights and activations int8, calibrated on real training
  images; the output is uint8 probabilities (scale 1/256). Every op runs in
  integer arithmetic (`TFLITE_BUILTINS_INT8`) except the input cast.

No variant may use Flex (`SELECT_TF_OPS`) or custom ops: phones ship only the
built-in kernels. Each export writes a report: file size, op list, and the
agreement of the `.tflite` with the Keras model on real images.
"""

import json
import os
import tempfile
import warnings

import numpy as np
import tensorflow as tf

from keras_cnn.errors import UserError
from keras_cnn.export import litert_runtime
from keras_cnn.export.saved_model import IMAGES_KEY

VARIANTS = ("float32", "float16", "dynamic", "int8")


def write_fixed_saved_model(servable, path):
    """The TFLite graph as a SavedModel (the converter's official Keras 3 input)."""
    import keras

    size = servable.image_size
    archive = keras.export.ExportArchive()
    archive.track(servable.model)
    archive.add_endpoint(
        "serving_default", lambda images: {"probabilities": servable.probabilities(images)},
        input_signature=[tf.TensorSpec((1, size, size, 3), tf.uint8, name=IMAGES_KEY)])
    archive.write_out(path, verbose=False)


def _first_error_line(e):
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    for ln in lines:
        if "error:" in ln.lower():
            return ln[:300]
    return (lines[0] if lines else type(e).__name__)[:300]


def convert(saved_model_dir, variant, representative_images=None):
    """`.tflite` bytes of the SavedModel at `saved_model_dir` in one of `VARIANTS`."""
    if variant not in VARIANTS:
        raise UserError(f"unknown TFLite variant {variant!r}; choose one of: {', '.join(VARIANTS)}")
    if variant == "int8":
        images = np.asarray(representative_images if representative_images is not None else [], np.uint8)
        if len(images) == 0:
            raise UserError("int8 export needs representative images, but the representative dataset is empty")
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir, signature_keys=["serving_default"])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if variant == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif variant == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif variant == "int8":
        def representative():
            for image in images:
                yield {IMAGES_KEY: image[None]}

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_output_type = tf.uint8
    try:
        with warnings.catch_warnings():
            # int8 calibration runs TensorFlow's own deprecated interpreter.
            warnings.filterwarnings("ignore", message=r"\s*Warning: tf.lite.Interpreter is deprecated")
            model = converter.convert()
    except Exception as e:  # ConverterError and friends carry MLIR dumps
        raise UserError(f"TFLite {variant} conversion failed ({_first_error_line(e)})") from None
    ops = litert_runtime.op_names(model)
    foreign = [op for op in ops if op.startswith("Flex") or op == "CUSTOM"]
    if foreign:
        raise UserError(f"TFLite {variant} model needs non-built-in ops: {', '.join(foreign)}")
    return model


def agreement(reference, probabilities):
    """How closely `probabilities` follow `reference` (both (N, H, W, K))."""
    diff = np.abs(np.asarray(probabilities, np.float64) - np.asarray(reference, np.float64))
    same = np.argmax(probabilities, axis=-1) == np.argmax(reference, axis=-1)
    return {"images": int(len(reference)), "max_abs_diff": float(diff.max()),
            "mean_abs_diff": float(diff.mean()), "argmax_agreement": float(same.mean())}


def _tensor_info(detail):
    scale, zero_point = detail["quantization"]
    info = {"name": detail["name"], "shape": [int(d) for d in detail["shape"]],
            "dtype": np.dtype(detail["dtype"]).name}
    if scale:
        info["quantization"] = {"scale": float(scale), "zero_point": int(zero_point)}
    return info


def report(model_bytes, variant, reference, check_images, images_source, representative_count=0):
    """The report of one `.tflite`: size, ops, tensors, agreement with `reference` probabilities."""
    interpreter = litert_runtime.load_interpreter(model_bytes)
    got = litert_runtime.predict_probabilities(interpreter, check_images)
    out = {
        "variant": variant,
        "size_bytes": len(model_bytes),
        "ops": litert_runtime.op_names(model_bytes),
        "input": _tensor_info(interpreter.get_input_details()[0]),
        "output": _tensor_info(interpreter.get_output_details()[0]),
        "agreement_with_keras": {**agreement(reference, got), "images_source": images_source},
    }
    if variant == "int8":
        out["representative_images"] = int(representative_count)
    return out


def export_tflite(servable, variants, out_dir, name, check_images, representative_images=None,
                  images_source="", log=print):
    """Writes `<name>_<variant>.tflite` and `<name>_<variant>_report.json` into `out_dir`.

    Returns the reports by variant. `out_dir` is expected to be a temporary
    folder that the caller renames into place.
    """
    check_images = np.asarray(check_images, np.uint8)
    if len(check_images) == 0:
        raise UserError("no images to check the TFLite export with")
    reference = servable.probabilities(tf.constant(check_images)).numpy()
    reports = {}
    with tempfile.TemporaryDirectory(prefix="keras_cnn_tflite_") as scratch:
        graph_dir = os.path.join(scratch, "graph")
        write_fixed_saved_model(servable, graph_dir)
        for variant in variants:
            model = convert(graph_dir, variant, representative_images)
            path = os.path.join(out_dir, f"{name}_{variant}.tflite")
            with open(path, "wb") as f:
                f.write(model)
            rep = report(model, variant, reference, check_images, images_source,
                         len(representative_images) if variant == "int8" else 0)
            rep["file"] = os.path.basename(path)
            with open(os.path.join(out_dir, f"{name}_{variant}_report.json"), "w") as f:
                json.dump(rep, f, indent=2)
                f.write("\n")
            a = rep["agreement_with_keras"]
            log(f"tflite {variant}: {rep['size_bytes'] / 1024:.1f} KiB, max |dp| {a['max_abs_diff']:.2e}, "
                f"argmax agreement {100 * a['argmax_agreement']:.2f}% on {a['images']} images")
            reports[variant] = rep
    return reports
