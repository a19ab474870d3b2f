"""The REST and gRPC clients against a TF Serving stand-in that serves the real exported SavedModels.

`serving_standin.StandInServer` reads the export's `models.config` with the
official proto and answers with the real SavedModels (see its docstring);
the clients here are the ones users run against `tensorflow/serving`.
"""

import io
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_cnn import training
from keras_cnn.errors import UserError
from keras_cnn.export import clients, layout
from keras_cnn.tasks import open_run
from tests.export_helpers import blocky_images, colour_run, segmenter_run
from tests.serving_standin import StandInServer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def quiet(*args):
    pass


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A colourizer ("unet") and a segmenter ("seg") exported into one root and served; yields a dict."""
    root = tmp_path_factory.mktemp("serving")
    colour_dir, _ = colour_run(str(root / "colour"))
    seg_dir = segmenter_run(str(root / "seg"))
    out = str(root / "exported_models")
    unet = layout.export_model(open_run(colour_dir).servable(), out, "unet", ("saved_model",), log=quiet)
    layout.export_model(open_run(seg_dir).servable(), out, "seg", ("saved_model",), log=quiet)
    with StandInServer(os.path.join(out, "models.config"), out) as server:
        yield {"server": server, "colour_run": colour_dir, "seg_run": seg_dir,
               "unet": tf.saved_model.load(unet["saved_model"]["path"]), "out": out}


def _png(image):
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def test_rest_and_grpc_answer_what_the_saved_model_and_keras_compute(served):
    server = served["server"]
    images = blocky_images(3, seed=31)
    want = served["unet"].signatures["serving_default"](images=tf.constant(images))
    model = training.load_model(os.path.join(served["colour_run"], "best.keras"))
    keras_probs = tf.nn.softmax(model(images, training=False), -1).numpy()
    answers = {
        "rest rows": clients.rest_predict(server.rest_url, "unet", images=images),
        "rest columns": clients.rest_predict(server.rest_url, "unet", images=images, columnar=True),
        "rest version 1": clients.rest_predict(server.rest_url, "unet", images=images, version=1),
        "grpc": clients.grpc_predict(server.grpc_target, "unet", images=images),
    }
    for how, got in answers.items():
        assert set(got) == {"colours", "probabilities"}, how
        np.testing.assert_array_equal(got["colours"], want["colours"].numpy(), err_msg=how)
        assert got["probabilities"].dtype == np.float32, how
        assert np.max(np.abs(got["probabilities"] - want["probabilities"].numpy())) < 1e-6, how
        assert np.max(np.abs(got["probabilities"] - keras_probs)) < 1e-5, how


def test_encoded_bytes_over_rest_and_grpc(served):
    server = served["server"]
    images = blocky_images(2, seed=32)
    blobs = [_png(image) for image in images]
    want = served["unet"].signatures["serving_default"](images=tf.constant(images))["colours"].numpy()
    for got in (clients.rest_predict(server.rest_url, "unet", encoded=blobs),
                clients.grpc_predict(server.grpc_target, "unet", encoded=blobs)):
        np.testing.assert_array_equal(got["colours"], want)


def test_the_segmenter_is_served_beside_the_colourizer(served):
    server = served["server"]
    photo = blocky_images(1, 64, seed=33)[:, :48]
    from keras_cnn.segmentation.predict import predict_labels

    model = training.load_model(os.path.join(served["seg_run"], "best.keras"))
    for got in (clients.grpc_predict(server.grpc_target, "seg", images=photo),
                clients.rest_predict(server.rest_url, "seg", images=photo)):
        assert got["mask"].shape == (1, 48, 64) and got["probabilities"].shape == (1, 48, 64, 2)
        # The mask at the photo's own size, as the segmentation package's predict computes it.
        assert np.mean(got["mask"][0] == predict_labels(model, photo[0])) > 0.999


@pytest.mark.parametrize("images,message", [
    (np.zeros((1, 32, 32, 3), np.float32), r"must be uint8 RGB values 0\.\.255, got dtype float32"),
    (np.zeros((32, 32, 3), np.uint8), r"shape \(N, H, W, 3\), got \(32, 32, 3\) \(one image: add a batch axis"),
    (np.zeros((1, 32, 32), np.uint8), r"shape \(N, H, W, 3\), got \(1, 32, 32\)"),
    (np.zeros((1, 32, 32, 4), np.uint8), r"shape \(N, H, W, 3\), got \(1, 32, 32, 4\)"),
    (np.zeros((0, 32, 32, 3), np.uint8), "must not be empty"),
])
def test_clients_refuse_bad_images_before_sending(images, message):
    # Port 9 (discard) is closed here: a client that sent anything would fail with "cannot reach".
    with pytest.raises(UserError, match=message):
        clients.rest_predict("http://127.0.0.1:9", "unet", images=images)
    with pytest.raises(UserError, match=message):
        clients.grpc_predict("127.0.0.1:9", "unet", images=images)


def test_server_side_errors_are_one_line_user_errors(served):
    server = served["server"]
    image = blocky_images(1)
    with pytest.raises(UserError, match=r"HTTP 404: Servable not found for request: Latest\(nope\)"):
        clients.rest_predict(server.rest_url, "nope", images=image)
    with pytest.raises(UserError, match=r"answered NOT_FOUND: Servable not found for request: Latest\(nope\)"):
        clients.grpc_predict(server.grpc_target, "nope", images=image)
    with pytest.raises(UserError, match=r"NOT_FOUND: .*Specific\(unet, 9\)"):
        clients.grpc_predict(server.grpc_target, "unet", images=image, version=9)
    with pytest.raises(UserError, match="INVALID_ARGUMENT"):
        clients.grpc_predict(server.grpc_target, "unet", encoded=[b"not an image"])
    with pytest.raises(UserError, match="HTTP 400"):
        clients.rest_predict(server.rest_url, "unet", encoded=[b"not an image"])
    with pytest.raises(UserError, match="cannot reach TF Serving"):
        clients.rest_predict("http://127.0.0.1:9", "unet", images=image, timeout=5)
    with pytest.raises(UserError, match="cannot reach TF Serving"):
        clients.grpc_predict("127.0.0.1:9", "unet", images=image, timeout=5)
    with pytest.raises(UserError, match="list of bytes"):
        clients.rest_predict(server.rest_url, "unet", encoded=b"one blob")


def test_serving_client_script_over_grpc_and_rest(served, tmp_path):
    server = served["server"]
    images = blocky_images(2, seed=34)
    paths = []
    for i, image in enumerate(images):
        paths.append(str(tmp_path / f"photo{i}.png"))
        Image.fromarray(image).save(paths[-1])
    want = served["unet"].signatures["serving_default"](images=tf.constant(images))["colours"].numpy()
    script = os.path.join(REPO, "scripts", "serving_client.py")
    runs = {"grpc": ["--grpc", server.grpc_target, "--bytes"], "rest": ["--rest", server.rest_url, "--size", "32"]}
    for how, args in runs.items():
        out = tmp_path / how
        done = subprocess.run([sys.executable, script, *args, "--model", "unet", "--out", str(out), *paths],
                              capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stderr[-2000:]
        for i in range(2):
            np.testing.assert_array_equal(np.asarray(Image.open(out / f"photo{i}_colours.png")), want[i],
                                          err_msg=how)
    bad = subprocess.run([sys.executable, script, "--rest", server.rest_url, "--model", "nope", "--out",
                          str(tmp_path / "bad"), paths[0]], capture_output=True, text=True, timeout=180)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1].startswith("error: TF Serving at ")
    assert "HTTP 404" in bad.stderr and not (tmp_path / "bad").exists()
