"""The whole benchmark: colourization quality, speed, segmentation, the PyTorch peer; one JSON result.

`run(...)` is what `scripts/benchmark.py` calls. Everything a comparison
needs is measured inside one call, so ratios (ours / course, pipeline /
training, TFLite / Keras, ours / PyTorch) never mix machines or load conditions.
The "peer" part (`peer_torch`) needs torch and torchvision, so it runs only when asked for.
"""

import json
import os
import sys
import time

from keras_cnn.benchmarks import colorization, inference, peer_torch, profile, report, segmentation
from keras_cnn.colorization.config import PRESETS
from keras_cnn.errors import UserError
from keras_cnn.fileio import atomic_write_text

PARTS = ("quality", "speed", "segmentation", "profile", "peer")
# The parts a plain run measures; "peer" needs the optional torch extra, "profile" is asked for.
DEFAULT_PARTS = ("quality", "speed", "segmentation")
PEERS = (peer_torch.FRAMEWORK,)
HORSES = "cifar10-horse-train"
WEIZMANN = "weizmann-horses"


def parse_parts(text):
    parts = [p.strip() for p in text.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown or not parts:
        raise UserError(f"unknown benchmark part(s) {', '.join(unknown) or '(none given)'}; "
                        f"choose from: {', '.join(PARTS)}")
    return tuple(p for p in PARTS if p in parts)


def _data_folder(data_root, name):
    path = os.path.join(data_root, name)
    if not os.path.isdir(path):
        raise UserError(f"{path}: data folder not found (pass --data-root, the folder holding {name}/)")
    return path


def with_course_ratio(rows):
    """Adds each training-speed row's images/s as a ratio to the course UNet's."""
    ref = next((r for r in rows if r["name"] == colorization.COURSE), None)
    for r in rows:
        r["speed_vs_course"] = r["train_images_per_s"] / ref["train_images_per_s"] if ref else None
    return rows


def default_presets(log=print):
    """The colourization presets a run without --presets measures, the course UNet and ours first.

    Left out: presets whose pretrained weights are not installed, and the
    two-stage presets, which read a class tree and a base run rather than the
    horse folder every row trains on (docs/COLORIZATION_RESULTS.md has their commands).
    """
    return [p for p in sorted(PRESETS, key=lambda p: p not in colorization.EXPORTED)
            if not PRESETS[p].classes and _weights_available(p, log)]


def _weights_available(preset, log):
    """Whether a preset's pretrained weights are installed; if not, says it is left out of the default list."""
    if PRESETS[preset].backbone_weights != "imagenet":
        return True
    from keras_cnn.segmentation.efficientnet_lite import imagenet_weights_path

    try:
        imagenet_weights_path()
    except UserError as e:
        log(f"leaving out {preset}: {e}")
        return False
    return True


def run(data_root, work_dir, parts=PARTS, quick=False, presets=None, reuse=False, strip_path=None,
        tflite_threads=None, overrides=None, segmentation_preset=segmentation.PRESET, export_formats=None,
        peer=None, peer_rounds=peer_torch.DEFAULT_ROUNDS, peer_epochs=None,
        quality_target=peer_torch.DEFAULT_QUALITY_TARGET, peer_nets=peer_torch.NETS, log=print):
    """Runs the chosen parts and returns the result dict (see `report.markdown` for its tables).

    `overrides` change every colourization preset (tests shrink the nets with
    them); `segmentation_preset` names the segmentation config; `export_formats`
    limits the timed exports (default: SavedModel and every TFLite variant).
    `peer` ("torch") adds the "peer" part; the part alone means the torch peer.
    """
    if peer is not None and peer not in PEERS:
        raise UserError(f"unknown --peer {peer!r}; choose from: {', '.join(PEERS)}")
    if peer and "peer" not in parts:
        parts = tuple(p for p in PARTS if p in parts or p == "peer")
    if "peer" in parts:
        # Before anything else: without torch, one line now rather than after an hour of other parts.
        peer_torch.require_torch()
    # The course UNet and ours train first, back to back, so the load on a
    # shared machine differs least between the two runs compared most.
    if not presets:
        presets = default_presets(log)
    presets = list(presets)
    unknown = [p for p in presets if p not in PRESETS]
    if unknown:
        raise UserError(f"unknown colourization preset(s) {', '.join(unknown)}; choose from "
                        f"{', '.join(sorted(PRESETS))}")
    # A quick run trains one epoch on a few hundred images: it checks that every
    # part runs, and its quality figures mean nothing. Said in the JSON and the tables.
    result = {"quick": quick, "smoke_test": quick,
              "note": "SMOKE TEST (--quick): 1 epoch on 400 images; quality figures are not results"
              if quick else "", "parts": list(parts), "command": " ".join([os.path.basename(sys.argv[0])]
                                                                         + sys.argv[1:]),
              "started_at": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": report.machine()}
    min_seconds = 0.3 if quick else 2.0
    if {"quality", "speed", "profile"} & set(parts) or ("peer" in parts and "unet" in peer_nets):
        horses = _data_folder(data_root, HORSES)
    if {"segmentation", "profile"} & set(parts) or ("peer" in parts and "deeplab" in peer_nets):
        weizmann = _data_folder(data_root, WEIZMANN)
    if "quality" in parts:
        log("== colourization quality ==")
        result["colorization_quality"] = colorization.quality(
            presets, horses, work_dir, quick=quick, overrides=overrides, reuse=reuse, strip_path=strip_path,
            log=log)
    if "speed" in parts:
        log("== colourization speed ==")
        training_rows = with_course_ratio(colorization.training_speed(presets, horses, quick, overrides,
                                                                       log=log))
        exported = {name.replace("cifar10_", "colorizer_"): colorization.ensure_run(name, horses, work_dir,
                                                                                     overrides, log)
                    for name in colorization.EXPORTED if name in presets}
        overhead = colorization.loop_overhead(colorization.COURSE, horses, work_dir, quick=quick,
                                              overrides=overrides, log=log) \
            if colorization.COURSE in presets else None
        result["speed"] = {"training": training_rows, "loop_overhead": overhead, "inference": inference.runtimes(
            exported, os.path.join(work_dir, "exported_models"), batch=100, tflite_threads=tflite_threads,
            min_seconds=min_seconds, formats=export_formats, log=log)}
    if "segmentation" in parts:
        log("== segmentation ==")
        quality = segmentation.quality(weizmann, work_dir, segmentation_preset, quick=quick, reuse=reuse, log=log)
        result["segmentation"] = {
            "quality": quality,
            "training": segmentation.training_speed(weizmann, segmentation_preset, quick=quick, log=log),
            "inference": inference.runtimes({"segmenter_weizmann": quality["run_dir"]},
                                            os.path.join(work_dir, "exported_models"), batch=16,
                                            tflite_threads=tflite_threads, min_seconds=min_seconds,
                                            formats=export_formats, log=log)}
    if "profile" in parts:
        log("== where training time goes (TensorFlow profiler) ==")
        result["profile"] = profile.run(horses, weizmann, quick=quick, log=log)
    if "peer" in parts:
        log("== PyTorch peer ==")
        result["peer"] = peer_torch.run(horses if "unet" in peer_nets else None,
                                        weizmann if "deeplab" in peer_nets else None, quick=quick,
                                        rounds=peer_rounds, epochs=peer_epochs, target=quality_target,
                                        nets=peer_nets, log=log)
    result["finished_at"] = time.strftime("%Y-%m-%d %H:%M:%S")
    result["load_average_at_end"] = list(os.getloadavg())
    return result


def write(result, out_path):
    """The JSON result at `out_path` and its tables beside it (`.md`), both written atomically."""
    atomic_write_text(out_path, json.dumps(result, indent=2) + "\n")
    md_path = os.path.splitext(out_path)[0] + ".md"
    atomic_write_text(md_path, report.markdown(result) + "\n")
    return md_path
