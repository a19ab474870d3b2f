"""Clients of a running TensorFlow Serving: REST and gRPC.

Both send either decoded images (uint8 (N, H, W, 3), signature
`serving_default`, input "images") or encoded JPEG/PNG bytes (signature
`serving_bytes`, input "image_bytes"), and return the named outputs as NumPy
arrays. Bad input is refused before anything is sent; a server-side error
comes back as a one-line `UserError` with the server's own message.

- REST: `POST {url}/v1/models/{name}[/versions/{v}]:predict` with the row
  format (`{"instances": [...]}`, binary values as `{"b64": ...}`) or the
  columnar one (`{"inputs": ...}`).
- gRPC: `tensorflow.serving.PredictionService/Predict` with the
  `tensorflow-serving-api` protos.
"""

import base64
import json
import urllib.error
import urllib.request

import numpy as np

from keras_cnn.errors import UserError

IMAGES_KEY = "images"
BYTES_KEY = "image_bytes"
# Images as JSON or protos outgrow gRPC's 4 MiB default quickly.
MAX_MESSAGE_BYTES = 256 * 1024 * 1024


def check_images(images):
    """`images` as a uint8 (N, H, W, 3) array, or a `UserError` saying what is wrong."""
    a = np.asarray(images)
    if a.dtype != np.uint8:
        raise UserError(f"images must be uint8 RGB values 0..255, got dtype {a.dtype}"
                        + (" (convert with np.clip(x * 255, 0, 255).astype(np.uint8) if they are in [0, 1])"
                           if a.dtype.kind == "f" else ""))
    if a.ndim != 4 or a.shape[-1] != 3:
        hint = " (one image: add a batch axis, images[None])" if a.ndim == 3 else ""
        raise UserError(f"images must have shape (N, H, W, 3), got {a.shape}{hint}")
    if 0 in a.shape:
        raise UserError(f"images must not be empty, got shape {a.shape}")
    return a


def check_encoded(blobs):
    """`blobs` as a list of non-empty bytes (encoded image files)."""
    if isinstance(blobs, (bytes, bytearray)):
        raise UserError("encoded images must be a list of bytes objects, one per image, got one bytes object")
    blobs = list(blobs)
    if not blobs:
        raise UserError("no encoded images to send")
    for i, b in enumerate(blobs):
        if not isinstance(b, (bytes, bytearray)) or not b:
            raise UserError(f"encoded image {i} must be non-empty bytes, got {type(b).__name__}")
    return [bytes(b) for b in blobs]


def _request(images, encoded, signature_name):
    if (images is None) == (encoded is None):
        raise UserError("give either images or encoded image bytes")
    if images is not None:
        return signature_name or "serving_default", IMAGES_KEY, check_images(images)
    return signature_name or "serving_bytes", BYTES_KEY, check_encoded(encoded)


def _first_line(text):
    text = str(text).strip()
    return text.splitlines()[0][:300] if text else ""


# === REST ===

def rest_url(url, model_name, version=None):
    base = url.rstrip("/")
    if "://" not in base:
        base = "http://" + base
    return f"{base}/v1/models/{model_name}" + (f"/versions/{int(version)}" if version else "") + ":predict"


def _json_values(key, value):
    if key == BYTES_KEY:
        return [{"b64": base64.b64encode(b).decode("ascii")} for b in value]
    return value.tolist()


def rest_predict(url, model_name, images=None, encoded=None, signature_name=None, version=None,
                 columnar=False, timeout=60):
    """POSTs to TF Serving's REST API; returns {output name: array}.

    Args:
        url: the server's REST address, e.g. "http://localhost:8501".
        model_name: the model's name in `models.config`.
        images: uint8 (N, H, W, 3) images, or
        encoded: a list of encoded image files (bytes).
        signature_name: default `serving_default` for images, `serving_bytes` for bytes.
        version: a model version (default: the server's latest).
        columnar: send `{"inputs": ...}` instead of `{"instances": ...}`.
    """
    signature_name, key, value = _request(images, encoded, signature_name)
    values = _json_values(key, value)
    body = {"signature_name": signature_name}
    body.update({"inputs": {key: values}} if columnar else {"instances": [{key: v} for v in values]})
    target = rest_url(url, model_name, version)
    request = urllib.request.Request(target, data=json.dumps(body).encode("utf-8"), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
    except urllib.error.HTTPError as e:
        detail = e.read().decode("utf-8", "replace")
        try:
            detail = json.loads(detail).get("error", detail)
        except (ValueError, AttributeError):
            pass
        raise UserError(f"TF Serving at {target} answered HTTP {e.code}: {_first_line(detail)}") from None
    except (urllib.error.URLError, OSError) as e:
        raise UserError(f"cannot reach TF Serving at {target} ({getattr(e, 'reason', e)})") from None
    try:
        answer = json.loads(raw)
    except ValueError:
        raise UserError(f"TF Serving at {target} answered with invalid JSON") from None
    return _parse_rest_answer(answer, target)


def _as_array(values):
    a = np.asarray(values)
    return a.astype(np.float32) if a.dtype == np.float64 else a


def _parse_rest_answer(answer, target):
    if "predictions" in answer:
        rows = answer["predictions"]
        if rows and isinstance(rows[0], dict):
            return {k: _as_array([r[k] for r in rows]) for k in rows[0]}
        return {"output": _as_array(rows)}
    if "outputs" in answer:
        outs = answer["outputs"]
        return {k: _as_array(v) for k, v in outs.items()} if isinstance(outs, dict) else {"output": _as_array(outs)}
    raise UserError(f"TF Serving at {target} answered without predictions or outputs")


# === gRPC ===

def grpc_predict(target, model_name, images=None, encoded=None, signature_name=None, version=None,
                 timeout=60):
    """Calls `PredictionService/Predict` over gRPC; returns {output name: array}.

    Args:
        target: the server's gRPC address, "host:port" (e.g. "localhost:8500").
        Other arguments as `rest_predict`.
    """
    signature_name, key, value = _request(images, encoded, signature_name)
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    if version:
        request.model_spec.version.value = int(version)
    array = np.array(value, dtype=object) if key == BYTES_KEY else value
    request.inputs[key].CopyFrom(tf.make_tensor_proto(array))
    options = [("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
               ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)]
    with grpc.insecure_channel(target, options=options) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        try:
            response = stub.Predict(request, timeout=timeout)
        except grpc.RpcError as e:
            code = e.code()
            if code == grpc.StatusCode.UNAVAILABLE:
                raise UserError(f"cannot reach TF Serving at {target} over gRPC ({_first_line(e.details())})") \
                    from None
            raise UserError(f"TF Serving at {target} answered {code.name}: {_first_line(e.details())}") from None
    return {k: tf.make_ndarray(v) for k, v in response.outputs.items()}
