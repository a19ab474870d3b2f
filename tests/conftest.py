"""Shared fixtures: real data lookup and a local HTTP server. Plain helpers are in helpers.py."""

import functools
import http.server
import os
import threading

import pytest

from tests.helpers import shared_data_dir

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pytest_collection_modifyitems(config, items):
    """Under KERAS_BACKEND=jax or torch, tests of TensorFlow's own kernels are skipped, with the reason."""
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    if backend == "tensorflow":
        return
    skip = pytest.mark.skip(reason=f"checks TensorFlow kernels; KERAS_BACKEND={backend}")
    for item in items:
        if "tensorflow_only" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def shared_data():
    path = shared_data_dir()
    if not os.path.isdir(os.path.join(path, "cifar10-horse-train")):
        pytest.skip(f"real data not found at {path} (set KERAS_CNN_SHARED_DATA)")
    return path


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
