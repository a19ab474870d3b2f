"""Packs a CIFAR-10 class tree and the package's palettes for `sweep.py`.

    python tools/colorization_sweep/pack.py --data-dir ../shared/data/cifar10-train \
        --out runs/sweep_pack

Writes into --out: `jpegs.bin` + `offsets.npy` (every JPEG's bytes, class
folders and files in sorted order, 46 MB for the 50,000 images: small enough
to copy to a GPU machine that has no TensorFlow) and `pal_NAME.npy`, each
palette fitted by `keras_cnn.colorization.fit_palette` exactly as a training
run fits it (ab or RGB k-means, seed 0, on the training split of the horses
or of every class). `sweep.py` labels, decodes and scores with the package's
own colour maths, so nothing here needs checking against a copy.
"""

import argparse
import os
import sys

import numpy as np

# Run from a checkout without installing: the package is two folders up.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from keras_cnn.colorization.palette import fit_palette  # noqa: E402
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


if __name__ == "__main__":
    main()
