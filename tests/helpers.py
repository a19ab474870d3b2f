"""Helpers the tests import: the repository root, real-data lookup, CIFAR-10 archives, image folders.

(Fixtures live in conftest.py; plain functions live here, imported as
`from tests.helpers import ...`, since conftest.py is pytest's, not a module
to import.)
"""

import io
import os
import pickle
import tarfile

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def shared_data_dir():
    path = os.environ.get("KERAS_CNN_SHARED_DATA") or os.path.join(REPO, "..", "shared", "data")
    return os.path.abspath(path)


def cifar_batch_bytes(images, labels):
    """One batch pickled as the official archive does: a dict of bytes keys, R/G/B planes per row."""
    data = np.asarray(images, np.uint8).transpose(0, 3, 1, 2).reshape(len(images), -1)
    return pickle.dumps({b"batch_label": b"test", b"labels": list(map(int, labels)), b"data": data,
                         b"filenames": [b"x.png"] * len(labels)}, protocol=2)


def make_cifar_archive(path, per_batch=20, seed=0, extra_members=()):
    """A real `cifar-10-python.tar.gz` layout with small batches; returns the images by batch name."""
    rng = np.random.RandomState(seed)
    made = {}
    with tarfile.open(path, "w:gz") as tar:
        def add(name, payload):
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            images = rng.randint(0, 256, (per_batch, 32, 32, 3)).astype(np.uint8)
            labels = np.arange(per_batch) % 10
            made[name] = (images, labels)
            add(f"cifar-10-batches-py/{name}", cifar_batch_bytes(images, labels))
        add("cifar-10-batches-py/batches.meta", pickle.dumps({b"label_names": []}, protocol=2))
        for name, payload in extra_members:
            add(name, payload)
    return made


def write_images(folder, images, ext=".png"):
    from PIL import Image

    os.makedirs(folder, exist_ok=True)
    for i, img in enumerate(images):
        Image.fromarray(np.asarray(img, np.uint8)).save(os.path.join(folder, f"{i:04d}{ext}"))
    return folder
