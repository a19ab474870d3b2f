"""What each int8 export step buys, measured on a trained run (`scripts/int8_study.py`).

Each row is one `.tflite` of the same trained model, checked on the run's
held-out photos against the Keras model (argmax agreement) and the truth
(mean delta E of the decoded colours, or foreground IoU), with its size and
its one-thread LiteRT latency beside the shipped float32 file's (timed in
alternating rounds, so a busy machine slows all of them alike).

Rows, in the order a reader follows the fix:
- `float32`, `float16`, `dynamic`: the float and dynamic-range files.
- `int8 before`: the previous export: the model's own graph, uint8 softmax
  probabilities out (scale 1/256).
- `int8 logits out`, `int8 argmax in graph`: the same graph, logits out / the
  class ids computed in the graph (argmax decoders only): does the output's
  resolution matter?
- `int8 per-tensor weights`: per-channel weights (the converter's default)
  switched off, to show what they are worth.
- `int8 last conv float`: the layer that makes the logits kept in float
  (the converter's node denylist), logits min / max calibrated.
- `int8 exact grey` (colourizers): `int8_graph.colourizer_logits`, min / max.
- `int8 shipped`: that graph plus the argmax logit range: what export writes.
- `float32 / int8 with TRANSPOSE_CONV` (colourizers with cropped transposed
  convs): the shipped graph with the transposed convs kept as such instead of
  sub-pixel convs (CONV_2D + DEPTH_TO_SPACE): what that change buys in speed.
- `int8 shipped, N calibration images`: more images to calibrate on.
- `int8 shipped + percentile ranges`: every activation's range cut to the
  0.01 / 0.99 quantiles of the calibration activations (the logits as shipped).
- `16-bit activations, int8 weights`: the converter's 16x8 mode on the
  shipped graph's logits (float pixels in: the mode has no CAST or ARG_MAX),
  min / max calibration. Same weights as int8, 256x finer activations: it
  shows how much of the loss is activation rounding.
"""

import os
import tempfile
import warnings

import keras
import numpy as np
import tensorflow as tf

from keras_cnn.export import litert_runtime, tflite
from keras_cnn.export.colorization.int8_graph import colourizer_logits
from keras_cnn.export.saved_model import IMAGES_KEY


def grey_rounding(servable, check_count=500, steps=(1 / 768, 1 / 256, 1 / 128, 1 / 31.5, 1 / 15.75)):
    """The diagnosis, in float: the Keras colourizer's agreement with itself when its grey input is rounded.

    A plain int8 graph holds the grey image in an int8 tensor; where the grey
    is concatenated with ReLU activations it shares their scale (about 1/31.5
    on the trained course UNet). Rows: {"step", "levels", "argmax_agreement"}.
    """
    from keras_cnn.colorization.palette import grey

    images, _ = servable.check_set(check_count)
    g = grey(tf.constant(images))
    net = servable.model.net
    want = np.argmax(net(g, training=False).numpy(), -1)
    rows = []
    for step in steps:
        rounded = tf.round(g / step) * step
        got = np.argmax(net(rounded, training=False).numpy(), -1)
        rows.append({"step": float(step), "levels": int(round(1 / step)),
                     "argmax_agreement": float(np.mean(got == want))})
    return rows


def _calibrated(path, images):
    converter = tf.lite.TFLiteConverter.from_saved_model(path, signature_keys=["serving_default"])
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ({IMAGES_KEY: im[None]} for im in images)
    converter._experimental_calibrate_only = True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return converter.convert()


def _logits_producer(calibrated):
    """The output tensor name of the op whose result ARG_MAX reads (the logits' last op)."""
    return _logits_tail(calibrated)[0]


def _logits_tail(calibrated):
    """Output tensor names from the tensor ARG_MAX reads back to the last CONV_2D's (included)."""
    schema, model = tflite.flatbuffer(calibrated)
    graph = model.subgraphs[0]

    def code(op):
        return tflite.builtin_code(model, op)

    producers = {t: op for op in graph.operators for t in op.outputs}
    argmax = [op for op in graph.operators if code(op) == schema.BuiltinOperator.ARG_MAX]
    if not argmax:
        raise ValueError("no ARG_MAX in the graph")
    names, tensor = [], argmax[0].inputs[0]
    while tensor in producers:
        op = producers[tensor]
        names.append(graph.tensors[tensor].name.decode())
        if code(op) == schema.BuiltinOperator.CONV_2D:
            break
        tensor = op.inputs[0]
    return names


def _percentile_ranges(calibrated, images, low_q, high_q, keep=()):
    """The calibrated model with every activation range set to the mean per-image quantiles."""
    from ai_edge_litert.interpreter import Interpreter

    schema, model = tflite.flatbuffer(calibrated)
    graph = model.subgraphs[0]
    ranged = [i for i, t in enumerate(graph.tensors)
              if t.quantization is not None and t.quantization.min is not None and len(t.quantization.min) == 1
              and t.name.decode() not in keep]
    interpreter = Interpreter(model_content=calibrated, experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    index = interpreter.get_input_details()[0]["index"]
    lows, highs = {i: [] for i in ranged}, {i: [] for i in ranged}
    for image in images:
        interpreter.set_tensor(index, image[None])
        interpreter.invoke()
        for i in ranged:
            lo, hi = np.quantile(interpreter.get_tensor(i), [low_q, high_q])
            lows[i].append(lo)
            highs[i].append(hi)
    for i in ranged:
        q = graph.tensors[i].quantization
        q.min, q.max = [min(float(np.min(lows[i])), 0.0)], [max(float(np.max(highs[i])), 0.0)]
    return tflite.pack(model)


def _quantise(calibrated, per_channel=True, denylisted_nodes=None):
    from tensorflow.lite.python import convert as tfl_convert

    return tfl_convert.mlir_quantize(calibrated, disable_per_channel=not per_channel, input_data_type=tf.float32,
                                     output_data_type=tf.int8, denylisted_nodes=denylisted_nodes)


def _before(path, images):
    """The previous export's int8: the converter's one call, uint8 probabilities out."""
    converter = tf.lite.TFLiteConverter.from_saved_model(path, signature_keys=["serving_default"])
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ({IMAGES_KEY: im[None]} for im in images)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_output_type = tf.uint8
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return converter.convert()


def _int16_activations(servable, path, images):
    """The 16x8 file: int8 weights, int16 activations, float32 pixels in, logits out."""
    tflite.write_fixed_saved_model(servable, path, lambda x: {"logits": servable.logits(x)}, tf.float32)
    converter = tf.lite.TFLiteConverter.from_saved_model(path, signature_keys=["serving_default"])
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ({IMAGES_KEY: im[None].astype(np.float32)} for im in images)
    converter.target_spec.supported_ops = [
        tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return converter.convert()


def _outputs(model, images):
    """{"classes", "logits"} of any study file (a probabilities file gives log-probabilities as logits)."""
    got = litert_runtime.predict(litert_runtime.load_interpreter(model), images)
    if "probabilities" in got:
        interpreter = litert_runtime.load_interpreter(model)
        detail = interpreter.get_signature_runner("serving_default").get_output_details()["probabilities"]
        p = litert_runtime.dequantize(got["probabilities"], detail)
        got = {"logits": np.log(np.maximum(p, 1e-6)), "classes": p.argmax(-1)}
    if "classes" not in got:
        got["classes"] = got["logits"].argmax(-1)
    return got


def study(servable, check_count=500, representative_count=200, more_representative=1000, num_threads=1,
          log=print):
    """Rows (dicts) of what each int8 step buys on `servable`'s run; see the module docstring."""
    check, truth = servable.check_set(check_count)
    reps = servable.images("train", max(representative_count, more_representative))
    few = reps[:representative_count]
    reference = {k: v.numpy() for k, v in servable.reference_outputs(tf.constant(check)).items()}
    keras_scores = servable.score(reference, check, truth) if truth is not None else {}
    argmax = servable.decided_by_argmax

    def model_graph(images):
        logits = servable.logits(images)
        return {"logits": logits, "classes": tf.cast(tf.argmax(logits, -1), tf.uint8)}

    def model_classes(images):
        return {"classes": tf.cast(tf.argmax(servable.logits(images), -1), tf.uint8)}

    models = {}
    with tempfile.TemporaryDirectory(prefix="keras_cnn_int8_study_") as scratch:
        shipped = os.path.join(scratch, "shipped")
        tflite.write_fixed_saved_model(servable, shipped)
        probs = tflite.write_fixed_saved_model(servable, os.path.join(scratch, "probs"),
                                               lambda x: {"probabilities": servable.probabilities(x)})
        plain = tflite.write_fixed_saved_model(servable, os.path.join(scratch, "plain"), model_graph)
        classes_only = tflite.write_fixed_saved_model(servable, os.path.join(scratch, "classes"), model_classes)
        for variant in ("float32", "float16", "dynamic"):
            models[variant] = tflite.convert(shipped, variant)
        models["int8 before (uint8 softmax out)"] = _before(probs, few)
        cal_plain = _calibrated(plain, few)
        models["int8 logits out"] = _quantise(cal_plain)
        if argmax:  # class ids alone cannot be decoded by an annealed mean
            models["int8 argmax in graph"] = _quantise(_calibrated(classes_only, few))
        models["int8 per-tensor weights"] = _quantise(cal_plain, per_channel=False)
        models["int8 last conv float"] = _quantise(cal_plain, denylisted_nodes=_logits_tail(cal_plain))
        if servable.application == "colorization":
            models["int8 exact grey, min/max logits"] = tflite.convert(shipped, "int8", few, None)
        lr = tflite.calibration_logit_range(servable, few) if argmax else None
        models["int8 shipped"] = tflite.convert(shipped, "int8", few, lr)
        if servable.application == "colorization" and any(
                type(layer) is keras.layers.Conv2DTranspose for layer in servable.model.net.layers):
            def transposed(images):
                logits = tf.cast(colourizer_logits(servable.model, tf.cast(images, tf.float32), subpixel=False),
                                 tf.float32)
                return {"logits": logits, "classes": tf.cast(tf.argmax(logits, -1), tf.uint8)}

            path = tflite.write_fixed_saved_model(servable, os.path.join(scratch, "transposed"), transposed)
            models["float32 with TRANSPOSE_CONV"] = tflite.convert(path, "float32")
            models["int8 with TRANSPOSE_CONV"] = tflite.convert(path, "int8", few, lr)
        if more_representative > representative_count and len(reps) > len(few):
            models[f"int8 shipped, {len(reps)} calibration images"] = tflite.convert(
                shipped, "int8", reps, tflite.calibration_logit_range(servable, reps) if argmax else None)
        cal = _calibrated(shipped, few)
        if lr is not None:
            cal = tflite._set_logits_range(cal, *lr)
        keep = (_logits_producer(cal),) if lr is not None else ()
        models["int8 shipped + percentile ranges"] = _quantise(_percentile_ranges(cal, few, 0.01, 0.99, keep))
        models["16-bit activations, int8 weights"] = _int16_activations(servable, os.path.join(scratch, "16x8"), few)
    cpu = {}
    timing = tflite.latencies(models, check[0], num_threads=num_threads, cpu=cpu)
    rows = []
    for name, model in models.items():
        got = _outputs(model, check)
        row = {"file": name, "argmax_agreement": float(np.mean(got["classes"] == reference["classes"])),
               "size_kib": len(model) / 1024, "size_vs_float32": len(model) / len(models["float32"]),
               "latency_ms": timing[name], "latency_vs_float32": timing[name] / timing["float32"],
               "cpu_ms": cpu[name], "cpu_vs_float32": cpu[name] / cpu["float32"]}
        if truth is not None:
            row.update(servable.score(got, check, truth))
        rows.append(row)
        log(f"{name}: agreement {100 * row['argmax_agreement']:.2f}%, "
            + (f"delta E {row['delta_e']:.3f}, " if "delta_e" in row else "")
            + (f"foreground IoU {row['foreground_iou']:.4f}, " if row.get("foreground_iou") is not None else "")
            + f"{row['size_kib']:.1f} KiB ({row['size_vs_float32']:.2f}x), "
            f"{row['latency_ms']:.2f} ms ({row['latency_vs_float32']:.2f}x)")
    return {"rows": rows, "keras": keras_scores, "check_images": int(len(check)),
            "representative_images": int(len(few)), "threads": num_threads}


def markdown(result):
    from keras_cnn.benchmarks.report import table

    metric = ("mean delta E", "delta_e", ".3f") if "delta_e" in result["keras"] else \
        ("foreground IoU", "foreground_iou", ".4f")
    rows = [{"file": "Keras model", **result["keras"]}] + result["rows"]
    return table(rows, [("file", "file", None), ("argmax agreement", "argmax_agreement", lambda v: f"{100 * v:.2f}%"),
                        metric, ("KiB", "size_kib", ".1f"), ("size / float32", "size_vs_float32", ".2f"),
                        (f"ms / image ({result['threads']} thread)", "latency_ms", ".2f"),
                        ("latency / float32", "latency_vs_float32", ".2f"),
                        ("CPU ms / image", "cpu_ms", ".2f"), ("CPU / float32", "cpu_vs_float32", ".2f")])


QAT_COLUMNS = [("epoch", "epoch", None), ("train loss", "train_loss", ".4f"), ("Keras delta E", "keras_delta_e", ".3f"),
               ("int8 delta E", "int8_delta_e", ".3f"),
               ("int8 argmax agreement", "argmax_agreement", lambda v: f"{100 * v:.2f}%"),
               ("simulated agreement", "simulated_agreement", lambda v: f"{100 * v:.2f}%")]


def qat_study(servable, epochs, learning_rate, consistency, check_count=500, representative_count=200, log=print):
    """Quantisation-aware fine-tuning (`export.colorization.qat`) of the servable's model in memory, with the int8 file
    export writes checked after each epoch (0 = before) on held-out images: rows per epoch."""
    from keras_cnn.export.colorization import qat

    qat.check_servable(servable)
    if consistency is None:
        consistency = qat.default_consistency(servable)
    check, truth = servable.check_set(check_count)
    reps = servable.images("train", representative_count)

    def check_int8(epoch):
        logits_range = qat.logits_range(servable, reps)
        with tempfile.TemporaryDirectory(prefix="keras_cnn_qat_") as scratch:
            path = tflite.write_fixed_saved_model(servable, os.path.join(scratch, "shipped"))
            model = tflite.convert(path, "int8", reps, logits_range)
        reference = {k: v.numpy() for k, v in servable.reference_outputs(tf.constant(check)).items()}
        got = _outputs(model, check)
        row = {"keras_delta_e": servable.score(reference, check, truth)["delta_e"],
               "int8_delta_e": servable.score(got, check, truth)["delta_e"],
               "argmax_agreement": float(np.mean(got["classes"] == reference["classes"])),
               "simulated_agreement": qat.simulated_agreement(servable, qat.calibrated_simulation(servable, reps),
                                                              check)}
        log(f"epoch {epoch}: Keras delta E {row['keras_delta_e']:.3f}, int8 delta E {row['int8_delta_e']:.3f}, "
            f"int8 agreement {100 * row['argmax_agreement']:.2f}% (simulated "
            f"{100 * row['simulated_agreement']:.2f}%)")
        return row

    rows = qat.finetune(servable, reps, epochs, learning_rate, consistency, log=log, after_epoch=check_int8)
    return {"rows": rows, "epochs": epochs, "learning_rate": learning_rate, "consistency": consistency,
            "check_images": int(len(check)), "representative_images": int(len(reps))}
