"""Training speed per Keras backend, side by side in one run on one machine.

    python -m keras_cnn.benchmarks.backends --data-root ../shared/data --out benchmarks_out/backends.json

For each model (the course UNet `cifar10_unet`, the ResUNet `cifar10_resunet`
and the default segmenter `effnet_finetune`, EfficientNet-Lite0 DeepLabV3+
at 288 px) and each Keras backend installed (TensorFlow, JAX, PyTorch), a
fresh process builds the model and its tf.data pipeline exactly as a run
does (`timing.run_model`: the task's `build_model` and `datasets` on the real
photos) and times `model.fit` steps after warm-up (`timing.training_rate`;
compilation and tracing left out). Native PyTorch runs the course UNet's
layer-for-layer twin (`torch_nets`) in a plain loop as the peer; the ResUNet
and the segmenter have no PyTorch twin here. Rounds alternate the
backends, so a change in machine load hits each alike; the table gives the
median of the rounds and their range.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

# (name, application, preset, data folder under --data-root, batch, timed steps)
MODELS = (
    ("course UNet", "colorization", "cifar10_unet", "cifar10-horse-train", 100, 20),
    ("ResUNet", "colorization", "cifar10_resunet", "cifar10-horse-train", 100, 6),
    ("DeepLabV3+ Lite0 288 px", "segmentation", "effnet_finetune", "weizmann-horses", 8, 4),
)
BACKENDS = ("tensorflow", "jax", "torch")
PEER = "native PyTorch"
WARMUP = 2


def _config(application, preset, data_dir, batch):
    from keras_cnn.config import resolve

    if application == "colorization":
        from keras_cnn.colorization.config import PRESETS, ColorizationConfig

        return resolve(ColorizationConfig, PRESETS, preset, {"source": "folder", "data_dir": data_dir,
                                                             "val_fraction": 0.1, "seed": 0, "batch_size": batch,
                                                             "max_examples": 1000})
    from keras_cnn.segmentation.config import PRESETS, SegmentationConfig

    return resolve(SegmentationConfig, PRESETS, preset, {"data_dir": data_dir, "batch_size": batch,
                                                         "time_limit_minutes": 0.0, "lr_schedule": "constant",
                                                         "plot_examples": 0})


def measure_keras(application, preset, data_dir, batch, steps):
    """images/s of `model.fit` for one model on this process's Keras backend."""
    import keras

    from keras_cnn.benchmarks.timing import run_model, training_rate

    cfg = _config(application, preset, data_dir, batch)
    assets = lambda data: {}  # noqa: E731
    if application == "colorization":
        from keras_cnn.colorization.palette import fit_palette

        assets = lambda data: {"palette": fit_palette(data[0], cfg.num_colours, cfg.palette_space, 0)}  # noqa: E731
    model, dataset, runtime, _ = run_model(application, cfg, assets, splits=("train",) if
                                           application == "segmentation" else ("train", "validation"))
    rate = training_rate(model, dataset, runtime.global_batch, steps=steps, warmup=WARMUP)
    return {"backend": keras.backend.backend(), "images_per_s": rate["images_per_s"], "step_ms": rate["step_ms"],
            "params": int(model.count_params())}


def measure_torch_peer(data_dir, batch, steps):
    """images/s of the course UNet's PyTorch twin in a plain training loop (Adam, cross-entropy)."""
    import torch

    from keras_cnn.benchmarks.peer_torch import TorchLoop, usable_cpus
    from keras_cnn.benchmarks.torch_nets import TorchColorizer, UNet, parameter_count
    from keras_cnn.colorization.palette import fit_palette
    from keras_cnn.tasks import get_task

    cfg = _config("colorization", "cifar10_unet", data_dir, batch)
    train, _ = get_task("colorization").load_data(cfg)
    palette = fit_palette(train, cfg.num_colours, cfg.palette_space, 0)
    labels = palette.labels(train).numpy()
    torch.set_num_threads(usable_cpus())
    torch.manual_seed(0)
    model = TorchColorizer(UNet(cfg.kernel, cfg.num_filters, cfg.num_colours))
    loop = TorchLoop(model, torch.from_numpy(train), torch.from_numpy(labels.astype("int64")), batch,
                     cfg.learning_rate)
    rate = loop.rate(steps, WARMUP)
    return {"backend": PEER, "images_per_s": rate["images_per_s"], "step_ms": rate["step_ms"],
            "params": int(parameter_count(model))}


def _child(args):
    name, application, preset, folder, batch, steps = next(m for m in MODELS if m[0] == args.child)
    data_dir = os.path.join(os.path.abspath(args.data_root), folder)
    steps = args.steps or steps
    if args.peer:
        result = measure_torch_peer(data_dir, batch, steps)
    else:
        result = measure_keras(application, preset, data_dir, batch, steps)
    print("RESULT " + json.dumps({"model": name, "batch": batch, "steps": steps, **result}), flush=True)


def installed(backend):
    module = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}[backend]
    return subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True).returncode == 0


def _run_child(model, backend, data_root, steps, log):
    peer = backend == PEER
    env = {**os.environ, "KERAS_BACKEND": "tensorflow" if peer else backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    cmd = [sys.executable, "-m", "keras_cnn.benchmarks.backends", "--child", model, "--data-root", data_root]
    cmd += ["--peer"] if peer else []
    cmd += ["--steps", str(steps)] if steps else []
    start = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
        log(f"{model} on {backend}: failed ({proc.stderr.strip().splitlines()[-1:] or proc.returncode})")
        return None
    result = json.loads(lines[-1][len("RESULT "):])
    result["process_seconds"] = time.time() - start
    log(f"{model} on {backend}: {result['images_per_s']:.1f} images/s ({result['step_ms']:.0f} ms a step of "
        f"{result['batch']}; process {result['process_seconds']:.0f} s)")
    return result


def run(data_root, rounds=2, backends=BACKENDS, models=None, steps=None, log=print):
    """Every (model, backend) cell `rounds` times, alternating; returns rows with median and range."""
    from keras_cnn.benchmarks.report import machine

    started = time.time()
    backends = [b for b in backends if installed(b)]
    columns = list(backends) + ([PEER] if "torch" in backends else [])
    models = models or [m[0] for m in MODELS]
    rates = {(m, b): [] for m in models for b in columns}
    for r in range(rounds):
        log(f"round {r + 1} of {rounds}")
        for model in models:
            for backend in columns:
                if backend == PEER and model != MODELS[0][0]:
                    continue
                result = _run_child(model, backend, data_root, steps, log)
                if result:
                    rates[(model, backend)].append(result["images_per_s"])
    rows = []
    for model in models:
        row = {"model": model, "batch": next(m[4] for m in MODELS if m[0] == model)}
        for backend in columns:
            got = rates[(model, backend)]
            row[backend] = ({"median": statistics.median(got), "min": min(got), "max": max(got), "rounds": got}
                            if got else None)
        rows.append(row)
    return {"machine": machine(), "rounds": rounds, "columns": columns, "rows": rows,
            "wall_seconds": time.time() - started}


def table(result):
    """Markdown: images/s per model and backend (median of the rounds, their range), and the ratio to TensorFlow."""
    columns = result["columns"]
    lines = ["| model | batch | " + " | ".join(columns) + " |", "|---|---|" + "---|" * len(columns)]
    for row in result["rows"]:
        tf_rate = (row.get("tensorflow") or {}).get("median")
        cells = []
        for c in columns:
            cell = row.get(c)
            if not cell:
                cells.append("—")
                continue
            ratio = f", {cell['median'] / tf_rate:.2f}x" if tf_rate and c != "tensorflow" else ""
            spread = f" ({cell['min']:.1f}-{cell['max']:.1f})" if len(cell["rounds"]) > 1 else ""
            cells.append(f"{cell['median']:.1f}{spread}{ratio}")
        lines.append(f"| {row['model']} | {row['batch']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=os.path.join("..", "shared", "data"),
                        help="folder holding cifar10-horse-train/ and weizmann-horses/")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--models", default=None, help="comma-separated names of MODELS (default: all)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per cell (default: per model)")
    parser.add_argument("--out", default=None, help="JSON file for the result")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--peer", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child(args)
    from keras_cnn.fileio import atomic_write_text

    models = args.models.split(",") if args.models else None
    result = run(args.data_root, args.rounds, tuple(args.backends.split(",")), models, args.steps)
    print(table(result))
    print(f"{result['machine'].get('cpu', '')}: {result['wall_seconds'] / 60:.1f} min")
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
