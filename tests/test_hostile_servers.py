"""A server that answers slowly is cut off at the client's timeout: the whole request, not each read.

The dripping server is a plain socket on 127.0.0.1 that sends its status
line, headers or body a byte at a time. Each drip is bounded (it stops after
at most `DRIP_SECONDS`, or as soon as the client goes away), so a failing
client costs the test at most that long.
"""

import json
import os
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from PIL import Image

from keras_cnn.errors import UserError
from keras_cnn.export import clients
from tests.helpers import REPO

TIMEOUT = 1.5
DRIP_SECONDS = 30   # how long a drip would last if nobody cut it off
LATE = 8            # generous bound for "cut off at about TIMEOUT" on a busy machine

METADATA = (b'{"model_spec": {"name": "m"}, "metadata": {"signature_def": {"signature_def": '
            b'{"serving_default": {"inputs": {"images": {"dtype": "DT_UINT8", "tensor_shape": {"dim": '
            b'[{"size": "-1"}, {"size": "-1"}, {"size": "-1"}, {"size": "3"}]}}}, "outputs": {"mask": '
            b'{"dtype": "DT_UINT8", "tensor_shape": {"dim": [{"size": "-1"}, {"size": "-1"}, '
            b'{"size": "-1"}]}}}}}}}}')


class DrippingServer:
    """Answers every request with `reply` (bytes), the part from `drip_from` on a byte every `interval` s."""

    def __init__(self, reply, drip_from, interval=0.25):
        self.reply, self.drip_from, self.interval = reply, drip_from, interval
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.5)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        end = time.monotonic() + DRIP_SECONDS + 10
        while not self.stop.is_set() and time.monotonic() < end:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn):
        with conn:
            conn.settimeout(5)
            try:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                conn.sendall(self.reply[:self.drip_from])
                end = time.monotonic() + DRIP_SECONDS
                for i in range(self.drip_from, len(self.reply)):
                    if self.stop.is_set() or time.monotonic() > end:
                        return
                    conn.sendall(self.reply[i:i + 1])
                    time.sleep(self.interval)
            except OSError:  # the client went away
                return

    def close(self):
        self.stop.set()
        self.sock.close()


def http_reply(status, body):
    head = f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


# (id, reply, where the drip starts, which request)
DRIPS = [
    ("metadata-body", http_reply("200 OK", METADATA), 60, "metadata"),
    ("metadata-headers", http_reply("200 OK", METADATA), 20, "metadata"),
    ("predict-body", http_reply("200 OK", b'{"predictions": [' + b"[[0, 0]], " * 200 + b"[[0, 0]]]}"), 80,
     "predict"),
    ("error-body", http_reply("500 Internal Server Error", b'{"error": "' + b"x" * 500 + b'"}'), 70,
     "predict"),
]


@pytest.mark.parametrize("cid,reply,drip_from,request_kind", DRIPS, ids=[d[0] for d in DRIPS])
def test_a_dripping_server_is_cut_off_at_the_timeout(cid, reply, drip_from, request_kind):
    server = DrippingServer(reply, drip_from)
    url = f"http://127.0.0.1:{server.port}"
    try:
        start = time.monotonic()
        with pytest.raises(UserError) as e:
            if request_kind == "metadata":
                clients.rest_signature(url, "m", timeout=TIMEOUT)
            else:
                signature = clients.signature_from_metadata(json.loads(METADATA), "serving_default", url)
                clients.rest_predict(url, "m", images=np.zeros((1, 1, 2, 3), np.uint8), timeout=TIMEOUT,
                                     signature=signature)
        took = time.monotonic() - start
    finally:
        server.close()
    assert f"TF Serving at {url}/v1/models/m" in str(e.value)
    assert f"did not answer within {TIMEOUT:g} s" in str(e.value)
    assert TIMEOUT * 0.9 <= took < TIMEOUT + LATE, took


def test_a_prompt_server_still_answers():
    """The deadline does not cut a reply that comes in time (and is not left running afterwards)."""
    server = DrippingServer(http_reply("200 OK", METADATA), len(http_reply("200 OK", METADATA)))
    try:
        signature = clients.rest_signature(f"http://127.0.0.1:{server.port}", "m", timeout=TIMEOUT)
    finally:
        server.close()
    assert signature.kind == "mask"
    time.sleep(TIMEOUT + 0.5)  # the timer of the finished request fires into nothing
    assert not any(isinstance(t, threading.Timer) and t.is_alive() for t in threading.enumerate())


def test_serving_client_is_cut_off_at_its_timeout_with_one_line(tmp_path):
    """The command: a metadata reply dripping a byte every 0.25 s ends after --timeout, in one line."""
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "a.png")
    server = DrippingServer(http_reply("200 OK", METADATA), 60)
    url = f"http://127.0.0.1:{server.port}"
    try:
        start = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "keras_cnn", "serving-client", "--rest", url, "--model", "m",
                               "--timeout", "2", "--out-dir", str(tmp_path / "out"),
                               "--input", str(tmp_path / "a.png")],
                              cwd=REPO, capture_output=True, text=True, timeout=DRIP_SECONDS + 60,
                              env=dict(os.environ, PYTHONPATH=REPO))
        took = time.monotonic() - start
    finally:
        server.close()
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [f"error: TF Serving at {url}/v1/models/m/metadata did not answer within "
                                        "2 s (the whole request: connecting, sending and the complete reply)"]
    assert took < 2 + LATE + 10, took  # start-up included
    assert not os.path.exists(tmp_path / "out" / "a_mask.png")


def test_a_slow_grpc_server_is_cut_off_at_the_deadline():
    grpc = pytest.importorskip("grpc")
    pytest.importorskip("tensorflow_serving.apis")
    import concurrent.futures

    from tensorflow_serving.apis import prediction_service_pb2_grpc

    class Slow(prediction_service_pb2_grpc.PredictionServiceServicer):
        def GetModelMetadata(self, request, context):
            end = time.monotonic() + DRIP_SECONDS
            while context.is_active() and time.monotonic() < end:
                time.sleep(0.1)
            context.abort(grpc.StatusCode.UNAVAILABLE, "gave up")

    server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=2))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Slow(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        start = time.monotonic()
        with pytest.raises(UserError, match=f"TF Serving at 127.0.0.1:{port} did not answer within 1.5 s"):
            clients.grpc_signature(f"127.0.0.1:{port}", "m", timeout=TIMEOUT)
        took = time.monotonic() - start
    finally:
        server.stop(0)
    assert took < TIMEOUT + LATE, took
