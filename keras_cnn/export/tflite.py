"""TFLite export for phones: four variants, built-in ops only, each checked on the task.

The graph is the servable's `tflite_outputs` at a fixed shape: uint8 RGB
(1, S, S, 3) in, preprocessing included; out come "classes" (uint8 argmax per
pixel), "logits" and, for an argmax colourizer, "colours" (uint8 RGB). An app
resizes its photo and reads its answer; nothing to decode.

Variants (TensorFlow's post-training quantisation modes):
- `float32`: no quantisation.
- `float16`: weights stored as float16, computed in float32.
- `dynamic`: weights int8, activations quantised on the fly.
- `int8`: weights (per channel) and activations int8, calibrated on the
  run's training images; logits out as int8 with a scale. Every op runs in
  integer arithmetic except the input cast and the final ARG_MAX (which the
  converter feeds a dequantised copy of the int8 logits: the same decision).

What keeps the int8 model's decisions (docs/TFLITE.md has the measurements):
the colourizer graph is `int8_graph.colourizer_logits` (the grey input stays
exact; a plain int8 concatenation cut it to about 32 levels), and the int8
logits tensor is calibrated on the range that decides an argmax: from the
lowest runner-up logit seen on the calibration images to the highest logit,
instead of down to the lowest logit of any class (a 2x finer step on a
trained UNet). Logits below that floor are clamped to it; they lose to the
winner either way. Annealed-mean colourizers keep the full logit range.

No variant may use Flex (`SELECT_TF_OPS`) or custom ops: phones ship only the
built-in kernels. Each export writes a report: file size and latency against
float32, op list, agreement with the Keras model and the task metrics of both
against the truth (delta E, IoU), and the targets of docs/TFLITE.md judged.
"""

import os
import tempfile
import time
import warnings

import numpy as np
import tensorflow as tf

from keras_cnn import hardware, state_files
from keras_cnn.errors import UserError
from keras_cnn.export import litert_runtime
from keras_cnn.export.saved_model import IMAGES_KEY

VARIANTS = ("float32", "float16", "dynamic", "int8")

# What a quantised file must reach on held-out photos (docs/TFLITE.md, "Targets").
TARGETS = {
    "argmax_agreement": {"colorization": 0.97, "segmentation": 0.99},
    "delta_e_increase": 0.02,      # relative to the Keras model's own mean delta E
    "foreground_iou_drop": 0.01,   # absolute, below the Keras model's
    "size_vs_float32": 0.3,
    "latency_vs_float32": 0.5,
}
# The float variants must compute what Keras computes.
FLOAT_CHECKS = {"float32": {"argmax_agreement": 0.999, "mean_abs_diff": 1e-4},
                "float16": {"argmax_agreement": 0.99, "mean_abs_diff": 2e-2}}


def write_fixed_saved_model(servable, path, outputs=None, input_dtype=tf.uint8):
    """The TFLite graph as a SavedModel (the converter's official Keras 3 input); returns `path`.

    `outputs`: images -> dict of tensors; default `servable.tflite_outputs`
    (the int8 study writes other graphs of the same model, and one with float pixels in).
    """
    import keras

    size = servable.image_size
    archive = keras.export.ExportArchive()
    archive.track(servable.model)
    archive.add_endpoint(
        "serving_default", outputs or servable.tflite_outputs,
        input_signature=[tf.TensorSpec((1, size, size, 3), input_dtype, name=IMAGES_KEY)])
    archive.write_out(path, verbose=False)
    return path


def _first_error_line(e):
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    for ln in lines:
        if "error:" in ln.lower():
            return ln[:300]
    return (lines[0] if lines else type(e).__name__)[:300]


def argmax_logit_range(logits):
    """(low, high) of the logits that can decide an argmax: the lowest runner-up and the highest logit.

    `logits` (..., K) are the model's on the calibration images.
    """
    logits = np.asarray(logits, np.float32).reshape(-1, np.shape(logits)[-1])
    top2 = np.sort(logits, axis=-1)[:, -2:] if logits.shape[-1] > 1 else np.repeat(logits, 2, axis=-1)
    return float(top2[:, 0].min()), float(top2[:, 1].max())


def calibration_logit_range(servable, images, batch=100):
    """`argmax_logit_range` of the TFLite graph's logits on calibration `images`."""
    return argmax_logit_range(np.concatenate(
        [servable.export_logits(tf.constant(images[i:i + batch])).numpy() for i in range(0, len(images), batch)]))


def flatbuffer(model_bytes):
    """(schema module, mutable `ModelT`) of a `.tflite`, for editing it."""
    from tensorflow.lite.python import schema_py_generated as schema

    return schema, schema.ModelT.InitFromPackedBuf(model_bytes, 0)


def pack(model):
    """`.tflite` bytes of a `ModelT`."""
    import flatbuffers

    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def builtin_code(model, op):
    codes = model.operatorCodes[op.opcodeIndex]
    return max(codes.builtinCode, codes.deprecatedBuiltinCode)


def _set_logits_range(calibrated, low, high):
    """The calibrated model with the range of the tensor ARG_MAX reads (the logits) set to [low, high]."""
    schema, model = flatbuffer(calibrated)
    graph = model.subgraphs[0]
    argmax = [op for op in graph.operators if builtin_code(model, op) == schema.BuiltinOperator.ARG_MAX]
    if len(argmax) != 1:
        raise UserError(f"int8 calibration: the graph has {len(argmax)} ARG_MAX ops, expected one")
    quant = graph.tensors[argmax[0].inputs[0]].quantization
    if quant is None or quant.min is None or len(quant.min) != 1:
        raise UserError("int8 calibration: the logits tensor has no calibrated range")
    quant.min, quant.max = [min(float(low), 0.0)], [max(float(high), 0.0)]
    return pack(model)


def _check_integer_only(model):
    """int8 files compute in integers, but for the input's cast and the argmax.

    The converter hands ARG_MAX a dequantised copy of the int8 logits (as the
    logits are also an output): the same decision, one cheap float op.
    """
    interpreter = litert_runtime.load_interpreter(model, with_delegates=False)
    dtypes = {d["index"]: d["dtype"] for d in interpreter.get_tensor_details()}
    floats = set()
    for op in interpreter._get_ops_details():
        if op["op_name"] in ("CAST", "QUANTIZE", "DEQUANTIZE", "ARG_MAX"):
            continue
        for index in list(op["inputs"]) + list(op["outputs"]):
            if index >= 0 and dtypes.get(index) == np.float32:
                floats.add(op["op_name"])
    if floats:
        raise UserError(f"TFLite int8 model still computes in float: {', '.join(sorted(floats))}")


def convert(saved_model_dir, variant, representative_images=None, logits_range=None):
    """`.tflite` bytes of the SavedModel at `saved_model_dir` in one of `VARIANTS`.

    `logits_range` (int8 only): (low, high) to calibrate the logits tensor
    with (see `argmax_logit_range`); None keeps the observed min / max.
    """
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
        # Calibrate, set the logits' range, then quantise: what convert() does
        # in one go, with the range step in between.
        converter._experimental_calibrate_only = True
    try:
        with warnings.catch_warnings(), litert_runtime.quiet_native_stderr():
            # int8 calibration runs TensorFlow's own deprecated interpreter.
            warnings.filterwarnings("ignore", message=r"\s*Warning: tf.lite.Interpreter is deprecated")
            model = converter.convert()
            if variant == "int8":
                from tensorflow.lite.python import convert as tfl_convert

                if logits_range is not None:
                    model = _set_logits_range(model, *logits_range)
                # Per-channel weights (the converter's default); logits out as int8.
                model = tfl_convert.mlir_quantize(model, disable_per_channel=False, input_data_type=tf.float32,
                                                  output_data_type=tf.int8)
    except UserError:
        raise
    except Exception as e:  # ConverterError and friends carry MLIR dumps
        raise UserError(f"TFLite {variant} conversion failed ({_first_error_line(e)})") from None
    ops = litert_runtime.op_names(model)
    foreign = [op for op in ops if op.startswith("Flex") or op == "CUSTOM"]
    if foreign:
        raise UserError(f"TFLite {variant} model needs non-built-in ops: {', '.join(foreign)}")
    if variant == "int8":
        _check_integer_only(model)
    return model


def agreement(reference, outputs, floor=None):
    """How closely a variant's `outputs` follow the Keras `reference` (dicts as `tflite_outputs` gives).

    Logit differences leave out the reference logits below `floor` (those the
    int8 file clamps; see `argmax_logit_range`).
    """
    want = np.asarray(reference["logits"], np.float64)
    diff = np.abs(np.asarray(outputs["logits"], np.float64) - want)
    if floor is not None:
        diff = diff[want >= floor]
    same = np.asarray(outputs["classes"]) == np.asarray(reference["classes"])
    out = {"images": int(len(same)), "argmax_agreement": float(same.mean()),
           "max_abs_diff": float(diff.max()) if diff.size else 0.0,
           "mean_abs_diff": float(diff.mean()) if diff.size else 0.0}
    if floor is not None:
        out["logit_diffs_above"] = float(floor)
    if "colours" in reference and "colours" in outputs:
        out["colours_equal"] = float(np.all(np.asarray(outputs["colours"]) == np.asarray(reference["colours"]),
                                            axis=-1).mean())
    return out


def _tensor_info(detail):
    scale, zero_point = detail["quantization"]
    info = {"shape": [int(d) for d in detail["shape"]], "dtype": np.dtype(detail["dtype"]).name}
    if scale:
        info["quantization"] = {"scale": float(scale), "zero_point": int(zero_point)}
    return info


def tensors(interpreter):
    """{"inputs": {key: info}, "outputs": {key: info}} of the serving signature."""
    runner = interpreter.get_signature_runner("serving_default")
    return {"inputs": {k: _tensor_info(d) for k, d in runner.get_input_details().items()},
            "outputs": {k: _tensor_info(d) for k, d in sorted(runner.get_output_details().items())}}


def latencies(models, image, num_threads=1, rounds=7, seconds=0.15, cpu=None):
    """Median milliseconds of one invoke of each model (name -> bytes), measured in alternating rounds.

    Alternating keeps a busy machine's slow moments from landing on one model.
    `cpu`, a dict, receives each model's process CPU milliseconds per invoke
    (on one thread, what the invoke itself costs, whatever else the machine runs).
    """
    interpreters = {}
    for name, model in models.items():
        it = litert_runtime.load_interpreter(model, num_threads=num_threads)
        inp = it.get_input_details()[0]
        # The pixels in the file's input type (the int8 study's 16x8 file takes float32).
        x = image[None].astype(inp["dtype"])
        interpreters[name] = (it, inp, x)
        for _ in range(3):
            it.set_tensor(inp["index"], x)
            it.invoke()
    times = {name: [] for name in models}
    cpu_times = {name: [0.0, 0] for name in models}
    for _ in range(rounds):
        for name, (it, inp, x) in interpreters.items():
            start, cpu_start = time.perf_counter(), time.process_time()
            while time.perf_counter() - start < seconds:
                t = time.perf_counter()
                it.set_tensor(inp["index"], x)
                it.invoke()
                times[name].append(time.perf_counter() - t)
                cpu_times[name][1] += 1
            cpu_times[name][0] += time.process_time() - cpu_start
    if cpu is not None:
        cpu.update({name: 1000.0 * total / max(n, 1) for name, (total, n) in cpu_times.items()})
    return {name: 1000.0 * float(np.median(t)) for name, t in times.items()}


def latency_verdict(int8_instructions="detect"):
    """(judged, why): whether the latency target means something on this host, and the reason.

    `int8_instructions`: the CPU's int8 dot-product instructions ("detect":
    `hardware.int8_dot_product()`): an empty tuple when it has none, None
    when they cannot be read. Without them TFLite's int8 kernels
    run about as fast as float32 (1.18x float32 on an AVX2-only AMD EPYC, 0.36x
    on an AMX Xeon, the same file), so the target says nothing about the model.
    """
    found = hardware.int8_dot_product() if int8_instructions == "detect" else int8_instructions
    cpu = hardware.cpu_name()
    if found:
        return True, f"this host's CPU ({cpu}) has int8 dot-product instructions ({', '.join(found)})"
    if found is None:
        return False, f"this host's CPU features cannot be read ({cpu}), so int8 may run no faster than float32"
    return False, f"this host's CPU ({cpu}) has no int8 dot-product instructions (AVX512-VNNI/AMX)"


def judge(rep, application, reference_scores, latency_judged=True):
    """The targets this variant's report meets: {name: {"value", "target", "met"}}.

    `latency_judged=False` leaves the latency target out (see `latency_verdict`).
    """
    variant = rep["variant"]
    a = rep["agreement_with_keras"]
    out = {}

    def add(name, value, target, met):
        if value is not None:
            out[name] = {"value": value, "target": target, "met": bool(met)}

    if variant in FLOAT_CHECKS:
        want = FLOAT_CHECKS[variant]
        add("argmax_agreement", a["argmax_agreement"], want["argmax_agreement"],
            a["argmax_agreement"] >= want["argmax_agreement"])
        add("mean_abs_diff", a["mean_abs_diff"], want["mean_abs_diff"], a["mean_abs_diff"] <= want["mean_abs_diff"])
        return out
    target = TARGETS["argmax_agreement"][application]
    add("argmax_agreement", a["argmax_agreement"], target, a["argmax_agreement"] >= target)
    scores = rep.get("task_metrics") or {}
    if "delta_e" in scores and reference_scores.get("delta_e"):
        rel = scores["delta_e"] / reference_scores["delta_e"] - 1.0
        add("delta_e_increase", rel, TARGETS["delta_e_increase"], rel <= TARGETS["delta_e_increase"])
    if scores.get("foreground_iou") is not None and reference_scores.get("foreground_iou") is not None:
        drop = reference_scores["foreground_iou"] - scores["foreground_iou"]
        add("foreground_iou_drop", drop, TARGETS["foreground_iou_drop"], drop <= TARGETS["foreground_iou_drop"])
    add("size_vs_float32", rep.get("size_vs_float32"), TARGETS["size_vs_float32"],
        (rep.get("size_vs_float32") or 0) <= TARGETS["size_vs_float32"])
    if latency_judged:
        add("latency_vs_float32", rep.get("latency_vs_float32"), TARGETS["latency_vs_float32"],
            (rep.get("latency_vs_float32") or 0) <= TARGETS["latency_vs_float32"])
    return out


def latency_line(reports, judged, why):
    """The one line saying whether the latency target was judged here, and why; None without quantised files."""
    quantised = [v for v in reports if v not in FLOAT_CHECKS]
    if not quantised:
        return None
    if judged:
        return f"latency judged against the {TARGETS['latency_vs_float32']:g}x float32 target: {why}"
    ratios = ", ".join(f"{v} ran {reports[v]['latency_vs_float32']:.2f}x float32" for v in quantised)
    return f"latency not judged: {why}; {ratios} here"


def summary_line(rep):
    """One line of what an export measured, for the log."""
    a, t = rep["agreement_with_keras"], rep.get("targets", {})

    def flag(name):
        return "" if name not in t else (" ok" if t[name]["met"] else f" MISSED (target {t[name]['target']:g})")

    def vs_float32(key):
        ratio = rep.get(f"{key}_vs_float32")
        if rep["variant"] == "float32" or ratio is None:
            return ""
        return f" ({ratio:.2f}x float32{flag(f'{key}_vs_float32')})"

    parts = [f"tflite {rep['variant']}: {rep['size_bytes'] / 1024:.1f} KiB{vs_float32('size')}"]
    if rep.get("latency_ms") is not None:
        parts.append(f"{rep['latency_ms']:.2f} ms/image on {rep['latency_threads']} thread(s){vs_float32('latency')}")
    parts.append(f"argmax agreement {100 * a['argmax_agreement']:.2f}%{flag('argmax_agreement')}, "
                 f"mean |d logit| {a['mean_abs_diff']:.2e}{flag('mean_abs_diff')} on {a['images']} images")
    scores, ref = rep.get("task_metrics") or {}, rep.get("keras_task_metrics") or {}
    if "delta_e" in scores:
        parts.append(f"delta E {scores['delta_e']:.3f} (Keras {ref['delta_e']:.3f}){flag('delta_e_increase')}")
    if scores.get("foreground_iou") is not None:
        parts.append(f"foreground IoU {scores['foreground_iou']:.4f} (Keras {ref['foreground_iou']:.4f})"
                     f"{flag('foreground_iou_drop')}")
    return "; ".join(parts)


def export_tflite(servable, variants, out_dir, name, check_images, representative_images=None,
                  images_source="", log=print, truth=None, latency_threads=1):
    """Writes `<name>_<variant>.tflite` and `<name>_<variant>_report.json` into `out_dir`.

    `truth`: what the check images should give (the photos themselves for a
    colourizer, masks for a segmenter), or None: then the reports carry no
    task metrics. Returns the reports by variant. `out_dir` is expected to be
    a temporary folder that the caller renames into place.
    """
    check_images = np.asarray(check_images, np.uint8)
    if len(check_images) == 0:
        raise UserError("no images to check the TFLite export with")
    reference = {k: v.numpy() for k, v in servable.reference_outputs(tf.constant(check_images)).items()}
    num_classes = reference["logits"].shape[-1]
    if num_classes > 256:
        raise UserError(f"TFLite export returns class ids as uint8; {num_classes} classes do not fit")
    reference_scores = servable.score(reference, check_images, truth) if truth is not None else {}
    logits_range = None
    if "int8" in variants and servable.decided_by_argmax:
        calibration = np.asarray(representative_images, np.uint8)
        logits_range = calibration_logit_range(servable, calibration) if len(calibration) else (0.0, 0.0)
    models = {}
    with tempfile.TemporaryDirectory(prefix="keras_cnn_tflite_") as scratch:
        graph_dir = os.path.join(scratch, "graph")
        write_fixed_saved_model(servable, graph_dir)
        # float32 is the yardstick of size and speed even when it is not exported.
        for variant in ("float32",) + tuple(v for v in variants if v != "float32"):
            models[variant] = convert(graph_dir, variant, representative_images,
                                      logits_range if variant == "int8" else None)
    cpu = {}
    timing = latencies(models, check_images[0], num_threads=latency_threads, cpu=cpu)
    latency_judged, latency_why = latency_verdict()
    reports = {}
    for variant in variants:
        model = models[variant]
        path = os.path.join(out_dir, f"{name}_{variant}.tflite")
        with open(path, "wb") as f:
            f.write(model)
        interpreter = litert_runtime.load_interpreter(model)
        got = litert_runtime.predict(interpreter, check_images)
        rep = {
            "variant": variant,
            "file": os.path.basename(path),
            "size_bytes": len(model),
            "size_vs_float32": len(model) / len(models["float32"]),
            "latency_ms": timing[variant],
            "latency_vs_float32": timing[variant] / timing["float32"],
            "latency_threads": latency_threads,
            "cpu_ms": cpu[variant],
            "cpu_vs_float32": cpu[variant] / cpu["float32"],
            "ops": litert_runtime.op_names(model),
            **tensors(interpreter),
            "agreement_with_keras": {**agreement(reference, got, logits_range[0] if variant == "int8" and
                                                 logits_range else None), "images_source": images_source},
        }
        if truth is not None:
            rep["task_metrics"] = servable.score(got, check_images, truth)
            rep["keras_task_metrics"] = reference_scores
        if variant == "int8":
            rep["representative_images"] = int(len(representative_images))
            rep["logits_calibration"] = ({"range": list(logits_range), "rule": "argmax: lowest runner-up to "
                                          "highest logit on the calibration images"}
                                         if logits_range else {"rule": "min / max of all logits"})
        rep["host_cpu"] = {"name": hardware.cpu_name(), "int8_dot_product": hardware.int8_dot_product()}
        if variant not in FLOAT_CHECKS:
            rep["latency_target"] = {"judged": latency_judged, "why": latency_why}
        rep["targets"] = judge(rep, servable.application, reference_scores, latency_judged)
        report_path = os.path.join(out_dir, f"{name}_{variant}_report.json")
        with open(report_path, "w") as f:
            # A measurement that is not finite is no value: null, not the bare NaN JSON has no word for.
            f.write(state_files.json_text(rep, report_path, "TFLite report", nulls=True))
        log(summary_line(rep))
        kept = rep["targets"].get("argmax_agreement")
        if variant == "int8" and kept and not kept["met"] and servable.application == "colorization" \
                and "int8_finetune" not in (servable.source or {}):
            run_dir = getattr(servable, "run_dir", None) or "RUN"
            log(f"  int8 keeps {100 * kept['value']:.1f}% of the decisions after training alone; "
                f"keras-cnn finetune-int8 --run-dir {run_dir} --out-dir {run_dir}_int8 fine-tunes the model "
                "for its int8 file (about 97-98% on the shared horses), then export that run")
        reports[variant] = rep
    line = latency_line(reports, latency_judged, latency_why)
    if line:
        log(line)
    return reports


def metadata(servable, reports):
    """What `metadata.json` tells an app about the `.tflite` files: files, tensors, how to decode."""
    size = servable.image_size
    first = next(iter(reports.values()))  # every variant has the same outputs
    outputs = sorted(first["outputs"])
    k = first["outputs"]["logits"]["shape"][-1]
    what = "palette colour" if servable.application == "colorization" else "class (see class_names)"
    clamped = ("; in the int8 file, logits below the lowest runner-up seen on the calibration images are "
               "clamped to it (argmax decisions are unchanged)") if servable.decided_by_argmax else ""
    described = {
        "classes": f"uint8 (1, {size}, {size}): the argmax {what} of each pixel",
        "logits": (f"(1, {size}, {size}, {k}) class scores: float32, or int8 in the int8 file, where "
                   f"logit = scale * (q - zero_point) with logits_quantization below{clamped}"),
        "colours": f"uint8 RGB (1, {size}, {size}, 3): each pixel's palette colour (argmax), "
                   "decoded in the graph",
    }
    if servable.application == "segmentation":
        how = ("mask = classes (uint8 class per pixel at the input size); resize it to the photo "
               "with nearest-neighbour sampling")
    elif "colours" in outputs:
        how = "colours is the colour image (uint8 RGB at the input size); nothing to decode"
    else:
        how = ("colours = palette decoding of logits: weights = softmax(logits / temperature); "
               "colour = weights @ palette.colours; for an ab palette, lightness L from the grey input "
               "(grey = mean(R, G, B) / 256, L of the RGB grey * 256 / 255) and Lab -> RGB "
               "(keras_cnn.export.litert_runtime.decode_colours does exactly this)")
    return {
        "tflite": {v: r["file"] for v, r in reports.items()},
        "tflite_signature": "serving_default",
        "tflite_input": {"key": IMAGES_KEY, "dtype": "uint8", "shape": [1, size, size, 3],
                         "layout": "NHWC RGB 0-255, fitted to the size as image_fit says"},
        "tflite_outputs": {name: described[name] for name in outputs},
        "logits_quantization": {v: r["outputs"]["logits"]["quantization"] for v, r in reports.items()
                                if "quantization" in r["outputs"]["logits"]},
        "how_to_decode": how,
    }
