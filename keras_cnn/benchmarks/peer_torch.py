"""The PyTorch peer of the benchmark (`scripts/benchmark.py --peer torch`): ours against plain PyTorch.

Everything is measured in one process, on the same data, batch size and
thread count, alternating ours and the peer in rounds (who goes first swaps
each round, so a load that drifts does not favour one side), and reported
per round and as the median of the per-round ratios ours / peer:

- **Course UNet** (`cifar10_unet`, batch 100, Adam 1e-3) on the CIFAR-10
  horses: ours is the package's own training path (the colourization task's
  compiled `Colorizer` and its `tf.data` pipeline, timed by
  `timing.training_rate` like every training figure of the benchmark); the
  peer is the twin in `torch_nets.UNet` in a plain PyTorch loop over
  in-memory tensors, reshuffled each epoch, with the labels of the same
  palette computed once (`Palette.labels`, the function our pipeline runs
  per batch). Inference: ours `predict_on_batch` (Keras' compiled predict
  step, the fastest Keras call for one batch), the peer a direct call under
  `torch.inference_mode()` in eval mode; both take uint8 pixels.
- **DeepLabV3-ResNet-50** (the segmenter's torchvision family): ours the Keras
  port `build_torchvision_deeplabv3(50, num_classes=2)` compiled by the
  segmentation task's `compile_segmenter`, the peer torchvision's
  `deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=2,
  aux_loss=False)`, both from random weights on the same Weizmann horse
  images and masks held in memory (resized once, no augmentation).
- **Peak memory**: each framework's training steps in a child process of its
  own (its VmHWM), so one framework's libraries never count for the other.
- **Time to quality** (course UNet): both trained with the same recipe on the
  package's fixed 90/10 split (seed 0), from the same initial weights (ours
  copied into the twin), one epoch each in turn; after every epoch the
  package's delta E (`evaluate.colour_errors` on argmax-decoded colours) on
  the held-out 10%. Training minutes exclude evaluation.

torch is imported inside functions only, after `require_torch`: the package
and its tests never need it.

    python -m keras_cnn.benchmarks.peer_torch _memory ...   # the memory child (internal)
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from keras_cnn.errors import UserError

FRAMEWORK = "torch"
INSTALL = "pip install -e .[bench]"
COURSE_LR = 1e-3
SEG_DEPTH = 50
SEG_PRESET = "weizmann_scratch"  # for its data settings only (folder layout, 25% validation)
# Steps per measurement. DeepLabV3 takes few: TensorFlow's dilated conv was slow on CPU (2 cores,
# 8x8x2048 -> 256 channels, batch 2: rate 36 fwd+bwd 8.1 s against 0.08 s at rate 1; torch 0.09 s), and
# the ASPP's rates 12/24/36 made one Keras training step tens of seconds. `deeplab_v3.atrous_conv2d`
# has since made that step 3.4-3.7x faster; the step counts were not raised again.
# The smoke settings (--quick): every step runs, no figure means anything.
SETTINGS = {
    False: {"unet_steps": 20, "unet_warmup": 3, "seg_size": 160, "seg_batch": 4, "seg_steps": 2,
            "seg_warmup": 1, "seg_pairs": 0, "memory_unet_steps": 10, "memory_seg_steps": 1, "min_seconds": 2.0},
    True: {"unet_steps": 4, "unet_warmup": 2, "seg_size": 64, "seg_batch": 2, "seg_steps": 1,
           "seg_warmup": 1, "seg_pairs": 8, "memory_unet_steps": 3, "memory_seg_steps": 1, "min_seconds": 0.2},
}
# What the peer compares: "unet" (speed, memory and time to quality of the course UNet, minutes on two
# cores) and "deeplab" (speed and memory of DeepLabV3-ResNet-50: the slow part, see SETTINGS).
NETS = ("unet", "deeplab")
DEFAULT_ROUNDS = 3
DEFAULT_EPOCHS = 10
# Mean delta E on the held-out horses: the grey input scores 15.49, the course UNet 14.21 after 25 epochs
# (docs/BENCHMARKS.md), both sides about 15.2 after 3 (a smoke run). 15.0 is chosen to be reached well
# within the default 10 epochs, so the race gives a figure; --quality-target 14.5 asks for more (with more
# --peer-epochs). A side that never reaches the target is reported as "not reached", never extrapolated.
DEFAULT_QUALITY_TARGET = 15.0


def require_torch():
    """Imports torch and torchvision, or raises the one-line `UserError` saying how to install them."""
    if "tensorflow" in sys.modules and "triton" not in sys.modules:
        # torch's CUDA wheels ship Triton, which torchvision's import loads (through torch._dynamo);
        # loading it after TensorFlow kills the process with a segfault (measured: TF 2.21, torch 2.14,
        # `import tensorflow; import torchvision`). The peer runs on CPU and never uses Triton, so it
        # is hidden: torch then sees no Triton, as with its CPU-only wheel.
        sys.modules["triton"] = None
    try:
        import torch  # noqa: F401
        import torchvision  # noqa: F401
    except ImportError as e:
        raise UserError(f"--peer torch needs PyTorch and torchvision ({e}); install them with: {INSTALL}") \
            from None


def usable_cpus():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def setup_torch(threads, seed=0):
    """Thread count and seed for the peer; returns what it runs with."""
    import tensorflow as tf
    import torch
    import torchvision

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    # TensorFlow's default intra-op pool (setting 0) has one thread per usable core; torch is given the same.
    return {"framework": FRAMEWORK, "torch": torch.__version__, "torchvision": torchvision.__version__,
            "torch_threads": torch.get_num_threads(),
            "tf_intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads() or usable_cpus()}


# === Timing loops ===

class TorchLoop:
    """A plain PyTorch training loop over in-memory tensors: a new random order every epoch, Adam.

    Args:
        model: takes a batch of `images` rows, returns NCHW logits.
        images, targets: tensors indexed together (targets: int64 class maps).
        batch: batch size; `drop_last` drops an epoch's last partial batch
            (as our segmentation pipeline does; the colourization one keeps it).
    """

    def __init__(self, model, images, targets, batch, learning_rate, drop_last=False, seed=0):
        import torch

        from keras_cnn.benchmarks.torch_nets import KERAS_ADAM_EPSILON

        self.torch = torch
        self.model, self.images, self.targets, self.batch = model, images, targets, batch
        self.drop_last = drop_last
        self.optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate, eps=KERAS_ADAM_EPSILON)
        self.generator = torch.Generator().manual_seed(seed)
        self._order, self._pos = None, 0

    def _next_indices(self):
        n = len(self.images)
        left = 0 if self._order is None else len(self._order) - self._pos
        if left <= 0 or (self.drop_last and left < self.batch):
            self._order, self._pos = self.torch.randperm(n, generator=self.generator), 0
        idx = self._order[self._pos:self._pos + self.batch]
        self._pos += self.batch
        return idx

    def step(self):
        idx = self._next_indices()
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.torch.nn.functional.cross_entropy(self.model(self.images[idx]), self.targets[idx])
        loss.backward()
        self.optimizer.step()
        return loss

    def epoch(self):
        """One pass over the data in a new order; returns the mean loss."""
        self._order, losses = None, []
        while True:
            losses.append(float(self.step().detach()))
            left = len(self._order) - self._pos
            if left <= 0 or (self.drop_last and left < self.batch):
                return float(np.mean(losses))

    def rate(self, steps, warmup):
        """Images/s over `steps` steps after `warmup`, timed as `timing.training_rate` times Keras."""
        for _ in range(warmup):
            self.step()
        start = time.perf_counter()
        for _ in range(steps):
            self.step()
        seconds = time.perf_counter() - start
        return {"batch": int(self.batch), "steps": int(steps), "images_per_s": float(self.batch * steps / seconds),
                "step_ms": float(1000 * seconds / steps)}


def torch_inference(model, inputs, batch, min_seconds=1.0):
    """A direct call in eval mode under `inference_mode`, at `batch` (throughput) and 1 image (latency)."""
    import torch

    from keras_cnn.benchmarks.timing import summarize, time_calls

    model.eval()
    with torch.inference_mode():
        big = summarize(time_calls(lambda: model(inputs[:batch]), min_seconds), batch)
        one = summarize(time_calls(lambda: model(inputs[:1]), min_seconds), 1)
    return {"images_per_s": big["images_per_s"], "batch": batch, "latency_ms": one["latency_ms"],
            "latency_ms_p90": one["latency_ms_p90"]}


def alternate(rounds, ours_train, peer_train, ours_infer, peer_infer, name, log=print):
    """Per-round training and inference rates of both sides, who goes first swapping each round."""
    rows = []
    for r in range(rounds):
        row = {"round": r + 1, "first": "ours" if r % 2 == 0 else "peer"}
        pairs = [("ours", ours_train, ours_infer), ("peer", peer_train, peer_infer)]
        if r % 2:
            pairs.reverse()
        for who, train, _ in pairs:
            row[f"{who}_train_images_per_s"] = train()["images_per_s"]
        for who, _, infer in pairs:
            res = infer()
            row[f"{who}_infer_images_per_s"] = res["images_per_s"]
            row[f"{who}_latency_ms"] = res["latency_ms"]
        row["train_ratio"] = row["ours_train_images_per_s"] / row["peer_train_images_per_s"]
        row["infer_ratio"] = row["ours_infer_images_per_s"] / row["peer_infer_images_per_s"]
        row["load_average"] = os.getloadavg()[0]
        rows.append(row)
        log(f"peer {name} round {r + 1}: training {row['ours_train_images_per_s']:.1f} vs "
            f"{row['peer_train_images_per_s']:.1f} images/s (ours/peer {row['train_ratio']:.2f}); inference "
            f"{row['ours_infer_images_per_s']:.1f} vs {row['peer_infer_images_per_s']:.1f} "
            f"(ours/peer {row['infer_ratio']:.2f})")
    keys = ("ours_train_images_per_s", "peer_train_images_per_s", "train_ratio", "ours_infer_images_per_s",
            "peer_infer_images_per_s", "infer_ratio", "ours_latency_ms", "peer_latency_ms")
    return {"rounds": rows, **{k: float(statistics.median(r[k] for r in rows)) for k in keys}}


# === Course UNet ===

def unet_data(data_dir, quick=False):
    """The course UNet's config, (train, validation) images, palette, and the training labels computed once."""
    from keras_cnn.benchmarks import colorization
    from keras_cnn.colorization.palette import fit_palette
    from keras_cnn.tasks import get_task

    cfg = colorization.preset_config(colorization.COURSE, data_dir, quick)
    train, val = get_task("colorization").load_data(cfg)
    palette = fit_palette(train, cfg.num_colours, cfg.palette_space, cfg.seed)
    # In chunks: the (pixels x colours) score matrix of all 4,500 images at once would be ~440 MB.
    labels = np.concatenate([palette.labels(train[i:i + 500]).numpy() for i in range(0, len(train), 500)])
    return cfg, train, val, palette, labels


def keras_unet(cfg, train, val, palette):
    """Ours, as training builds it: the task's compiled model and training pipeline (seeded afresh)."""
    from keras_cnn import training
    from keras_cnn.tasks import get_task

    runtime = training.setup_runtime(cfg, log=lambda msg: None)
    task = get_task("colorization")
    data, assets = (train, val), {"palette": palette}
    with runtime.scope():
        model = task.build_model(cfg, data, assets, runtime)
    ds, _ = task.datasets(cfg, data, assets, model, runtime)
    return model, ds, runtime


def torch_unet(cfg, keras_model=None):
    """The twin (`TorchColorizer(UNet)`), with `keras_model`'s weights when given."""
    from keras_cnn.benchmarks import torch_nets

    twin = torch_nets.TorchColorizer(torch_nets.UNet(cfg.kernel, cfg.num_filters, cfg.num_colours))
    if keras_model is not None:
        torch_nets.copy_keras_weights(keras_model, twin)
    return twin


def _trainable(model):
    return int(sum(np.prod(v.shape) for v in model.trainable_weights))


def unet_speed(cfg, train, val, palette, labels, rounds, settings, log=print):
    import torch

    from keras_cnn.benchmarks import torch_nets
    from keras_cnn.benchmarks.timing import keras_inference, training_rate

    model, ds, runtime = keras_unet(cfg, train, val, palette)
    twin = torch_unet(cfg)
    loop = TorchLoop(twin, torch.from_numpy(train), torch.from_numpy(labels.astype(np.int64)),
                     runtime.global_batch, runtime.learning_rate)
    batch, steps, warmup = runtime.global_batch, settings["unet_steps"], settings["unet_warmup"]
    pixels = val if len(val) >= batch else np.concatenate([val] * (batch // max(len(val), 1) + 1))
    pixels = pixels[:batch]
    pixels_t = torch.from_numpy(pixels)
    result = alternate(
        rounds, lambda: training_rate(model, ds, batch, steps=steps, warmup=warmup),
        lambda: loop.rate(steps, warmup),
        lambda: keras_inference(model, pixels.astype(np.float32), batch, settings["min_seconds"]),
        lambda: torch_inference(twin, pixels_t, batch, settings["min_seconds"]), "course UNet", log)
    return {"name": "course UNet (cifar10_unet)", "batch": batch, "image_size": 32,
            "params_ours": _trainable(model), "params_peer": torch_nets.parameter_count(twin),
            "train_images": len(train), "steps": steps, "warmup": warmup, **result}


def mean_delta_e(logits_fn, images_uint8, palette, batch=250):
    """Mean delta E of argmax-decoded colours against the true images, for any `logits_fn` -> NHWC logits.

    The arithmetic of `keras_cnn.colorization.evaluate.evaluate` (its "delta_e"):
    the same `Palette.decode` and `colour_errors`, summed over pixels.
    """
    from keras_cnn.colorization.evaluate import colour_errors
    from keras_cnn.colorization.palette import grey

    total, pixels = 0.0, 0
    for start in range(0, len(images_uint8), batch):
        images = images_uint8[start:start + batch]
        decoded = palette.decode(np.asarray(logits_fn(images)), grey(images), "argmax")
        total += float(colour_errors(images, decoded)[0])
        pixels += int(np.prod(images.shape[:3]))
    return total / pixels


def torch_logits(model):
    """`images -> NHWC logits` of a torch colourizer in eval mode (what `mean_delta_e` takes)."""
    import torch

    def fn(images):
        model.eval()
        with torch.inference_mode():
            return model(torch.from_numpy(np.ascontiguousarray(images))).permute(0, 2, 3, 1).numpy()
    return fn


def epoch_clock():
    """A Keras callback recording each epoch's wall seconds, begin to end (what follows an epoch is not in)."""
    import keras

    class EpochClock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self._start)

    return EpochClock()


def time_to_quality(cfg, train, val, palette, labels, epochs, target, log=print):
    """Both sides trained epoch by epoch in turn; delta E on the held-out split after each epoch.

    Returns per-epoch rows and, per side, the training minutes until delta E
    first reached `target` (None: not within `epochs`) and the final delta E.
    """
    import torch

    model, ds, runtime = keras_unet(cfg, train, val, palette)
    # The same starting weights: a one-seed comparison then measures the frameworks, not two random draws.
    twin = torch_unet(cfg, keras_model=model)
    loop = TorchLoop(twin, torch.from_numpy(train), torch.from_numpy(labels.astype(np.int64)),
                     runtime.global_batch, runtime.learning_rate, seed=cfg.seed)
    clock = epoch_clock()
    ours_logits = model.predict_on_batch
    peer_logits = torch_logits(twin)
    rows, totals, reached = [], {"ours": 0.0, "peer": 0.0}, {"ours": None, "peer": None}
    for epoch in range(epochs):
        def ours_epoch():
            model.fit(ds, epochs=epoch + 1, initial_epoch=epoch, callbacks=[clock], verbose=0, shuffle=False)
            return clock.seconds[-1]

        def peer_epoch():
            start = time.perf_counter()
            loop.epoch()
            return time.perf_counter() - start

        order = [("ours", ours_epoch), ("peer", peer_epoch)]
        if epoch % 2:
            order.reverse()
        row = {"epoch": epoch + 1}
        for who, run_epoch in order:
            row[f"{who}_epoch_seconds"] = run_epoch()
            totals[who] += row[f"{who}_epoch_seconds"]
            row[f"{who}_train_minutes"] = totals[who] / 60
        for who, logits_fn in (("ours", ours_logits), ("peer", peer_logits)):
            row[f"{who}_delta_e"] = mean_delta_e(logits_fn, val, palette)
            if reached[who] is None and row[f"{who}_delta_e"] <= target:
                reached[who] = row[f"{who}_train_minutes"]
        rows.append(row)
        log(f"peer time to quality, epoch {epoch + 1}: delta E ours {row['ours_delta_e']:.3f} after "
            f"{row['ours_train_minutes']:.2f} min, peer {row['peer_delta_e']:.3f} after "
            f"{row['peer_train_minutes']:.2f} min")
    both = reached["ours"] is not None and reached["peer"] is not None
    return {"target_delta_e": target, "epochs": epochs, "validation_images": len(val), "batch": runtime.global_batch,
            "learning_rate": runtime.learning_rate, "epochs_rows": rows,
            "ours_minutes_to_target": reached["ours"], "peer_minutes_to_target": reached["peer"],
            "minutes_ratio": reached["ours"] / reached["peer"] if both else None,
            "ours_final_delta_e": rows[-1]["ours_delta_e"] if rows else None,
            "peer_final_delta_e": rows[-1]["peer_delta_e"] if rows else None,
            "ours_train_minutes": totals["ours"] / 60, "peer_train_minutes": totals["peer"] / 60}


# === DeepLabV3-ResNet-50 ===

def seg_data(data_dir, size, pairs=0):
    """(uint8 images (N, size, size, 3), uint8 masks (N, size, size)) of the Weizmann training split."""
    from keras_cnn.benchmarks import segmentation
    from keras_cnn.segmentation.data import load_examples
    from keras_cnn.tasks import get_task

    cfg = segmentation.preset_config(SEG_PRESET, data_dir, overrides={"max_examples": pairs})
    data = get_task("segmentation").load_data(cfg, splits=("train",))
    return load_examples(data.pairs("train"), data.decode_mask, (size, size))


def keras_deeplab(images, masks, batch, seed=0):
    """Our Keras port of torchvision's DeepLabV3-ResNet-50, compiled as the segmentation task compiles."""
    import keras
    import tensorflow as tf

    from keras_cnn.segmentation.task import compile_segmenter
    from keras_cnn.segmentation.torchvision_deeplab import build_torchvision_deeplabv3

    keras.utils.set_random_seed(seed)
    model = build_torchvision_deeplabv3(depth=SEG_DEPTH, num_classes=2, image_size=images.shape[1])
    compile_segmenter(model, keras.optimizers.Adam(COURSE_LR))
    ds = (tf.data.Dataset.from_tensor_slices((images, masks))
          .shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
          .batch(batch, drop_remainder=True)
          # What the package's segmentation pipeline yields: float32 pixels 0-255, int32 labels.
          .map(lambda x, y: (tf.cast(x, tf.float32), tf.cast(y, tf.int32)), num_parallel_calls=tf.data.AUTOTUNE)
          .prefetch(tf.data.AUTOTUNE))
    return model, ds


def deeplab_speed(images, masks, rounds, settings, log=print):
    import torch

    from keras_cnn.benchmarks import torch_nets
    from keras_cnn.benchmarks.timing import keras_inference, training_rate

    batch, steps, warmup = settings["seg_batch"], settings["seg_steps"], settings["seg_warmup"]
    model, ds = keras_deeplab(images, masks, batch)
    peer = torch_nets.TorchvisionSegmenter(SEG_DEPTH, 2)
    loop = TorchLoop(peer, torch.from_numpy(images), torch.from_numpy(masks.astype(np.int64)), batch, COURSE_LR,
                     drop_last=True)
    pixels = images[:batch]
    result = alternate(
        rounds, lambda: training_rate(model, ds, batch, steps=steps, warmup=warmup),
        lambda: loop.rate(steps, warmup),
        lambda: keras_inference(model, pixels.astype(np.float32), batch, settings["min_seconds"]),
        lambda: torch_inference(peer, torch.from_numpy(pixels), batch, settings["min_seconds"]),
        f"DeepLabV3-ResNet-{SEG_DEPTH}", log)
    return {"name": f"DeepLabV3-ResNet-{SEG_DEPTH} ({images.shape[1]} px, from scratch)", "batch": batch,
            "image_size": int(images.shape[1]), "params_ours": _trainable(model),
            "params_peer": torch_nets.parameter_count(peer), "train_images": len(images), "steps": steps,
            "warmup": warmup, **result}


# === Peak memory: one child process per framework ===

def _status_mib(field):
    """A /proc/self/status memory field in MiB: VmRSS (now) or VmHWM (the peak of this process image).

    Not `getrusage(...).ru_maxrss`: Linux carries the parent's peak across
    fork + exec into it, so a child of a big benchmark process would report
    the parent's peak (measured: both frameworks showed the parent's 1,625 MiB).
    """
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise UserError(f"/proc/self/status has no {field}: peak memory needs Linux")


def _memory_child(args):
    """Only one framework's training steps, then its peak RSS as one JSON line."""
    arrays = np.load(args.arrays)
    images, targets = arrays["images"], arrays["targets"]
    if args.framework == "torch":
        import torch

        from keras_cnn.benchmarks import torch_nets

        torch.set_num_threads(args.threads)
        torch.manual_seed(0)
        if args.net == "unet":
            model = torch_nets.TorchColorizer(torch_nets.UNet())
        else:
            model = torch_nets.TorchvisionSegmenter(SEG_DEPTH, 2)
        loop = TorchLoop(model, torch.from_numpy(images), torch.from_numpy(targets.astype(np.int64)), args.batch,
                         COURSE_LR, drop_last=args.net != "unet")
        before = _status_mib("VmRSS")
        loop.rate(args.steps, 1)
    else:
        from keras_cnn.benchmarks.timing import training_rate

        if args.net == "unet":
            from keras_cnn.benchmarks import colorization
            from keras_cnn.colorization.palette import Palette

            cfg = colorization.preset_config(colorization.COURSE, args.data_dir, overrides={"batch_size": args.batch})
            model, ds, _ = keras_unet(cfg, images, images[:0], Palette(arrays["palette"]))
        else:
            model, ds = keras_deeplab(images, targets, args.batch)
        before = _status_mib("VmRSS")
        training_rate(model, ds, args.batch, steps=args.steps, warmup=1)
    print(json.dumps({"framework": args.framework, "net": args.net, "rss_after_setup_mib": before,
                      "peak_rss_mib": _status_mib("VmHWM")}), flush=True)


def peak_memory(net, images, targets, batch, steps, threads, data_dir=None, palette=None, log=print):
    """Peak RSS (MiB) of ours and the peer, each training `steps` steps in a fresh child process."""
    out = {}
    with tempfile.TemporaryDirectory(prefix="keras_cnn_peer_") as tmp:
        arrays = os.path.join(tmp, "arrays.npz")
        extra = {"palette": palette.colours} if palette is not None else {}
        np.savez(arrays, images=images, targets=targets, **extra)
        for who, framework in (("ours", "keras"), ("peer", FRAMEWORK)):
            cmd = [sys.executable, "-m", "keras_cnn.benchmarks.peer_torch", "_memory", "--framework", framework,
                   "--net", net, "--arrays", arrays, "--batch", str(batch), "--steps", str(steps),
                   "--threads", str(threads), "--data-dir", data_dir or tmp]
            proc = subprocess.run(cmd, capture_output=True, text=True,
                                  env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
            lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
            if proc.returncode or not lines:
                tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
                raise UserError(f"peer memory child ({framework}, {net}) failed with exit code "
                                f"{proc.returncode}: {tail}")
            out[who] = json.loads(lines[-1])
            log(f"peer {net} peak memory, {framework}: {out[who]['peak_rss_mib']:.0f} MiB")
    return {"ours_peak_rss_mib": out["ours"]["peak_rss_mib"], "peer_peak_rss_mib": out["peer"]["peak_rss_mib"],
            "ours_rss_after_setup_mib": out["ours"]["rss_after_setup_mib"],
            "peer_rss_after_setup_mib": out["peer"]["rss_after_setup_mib"],
            "memory_ratio": out["ours"]["peak_rss_mib"] / out["peer"]["peak_rss_mib"], "memory_steps": steps}


# === Everything ===

def parse_nets(text):
    nets = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in nets if n not in NETS]
    if unknown or not nets:
        raise UserError(f"unknown --peer-nets {', '.join(unknown) or '(none given)'}; choose from: {', '.join(NETS)}")
    return tuple(n for n in NETS if n in nets)


def run(horses_dir, weizmann_dir, quick=False, rounds=DEFAULT_ROUNDS, epochs=None, target=DEFAULT_QUALITY_TARGET,
        nets=NETS, log=print):
    """The peer comparison of `nets`; returns the `"peer"` part of the benchmark result.

    `horses_dir` is needed for "unet", `weizmann_dir` for "deeplab". The
    result's "phase_seconds" say where the time went, for sizing later runs.
    """
    require_torch()
    if rounds < 1:
        raise UserError(f"--peer-rounds must be at least 1, got {rounds}")
    if epochs is not None and epochs < 1:
        raise UserError(f"--peer-epochs must be at least 1, got {epochs}")
    settings = SETTINGS[bool(quick)]
    epochs = epochs if epochs is not None else (1 if quick else DEFAULT_EPOCHS)
    threads = usable_cpus()
    result = {**setup_torch(threads), "rounds_requested": rounds, "quick": bool(quick), "nets": [],
              "phase_seconds": {}}
    log(f"peer: torch {result['torch']} with {result['torch_threads']} threads; TensorFlow intra-op "
        f"{result['tf_intra_op_threads']}")

    def phase(name, fn, *args, **kwargs):
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        result["phase_seconds"][name] = round(time.perf_counter() - start, 1)
        return out

    if "unet" in nets:
        cfg, train, val, palette, labels = phase("unet_data", unet_data, horses_dir, quick)
        unet = phase("unet_speed", unet_speed, cfg, train, val, palette, labels, rounds, settings, log)
        unet.update(phase("unet_memory", peak_memory, "unet", train, labels, cfg.batch_size,
                          settings["memory_unet_steps"], threads, horses_dir, palette, log))
        result["nets"].append(unet)
        result["time_to_quality"] = phase("time_to_quality", time_to_quality, cfg, train, val, palette, labels,
                                          epochs, target, log)
    if "deeplab" in nets:
        images, masks = phase("deeplab_data", seg_data, weizmann_dir, settings["seg_size"], settings["seg_pairs"])
        seg = phase("deeplab_speed", deeplab_speed, images, masks, rounds, settings, log)
        seg.update(phase("deeplab_memory", peak_memory, "deeplab", images, masks, settings["seg_batch"],
                         settings["memory_seg_steps"], threads, log=log))
        result["nets"].append(seg)
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("job", choices=("_memory",))
    parser.add_argument("--framework", choices=("keras", FRAMEWORK), required=True)
    parser.add_argument("--net", choices=("unet", "deeplab"), required=True)
    parser.add_argument("--arrays", required=True)
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--data-dir", required=True)
    _memory_child(parser.parse_args(argv))


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()
