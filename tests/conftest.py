"""Shared fixtures: real data lookup, CIFAR-10 archives in the genuine format, a local HTTP server."""

import functools
import http.server
import io
import os
import pickle
import tarfile
import threading

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def shared_data_dir():
    path = os.environ.get("KERAS_CNN_SHARED_DATA") or os.path.join(REPO, "..", "shared", "data")
    return os.path.abspath(path)


@pytest.fixture
def shared_data():
    path = shared_data_dir()
    if not os.path.isdir(os.path.join(path, "cifar10-horse-train")):
        pytest.skip(f"real data not found at {path} (set KERAS_CNN_SHARED_DATA)")
    return path


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


@pytest.fixture
def http_server():
    """Serves a folder on 127.0.0.1; yields a function folder -> base URL."""
    servers = []

    def serve(folder):
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
        handler.log_message = lambda *a: None
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield serve
    for s in servers:
        s.shutdown()


def write_images(folder, images, ext=".png"):
    from PIL import Image

    os.makedirs(folder, exist_ok=True)
    for i, img in enumerate(images):
        Image.fromarray(np.asarray(img, np.uint8)).save(os.path.join(folder, f"{i:04d}{ext}"))
    return folder
