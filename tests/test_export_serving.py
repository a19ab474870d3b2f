"""The REST and gRPC clients against a TF Serving stand-in that serves the real exported SavedModels.

`serving_standin.StandInServer` reads the export's `models.config` with the
official proto and answers with the real SavedModels (see its docstring);
the clients here are the ones users run against `tensorflow/serving`.
"""

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_cnn import training
from keras_cnn.errors import UserError
from keras_cnn.export import clients, layout, servable_for
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
    unet = layout.export_model(servable_for(open_run(colour_dir)), out, "unet", ("saved_model",), log=quiet)
    layout.export_model(servable_for(open_run(seg_dir)), out, "seg", ("saved_model",), log=quiet)
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
    runs = {"grpc": ["--grpc", server.grpc_target, "--bytes"],
            "rest": ["--rest", server.rest_url, "--image-size", "32"]}
    for how, args in runs.items():
        out = tmp_path / how
        done = subprocess.run([sys.executable, script, *args, "--model", "unet", "--out-dir", str(out),
                               "--input", *paths], capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stderr[-2000:]
        for i in range(2):
            np.testing.assert_array_equal(np.asarray(Image.open(out / f"photo{i}_colours.png")), want[i],
                                          err_msg=how)
    bad = subprocess.run([sys.executable, script, "--rest", server.rest_url, "--model", "nope", "--out-dir",
                          str(tmp_path / "bad"), "--input", paths[0]], capture_output=True, text=True, timeout=180)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1].startswith("error: TF Serving at ")
    assert "HTTP 404" in bad.stderr and not (tmp_path / "bad").exists()


# === Hostile servers: every reply is checked, REST and gRPC alike ===

def _outputs(change):
    return {"outputs": change}


def _body(make):
    """A REST predict reply replaced: `make(real body)` -> (body, Content-Length to claim or None)."""
    return {"body": make}


def _json_body(value):
    return _body(lambda real: (json.dumps(value).encode(), None))


def _metadata(change):
    return {"metadata": change}


def _garble_colours(response):
    response.outputs["colours"].tensor_content = b"\x01\x02\x03"  # 3 bytes for a (2, 32, 32, 3) tensor
    return response


def _drop_signature(answer):
    del answer["metadata"]["signature_def"]["signature_def"]["serving_default"]
    return answer


def _as(dtype, values):
    return np.asarray(values).astype(dtype)


# (id: protocol:case, model, what the server does, what the one line says after "sent a bad reply: " or in full).
# Each row runs `serving-client --image-size 32` on two photos; nothing may be written.
HOSTILE_REPLIES = [
    ("rest:one-result-for-two", "unet", _outputs(lambda o: {k: v[:1] for k, v in o.items()}),
     "1 result for 2 images"),
    ("grpc:one-result-for-two", "unet", _outputs(lambda o: {k: v[:1] for k, v in o.items()}),
     "1 result for 2 images"),
    ("rest:three-results-for-two", "unet", _outputs(lambda o: {k: np.concatenate([v, v[:1]]) for k, v in o.items()}),
     "3 results for 2 images"),
    ("grpc:three-results-for-two", "unet", _outputs(lambda o: {k: np.concatenate([v, v[:1]]) for k, v in o.items()}),
     "3 results for 2 images"),
    ("rest:colours-above-255", "unet", _outputs(lambda o: {**o, "colours": _as(np.int32, o["colours"]) * 0 + 300}),
     "colours holds 300, outside 0..255 (uint8)"),
    ("rest:colours-negative", "unet", _outputs(lambda o: {**o, "colours": _as(np.int32, o["colours"]) * 0 - 1}),
     "colours holds -1, outside 0..255 (uint8)"),
    ("grpc:colours-int32", "unet", _outputs(lambda o: {**o, "colours": _as(np.int32, o["colours"]) + 300}),
     "colours is int32, the model's signature says uint8"),
    ("rest:colours-nan", "unet", _outputs(lambda o: {**o, "colours": np.full(o["colours"].shape, np.nan)}),
     "colours holds NaN or infinity"),
    ("grpc:colours-nan", "unet", _outputs(lambda o: {**o, "colours": np.full(o["colours"].shape, np.nan, np.float32)}),
     "colours is float32, the model's signature says uint8"),
    ("rest:colours-fractions", "unet", _outputs(lambda o: {**o, "colours": o["colours"] + 0.5}),
     "colours holds fractions; its values are whole numbers (uint8)"),
    ("rest:mask-class-out-of-range", "seg", _outputs(lambda o: {**o, "mask": np.full_like(o["mask"], 7)}),
     "mask holds class 7, but the model has 2 classes (0..1)"),
    ("grpc:mask-class-out-of-range", "seg", _outputs(lambda o: {**o, "mask": np.full_like(o["mask"], 7)}),
     "mask holds class 7, but the model has 2 classes (0..1)"),
    ("rest:wrong-width", "unet", _outputs(lambda o: {**o, "colours": o["colours"][:, :, :-1]}),
     "colours is 31x32 pixels; the images sent are 32x32"),
    ("grpc:wrong-width", "unet", _outputs(lambda o: {**o, "colours": o["colours"][:, :, :-1]}),
     "colours is 31x32 pixels; the images sent are 32x32"),
    ("rest:four-channels", "unet", _outputs(lambda o: {**o, "colours": o["colours"][..., [0, 1, 2, 2]]}),
     "colours has shape (2, 32, 32, 4), the model's signature says uint8 (N, ?, ?, 3)"),
    ("grpc:four-channels", "unet", _outputs(lambda o: {**o, "colours": o["colours"][..., [0, 1, 2, 2]]}),
     "colours has shape (2, 32, 32, 4), the model's signature says uint8 (N, ?, ?, 3)"),
    ("grpc:unreadable-tensor", "unet", {"response": _garble_colours}, "colours is not a readable tensor"),
    ("rest:json-string", "unet", _json_body("fine"),
     "a JSON string where an object with predictions or outputs belongs"),
    ("rest:json-number", "unet", _json_body(3), "a JSON number where an object with predictions or outputs belongs"),
    ("rest:json-list", "unet", _json_body([1, 2]), "a JSON list where an object with predictions or outputs belongs"),
    ("rest:predictions-number", "unet", _json_body({"predictions": 5}),
     "predictions is a JSON number, not a list of results"),
    ("rest:ragged", "unet", _json_body({"predictions": [{"colours": [[[1, 2, 3]], [[4, 5]]], "probabilities": []},
                                                        {"colours": [], "probabilities": []}]}),
     "a ragged array"),
    ("rest:text-values", "unet", _json_body({"outputs": {"colours": [["red"], ["blue"]], "probabilities": [[], []]}}),
     "holds text, not numbers"),
    ("rest:error-with-200", "unet", _json_body({"error": "out of cheese"}), "answered an error: out of cheese"),
    ("rest:truncated-body", "unet", _body(lambda real: (real[:len(real) // 2], None)), "not valid JSON"),
    ("rest:cut-short", "unet", _body(lambda real: (real[:len(real) // 2], len(real))), "the body was cut short"),
    ("rest:not-utf8", "unet", _body(lambda real: (b"\xff\xfe\x00\x01", None)), "not valid JSON"),
    ("rest:too-big", "unet", _body(lambda real: (real, clients.MAX_REPLY_BYTES + 1)),
     "256 MiB, more than the 256 MiB this client reads"),
    ("rest:metadata-string", "unet", _metadata(lambda answer: "ok"),
     "the model's metadata has no readable signature 'serving_default'"),
    ("rest:metadata-bad-dtype", "unet", _metadata(lambda answer: json.loads(json.dumps(answer).replace(
        '"DT_UINT8"', '"DT_NONSENSE"'))), "unknown dtype 'DT_NONSENSE'"),
    ("rest:metadata-without-the-signature", "unet", _metadata(_drop_signature),
     "the model has no signature 'serving_default' (it has: serving_bytes, serving_decoded)"),
]

# Replies to what the library asks of serving_default (the probabilities beside the picture), which
# serving-client never asks for: it wants the picture alone (serving_decoded).
HOSTILE_LIBRARY_REPLIES = [
    ("rest:probabilities-nan", "unet", _outputs(lambda o: {**o, "probabilities": o["probabilities"] * np.nan}),
     "probabilities holds NaN or infinity"),
    ("rest:probabilities-above-1", "unet", _outputs(lambda o: {**o, "probabilities": o["probabilities"] + 1.5}),
     "outside 0..1"),
    ("rest:missing-output", "unet", _outputs(lambda o: {"probabilities": o["probabilities"]}),
     "predictions holds bare values where results naming colours, probabilities belong"),
    ("grpc:missing-output", "unet", _outputs(lambda o: {"probabilities": o["probabilities"]}),
     "no colours in it (it has: probabilities)"),
]


def _photos(tmp_path, n=2, size=32, seed=40):
    paths = []
    for i, image in enumerate(blocky_images(n, size, seed=seed)):
        paths.append(str(tmp_path / f"photo{i}.png"))
        Image.fromarray(image).save(paths[-1])
    return paths


def _client(argv, capsys):
    """`keras-cnn serving-client ARGV` in this process: (exit code, stdout, stderr)."""
    from keras_cnn.commands import main

    with pytest.raises(SystemExit) as e:
        main(["serving-client", *argv])
    captured = capsys.readouterr()
    return e.value.code, captured.out, captured.err


def _address(server, protocol):
    return ["--rest", server.rest_url] if protocol == "rest" else ["--grpc", server.grpc_target]


@pytest.mark.parametrize("model,tamper,expected", [row[1:] for row in HOSTILE_REPLIES],
                         ids=[row[0] for row in HOSTILE_REPLIES])
def test_a_bad_reply_is_one_line_naming_the_server_and_nothing_is_written(served, tmp_path, capsys, request,
                                                                          model, tamper, expected):
    server = served["server"]
    protocol = request.node.callspec.id.split(":")[0]
    photos = _photos(tmp_path)
    server.tamper.update(tamper)
    try:
        code, out, err = _client([*_address(server, protocol), "--model", model, "--image-size", "32", "--out-dir",
                                  str(tmp_path / "out"), "--input", *photos], capsys)
    finally:
        server.tamper.clear()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    where = server.grpc_target if protocol == "grpc" else f"{server.rest_url}/v1/models/{model}"
    assert err.startswith(f"error: TF Serving at {where}"), err
    assert expected in err, err
    assert not (tmp_path / "out").exists()


def test_the_hostile_reply_table_covers_both_protocols():
    ids = [row[0] for row in HOSTILE_REPLIES]
    assert len(ids) == len(set(ids)) and {i.split(":")[0] for i in ids} == {"rest", "grpc"}
    for case in ("one-result-for-two", "three-results-for-two", "mask-class-out-of-range"):
        assert {f"rest:{case}", f"grpc:{case}"} <= set(ids)
    assert {"rest:missing-output", "grpc:missing-output"} <= {row[0] for row in HOSTILE_LIBRARY_REPLIES}


@pytest.mark.parametrize("model,tamper,expected", [row[1:] for row in HOSTILE_LIBRARY_REPLIES],
                         ids=[row[0] for row in HOSTILE_LIBRARY_REPLIES])
def test_a_bad_reply_to_the_library_is_one_line_naming_the_server(served, request, model, tamper, expected):
    server = served["server"]
    protocol = request.node.callspec.id.split(":")[0]
    images = blocky_images(2, seed=41)
    server.tamper.update(tamper)
    try:
        with pytest.raises(UserError) as e:
            if protocol == "rest":
                clients.rest_predict(server.rest_url, model, images=images)
            else:
                clients.grpc_predict(server.grpc_target, model, images=images)
    finally:
        server.tamper.clear()
    assert expected in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_good_replies_are_written_for_both_models(served, tmp_path, capsys, protocol):
    server = served["server"]
    photos = _photos(tmp_path, n=3)
    for model, suffix in (("unet", "colours"), ("seg", "mask")):
        out = tmp_path / model
        code, stdout, err = _client([*_address(server, protocol), "--model", model, "--out-dir", str(out),
                                     "--input", *photos], capsys)
        assert code == 0, err
        assert sorted(os.listdir(out)) == [f"photo{i}_{suffix}.png" for i in range(3)]
    want = served["unet"].signatures["serving_default"](
        images=tf.constant(np.stack([np.asarray(Image.open(p)) for p in photos])))["colours"].numpy()
    for i in range(3):
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "unet" / f"photo{i}_colours.png")), want[i])
    masks = np.stack([np.asarray(Image.open(tmp_path / "seg" / f"photo{i}_mask.png")) for i in range(3)])
    assert set(np.unique(masks)) <= {0, 255}


# === Sizes: requests and replies are bounded ===

def test_a_photo_too_big_for_one_rest_reply_is_refused_before_it_is_sent(served, tmp_path, capsys, monkeypatch):
    """A 1200 x 1000 photo's colours are ~14 MiB of JSON over REST and 3.4 MiB over gRPC: with room for 8 MiB,
    the REST request is refused from the photo's header and the gRPC one goes through."""
    server = served["server"]
    path = tmp_path / "big.png"
    Image.fromarray(np.full((1000, 1200, 3), 90, np.uint8)).save(path)
    sent = []
    monkeypatch.setattr(clients, "MAX_REPLY_BYTES", 8 * 2 ** 20)
    real_rest = clients.rest_predict
    monkeypatch.setattr(clients, "rest_predict", lambda *a, **k: sent.append(1))
    code, _, err = _client(["--rest", server.rest_url, "--model", "unet", "--out-dir", str(tmp_path / "out"),
                            "--input", str(path)], capsys)
    assert code == 2 and not sent and not (tmp_path / "out").exists()
    assert err.startswith(f"error: {path}: 1200x1000 pixels would take about ") and "MiB to answer over REST, more " \
        "than the 8 MiB this client reads at once; pass --image-size N to fit photos to N x N here, or --grpc" \
        in err, err
    # Over gRPC the colours come back as 3 bytes a pixel: it goes through, whole.
    monkeypatch.setattr(clients, "rest_predict", real_rest)
    code, _, err = _client(["--grpc", server.grpc_target, "--model", "unet", "--out-dir", str(tmp_path / "out"),
                            "--input", str(path)], capsys)
    assert code == 0, err
    assert np.asarray(Image.open(tmp_path / "out" / "big_colours.png")).shape == (1000, 1200, 3)


def test_batches_are_split_to_fit_the_reply_limit(served, tmp_path, capsys, monkeypatch):
    server = served["server"]
    photos = _photos(tmp_path, n=5)
    signature = clients.rest_signature(server.rest_url, "unet", "serving_decoded")  # what serving-client asks
    # Room for two photos' replies at once.
    monkeypatch.setattr(clients, "MAX_REPLY_BYTES", clients.reply_bytes(signature, 2, (32, 32)))
    counts = []
    real = clients.rest_predict

    def counting(*args, images=None, **kwargs):
        counts.append(len(images))
        return real(*args, images=images, **kwargs)

    monkeypatch.setattr(clients, "rest_predict", counting)
    code, _, err = _client(["--rest", server.rest_url, "--model", "unet", "--image-size", "32", "--out-dir",
                            str(tmp_path / "out"), "--input", *photos], capsys)
    assert code == 0, err
    assert counts == [2, 2, 1]
    want = served["unet"].signatures["serving_default"](
        images=tf.constant(np.stack([np.asarray(Image.open(p)) for p in photos])))["colours"].numpy()
    for i in range(5):
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out" / f"photo{i}_colours.png")), want[i])
    # An --image-size whose one photo does not fit is one line naming the flag.
    monkeypatch.setattr(clients, "MAX_REPLY_BYTES", 12_000)  # the metadata fits, a photo's colours (~18 KB) not
    code, _, err = _client(["--rest", server.rest_url, "--model", "unet", "--image-size", "32", "--out-dir",
                            str(tmp_path / "out2"), "--input", *photos], capsys)
    assert code == 2 and err.startswith("error: --image-size 32: a photo of 32x32 pixels would take about "), err


def test_the_library_refuses_a_request_whose_reply_is_too_big(served):
    server = served["server"]
    images = np.zeros((1, 1000, 1200, 3), np.uint8)
    with pytest.raises(UserError, match=r"the reply to 1 image\(s\) of 1200x1000 pixels would take about .* over "
                                        r"REST, more than the 256 MiB this client reads; send fewer or smaller "
                                        r"images, or use gRPC"):
        clients.rest_predict(server.rest_url, "unet", images=images)


def test_the_decoded_signature_answers_an_800x600_photo_in_a_fraction_of_the_bytes(served, capsys):
    """Reply sizes of one 800 x 600 photo, measured on the wire: REST body bytes and gRPC message bytes.

    `python -m pytest -q -s tests/test_export_serving.py -k 800x600` prints the table docs/EXPORT.md quotes.
    """
    import base64
    import urllib.request

    import grpc
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    server = served["server"]
    photo = blocky_images(1, 800, seed=50)[:, :600]
    png = _png(photo[0])
    sizes = {}
    for model in ("unet", "seg"):
        for signature, key, value in (("serving_default", "images", photo[0].tolist()),
                                      ("serving_decoded", "images", photo[0].tolist()),
                                      ("serving_bytes", "image_bytes", {"b64": base64.b64encode(png).decode()})):
            body = json.dumps({"signature_name": signature, "instances": [{key: value}]}).encode()
            request = urllib.request.Request(f"{server.rest_url}/v1/models/{model}:predict", data=body,
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=120) as reply:
                rest = len(reply.read())
            message = predict_pb2.PredictRequest()
            message.model_spec.name, message.model_spec.signature_name = model, signature
            message.inputs[key].CopyFrom(tf.make_tensor_proto(photo if key == "images" else np.array([png], object)))
            with grpc.insecure_channel(server.grpc_target, options=[("grpc.max_receive_message_length", -1)]) as ch:
                stub = prediction_service_pb2_grpc.PredictionServiceStub(ch)
                grpc_bytes = stub.Predict(message, timeout=120).ByteSize()
            sizes[model, signature] = (rest, grpc_bytes)
    with capsys.disabled():
        print("\n| model | signature | REST reply | gRPC reply |\n|---|---|---|---|")
        for (model, signature), (rest, grpc_bytes) in sizes.items():
            print(f"| {model} | {signature} | {rest / 2 ** 20:.1f} MiB | {grpc_bytes / 2 ** 20:.2f} MiB |")
    for model in ("unet", "seg"):
        default, decoded = sizes[model, "serving_default"], sizes[model, "serving_decoded"]
        # The picture alone: several times smaller than with the probabilities, on both protocols.
        assert decoded[0] * 3 < default[0] and decoded[1] * 3 < default[1], sizes
        assert sizes[model, "serving_bytes"][1] <= decoded[1] + 64, sizes
