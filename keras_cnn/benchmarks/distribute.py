"""Training images/s per `tf.distribute` strategy, precision policy and XLA, side by side.

`run()` measures every case that the machine allows (`available_cases`: the
default strategy, OneDeviceStrategy, MirroredStrategy over all GPUs, or over
two logical CPUs on a machine without GPUs, each with float32 / mixed
precision and XLA off / on) one after the other in one call, and reports each
as a ratio to the default strategy in float32 without XLA, so the switches
are chosen by measurement on the machine that will train.

Each case runs in a fresh Python process (`python -m
keras_cnn.benchmarks.distribute --case JSON`): the precision policy is
process-wide, logical devices must be set before TensorFlow starts, and a
second MirroredStrategy in one process collides with the first one's
collective keys. The model and its compile are those of training (the
course's UNet colourizer, or a DeepLabV3 segmenter), fed synthetic in-memory
batches so the input pipeline is not what is measured; timing is
`timing.training_rate` (tracing and XLA compilation excluded).
"""

import json
import os
import re
import statistics
import subprocess
import sys

TASKS = ("colorization", "segmentation")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def case(strategy="default", mixed_precision=False, jit_compile=False, logical_cpus=0):
    """One measurement: a strategy name of `keras_cnn.distribute`, the two switches, and
    how many logical CPUs to split the CPU into first (0: leave it whole)."""
    return {"strategy": strategy, "mixed_precision": bool(mixed_precision), "jit_compile": bool(jit_compile),
            "logical_cpus": int(logical_cpus)}


def available_cases(num_gpus=None, logical_cpus=2):
    """Every strategy this machine can run, each with precision and XLA off / on.

    Without GPUs, "mirrored" runs over `logical_cpus` logical CPUs: the same
    code path as several GPUs (a replica per device, all-reduce of the
    gradients), but the replicas share the same cores, so it measures the
    overhead of mirroring, never a speed-up.
    """
    if num_gpus is None:
        import tensorflow as tf

        num_gpus = len(tf.config.list_physical_devices("GPU"))
    strategies = [("default", 0), ("one_device", 0)]
    if num_gpus > 1:
        strategies.append(("mirrored", 0))
    elif num_gpus == 0 and logical_cpus > 1:
        strategies.append(("mirrored", logical_cpus))
    return [case(name, mixed, xla, cpus) for name, cpus in strategies
            for mixed in (False, True) for xla in (False, True)]


def _build(task, image_size):
    import keras

    if task == "colorization":
        from keras_cnn.colorization.models import build_model
        from keras_cnn.colorization.pipeline import PixelCrossEntropy

        return build_model("unet", num_filters=32, num_colours=24), PixelCrossEntropy(), 1, 24
    from keras_cnn.segmentation.deeplab_v3 import DeepLabV3Segmenter
    from keras_cnn.segmentation.registry import make_backbone

    model = DeepLabV3Segmenter(make_backbone("small_resnet", image_size, output_stride=16), 2)
    return model, keras.losses.SparseCategoricalCrossentropy(from_logits=True), 3, 2


def _devices(strategy):
    try:
        return list(strategy.extended.worker_devices)
    except RuntimeError:  # the default strategy has none of its own: TensorFlow's placement
        import tensorflow as tf

        gpus = tf.config.list_logical_devices("GPU")
        return [(gpus or tf.config.list_logical_devices("CPU"))[0].name]


def measure(spec, task="colorization", batch_size=None, image_size=None, steps=20, warmup=3):
    """Images/s of `model.fit` for one `case(...)`, in this process (TensorFlow not yet started).

    `batch_size` is per replica (default: the course's 100 for the
    colourizer, 16 for the segmenter); `image_size` default 32 / 128.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
    import tensorflow as tf

    if spec["logical_cpus"] > 1:
        tf.config.set_logical_device_configuration(
            tf.config.list_physical_devices("CPU")[0],
            [tf.config.LogicalDeviceConfiguration()] * spec["logical_cpus"])
    import keras
    import numpy as np

    from keras_cnn import distribute, training
    from keras_cnn.benchmarks.timing import training_rate

    batch_size = batch_size or (100 if task == "colorization" else 16)
    image_size = image_size or (32 if task == "colorization" else 128)
    strategy = distribute.get_strategy(spec["strategy"])
    policy = training.mixed_policy() if spec["mixed_precision"] else "float32"
    keras.mixed_precision.set_global_policy(policy)
    keras.utils.set_random_seed(0)
    replicas = strategy.num_replicas_in_sync
    global_batch = batch_size * replicas
    with strategy.scope():
        model, loss, channels, classes = _build(task, image_size)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss, jit_compile=spec["jit_compile"])
    if replicas > 1:
        distribute.sync_batchnorm(model)  # as training.fit does
    rng = np.random.RandomState(0)
    n = 4 * global_batch
    x = rng.rand(n, image_size, image_size, channels).astype("float32")
    y = rng.randint(0, classes, (n, image_size, image_size)).astype("int32")
    ds = distribute.set_auto_shard_policy(
        tf.data.Dataset.from_tensor_slices((x, y)).batch(global_batch, drop_remainder=True).cache())
    rate = training_rate(model, ds, global_batch, steps=steps, warmup=warmup)
    return {**spec, "task": task, "precision": policy, "replicas": replicas,
            "devices": _devices(strategy), "global_batch": global_batch,
            "image_size": image_size, "images_per_s": rate["images_per_s"], "step_ms": rate["step_ms"],
            "error": None}


def _one_line(text):
    # The exception line of the traceback ("SomeError: message ..."), else the last line.
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    errors = [line for line in lines if re.match(r"^[\w.]+(Error|Exception): ", line)]
    return (errors[-1] if errors else lines[-1] if lines else "failed without output")[:300]


def _measure_in_subprocess(spec, task, batch_size, image_size, steps, warmup, timeout):
    args = {"case": spec, "task": task, "batch_size": batch_size, "image_size": image_size,
            "steps": steps, "warmup": warmup}
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env["PYTHONPATH"] = os.pathsep.join([REPO, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    try:
        proc = subprocess.run([sys.executable, "-m", "keras_cnn.benchmarks.distribute", json.dumps(args)],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {**spec, "task": task, "error": f"timed out after {timeout} s"}
    last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    if last.startswith("{"):
        return json.loads(last)
    return {**spec, "task": task, "error": _one_line(proc.stderr or proc.stdout)}


def run(cases=None, task="colorization", batch_size=None, image_size=None, steps=20, warmup=3,
        repeats=1, timeout=900, log=print):
    """Measures `cases` (default: `available_cases()`); returns one row per case with `ratio`.

    With `repeats` > 1 the cases are measured round after round (so a burst
    of load elsewhere hits all of them alike) and each row gives the median
    images/s, with the slowest and fastest in `images_per_s_range`. A case
    that fails (say XLA on a strategy that cannot compile it) gives a row
    with `error` set instead of stopping the others. `ratio` is images/s over
    the float32, XLA-off, default-strategy row.
    """
    cases = cases if cases is not None else available_cases()
    results = [[] for _ in cases]
    for round_ in range(repeats):
        # Each round starts at another case, so no case is always first (or
        # always right after the heaviest one).
        for i in [(round_ + k) % len(cases) for k in range(len(cases))]:
            spec = cases[i]
            if results[i] and results[i][-1].get("error"):
                continue  # a failed case is not tried again
            row = _measure_in_subprocess(spec, task, batch_size, image_size, steps, warmup, timeout)
            results[i].append(row)
            log(f"[{round_ + 1}/{repeats}] {label(row)}: " + (
                f"{row['images_per_s']:.0f} images/s ({row['replicas']} replica(s), global batch "
                f"{row['global_batch']})" if not row.get("error") else f"failed: {row['error']}"))
    rows = []
    for measured in results:
        failed = [r for r in measured if r.get("error")]
        if failed:
            rows.append(failed[0])
            continue
        rates = sorted(r["images_per_s"] for r in measured)
        median = statistics.median(rates)
        row = dict(min(measured, key=lambda r: abs(r["images_per_s"] - median)))
        row.update(images_per_s=median, step_ms=1000 * row["global_batch"] / median,
                   images_per_s_range=[rates[0], rates[-1]], repeats=len(rates))
        rows.append(row)
    base = next((r for r in rows if not r.get("error") and r["strategy"] == "default"
                 and not r["mixed_precision"] and not r["jit_compile"]), None)
    for r in rows:
        r["ratio"] = (r["images_per_s"] / base["images_per_s"]) if base and not r.get("error") else None
    return rows


def label(row):
    name = row["strategy"] + (f" ({row['logical_cpus']} logical CPUs)" if row.get("logical_cpus", 0) > 1 else "")
    return (f"{name}, {'mixed' if row['mixed_precision'] else 'float32'}, "
            f"XLA {'on' if row['jit_compile'] else 'off'}")


COLUMNS = [("strategy", "strategy_label", None), ("replicas", "replicas", None),
           ("precision", "precision", None), ("XLA", "xla", None), ("global batch", "global_batch", None),
           ("images/s", "images_per_s", ".0f"), ("range", "images_per_s_range", lambda r: f"{r[0]:.0f}-{r[1]:.0f}"),
           ("ms/step", "step_ms", ".1f"),
           ("vs default", "ratio", ".2f"), ("note", "error", None)]


def markdown(rows):
    """The rows as a Markdown table (`report.table`)."""
    from keras_cnn.benchmarks.report import table

    shown = []
    for r in rows:
        name = r["strategy"] + (f" ({r['logical_cpus']} logical CPUs)" if r.get("logical_cpus", 0) > 1 else "")
        shown.append({**r, "strategy_label": name, "xla": "on" if r["jit_compile"] else "off",
                      "precision": r.get("precision") or ("mixed" if r["mixed_precision"] else "float32")})
    return table(shown, COLUMNS)


def error_message(e):
    """`Type: message` of a failed case, without TensorFlow's traceback and node dumps."""
    skip = ("File ", "Detected at node", "Graph execution error", "[[", "Cf. ", "Traceback")
    lines = [line.strip() for line in str(e).splitlines()]
    lines = [line for line in lines if line and not line.startswith(skip)]
    return f"{type(e).__name__}: {re.sub(r' [(]defined @ [^)]*[)]', '', lines[0]) if lines else ''}"[:300]


if __name__ == "__main__":
    request = json.loads(sys.argv[1])
    try:
        row = measure(request["case"], request["task"], request["batch_size"], request["image_size"],
                      request["steps"], request["warmup"])
    except Exception as e:  # one failed case is a row, not the end of the benchmark
        row = {**request["case"], "task": request["task"], "error": error_message(e)}
    print(json.dumps(row))
