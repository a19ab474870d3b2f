"""Shared fixtures: real data lookup and a local HTTP server. Plain helpers are in helpers.py."""

import functools
import http.server
import os
import threading

import pytest

from tests.helpers import shared_data_dir

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


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
