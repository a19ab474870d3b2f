"""Inference speed of one trained run in every runtime: Keras, SavedModel, each TFLite variant.

The run is exported with `keras_cnn.export` (the same code users export
with), then each runtime is timed on the run's own validation images: images/s
at a batch size (TFLite runs one image per invoke, as on a phone) and the
latency of one image, with the latency as a ratio to Keras' measured in the
same process.
"""

import os

import numpy as np

from keras_cnn.benchmarks.timing import keras_inference, saved_model_inference, tflite_inference


def runtimes(run_dirs, export_root, batch=100, tflite_threads=None, min_seconds=1.0, formats=None, log=print):
    """Rows of images/s and latency for each `{export name: run folder}` and runtime.

    `formats` are `keras_cnn.export.layout.FORMATS` names (default: all); the
    SavedModel is always among them.
    """
    from keras_cnn.export import servable_for
    from keras_cnn.export.layout import FORMATS, export_model
    from keras_cnn.tasks import open_run

    rows = []
    for name, run_dir in run_dirs.items():
        servable = servable_for(open_run(run_dir))
        wanted = tuple(formats or FORMATS)
        summary = export_model(servable, export_root, name, formats=("saved_model",) + wanted,
                               log=lambda msg: log(f"{name}: {msg}"))
        images = servable.images("validation", batch)
        if len(images) < batch:  # a small validation split is cycled to fill the batch
            images = np.concatenate([images] * (batch // max(len(images), 1) + 1))[:batch]
        # The Keras model takes the same uint8 pixels as every other runtime.
        keras_row = keras_inference(servable.model, images.astype(np.float32), batch, min_seconds)
        entries = [("keras", keras_row, None),
                   ("saved_model", saved_model_inference(summary["saved_model"]["path"], images, batch,
                                                         min_seconds), None)]
        for variant, rep in summary.get("tflite", {}).get("reports", {}).items():
            path = os.path.join(summary["tflite"]["path"], rep["file"])
            entries.append((f"tflite_{variant}", tflite_inference(path, images, tflite_threads, min_seconds),
                            rep["agreement_with_keras"]["argmax_agreement"]))
        for runtime, r, agreement in entries:
            rows.append({"name": name, "runtime": runtime, **r, "argmax_agreement": agreement,
                         "latency_vs_keras": r["latency_ms"] / keras_row["latency_ms"],
                         "images_per_s_vs_keras": r["images_per_s"] / keras_row["images_per_s"]})
            log(f"{name} {runtime}: {r['images_per_s']:.0f} images/s at batch {r['batch']}, "
                f"{r['latency_ms']:.2f} ms for one image")
    return rows
