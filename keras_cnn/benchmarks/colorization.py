"""Colourization benchmarks: quality of every preset, and speed of every net and runtime.

Quality trains each preset on an image folder (the shared CIFAR-10 horses,
90/10 split, seed 0) with the package's own `train`, times it, and reports
the validation metrics of `keras_cnn.colorization.evaluate` plus the mean
chroma (how colourful the results are), beside the trivial baselines. Speed
measures `model.fit` images/s at each preset's batch size, the input
pipeline on its own, and inference of the Keras model, its SavedModel and
every TFLite variant.
"""

import os
import time

import numpy as np
import tensorflow as tf

from keras_cnn import plots
from keras_cnn.benchmarks.timing import timed_training
from keras_cnn.colorization import color
from keras_cnn.colorization.config import PRESETS, ColorizationConfig
from keras_cnn.colorization.evaluate import baselines, evaluate
from keras_cnn.colorization.palette import fit_palette, grey
from keras_cnn.config import resolve
from keras_cnn.errors import UserError

COURSE = "cifar10_unet"
BETTER = "cifar10_resunet"
# The nets exported and timed in every runtime: the course's best and ours.
EXPORTED = (COURSE, BETTER)
QUICK = {"epochs": 1, "max_examples": 400}
STRIP_IMAGES = 10
# Decodings compared on the course UNet and ours: argmax, Zhang's T = 0.38, and milder annealing.
SWEEP = (("argmax", 1.0), ("annealed", 0.38), ("annealed", 0.7), ("annealed", 1.0))


def preset_config(preset, data_dir, quick=False, overrides=None):
    """`preset` on the image folder `data_dir` with the fixed 90/10 split, seed 0."""
    base = {"source": "folder", "data_dir": os.path.abspath(data_dir), "val_fraction": 0.1, "seed": 0}
    return resolve(ColorizationConfig, PRESETS, preset,
                   {**base, **(QUICK if quick else {}), **(overrides or {})})


def palette_name(palette):
    return f"{palette.space} {len(palette)}"


def decode_name(decode, temperature):
    return "argmax" if decode == "argmax" else f"annealed T={temperature:g}"


def mean_chroma(images_uint8):
    """Mean Lab chroma sqrt(a^2 + b^2) of uint8 RGB images: 0 for grey, higher is more colourful."""
    lab = color.rgb_to_lab(tf.cast(images_uint8, tf.float32) / 255.0)
    return float(tf.reduce_mean(tf.norm(lab[..., 1:], axis=-1)))


def decoded(model, palette, images_uint8, decode="argmax", temperature=0.38, batch_size=250):
    """The `Colorizer`'s colour images (uint8) for `images_uint8`."""
    logits = model.predict(images_uint8, batch_size=batch_size, verbose=0)
    return palette.decode(logits, grey(images_uint8), decode, temperature).numpy()


def _row(name, cfg, palette, scores, chroma, **extra):
    return {"name": name, "model": cfg.model, "palette": palette_name(palette),
            "decode": decode_name(cfg.decode, cfg.temperature), "epochs": cfg.epochs,
            "val_loss": scores["loss"], "accuracy": scores["accuracy"], "delta_e": scores["delta_e"],
            "psnr": scores["psnr"], "chroma": chroma, **extra}


def train_preset(preset, data_dir, run_dir, quick=False, overrides=None, reuse=False, log=print):
    """Trains `preset` into `run_dir` (or reuses a finished run there); returns its timing."""
    from keras_cnn.tasks import train

    cfg = preset_config(preset, data_dir, quick, overrides)
    return timed_training(train, cfg, run_dir, preset, reuse, log)


def quality(presets, data_dir, work_dir, quick=False, overrides=None, reuse=False, strip_path=None,
            log=print):
    """Trains and scores each preset; returns {"rows": [...], "baselines": [...], "ratios": {...}}.

    Every row is scored on the same validation images. The course UNet is
    also decoded with the better preset's annealed mean, so the table tells
    what decoding alone buys from what the better net and training buy.
    """
    from keras_cnn.tasks import open_run

    rows, palettes, runs, val_images = [], {}, {}, None
    for preset in presets:
        run_dir = os.path.join(work_dir, "colorization", preset)
        timing = train_preset(preset, data_dir, run_dir, quick, overrides, reuse, log)
        run = open_run(run_dir)
        model, palette, cfg = run.model, run.assets["palette"], run.config
        if val_images is None:
            val_images = run.task.load_data(cfg)[1]
        runs[preset] = (model, palette, cfg)
        palettes.setdefault(palette_name(palette), palette)
        scores = evaluate(model, val_images, palette, 250, cfg.decode, cfg.temperature)
        pred = decoded(model, palette, val_images, cfg.decode, cfg.temperature)
        rows.append(_row(preset, cfg, palette, scores, mean_chroma(pred), train_seconds=timing["train_seconds"],
                         train_cpu_seconds=timing.get("train_cpu_seconds"), load_before=timing["load_before"],
                         load_after=timing["load_after"], reused=timing["reused"]))
    if COURSE in runs and BETTER in runs and runs[BETTER][2].decode == "annealed":
        model, palette, cfg = runs[COURSE]
        t = runs[BETTER][2].temperature
        scores = evaluate(model, val_images, palette, 250, "annealed", t)
        pred = decoded(model, palette, val_images, decode="annealed", temperature=t)
        rows.insert([r["name"] for r in rows].index(COURSE) + 1,
                    _row(f"{COURSE}, decoded annealed", cfg, palette, scores, mean_chroma(pred),
                         decode=decode_name("annealed", t), train_seconds=None, note="same net, decoding only"))
    base_rows = baseline_rows(val_images, palettes) if val_images is not None else []
    sweep = decoding_sweep({n: runs[n] for n in (COURSE, BETTER) if n in runs}, val_images)
    result = {"rows": rows, "baselines": base_rows, "ratios": quality_ratios(rows), "decoding": sweep,
              "validation_images": 0 if val_images is None else int(len(val_images))}
    if strip_path and COURSE in runs and BETTER in runs:
        comparison_strip(runs[COURSE], runs[BETTER], val_images[:STRIP_IMAGES], strip_path)
        result["strip"] = strip_path
    return result


def decoding_sweep(runs, val_images, settings=SWEEP):
    """Delta E, PSNR and chroma of each trained net under each decoding: what the temperature buys."""
    rows = []
    for name, (model, palette, cfg) in runs.items():
        for mode, t in settings:
            scores = evaluate(model, val_images, palette, 250, mode, t)
            pred = decoded(model, palette, val_images, mode, t)
            rows.append({"name": name, "palette": palette_name(palette), "decode": decode_name(mode, t),
                         "delta_e": scores["delta_e"], "psnr": scores["psnr"], "chroma": mean_chroma(pred)})
    return rows


def baseline_rows(val_images, palettes):
    """The truth, the grey input as a colour image, and the truth snapped to each palette."""
    truth_chroma = mean_chroma(val_images)
    rows = [{"name": "truth", "palette": "-", "decode": "-", "accuracy": None, "delta_e": 0.0, "psnr": None,
             "chroma": truth_chroma}]
    for i, (name, palette) in enumerate(palettes.items()):
        b = baselines(val_images, palette)
        if i == 0:
            g = b["grey_input"]
            rows.append({"name": "grey input as colour", "palette": name, "decode": "-",
                         "accuracy": g["accuracy"], "delta_e": g["delta_e"], "psnr": g["psnr"], "chroma": 0.0})
        p = b["palette_truth"]
        rows.append({"name": "truth snapped to palette", "palette": name, "decode": "-",
                     "accuracy": p["accuracy"], "delta_e": p["delta_e"], "psnr": p["psnr"],
                     "chroma": mean_chroma(palette.quantize(tf.constant(val_images)).numpy())})
    return rows


def quality_ratios(rows):
    """Each row against the course UNet: delta E and training time as ratios, and delta E change in %."""
    by_name = {r["name"]: r for r in rows}
    if COURSE not in by_name:
        return {}
    ref = by_name[COURSE]
    out = {}
    for r in rows:
        if r["name"] == COURSE:
            continue
        entry = {"delta_e_ratio": r["delta_e"] / ref["delta_e"],
                 "delta_e_lower_percent": 100 * (1 - r["delta_e"] / ref["delta_e"]),
                 "chroma_ratio": r["chroma"] / ref["chroma"] if ref["chroma"] else None}
        if r.get("train_seconds") and ref.get("train_seconds"):
            entry["train_time_ratio"] = r["train_seconds"] / ref["train_seconds"]
        out[f"{r['name']} / {COURSE}"] = entry
    return out


def comparison_strip(course, better, images_uint8, path):
    """grey / course UNet / better colourizer / truth, one column per image, as a PNG."""
    rows, titles = [grey(images_uint8).numpy() * 256 / 255], ["grey input"]
    for (model, palette, cfg), title in ((course, "course UNet"), (better, "ResUNet (ours)")):
        rows.append(decoded(model, palette, images_uint8, cfg.decode, cfg.temperature) / 255.0)
        titles.append(title)
    rows.append(images_uint8 / 255.0)
    titles.append("truth")
    plots.image_strip(rows, titles, path, title="validation horses (first 10 of the 10% split)")


# === Speed ===

def palette_asset(cfg):
    """`timing.run_model`'s assets for a colourizer: the palette fitted on the training images, as a run fits it."""
    return lambda data: {"palette": fit_palette(data[0], cfg.num_colours, cfg.palette_space, cfg.seed)}


def training_speed(presets, data_dir, quick=False, overrides=None, steps=None, log=print):
    """`model.fit` images/s of each preset's net at its batch size, and the input pipeline's own rate."""
    from keras_cnn.benchmarks.timing import pipeline_rate, run_model, training_rate

    steps = steps or (4 if quick else 20)
    rows = []
    for preset in presets:
        cfg = preset_config(preset, data_dir, quick, overrides)
        model, ds, runtime, _ = run_model("colorization", cfg, palette_asset(cfg))
        fit = training_rate(model, ds, runtime.global_batch, steps=steps)
        pipe = pipeline_rate(ds, batches=max(10, 3 * steps))
        rows.append({"name": preset, "model": cfg.model, "params": int(model.count_params()),
                     "batch": runtime.global_batch, "train_images_per_s": fit["images_per_s"],
                     "step_ms": fit["step_ms"], "pipeline_images_per_s": pipe["images_per_s"],
                     "pipeline_ratio": pipe["images_per_s"] / fit["images_per_s"]})
        log(f"{preset}: fit {fit['images_per_s']:.0f} images/s at batch {runtime.global_batch}; "
            f"pipeline alone {pipe['images_per_s']:.0f} images/s ({rows[-1]['pipeline_ratio']:.0f}x)")
    return rows


def loop_overhead(preset, data_dir, work_dir, epochs=None, rounds=2, quick=False, overrides=None, log=print):
    """A whole run's `fit` against a bare `model.fit` of the same model on cached tensors.

    Ours: `tasks.train` into a fresh run folder (the task's pipeline, the
    checkpoints, CSV, TensorBoard, backups, the epoch strip and its delta E),
    timed by its own `train_seconds_this_session` (the `fit` call). Bare: the
    same task-built, compiled model, `fit` on `(images, labels)` tensors
    cached in memory (labels from the same palette), the same validation
    images, no callbacks. Both include the first epoch's tracing. The two
    alternate `rounds` times (who goes first swaps); the ratio is of the
    medians, ours / bare: 1.05 means the package's loop costs 5%.
    """
    import keras

    from keras_cnn import training
    from keras_cnn.colorization.pipeline import palette_labels
    from keras_cnn.tasks import get_task, train

    # Five epochs: long enough that the first epoch's tracing (in both) is not most of it.
    epochs = epochs or (None if quick else 5)
    overrides = {**(overrides or {}), **({"epochs": epochs} if epochs else {})}
    cfg = preset_config(preset, data_dir, quick, overrides)
    task = get_task("colorization")
    data = task.load_data(cfg)
    palette = fit_palette(data[0], cfg.num_colours, cfg.palette_space, cfg.seed)
    cached = [tf.data.Dataset.from_tensor_slices((images, palette_labels(images, palette)))
              for images in data]
    train_ds = cached[0].shuffle(len(data[0]), seed=cfg.seed).batch(cfg.batch_size).cache().prefetch(2)
    val_ds = cached[1].batch(cfg.batch_size).cache().prefetch(2) if len(data[1]) else None

    def ours(r):
        run_dir = os.path.join(work_dir, f"overhead_{preset}_{r}")
        if os.path.exists(run_dir):
            raise UserError(f"{run_dir}: benchmark run folder exists already; remove it or choose another "
                            "--work-dir")
        return train(cfg, run_dir, verbose=0, log=lambda msg: None)["train_seconds_this_session"]

    def bare(r):
        runtime = training.setup_runtime(cfg, log=lambda msg: None)
        keras.utils.set_random_seed(cfg.seed)
        with runtime.scope():
            model = task.build_model(cfg, data, {"palette": palette}, runtime)
        start = time.perf_counter()
        model.fit(train_ds, validation_data=val_ds, epochs=cfg.epochs, verbose=0)
        return time.perf_counter() - start

    rows = []
    for r in range(rounds):
        order = [("ours", ours), ("bare", bare)] if r % 2 == 0 else [("bare", bare), ("ours", ours)]
        seconds = {name: fn(r) for name, fn in order}
        rows.append({"round": r, **seconds, "ratio": seconds["ours"] / seconds["bare"]})
        log(f"{preset} loop overhead, round {r + 1}: run {seconds['ours']:.1f} s, bare fit "
            f"{seconds['bare']:.1f} s ({rows[-1]['ratio']:.3f}x) for {cfg.epochs} epoch(s)")
    median = {k: float(np.median([row[k] for row in rows])) for k in ("ours", "bare")}
    return {"name": preset, "epochs": cfg.epochs, "train_images": len(data[0]), "rounds": rows,
            "ours_seconds": median["ours"], "bare_seconds": median["bare"],
            "ratio": median["ours"] / median["bare"]}


def ensure_run(preset, data_dir, work_dir, overrides=None, log=print):
    """A finished run folder of `preset` for export: the quality run if there is one, else a short run."""
    run_dir = os.path.join(work_dir, "colorization", preset)
    if os.path.exists(os.path.join(run_dir, "metrics.json")):
        return run_dir
    short = os.path.join(work_dir, "speed_runs", preset)
    if not os.path.exists(os.path.join(short, "metrics.json")):
        # Speed does not depend on the weights: a short run gives an exportable model.
        train_preset(preset, data_dir, short, quick=True, overrides=overrides, log=log)
    return short
