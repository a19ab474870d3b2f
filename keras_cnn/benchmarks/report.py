"""Benchmark results as Markdown tables (printed, and pasted into docs/BENCHMARKS.md)."""

import os
import platform


def machine():
    """What the figures were measured on: CPUs, load, library versions."""
    import keras
    import tensorflow as tf

    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu, "usable_cpus": usable, "platform": platform.platform(),
            "python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__,
            "gpus": len(tf.config.list_physical_devices("GPU")), "load_average": list(os.getloadavg())}


def _cell(value, fmt):
    if value is None:
        return "-"
    if callable(fmt):
        return fmt(value)
    return format(value, fmt) if fmt else str(value)


def table(rows, columns):
    """A Markdown table; `columns` are (header, key, format) with format a spec, a function or None."""
    lines = ["| " + " | ".join(h for h, _, _ in columns) + " |",
             "|" + "|".join("---" for _ in columns) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(k), f) for _, k, f in columns) + " |")
    return "\n".join(lines)


def _pct(v):
    return f"{100 * v:.1f}%"


def _seconds(v):
    return f"{v / 60:.1f} min" if v >= 120 else f"{v:.0f} s"


QUALITY_COLUMNS = [("run", "name", None), ("net", "model", None), ("palette", "palette", None),
                   ("decoding", "decode", None), ("epochs", "epochs", None), ("val loss", "val_loss", ".3f"),
                   ("pixel accuracy", "accuracy", _pct), ("mean delta E", "delta_e", ".2f"),
                   ("PSNR dB", "psnr", ".2f"), ("mean chroma", "chroma", ".2f"),
                   ("training wall time", "train_seconds", _seconds),
                   ("training CPU time", "train_cpu_seconds", _seconds)]
DECODING_COLUMNS = [("net", "name", None), ("palette", "palette", None), ("decoding", "decode", None),
                    ("mean delta E", "delta_e", ".2f"), ("PSNR dB", "psnr", ".2f"), ("mean chroma", "chroma", ".2f")]
BASELINE_COLUMNS = [("baseline", "name", None), ("palette", "palette", None), ("pixel accuracy", "accuracy", _pct),
                    ("mean delta E", "delta_e", ".2f"), ("PSNR dB", "psnr", ".2f"), ("mean chroma", "chroma", ".2f")]
RATIO_COLUMNS = [("comparison", "name", None), ("delta E ratio", "delta_e_ratio", ".3f"),
                 ("delta E lower by", "delta_e_lower_percent", ".1f"), ("chroma ratio", "chroma_ratio", ".2f"),
                 ("training time ratio", "train_time_ratio", ".2f")]
TRAIN_SPEED_COLUMNS = [("run", "name", None), ("net", "model", None), ("parameters", "params", ","),
                       ("batch", "batch", None), ("training images/s", "train_images_per_s", ".1f"),
                       ("ms/step", "step_ms", ".0f"), ("tf.data alone images/s", "pipeline_images_per_s", ".0f"),
                       ("pipeline / training", "pipeline_ratio", lambda v: f"{v:.0f}x"),
                       ("training speed / course UNet", "speed_vs_course", ".2f")]
INFERENCE_COLUMNS = [("model", "name", None), ("runtime", "runtime", None), ("threads", "threads", None),
                     ("batch", "batch", None),
                     ("images/s", "images_per_s", ".1f"), ("latency 1 image ms", "latency_ms", ".2f"),
                     ("p90 ms", "latency_ms_p90", ".2f"), ("latency / Keras", "latency_vs_keras", ".2f"),
                     ("file KiB", "size_bytes", lambda v: f"{v / 1024:.0f}"),
                     ("argmax agreement with Keras", "argmax_agreement", _pct)]
SEG_QUALITY_COLUMNS = [("run", "name", None), ("backbone", "backbone", None), ("size", "image_size", None),
                       ("val loss", "loss", ".3f"), ("foreground IoU", "fg_iou", ".3f"),
                       ("mean IoU", "mean_iou", ".3f"), ("pixel accuracy", "pixel_accuracy", _pct),
                       ('assignment "mIOU"', "thresholded_iou", ".3f"),
                       ("training wall time", "train_seconds", _seconds),
                       ("training CPU time", "train_cpu_seconds", _seconds)]
SEG_BASELINE_COLUMNS = [("baseline", "name", None), ("pixel accuracy", "pixel_accuracy", _pct),
                        ("foreground IoU", "fg_iou", ".3f")]


def markdown(result):
    """All tables of a benchmark result, with headings (a --quick run is labelled a smoke test)."""
    out = []
    if result.get("smoke_test"):
        out += [f"**{result['note']}.** Run without --quick for measurements.", ""]
    q = result.get("colorization_quality")
    if q:
        smoke = " (smoke test: not a result)" if result.get("smoke_test") else ""
        out += [f"### Colourization quality ({q['validation_images']} validation images){smoke}", "",
                table(q["rows"], QUALITY_COLUMNS), "", table(q["baselines"], BASELINE_COLUMNS), ""]
        if q.get("ratios"):
            ratios = [{"name": k, **v} for k, v in q["ratios"].items()]
            out += [table(ratios, RATIO_COLUMNS), ""]
        if q.get("decoding"):
            out += ["Decoding the same trained nets differently:", "", table(q["decoding"], DECODING_COLUMNS), ""]
    s = result.get("speed")
    if s:
        if s.get("training"):
            out += ["### Training speed and input pipeline", "", table(s["training"], TRAIN_SPEED_COLUMNS), ""]
        if s.get("inference"):
            out += ["### Inference speed", "", table(s["inference"], INFERENCE_COLUMNS), ""]
    g = result.get("segmentation")
    if g:
        out += [f"### Segmentation ({g['quality']['validation_pairs']} validation pairs)" if g.get("quality")
                else "### Segmentation", ""]
        if g.get("quality"):
            out += [table(g["quality"]["rows"], SEG_QUALITY_COLUMNS), "",
                    table(g["quality"]["baselines"], SEG_BASELINE_COLUMNS), ""]
        if g.get("training"):
            out += [table(g["training"], TRAIN_SPEED_COLUMNS), ""]
        if g.get("inference"):
            out += [table(g["inference"], INFERENCE_COLUMNS), ""]
    return "\n".join(out)
