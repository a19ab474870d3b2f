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

PEER_COLUMNS = [("net", "name", None), ("batch", "batch", None), ("parameters ours", "params_ours", ","),
                ("parameters peer", "params_peer", ","), ("rounds", "rounds_done", None),
                ("training images/s ours", "ours_train_images_per_s", ".1f"),
                ("training images/s peer", "peer_train_images_per_s", ".1f"),
                ("training ours / peer", "train_ratio", ".2f"),
                ("inference images/s ours", "ours_infer_images_per_s", ".1f"),
                ("inference images/s peer", "peer_infer_images_per_s", ".1f"),
                ("inference ours / peer", "infer_ratio", ".2f"),
                ("peak MiB ours", "ours_peak_rss_mib", ".0f"), ("peak MiB peer", "peer_peak_rss_mib", ".0f"),
                ("memory ours / peer", "memory_ratio", ".2f")]
PEER_ROUND_COLUMNS = [("net", "name", None), ("round", "round", None), ("first", "first", None),
                      ("training ours", "ours_train_images_per_s", ".1f"),
                      ("training peer", "peer_train_images_per_s", ".1f"),
                      ("training ours / peer", "train_ratio", ".2f"),
                      ("inference ours", "ours_infer_images_per_s", ".1f"),
                      ("inference peer", "peer_infer_images_per_s", ".1f"),
                      ("inference ours / peer", "infer_ratio", ".2f"),
                      ("load", "load_average", ".1f")]
PEER_QUALITY_COLUMNS = [("epoch", "epoch", None), ("ours minutes", "ours_train_minutes", ".2f"),
                        ("ours delta E", "ours_delta_e", ".3f"), ("peer minutes", "peer_train_minutes", ".2f"),
                        ("peer delta E", "peer_delta_e", ".3f")]


def _minutes(v):
    return "not reached" if v is None else f"{v:.2f} min"


def peer_markdown(peer):
    """The PyTorch peer's tables: medians, every round, and the time-to-quality race."""
    fw = f"torch {peer['torch']}, torchvision {peer['torchvision']}"
    out = [f"### PyTorch peer ({fw}; {peer['torch_threads']} torch threads, TensorFlow intra-op "
           f"{peer['tf_intra_op_threads']})", "",
           "Medians over the rounds; ratios are ours / peer (above 1: ours is faster, or uses more memory).", ""]
    nets = [{**n, "rounds_done": len(n["rounds"])} for n in peer.get("nets", [])]
    if nets:
        out += [table(nets, PEER_COLUMNS), "",
                table([{"name": n["name"], **r} for n in nets for r in n["rounds"]], PEER_ROUND_COLUMNS), ""]
    q = peer.get("time_to_quality")
    if q:
        ratio = "-" if q["minutes_ratio"] is None else f"{q['minutes_ratio']:.2f}"
        out += [f"Time to quality, course UNet (batch {q['batch']}, Adam {q['learning_rate']:g}, same initial "
                f"weights; mean delta E on {q['validation_images']} held-out images after each epoch; training "
                "minutes exclude evaluation):", "",
                table([{"side": "ours", "to": _minutes(q["ours_minutes_to_target"]),
                        "final": q["ours_final_delta_e"], "total": q["ours_train_minutes"]},
                       {"side": "peer", "to": _minutes(q["peer_minutes_to_target"]),
                        "final": q["peer_final_delta_e"], "total": q["peer_train_minutes"]}],
                      [("side", "side", None), (f"minutes to delta E {q['target_delta_e']:g}", "to", None),
                       (f"delta E after {q['epochs']} epochs", "final", ".3f"),
                       (f"minutes for {q['epochs']} epochs", "total", ".2f")]), "",
                f"Minutes to the target, ours / peer: {ratio}.", "",
                table(q["epochs_rows"], PEER_QUALITY_COLUMNS), ""]
    return out


PROFILE_COLUMNS = [("op type", "op", None), ("ms per step", "ms_per_step", ".1f"), ("share", "share", _pct)]


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
        o = s.get("loop_overhead")
        if o:
            out += [f"A run's training loop against a bare `model.fit` on cached tensors ({o['name']}, "
                    f"{o['epochs']} epochs, median of {len(o['rounds'])} alternating rounds): "
                    f"{o['ours_seconds']:.1f} s against {o['bare_seconds']:.1f} s, **{o['ratio']:.3f}x**.", ""]
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
    if result.get("profile"):
        out += ["### Where a training step's time goes (CPU ms of TensorFlow ops per step)", ""]
        for row in result["profile"]:
            out += [f"{row['name']}, batch {row['batch']}: {row['op_ms_per_step']:.1f} ms of ops per step "
                    f"({row['steps']} profiled steps)", "", table(row["ops"], PROFILE_COLUMNS), ""]
    if result.get("peer"):
        out += peer_markdown(result["peer"])
    return "\n".join(out)
