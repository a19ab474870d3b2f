"""The lines a training or evaluation command ends with: the model, the baseline, and what a full run reaches.

A figure alone does not say whether a run worked: a colourizer after three
epochs scores below its own grey input, and a newcomer cannot tell that from
a broken install. Every summary therefore has the same parts, for
both applications:

    validation (500 images, best.keras): loss 1.6223  accuracy 40.5%  delta E 15.25  PSNR 21.86 dB
    baseline, the grey input shown as colour: accuracy 55.7%  delta E 15.49  PSNR 25.17 dB
    beats the grey-input baseline on delta E (15.25 against 15.49), not on accuracy (40.5% against 55.7%)
      or PSNR (...): a short run (3 of the preset's 25 epochs); a full cifar10_unet run beats it on accuracy ...
    a full cifar10_unet run reaches accuracy 58.3%  delta E 14.21  PSNR 24.04 dB: 25 epochs, 4.4 min on ...

The baseline is what doing nothing scores on the same images: the grey
input shown as colour for a colourizer, the most common class everywhere
("all background") for a segmenter. `FULL_RUNS` holds, once, what a full
run of each preset measured and where; a run is matched to its preset by its
config (`match_preset`), since a run folder records the resolved settings,
not the preset's name.

This module imports neither TensorFlow nor Keras.
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class FullRun:
    """What a full run of a preset measured on its held-out data, its baseline there, and where it is written up."""

    metrics: dict
    baseline: dict  # the same metrics of doing nothing, on the same images
    run: str        # how long it trained, on what
    data: str       # the images it was scored on
    source: str     # the document with the command and the table


_HORSES = "the 500 held-out horses of cifar10-horse-train"
_EPYC = "2 shared AMD EPYC cores"
# The grey input shown as colour on those horses; its palette accuracy is the course's 24-colour RGB palette's.
_GREY = {"accuracy": 0.557, "delta_e": 15.49, "psnr": 25.17}
_GREY_AB = {"delta_e": 15.49, "psnr": 25.17}
_WEIZMANN = "the 62 held-out pairs of weizmann-horses at 160 px"
_ALL_BACKGROUND = {"fg_iou": 0.0, "mean_iou": 0.370, "pixel_accuracy": 0.741}

# Full runs of each preset (the course's recipe and ours), best checkpoint, as measured.
FULL_RUNS = {
    "colorization": {
        "cifar10_unet": FullRun({"accuracy": 0.583, "delta_e": 14.21, "psnr": 24.04}, _GREY,
                                f"25 epochs, 4.4 min on {_EPYC}", _HORSES, "docs/BENCHMARKS.md"),
        "cifar10_conv_transpose": FullRun({"accuracy": 0.533, "delta_e": 14.46, "psnr": 23.56}, _GREY,
                                          f"25 epochs, 2.3 min on {_EPYC}", _HORSES, "docs/BENCHMARKS.md"),
        "cifar10_pool_upsample": FullRun({"accuracy": 0.402, "delta_e": 15.33, "psnr": 20.97}, _GREY,
                                         f"25 epochs, 2.2 min on {_EPYC}", _HORSES, "docs/BENCHMARKS.md"),
        "cifar10_cnn2020": FullRun({"accuracy": 0.280, "delta_e": 16.34, "psnr": 19.98}, _GREY,
                                   f"25 epochs, 4.5 min on {_EPYC}", _HORSES, "docs/BENCHMARKS.md"),
        "cifar10_unet2020": FullRun({"accuracy": 0.601, "delta_e": 14.14, "psnr": 24.18}, _GREY,
                                    f"25 epochs, 3.6 min on {_EPYC}", _HORSES, "docs/BENCHMARKS.md"),
        "cifar10_superres": FullRun({"accuracy": 0.476, "delta_e": 12.41, "psnr": 19.51}, _GREY,
                                    f"25 epochs, 3.0 min on {_EPYC}", _HORSES, "docs/BENCHMARKS.md"),
        "cifar10_resunet": FullRun({"accuracy": 0.197, "delta_e": 11.67, "psnr": 26.33}, _GREY_AB,
                                   f"12 epochs, 9.9 min on {_EPYC}", _HORSES, "docs/BENCHMARKS.md"),
        "cifar10_effnet": FullRun({"delta_e": 11.77, "psnr": 26.27}, _GREY_AB,
                                  "16 epochs, 21.6 min on 2 CPU cores", _HORSES, "docs/BENCHMARKS.md"),
        "cifar10_all_resunet": FullRun({"accuracy": 0.181, "delta_e": 11.90}, _GREY_AB,
                                       "5 epochs on every class, 34.5 min on 2 Intel Xeon cores",
                                       f"{_HORSES} (evaluate-colorization --classes horse)",
                                       "docs/COLORIZATION_RESULTS.md"),
        "cifar10_resunet_from_all": FullRun({"accuracy": 0.197, "delta_e": 11.62}, _GREY_AB,
                                            "8 epochs on the horses after cifar10_all_resunet, 34.5 + 6.4 min "
                                            "on 2 Intel Xeon cores", _HORSES, "docs/COLORIZATION_RESULTS.md"),
    },
    "segmentation": {
        "weizmann_scratch": FullRun({"fg_iou": 0.839, "mean_iou": 0.890, "pixel_accuracy": 0.955},
                                    _ALL_BACKGROUND, "26 min of training on 2 shared CPU cores, last epoch",
                                    _WEIZMANN, "docs/SEGMENTATION_RESULTS.md"),
        "weizmann_effnet_decoder": FullRun({"fg_iou": 0.839}, _ALL_BACKGROUND,
                                           "15 epochs, 6.4 min on 2 Intel Xeon cores", _WEIZMANN,
                                           "docs/SEGMENTATION_RESULTS.md"),
        "effnet_finetune": FullRun({"fg_iou": 0.905, "mean_iou": 0.935, "pixel_accuracy": 0.974}, _ALL_BACKGROUND,
                                   "24 epochs, 17.3 min (the whole command) on 2 Intel Xeon cores, seed 1, last epoch",
                                   "the 62 held-out pairs of weizmann-horses at 288 px",
                                   "docs/SEGMENTATION_RESULTS.md"),
        "weizmann_effnet": FullRun({"fg_iou": 0.855}, _ALL_BACKGROUND,
                                   "8 epochs after weizmann_effnet_decoder, 13.3 min in all on 2 Intel Xeon cores",
                                   _WEIZMANN, "docs/SEGMENTATION_RESULTS.md"),
    },
}
# What to quote for a run whose own preset has no recorded full run (a test preset, a custom config).
FALLBACK = {"colorization": "cifar10_unet", "segmentation": "weizmann_scratch"}

# Settings that change how long or on what a run trains, not what it is: a run of a preset with
# these changed is still that preset (a shortened one).
_LENGTH_AND_DATA = {
    "epochs", "max_examples", "time_limit_minutes", "seed", "strategy", "mixed_precision", "jit_compile",
    "sync_batchnorm", "backup_every_steps", "lr_scaling", "plot_examples",
    "source", "data_dir", "archive", "url", "md5", "cache_dir", "cifar_class",
    "flowers_url", "flowers_hashes", "base_model",
}
# A preset that differs from a run in more fields than this is not "the closest".
_MAX_DIFFERENCES = 4


def differences(cfg, preset_cfg):
    """The fields (other than length and data) where `cfg` differs from `preset_cfg`."""
    return [f.name for f in dataclasses.fields(cfg)
            if f.name not in _LENGTH_AND_DATA and getattr(cfg, f.name) != getattr(preset_cfg, f.name, None)]


def match_preset(cfg, presets):
    """(name, differing fields) of the preset `cfg` is, or is closest to; (None, []) when none is close."""
    if not presets:
        return None, []
    scored = sorted(((len(differences(cfg, p)), name) for name, p in presets.items() if type(p) is type(cfg)))
    if not scored or scored[0][0] > _MAX_DIFFERENCES:
        return None, []
    name = scored[0][1]
    return name, differences(cfg, presets[name])


def shortened(cfg, preset_cfg):
    """How `cfg` trains less than its preset: phrases like "3 of the preset's 25 epochs"; empty if it does not."""
    notes = []
    if cfg.epochs < preset_cfg.epochs:
        notes.append(f"{cfg.epochs} of the preset's {preset_cfg.epochs} epochs")
    if cfg.max_examples and (not preset_cfg.max_examples or cfg.max_examples < preset_cfg.max_examples):
        notes.append(f"--max-examples {cfg.max_examples}")
    limit, preset_limit = getattr(cfg, "time_limit_minutes", 0), getattr(preset_cfg, "time_limit_minutes", 0)
    if 0 < limit < preset_limit:
        notes.append(f"{limit:g} of the preset's {preset_limit:g} minutes")
    return notes


# === Formatting ===

def _pct(v):
    return f"{100 * v:.1f}%"


_COLOUR = (("loss", "loss", "{:.4f}"), ("accuracy", "accuracy", _pct), ("delta_e", "delta E", "{:.2f}"),
           ("psnr", "PSNR", "{:.2f} dB"))
_SEGMENT = (("loss", "loss", "{:.4f}"), ("fg_iou", "foreground IoU", "{:.3f}"), ("mean_iou", "mean IoU", "{:.3f}"),
            ("pixel_accuracy", "pixel accuracy", _pct))
FORMATS = {"colorization": _COLOUR, "segmentation": _SEGMENT}
# The metrics a run is compared with its baseline on, the deciding one first, and whether lower is better.
# (A segmenter's foreground IoU is left out: the all-background baseline scores 0.)
VERDICT_METRICS = {"colorization": (("delta_e", "delta E", True), ("accuracy", "accuracy", False),
                                    ("psnr", "PSNR", False)),
                   "segmentation": (("mean_iou", "mean IoU", False), ("pixel_accuracy", "pixel accuracy", False))}


def baseline_name(task, baseline_metrics):
    if task == "colorization":
        return "the grey input shown as colour"
    majority = (baseline_metrics or {}).get("class", 0)
    return "all background" if majority == 0 else f"every pixel class {majority}, the most common"


def figures(task, metrics):
    """ "loss 1.0720  accuracy 58.3%  delta E 14.21  PSNR 24.04 dB" for the metrics present."""
    parts = []
    for key, label, fmt in FORMATS[task]:
        value = metrics.get(key)
        if value is not None:
            parts.append(f"{label} {fmt(value) if callable(fmt) else fmt.format(value)}")
    return "  ".join(parts)


def _reference(task, preset, run):
    return (f"a full {preset} run reaches {figures(task, run.metrics)}: {run.run}, scored on {run.data} "
            f"({run.source})")


def _baseline_short(task, baseline_metrics):
    if task == "colorization":
        return "grey-input"
    return "all-background" if (baseline_metrics or {}).get("class", 0) == 0 else "most-common-class"


def _beats(value, base, lower_is_better):
    return value < base if lower_is_better else value > base


def _format(task, key, value):
    fmt = next(f for k, _, f in FORMATS[task] if k == key)
    return fmt(value) if callable(fmt) else fmt.format(value)


def _names(items, conjunction="and"):
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} {conjunction} {items[-1]}"


def verdict(task, cfg, model_metrics, baseline_metrics, presets):
    """Two lines: how the model compares with the baseline (and why, where it loses), and what a full run reaches.

    The first metric of `VERDICT_METRICS` decides "beats" or "below"; the
    others are named where they disagree. A metric that even the preset's
    full run loses on (a course colourizer's PSNR) is said to be one.
    """
    preset, differ = match_preset(cfg, presets)
    full = FULL_RUNS[task].get(preset) if not differ else None
    notes = shortened(cfg, presets[preset]) if preset else []
    missing = ""
    if full is None:
        missing = (f"no full run of {preset} is recorded" if preset and not differ
                   else f"no full run of these settings is recorded (closest preset: {preset}, with other "
                        f"{', '.join(differ)})" if preset else "no full run of these settings is recorded")
        # The closest preset's full run when it has one (a shortened recipe at a lower resolution is
        # still best compared with its own full recipe), else the application's reference run.
        shown = preset if preset in FULL_RUNS[task] else FALLBACK[task]
        reference = _reference(task, shown, FULL_RUNS[task][shown])
    else:
        reference = _reference(task, preset, full)
    compared = [(key, label, low) for key, label, low in VERDICT_METRICS[task]
                if model_metrics.get(key) is not None and baseline_metrics.get(key) is not None]
    if not compared:
        return [line for line in (missing, reference) if line]

    def against(key, label):
        return (f"{label} ({_format(task, key, model_metrics[key])} against "
                f"{_format(task, key, baseline_metrics[key])})")

    won = [(key, label) for key, label, low in compared if _beats(model_metrics[key], baseline_metrics[key], low)]
    lost = [(key, label) for key, label, low in compared if (key, label) not in won]
    name = f"the {_baseline_short(task, baseline_metrics)} baseline"
    decided = compared[0][:2] in won
    if decided:
        first = f"beats {name} on {_names([against(k, lb) for k, lb in won])}"
        if lost:
            first += f", not on {_names([against(k, lb) for k, lb in lost], 'or')}"
    else:
        first = f"below {name} on {_names([against(k, lb) for k, lb in lost])}"
        if won:
            first += f" (above it on {_names([lb for _, lb in won])})"
    # Where the preset's own full run stands against its baseline, on the metrics lost here.
    low = {key: lower for key, _, lower in compared}
    full_wins = [lb for k, lb in lost if full and k in full.metrics and k in full.baseline
                 and _beats(full.metrics[k], full.baseline[k], low[k])]
    full_loses = [lb for k, lb in lost if full and k in full.metrics and k in full.baseline
                  and lb not in full_wins]
    whys = []
    if lost:
        if notes:
            whys.append(f"a short run ({', '.join(notes)})")
        elif full is None:
            whys.append(f"{cfg.epochs} epoch(s) with settings that no full run was measured with")
        elif full_wins:
            whys.append("a run as long as its preset's that did not learn: check the data and the learning rate")
        parts = [f"beats it on {_names(full_wins)}"] if full_wins and notes else []
        if full_loses:
            parts.append(f"stays below it on {_names(full_loses)} too")
            if "PSNR" in full_loses:
                parts[-1] += " (a wrong colour costs more PSNR than no colour)"
        if parts:
            whys.append(f"a full {preset} run {' and '.join(parts)}")
    text = first + (f": {'; '.join(whys)}" if whys else "")
    return [text + (f"; {missing}" if missing else ""), reference]


def summary_lines(task, cfg, model_metrics, baseline_metrics, presets, where):
    """The summary: the model's figures (`where`: "validation (500 images, best.keras)"), the
    baseline's, how the two compare and what a full run reaches."""
    lines = [f"{where}: {figures(task, model_metrics)}"]
    if baseline_metrics:
        lines.append(f"baseline, {baseline_name(task, baseline_metrics)}: {figures(task, baseline_metrics)}")
    return lines + verdict(task, cfg, model_metrics, baseline_metrics or {}, presets)


def wrote_line(run_dir, metrics):
    """The last line of a training command: where the run is, and how long it trained on which CPU."""
    from keras_cnn import hardware

    seconds = metrics.get("train_seconds_this_session")
    took = "" if seconds is None else (f" after {seconds:.0f} s of training on {hardware.cpu_name()} "
                                       f"({hardware.usable_cores()} usable cores)")
    return f"wrote {run_dir}{took}: every figure is in metrics.json, the curves in plots/curves.png"
