"""The lines a training or evaluation command ends with: the model, the baseline, and what a full run reaches.

A figure alone does not say whether a run worked: a colourizer after three
epochs scores below its own grey input, and a newcomer cannot tell that from
a broken install. Every summary therefore has the same three parts, for
both applications:

    validation (500 images, best.keras): loss 1.5021  accuracy 40.6%  delta E 16.10  PSNR 21.90 dB
    baseline, the grey input shown as colour: accuracy 55.7%  delta E 15.49  PSNR 25.17 dB
    below the baseline (delta E 16.10 against 15.49): a short run (3 of the preset's 25 epochs); the
      full cifar10_unet preset reaches delta E 14.21 ... (docs/COLORIZATION_RESULTS.md)

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
    """What a full run of a preset measured on its held-out data, and where that is written up."""

    metrics: dict
    run: str       # how long it trained, on what
    data: str      # the images it was scored on
    source: str    # the document with the command and the table


_HORSES = "the 500 held-out horses of cifar10-horse-train"
_EPYC = "2 shared AMD EPYC cores"
_WEIZMANN = "the 62 held-out pairs of weizmann-horses at 160 px"

# Full runs of each preset (the course's recipe and ours), best checkpoint, as measured.
FULL_RUNS = {
    "colorization": {
        "cifar10_unet": FullRun({"accuracy": 0.583, "delta_e": 14.21, "psnr": 24.04},
                                f"25 epochs, 4.4 min on {_EPYC}", _HORSES, "docs/COLORIZATION_RESULTS.md"),
        "cifar10_conv_transpose": FullRun({"accuracy": 0.533, "delta_e": 14.46, "psnr": 23.56},
                                          f"25 epochs, 2.3 min on {_EPYC}", _HORSES,
                                          "docs/COLORIZATION_RESULTS.md"),
        "cifar10_pool_upsample": FullRun({"accuracy": 0.402, "delta_e": 15.33, "psnr": 20.97},
                                         f"25 epochs, 2.2 min on {_EPYC}", _HORSES,
                                         "docs/COLORIZATION_RESULTS.md"),
        "cifar10_cnn2020": FullRun({"accuracy": 0.280, "delta_e": 16.34, "psnr": 19.98},
                                   f"25 epochs, 4.5 min on {_EPYC}", _HORSES, "docs/BENCHMARKS.md"),
        "cifar10_unet2020": FullRun({"accuracy": 0.601, "delta_e": 14.14, "psnr": 24.18},
                                    f"25 epochs, 3.6 min on {_EPYC}", _HORSES, "docs/BENCHMARKS.md"),
        "cifar10_superres": FullRun({"accuracy": 0.476, "delta_e": 12.41, "psnr": 19.51},
                                    f"25 epochs, 3.0 min on {_EPYC}", _HORSES, "docs/BENCHMARKS.md"),
        "cifar10_resunet": FullRun({"accuracy": 0.197, "delta_e": 11.67, "psnr": 26.33},
                                   f"12 epochs, 9.9 min on {_EPYC}", _HORSES, "docs/BENCHMARKS.md"),
        "cifar10_effnet": FullRun({"delta_e": 11.77, "psnr": 26.27},
                                  "16 epochs, 21.6 min on 2 CPU cores", _HORSES, "docs/BENCHMARKS.md"),
    },
    "segmentation": {
        "weizmann_scratch": FullRun({"fg_iou": 0.839, "mean_iou": 0.890, "pixel_accuracy": 0.955},
                                    "26 min of training on 2 shared CPU cores, last epoch", _WEIZMANN,
                                    "docs/SEGMENTATION_RESULTS.md"),
        "weizmann_effnet_decoder": FullRun({"fg_iou": 0.839}, "15 epochs, 6.4 min on 2 Intel Xeon cores",
                                           _WEIZMANN, "docs/SEGMENTATION_RESULTS.md"),
        "weizmann_effnet": FullRun({"fg_iou": 0.855}, "8 epochs after weizmann_effnet_decoder, 13.3 min in all "
                                   "on 2 Intel Xeon cores", _WEIZMANN, "docs/SEGMENTATION_RESULTS.md"),
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
# The metric a run is judged against its baseline by, and whether lower is better.
VERDICT_METRIC = {"colorization": ("delta_e", "delta E", True), "segmentation": ("mean_iou", "mean IoU", False)}


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


def verdict(task, cfg, model_metrics, baseline_metrics, presets):
    """Two lines: how the model compares with the baseline (and why, when it loses), and what a full run reaches."""
    key, label, lower_is_better = VERDICT_METRIC[task]
    value, base = model_metrics.get(key), baseline_metrics.get(key)
    preset, differ = match_preset(cfg, presets)
    full = FULL_RUNS[task].get(preset) if not differ else None
    notes = shortened(cfg, presets[preset]) if preset else []
    missing = ""
    if full is None:
        missing = (f"no full run of {preset} is recorded" if preset and not differ
                   else f"no full run of these settings is recorded (closest preset: {preset}, with other "
                        f"{', '.join(differ)})" if preset else "no full run of these settings is recorded")
        reference = _reference(task, FALLBACK[task], FULL_RUNS[task][FALLBACK[task]])
    else:
        reference = _reference(task, preset, full)
    if value is None or base is None:
        return [line for line in (missing, reference) if line]
    fmt = "{:.3f}" if task == "segmentation" else "{:.2f}"
    against = f"on {label} ({fmt.format(value)} against {fmt.format(base)})"
    name = f"the {_baseline_short(task, baseline_metrics)} baseline"
    if (value < base) if lower_is_better else (value > base):
        first = f"beats {name} {against}"
        if task == "colorization" and model_metrics.get("psnr", 0) < baseline_metrics.get("psnr", 0):
            first += "; PSNR favours the grey input even after a full run (a wrong colour costs more than none)"
    else:
        if notes:
            why = f"a short run ({', '.join(notes)})"
        elif full is None:
            why = f"{cfg.epochs} epoch(s) with settings that no full run was measured with"
        elif not ((full.metrics.get(key, base) < base) if lower_is_better else (full.metrics.get(key, base) > base)):
            why = "this preset does not beat it even after a full run"
        else:
            why = "a run as long as its preset's that did not learn: check the data and the learning rate"
        first = f"below {name} {against}: {why}"
    return [first + (f"; {missing}" if missing else ""), reference]


def summary_lines(task, cfg, model_metrics, baseline_metrics, presets, where):
    """The summary: the model's figures (`where`: "validation (500 images, best.keras)"), the
    baseline's, how the two compare and what a full run reaches."""
    lines = [f"{where}: {figures(task, model_metrics)}"]
    if baseline_metrics:
        lines.append(f"baseline, {baseline_name(task, baseline_metrics)}: {figures(task, baseline_metrics)}")
    return lines + verdict(task, cfg, model_metrics, baseline_metrics or {}, presets)
