"""Where a training step's time goes: TensorFlow's profiler, summed per op type.

`op_profile` runs a compiled model's `fit` for a few steps under
`tf.profiler.experimental` and reads the trace it writes (an XSpace
protobuf): every TensorFlow op executed on the host is an event named
"op name:op type" with its duration. Summed per op type and divided by the
steps, that is CPU time per training step (with 2 intra-op threads an op can
take more CPU time than wall time). `run` does it for the course UNet and the
segmentation preset, each built, compiled and fed by its task exactly as a
run is (no run folder), and is the benchmark's "profile" part.

This is how the two layers of `keras_cnn.layers` were found: the UNet's
crop gradient (`StridedSliceGrad`) and the unfused BatchNorm's element-wise
ops were a third of its step.
"""

import collections
import glob
import os
import tempfile

# Events that enclose ops (function calls, executor bookkeeping), not ops: summing them would count twice.
_ENCLOSING = ("PartitionedCall", "StatefulPartitionedCall", "While", "If", "StatelessIf", "StatelessWhile")


def op_times(xspace_path):
    """{op type: total milliseconds} of the TensorFlow op events on the host in one profiler trace."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    with open(xspace_path, "rb") as f:
        space.ParseFromString(f.read())
    totals = collections.Counter()
    for plane in space.planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        for line in plane.lines:
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                # TensorFlow names an op's trace event "op name:op type"; tf.data's are "Iterator::...".
                if ":" not in name or "::" in name:
                    continue
                op_type = name.rsplit(":", 1)[1].strip()
                if op_type and op_type not in _ENCLOSING and not op_type.startswith("__inference"):
                    totals[op_type] += event.duration_ps / 1e9
    return totals


def op_profile(model, dataset, steps=10, top=12):
    """CPU milliseconds per training step of `model.fit` on `dataset`, per op type, largest first.

    The first step runs outside the trace (it traces and compiles the step).
    Returns {"steps", "op_ms_per_step", "ops": [{"op", "ms_per_step", "share"}, ...]} with the
    `top` op types and one "(all others)" row.
    """
    import tensorflow as tf

    # A few real batches held in memory: the model's step is profiled, not the input pipeline.
    dataset = dataset.take(min(steps, 4)).cache().repeat()
    model.fit(dataset.take(1), epochs=1, verbose=0)
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        try:
            model.fit(dataset.take(steps), epochs=1, verbose=0)
        finally:
            tf.profiler.experimental.stop()
        paths = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
        if not paths:
            raise RuntimeError(f"the TensorFlow profiler wrote no trace under {logdir}")
        totals = op_times(paths[0])
    total = sum(totals.values())
    ops = [{"op": name, "ms_per_step": ms / steps, "share": ms / total} for name, ms in totals.most_common(top)]
    rest = total - sum(ms for _, ms in totals.most_common(top))
    if rest > 0:
        ops.append({"op": "(all others)", "ms_per_step": rest / steps, "share": rest / total})
    return {"steps": steps, "op_ms_per_step": total / steps, "ops": ops}


def run(horses_dir=None, weizmann_dir=None, quick=False, log=print):
    """The op profile of the course UNet's and the segmentation preset's training steps."""
    from keras_cnn.benchmarks import colorization, segmentation
    from keras_cnn.benchmarks.timing import run_model

    steps = 3 if quick else 10
    rows = []
    if horses_dir:
        cfg = colorization.preset_config(colorization.COURSE, horses_dir, quick)
        model, dataset, _, _ = run_model("colorization", cfg, colorization.palette_asset(cfg))
        rows.append({"name": colorization.COURSE, "batch": cfg.batch_size, **op_profile(model, dataset, steps)})
    if weizmann_dir:
        cfg = segmentation.preset_config(segmentation.PRESET, weizmann_dir, quick)
        model, dataset, _, _ = run_model("segmentation", cfg, splits=("train",))
        rows.append({"name": segmentation.PRESET, "batch": cfg.batch_size, **op_profile(model, dataset, steps)})
    for row in rows:
        log(f"{row['name']}: {row['op_ms_per_step']:.0f} CPU ms of ops per step at batch {row['batch']}; "
            + ", ".join(f"{op['op']} {100 * op['share']:.0f}%" for op in row["ops"][:5]))
    return rows
