"""Timing, done the same way for every runtime so the figures compare.

- `time_calls`: a function called after warm-up until both a minimum count
  and a minimum time are reached; per-call seconds.
- `training_rate`: images/s of `model.fit` on a real `tf.data` pipeline,
  timed per step by a callback after warm-up steps (tracing excluded).
- `pipeline_rate`: images/s of a `tf.data` pipeline on its own.
- `run_model`: a task's compiled model and training pipeline for a config,
  built as a run builds them, without a run folder.
- `keras_inference`, `saved_model_inference`, `tflite_inference`: images/s
  at a batch size and the latency of one image, for each runtime.
"""

import json
import os
import resource
import statistics
import time

import keras
import numpy as np
import tensorflow as tf

from keras_cnn import state_files
from keras_cnn.errors import UserError
from keras_cnn.fileio import atomic_write_text


def cpu_seconds():
    """CPU time of this process so far, all threads (user + system): contention does not inflate it."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_model(task_name, cfg, assets=lambda data: {}, splits=("train", "validation")):
    """(model, training dataset, runtime, data) of `cfg` as a run of `task_name` builds them, without a run folder.

    `assets(data)` gives what the task needs beside the data (the colourizer's palette).
    """
    from keras_cnn import training
    from keras_cnn.tasks import get_task

    runtime = training.setup_runtime(cfg, log=lambda msg: None)
    task = get_task(task_name)
    data = task.load_data(cfg, splits=splits)
    fitted = assets(data)
    with runtime.scope():
        model = task.build_model(cfg, data, fitted, runtime)
    dataset, _ = task.datasets(cfg, data, fitted, model, runtime)
    return model, dataset, runtime, data


def timed_training(train, cfg, run_dir, name, reuse=False, log=print):
    """Runs `train(cfg, run_dir, verbose=0, log=...)` and records how long it took.

    Wall time, this process's CPU time and the load average before and after
    go to `run_dir/benchmark_timing.json`. With `reuse`, a finished run
    already there (timing file and `metrics.json`) is taken as it is; any
    other existing folder is an error, so a benchmark never mixes two runs.
    Returns the timing dict, with "reused".
    """
    timing_path = os.path.join(run_dir, "benchmark_timing.json")
    if reuse and os.path.exists(timing_path) and os.path.exists(os.path.join(run_dir, "metrics.json")):
        log(f"{name}: reusing the finished run in {run_dir}")
        return {**state_files.read_object(timing_path, "benchmark timing record"), "reused": True}
    if os.path.exists(run_dir):
        raise UserError(f"{run_dir}: benchmark run folder exists already; remove it, choose another "
                        "--work-dir, or pass --reuse to take finished runs as they are")
    load_before, cpu_before = os.getloadavg()[0], cpu_seconds()
    start = time.perf_counter()
    train(cfg, run_dir, verbose=0, log=lambda msg: log(f"{name}: {msg}"))
    timing = {"train_seconds": time.perf_counter() - start, "train_cpu_seconds": cpu_seconds() - cpu_before,
              "load_before": load_before, "load_after": os.getloadavg()[0],
              "finished_at": time.strftime("%Y-%m-%d %H:%M:%S")}
    atomic_write_text(timing_path, json.dumps(timing, indent=2) + "\n")
    log(f"{name}: trained in {timing['train_seconds']:.0f} s, {timing['train_cpu_seconds']:.0f} CPU s "
        f"(load average {load_before:.1f} -> {timing['load_after']:.1f})")
    return {**timing, "reused": False}


def time_calls(fn, min_seconds=1.0, min_calls=5, warmup=2):
    """Seconds per call of `fn()`, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    start = time.perf_counter()
    while len(times) < min_calls or time.perf_counter() - start < min_seconds:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def summarize(times, batch):
    """Images/s over all calls and the median / 90th-percentile seconds of one call."""
    times = np.asarray(times, np.float64)
    return {"batch": int(batch), "calls": int(len(times)),
            "images_per_s": float(batch * len(times) / times.sum()),
            "latency_ms": float(1000 * statistics.median(times)),
            "latency_ms_p90": float(1000 * np.percentile(times, 90))}


class _StepTimes(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.ends = []

    def on_train_batch_end(self, batch, logs=None):
        self.ends.append(time.perf_counter())


def training_rate(model, dataset, batch, steps=20, warmup=3):
    """Images/s of `model.fit` on `dataset` (repeated), over `steps` steps after `warmup`.

    The model must be compiled. Timing runs from the end of the last warm-up
    step to the end of the last step, so tracing and start-up are left out
    but the input pipeline's share is in, as in real training.
    """
    timer = _StepTimes()
    model.fit(dataset.repeat(), epochs=1, steps_per_epoch=warmup + steps, callbacks=[timer], verbose=0,
              shuffle=False)
    seconds = timer.ends[-1] - timer.ends[warmup - 1]
    return {"batch": int(batch), "steps": int(steps), "images_per_s": float(batch * steps / seconds),
            "step_ms": float(1000 * seconds / steps)}


def pipeline_rate(dataset, batches=30, warmup=2):
    """Images/s of iterating `dataset` (repeated) alone; the batch size is read from the data."""
    it = iter(dataset.repeat())
    for _ in range(warmup):
        next(it)
    images = 0
    start = time.perf_counter()
    for _ in range(batches):
        element = next(it)
        first = element[0] if isinstance(element, (tuple, list)) else element
        images += int(tf.shape(first)[0])
    seconds = time.perf_counter() - start
    return {"batches": int(batches), "images_per_s": float(images / seconds)}


def keras_inference(model, inputs, batch, min_seconds=1.0):
    """`model.predict_on_batch` at `batch` (throughput) and at 1 image (latency)."""
    inputs = np.asarray(inputs)
    big = summarize(time_calls(lambda: model.predict_on_batch(inputs[:batch]), min_seconds), batch)
    one = summarize(time_calls(lambda: model.predict_on_batch(inputs[:1]), min_seconds), 1)
    return {"images_per_s": big["images_per_s"], "batch": batch, "latency_ms": one["latency_ms"],
            "latency_ms_p90": one["latency_ms_p90"]}


def saved_model_inference(path, images_uint8, batch, min_seconds=1.0):
    """The SavedModel's `serving_default` (uint8 images in, what TF Serving runs) in-process."""
    from keras_cnn.export.saved_model import IMAGES_KEY

    fn = tf.saved_model.load(path).signatures["serving_default"]
    images = tf.constant(np.asarray(images_uint8, np.uint8))
    big = summarize(time_calls(lambda: fn(**{IMAGES_KEY: images[:batch]}), min_seconds), batch)
    one = summarize(time_calls(lambda: fn(**{IMAGES_KEY: images[:1]}), min_seconds), 1)
    return {"images_per_s": big["images_per_s"], "batch": batch, "latency_ms": one["latency_ms"],
            "latency_ms_p90": one["latency_ms_p90"]}


def tflite_inference(path, images_uint8, num_threads=None, min_seconds=1.0):
    """A `.tflite` file in the LiteRT interpreter, one image per invoke as on a phone."""
    from keras_cnn.export.litert_runtime import load_interpreter

    interpreter = load_interpreter(path, num_threads=num_threads)
    inp = interpreter.get_input_details()[0]
    image = np.asarray(images_uint8[:1], np.uint8)

    def invoke():
        interpreter.set_tensor(inp["index"], image)
        interpreter.invoke()

    one = summarize(time_calls(invoke, min_seconds), 1)
    return {"images_per_s": one["images_per_s"], "batch": 1, "latency_ms": one["latency_ms"],
            "latency_ms_p90": one["latency_ms_p90"], "size_bytes": os.path.getsize(path),
            "threads": num_threads or 1}  # LiteRT runs one thread unless told otherwise
