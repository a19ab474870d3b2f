"""Packs a CIFAR-10 class tree and the package's palettes for `sweep.py`, and checks the NumPy ports.

    python tools/colorization_sweep/pack.py --data-dir ../shared/data/cifar10-train \
        --out runs/sweep_pack

Writes into --out: `jpegs.bin` + `offsets.npy` (every JPEG's bytes, class
folders and files in sorted order, 46 MB for the 50,000 images: small enough
to copy to a GPU machine that has no TensorFlow) and `pal_NAME.npy`, each
palette fitted by `keras_cnn.colorization.fit_palette` exactly as a training
run fits it (ab or RGB k-means, seed 0, on the training split of the horses
or of every class). Then it checks that `colour_np` labels, decodes and
scores 200 held-out horses as the package does, and exits 1 if not.
Needs TensorFlow (the package).
"""

import argparse
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
import colour_np as cn  # noqa: E402

from keras_cnn.colorization.evaluate import colour_errors  # noqa: E402
from keras_cnn.colorization.palette import fit_palette, grey  # noqa: E402
from keras_cnn.data.cifar10 import class_folders, load_folder  # noqa: E402
from keras_cnn.fileio import list_images  # noqa: E402

PALETTES = {  # name: (size, space, classes fitted on)
    "ab24_horse": (24, "ab", "horse"), "ab48_horse": (48, "ab", "horse"), "ab64_horse": (64, "ab", "horse"),
    "ab24_all": (24, "ab", "all"), "ab48_all": (48, "ab", "all"), "rgb24_horse": (24, "rgb", "horse"),
}


def pack_jpegs(data_dir, out):
    blobs, offsets = [], [0]
    for c in class_folders(data_dir):
        for p in list_images(os.path.join(data_dir, c)):
            with open(p, "rb") as f:
                blobs.append(f.read())
            offsets.append(offsets[-1] + len(blobs[-1]))
    np.frombuffer(b"".join(blobs), np.uint8).tofile(os.path.join(out, "jpegs.bin"))
    np.save(os.path.join(out, "offsets.npy"), np.array(offsets, np.int64))
    print(f"{len(blobs)} JPEGs, {offsets[-1]} bytes")


def check_ports(palettes, images):
    """colour_np against the package on `images`, with random logits; True if they agree."""
    rng = np.random.RandomState(0)
    ok = True
    for name, p in palettes.items():
        same_labels = float((p.labels(images).numpy() == cn.labels(images, p.colours)).mean())
        logits = rng.randn(len(images), *images.shape[1:3], len(p)).astype(np.float32) * 3
        for mode in ("argmax", "annealed"):
            tf_rgb = p.decode(logits, grey(images), mode, 0.7).numpy()
            np_rgb = cn.decode(logits, cn.grey(images), p.colours, mode, 0.7)
            de_tf = float(colour_errors(images, tf_rgb)[0]) / images[..., 0].size
            de_np = cn.delta_e(images, np_rgb)
            worst = int(np.abs(tf_rgb.astype(int) - np_rgb).max())
            good = same_labels > 0.9999 and worst <= 1 and abs(de_tf - de_np) < 1e-3
            ok &= good
            print(f"{name} {mode}: labels agree {same_labels:.5f}, largest RGB difference {worst}, "
                  f"delta E {de_tf:.4f} (package) {de_np:.4f} (NumPy) {'ok' if good else 'DIFFERENT'}")
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", required=True, help="CIFAR-10 class tree (airplane/ ... truck/)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    pack_jpegs(args.data_dir, args.out)
    train = {c: load_folder(args.data_dir, 0.1, 0, c)[0] for c in ("horse", "all")}
    palettes = {}
    for name, (k, space, classes) in PALETTES.items():
        palettes[name] = fit_palette(train[classes], k, space)
        np.save(os.path.join(args.out, f"pal_{name}.npy"), palettes[name].colours)
    horse_val = load_folder(args.data_dir, 0.1, 0, "horse")[1]
    sys.exit(0 if check_ports(palettes, horse_val[:200]) else 1)


if __name__ == "__main__":
    main()
