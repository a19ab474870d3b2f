"""Horses only against pre-training on every CIFAR-10 class: many colourizers, on any Keras backend.

    KERAS_BACKEND=jax python tools/colorization_sweep/sweep.py --work runs/sweep_pack --out runs/sweep

A sweep of the pre-training question too large for two CPU cores, made to
run on a GPU machine that has Keras 3 and JAX (or PyTorch) but no
TensorFlow. It imports the package as it is: keras_cnn's own nets (`UNet`,
`ResUNet`, wider `ResUNet`s, their layers on any Keras backend), its split,
and its colour maths in NumPy (`Palette.labels` / `Palette.decode` and
`color.colour_errors` with `xp="numpy"`, the same code the package runs in
tf.data and in its models). Everything follows the package:

- data: the JPEGs `pack.py` packed, split per class by the package's
  `split_indices` (seed 0, 10% held out), as `load_folder` splits, so the
  500 validation horses are those of every run;
- palettes: the package's own k-means palettes (`pack.py`);
- recipe: `cifar10_resunet`'s (Adam, cosine decay to 0 over the stage's
  steps, batch 100, random left-right flips, per-pixel cross-entropy),
  stage 2 starting from stage 1's last weights with a fresh optimizer.

After every epoch it scores the 500 validation horses (validation loss, pixel
accuracy, mean delta E by argmax and by the annealed mean at T = 0.7) and
appends each stage's curve to OUT/results.jsonl. `report.py` turns that file
into the table and the learning curves of docs/COLORIZATION_RESULTS.md.
"""
import argparse
import io
import json
import os
import sys
import time
from multiprocessing import Pool

import numpy as np

# Run from a checkout without installing: the package is two folders up.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
import keras  # noqa: E402

from keras_cnn.colorization import color  # noqa: E402
from keras_cnn.colorization.models import UNet  # noqa: E402
from keras_cnn.colorization.palette import Palette  # noqa: E402
from keras_cnn.colorization.resunet import ResUNet  # noqa: E402
from keras_cnn.data.cifar10 import split_indices  # noqa: E402

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
NETS = {
    "unet": lambda k: UNet(num_colours=k),
    "resunet": lambda k: ResUNet(num_colours=k),
    "resunet48": lambda k: ResUNet(num_colours=k, num_filters=48),
    "resunet64": lambda k: ResUNet(num_colours=k, num_filters=64),
}


def _decode(args):
    blob, offs = args
    from PIL import Image
    return np.stack([np.asarray(Image.open(io.BytesIO(blob[a:b])).convert("RGB"), np.uint8)
                     for a, b in zip(offs[:-1], offs[1:])])


def load(work, per_class=5000):
    blob = np.fromfile(os.path.join(work, "jpegs.bin"), np.uint8).tobytes()
    offs = np.load(os.path.join(work, "offsets.npy"))
    step = min(500, per_class)
    chunks = [(blob, offs[c * 5000 + s: c * 5000 + s + step + 1]) for c in range(10) for s in range(0, per_class, step)]
    with Pool(min(16, os.cpu_count())) as pool:
        parts = pool.map(_decode, chunks)
    images = np.concatenate(parts).reshape(10, per_class, 32, 32, 3)
    # The package's own split (its module needs no TensorFlow): each class on its own, seed 0.
    train_idx, val_idx = split_indices(per_class, 0.1, 0)
    train = {name: images[c][train_idx] for c, name in enumerate(CLASSES)}
    val = {name: images[c][val_idx] for c, name in enumerate(CLASSES)}
    return train, val


def _labels(args):
    images, pal = args
    return np.asarray(Palette(pal).labels(images, xp="numpy"), np.uint8)


def mean_delta_e(true_uint8, pred_uint8):
    """Mean CIE76 delta E over every pixel, by the package's colour maths."""
    return float(color.colour_errors(true_uint8, pred_uint8, xp="numpy")[0]) / true_uint8[..., 0].size


class Data:
    def __init__(self, train, val, palettes):
        self.h_val = val["horse"]
        every = np.concatenate(list(train.values()))
        grey = lambda images: np.asarray(color.grey(images, xp="numpy"), np.float32)  # noqa: E731
        self.x = {"horse": grey(train["horse"]), "all": grey(every)}
        self.x_val = grey(self.h_val)
        n_h = len(train["horse"])
        start_h = CLASSES.index("horse") * n_h
        self.y, self.y_val = {}, {}
        with Pool(min(16, os.cpu_count())) as pool:
            for key, pal in palettes.items():
                parts = pool.map(_labels, [(every[s:s + 2500], pal) for s in range(0, len(every), 2500)])
                y = np.concatenate(parts)
                self.y[key] = {"all": y, "horse": y[start_h:start_h + n_h]}
                self.y_val[key] = _labels((self.h_val, pal))
        self.palettes = palettes


def evaluate(model, data, pal_key):
    logits = np.asarray(model.predict(data.x_val, batch_size=500, verbose=0))
    pal = data.palettes[pal_key]
    out = {}
    for mode in ("argmax", "annealed"):
        colours = np.asarray(Palette(pal).decode(logits, data.x_val, mode, 0.7, xp="numpy"))
        out[mode] = round(mean_delta_e(data.h_val, colours), 4)
    z = logits - logits.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    y = data.y_val[pal_key].astype(np.int64)
    out["val_loss"] = round(float(-np.take_along_axis(logp, y[..., None], -1).mean()), 4)
    out["accuracy"] = round(float((logits.argmax(-1) == y).mean()), 4)
    return out


def train_stage(model, data, pal_key, subset, epochs, lr, seed, spe, log):
    x, y = data.x[subset], data.y[pal_key][subset]
    steps = epochs * int(np.ceil(len(x) / 100))
    model.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(lr, steps)),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), steps_per_execution=spe)
    rng = np.random.RandomState(seed)
    curve = []
    for e in range(epochs):
        flip = rng.rand(len(x)) < 0.5
        xe = np.where(flip[:, None, None, None], x[:, :, ::-1], x)
        ye = np.where(flip[:, None, None], y[:, :, ::-1], y).astype(np.int32)
        t = time.time()
        h = model.fit(xe, ye, batch_size=100, epochs=e + 1, initial_epoch=e, shuffle=True, verbose=0)
        scores = evaluate(model, data, pal_key)
        scores.update(epoch=e + 1, train_loss=round(float(h.history["loss"][-1]), 4), seconds=round(time.time() - t, 1))
        curve.append(scores)
        log(f"    {subset} epoch {e + 1}/{epochs}: {scores}")
    return curve


# (net, palette, pre-training stage or None, [specialisation stages]); a stage is (subset, epochs, lr).
JOBS = [
    ("resunet", "ab24_horse", None, [("horse", 12, 2e-3)]),
    ("resunet", "ab24_horse", ("all", 5, 2e-3), [("horse", 8, 5e-4), ("horse", 8, 1e-3), ("horse", 4, 5e-4),
                                                 ("horse", 12, 5e-4), ("horse", 8, 2e-3)]),
    ("unet", "ab24_horse", None, [("horse", 12, 2e-3)]),
    ("unet", "ab24_horse", ("all", 5, 2e-3), [("horse", 8, 5e-4)]),
    ("resunet48", "ab24_horse", None, [("horse", 12, 2e-3)]),
    ("resunet48", "ab24_horse", ("all", 3, 2e-3), [("horse", 8, 5e-4)]),
    ("resunet", "ab24_all", ("all", 5, 2e-3), [("horse", 8, 5e-4)]),
    ("resunet", "ab48_horse", None, [("horse", 12, 2e-3)]),
    ("resunet", "ab48_horse", ("all", 5, 2e-3), [("horse", 8, 5e-4)]),
    ("unet", "ab24_all", ("all", 5, 2e-3), [("horse", 8, 5e-4)]),
    ("resunet48", "ab24_horse", ("all", 5, 2e-3), [("horse", 8, 5e-4)]),
    ("resunet", "ab24_horse", ("all", 10, 2e-3), [("horse", 8, 5e-4)]),
    ("resunet64", "ab24_horse", None, [("horse", 12, 2e-3)]),
    ("resunet64", "ab24_horse", ("all", 3, 2e-3), [("horse", 8, 5e-4)]),
    ("resunet", "ab64_horse", None, [("horse", 12, 2e-3)]),
]

# Second batch: longer pre-training, the wider nets at full pre-training, and seed-to-seed spread.
JOBS2 = [
    ("resunet", "ab24_horse", None, [("horse", 12, 2e-3)], 1),
    ("resunet", "ab24_horse", ("all", 5, 2e-3), [("horse", 8, 5e-4)], 1),
    ("resunet", "ab24_horse", ("all", 10, 2e-3), [("horse", 8, 5e-4)]),
    ("resunet48", "ab24_horse", ("all", 5, 2e-3), [("horse", 8, 5e-4)]),
    ("resunet64", "ab24_horse", None, [("horse", 12, 2e-3)]),
    ("resunet64", "ab24_horse", ("all", 3, 2e-3), [("horse", 8, 5e-4)]),
    ("resunet", "ab64_horse", None, [("horse", 12, 2e-3)]),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True, help="the folder pack.py wrote")
    ap.add_argument("--out", required=True, help="results.jsonl is appended to here")
    ap.add_argument("--jobs", choices=("first", "second"), default="first",
                    help="first: the main grid; second: longer pre-training, wider nets, a second seed")
    ap.add_argument("--budget", type=float, default=400, help="seconds; no job starts after it")
    ap.add_argument("--smoke", action="store_true", help="tiny data and epochs: does the backend work?")
    ap.add_argument("--spe", type=int, default=1)
    args = ap.parse_args()
    t0 = time.time()

    def log(msg):
        print(f"[{time.time() - t0:6.1f}s] {msg}", flush=True)

    log(f"keras {keras.__version__} backend {keras.backend.backend()}")
    os.makedirs(args.out, exist_ok=True)
    train, val = load(args.work, per_class=200 if args.smoke else 5000)
    palettes = {k: np.load(os.path.join(args.work, f"pal_{k}.npy")).astype(np.float32)
                for k in sorted({j[1] for j in JOBS + JOBS2})}
    data = Data(train, val, palettes)
    results = open(os.path.join(args.out, "results.jsonl"), "a")
    log(f"data ready: {len(data.x['all'])} training images, {len(data.h_val)} validation horses")
    jobs = [("resunet", "ab24_horse", ("all", 1, 2e-3), [("horse", 1, 5e-4)])] if args.smoke else JOBS
    if args.jobs == "second" and not args.smoke:
        jobs = JOBS2
    for job in jobs:
        net, pal_key, pre, finetunes = job[:4]
        seed = job[4] if len(job) > 4 else 0
        if time.time() - t0 > args.budget:
            log(f"budget spent; skipped {net} {pal_key} {pre} {finetunes}")
            continue
        keras.utils.set_random_seed(seed)
        model = NETS[net](len(palettes[pal_key]))
        base, pre_curve = None, None
        if pre:
            log(f"{net} {pal_key} pre-train {pre}")
            pre_curve = train_stage(model, data, pal_key, *pre, seed=seed, spe=args.spe, log=log)
            results.write(json.dumps({"net": net, "palette": pal_key, "pre": pre, "finetune": None, "seed": seed,
                                      "curve": pre_curve, "params": model.count_params()}) + "\n")
            results.flush()
            base = model.get_weights()
        for ft in finetunes:
            if time.time() - t0 > args.budget:
                log(f"budget spent; skipped finetune {ft}")
                continue
            if base is not None:
                model.set_weights(base)
            log(f"{net} {pal_key} {pre} -> {ft}")
            curve = train_stage(model, data, pal_key, *ft, seed=seed + 1, spe=args.spe, log=log)
            results.write(json.dumps({"net": net, "palette": pal_key, "pre": pre, "finetune": ft, "seed": seed,
                                      "curve": curve, "params": model.count_params()}) + "\n")
            results.flush()
    log("done")


if __name__ == "__main__":
    main()
