"""Clients of a running TensorFlow Serving: REST and gRPC.

Both send either decoded images (uint8 (N, H, W, 3), signature
`serving_default`, input "images") or encoded JPEG/PNG bytes (signature
`serving_bytes`, input "image_bytes"), and return the named outputs as NumPy
arrays. Bad input is refused before anything is sent; a server-side error
comes back as a one-line `UserError` with the server's own message.

A reply is not trusted. Before a request, the model's signature is read from
the server (`rest_signature`, `grpc_signature`: TF Serving's GetModelMetadata),
and every reply, REST or gRPC, goes through one reader, `read_reply`, which
checks it against what was sent and what the signature says: one result per
image, each output's shape and dtype, whole numbers within their dtype's range
(colours 0..255, mask classes below the model's number of classes),
probabilities finite and within 0..1. Anything else (a JSON string, ragged
arrays, a missing output, a truncated body, NaN colours) is a one-line
`UserError` naming the server and the problem.

Time is bounded per request, not per read: `timeout` seconds cover
connecting, sending and the whole reply, so a server that drips its answer a
byte a second is cut off at `timeout` (REST: the connection is shut when the
time is up, `_Deadline`; gRPC: the call's deadline).

Sizes are bounded: a reply may hold at most `MAX_REPLY_BYTES` (a request to
which the reply would be bigger is refused before it is sent, see
`reply_bytes`), and gRPC messages at most `MAX_MESSAGE_BYTES`. Over REST every
number is JSON text (a float takes about 20 bytes, and every pixel carries one
probability per class), so a photo of a megapixel or two is the most one REST
request takes; gRPC can ask for only the outputs it needs (`outputs=`).

- REST: `POST {url}/v1/models/{name}[/versions/{v}]:predict` with the row
  format (`{"instances": [...]}`, binary values as `{"b64": ...}`) or the
  columnar one (`{"inputs": ...}`); `GET .../metadata` for the signature.
- gRPC: `tensorflow.serving.PredictionService/Predict` and
  `/GetModelMetadata` with the `tensorflow-serving-api` protos.
"""

import base64
import dataclasses
import http.client
import json
import socket
import threading
import urllib.error
import urllib.request

import numpy as np

from keras_cnn.errors import UserError

IMAGES_KEY = "images"
BYTES_KEY = "image_bytes"
# Images as JSON or protos outgrow gRPC's 4 MiB default quickly.
MAX_MESSAGE_BYTES = 256 * 1024 * 1024
# The most a reply may hold. Parsed, a REST reply this size takes about 1 GB (a Python object per number).
MAX_REPLY_BYTES = MAX_MESSAGE_BYTES
# An HTTP error's body is read this far, for its first line.
_MAX_ERROR_BYTES = 64 * 1024
# What one number takes in a REST reply, at most about: a float32 as JSON text ("0.0833333358168602, "), a
# byte ("255, ", and its share of the brackets around each pixel and row).
_JSON_FLOAT_BYTES = 22
_JSON_INT_BYTES = 6
# What one pixel takes in a REST request: "[255, 255, 255], ".
_JSON_PIXEL_BYTES = 17
# Probabilities may exceed 1 by rounding, by this much.
_PROBABILITY_SLACK = 1e-5

# TensorFlow's dtype names in signatures -> NumPy (None: strings).
_DTYPES = {
    "DT_UINT8": np.uint8, "DT_INT8": np.int8, "DT_UINT16": np.uint16, "DT_INT16": np.int16,
    "DT_INT32": np.int32, "DT_INT64": np.int64, "DT_HALF": np.float16, "DT_FLOAT": np.float32,
    "DT_DOUBLE": np.float64, "DT_BOOL": np.bool_, "DT_STRING": None,
}


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


def encoded_size(blobs):
    """(H, W) of the largest of encoded image files, read from their headers (nothing decoded); None if unknown.

    `serving_bytes` answers each photo at its own size, padded to the largest
    of the request, so this is the size of the reply's pictures.
    """
    import io

    from PIL import Image

    sizes = []
    for blob in blobs:
        try:
            with Image.open(io.BytesIO(blob)) as image:
                sizes.append(image.size)
        except Exception:  # Pillow raises many types for what it cannot read; the server says what is wrong
            return None
    return (max(h for _, h in sizes), max(w for w, _ in sizes)) if sizes else None


def _request(images, encoded, signature_name):
    if (images is None) == (encoded is None):
        raise UserError("give either images or encoded image bytes")
    if images is not None:
        return signature_name or "serving_default", IMAGES_KEY, check_images(images)
    return signature_name or "serving_bytes", BYTES_KEY, check_encoded(encoded)


def _first_line(text):
    text = str(text).strip()
    return text.splitlines()[0][:300] if text else ""


def _bad(where, problem):
    return UserError(f"TF Serving at {where} sent a bad reply: {problem}")


def _mib(n):
    return f"{n / 2 ** 20:,.0f} MiB" if n >= 2 ** 20 else f"{n / 1024:,.0f} KiB"


# === What the server says the model takes and returns ===

@dataclasses.dataclass(frozen=True)
class Spec:
    """One input or output of a signature: NumPy dtype (None for strings) and shape (None for unknown dims)."""
    dtype: type
    shape: tuple  # None: unknown rank

    def describe(self):
        dims = "?" if self.shape is None else "(" + ", ".join("N" if i == 0 else "?" if d is None else str(d)
                                                              for i, d in enumerate(self.shape)) + ")"
        return f"{'string' if self.dtype is None else np.dtype(self.dtype).name} {dims}"


@dataclasses.dataclass(frozen=True)
class Signature:
    """A served model's signature, as the server describes it (TF Serving's GetModelMetadata)."""
    name: str
    inputs: dict
    outputs: dict

    @property
    def kind(self):
        """"colours" (a colourizer), "mask" (a segmenter), or None."""
        return next((k for k in ("colours", "mask") if k in self.outputs), None)

    @property
    def classes(self):
        """The number of classes (the last dimension of "probabilities"), or None if the server does not say."""
        spec = self.outputs.get("probabilities")
        return spec.shape[-1] if spec is not None and spec.shape and spec.shape[-1] else None

    def image_size(self):
        """(H, W) of the outputs when the signature fixes it (`serving_bytes`), else None."""
        for spec in self.outputs.values():
            if spec.shape is not None and len(spec.shape) >= 3 and None not in spec.shape[1:3]:
                return tuple(spec.shape[1:3])
        return None


def _spec(info):
    dtype = info["dtype"]
    if dtype not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}")
    shape = info.get("tensor_shape") or {}
    if shape.get("unknown_rank"):
        return Spec(_DTYPES[dtype], None)
    dims = tuple(int(d.get("size", -1)) for d in shape.get("dim", []))
    return Spec(_DTYPES[dtype], tuple(None if d < 0 else d for d in dims))


def signature_from_metadata(metadata, signature_name, where):
    """The `Signature` named `signature_name` in a GetModelMetadata answer in its JSON form, or a `UserError`."""
    try:
        defs = metadata["metadata"]["signature_def"]["signature_def"]
        if not isinstance(defs, dict):
            raise TypeError("signature_def is not an object")
        if signature_name not in defs:
            names = ", ".join(sorted(k for k in defs if not k.startswith("__"))) or "none"
            raise UserError(f"TF Serving at {where}: the model has no signature {signature_name!r} (it has: "
                            f"{names}); serve a model exported by keras_cnn (keras-cnn export)")
        found = defs[signature_name]
        inputs = {str(k): _spec(v) for k, v in found.get("inputs", {}).items()}
        outputs = {str(k): _spec(v) for k, v in found["outputs"].items()}
    except UserError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise _bad(where, f"the model's metadata has no readable signature {signature_name!r} "
                          f"({type(e).__name__}: {_first_line(e)})") from None
    if not outputs:
        raise _bad(where, f"signature {signature_name!r} has no outputs")
    return Signature(signature_name, inputs, outputs)


def reply_bytes(signature, count, size=None, protocol="rest", outputs=None):
    """About how many bytes the reply to `count` images of `size` (H, W) takes (`size` None: the signature's).

    Over REST each number is JSON text (`_JSON_FLOAT_BYTES` a float,
    `_JSON_INT_BYTES` a byte), over gRPC its dtype's size. `outputs`: the
    names asked for (default: all).
    """
    size = size or signature.image_size() or (1, 1)
    total = 0
    for name in outputs or signature.outputs:
        spec = signature.outputs[name]
        values = count
        for axis, dim in enumerate((spec.shape or (None,))[1:], 1):
            values *= dim if dim is not None else (size[axis - 1] if axis <= 2 else 1)
        if spec.dtype is None:
            per = 64
        elif protocol == "grpc":
            per = np.dtype(spec.dtype).itemsize
        else:
            per = _JSON_FLOAT_BYTES if np.dtype(spec.dtype).kind == "f" else _JSON_INT_BYTES
        total += values * per
    return total


def request_bytes(count, size, protocol="rest"):
    """About how many bytes a request of `count` decoded RGB images of `size` (H, W) takes."""
    return count * size[0] * size[1] * (3 if protocol == "grpc" else _JSON_PIXEL_BYTES)


def check_sizes(signature, count, size, protocol, where, outputs=None, pixels_sent=True):
    """A `UserError` if the request or its reply would be bigger than this client sends or reads.

    `size` (H, W): the images' (the largest, for encoded files); `pixels_sent`: False for encoded files,
    whose request is their bytes, not their pixels.
    """
    reply = reply_bytes(signature, count, size, protocol, outputs)
    if reply > MAX_REPLY_BYTES:
        pixels = f"{count} image(s) of {size[1]}x{size[0]} pixels" if size else f"{count} image(s)"
        raise UserError(f"TF Serving at {where}: the reply to {pixels} would take about {_mib(reply)} over "
                        f"{protocol.upper()}, more than the {_mib(MAX_REPLY_BYTES)} this client reads; send "
                        "fewer or smaller images" + (", or use gRPC" if protocol == "rest" else ""))
    if pixels_sent and size is not None and request_bytes(count, size, protocol) > MAX_MESSAGE_BYTES:
        raise UserError(f"TF Serving at {where}: {count} image(s) of {size[1]}x{size[0]} pixels would take about "
                        f"{_mib(request_bytes(count, size, protocol))} to send, more than the "
                        f"{_mib(MAX_MESSAGE_BYTES)} one request may hold; send fewer or smaller images")


# === The one reader of replies ===

@dataclasses.dataclass(frozen=True)
class Sent:
    """What a request held: `count` images; `size` (H, W) of decoded ones (None for encoded files)."""
    count: int
    size: tuple = None


def _what(a):
    return {"U": "text", "S": "bytes", "b": "true/false", "O": "null or mixed values"}.get(a.dtype.kind,
                                                                                         str(a.dtype))


def _results(n, count):
    return f"{n} result{'s' if n != 1 else ''} for {count} image{'s' if count != 1 else ''}"


def _checked(name, value, spec, sent, where, typed):
    """One output as an array of its signature's dtype, checked; `typed`: the reply carries dtypes (gRPC)."""
    try:
        a = np.asarray(value)
    except (ValueError, TypeError, OverflowError):
        raise _bad(where, f"{name} is a ragged array (its rows differ in length or depth)") from None
    if a.ndim == 0:
        raise _bad(where, f"{name} is a single {_what(a) if a.dtype.kind not in 'iuf' else 'number'}, "
                          f"not one result per image")
    if len(a) != sent.count:
        raise _bad(where, f"{_results(len(a), sent.count)} ({name})")
    if a.dtype.kind not in "iuf" and not (a.size == 0 and a.dtype.kind in "fO"):
        raise _bad(where, f"{name} holds {_what(a)}, not numbers")
    want = None if spec.dtype is None else np.dtype(spec.dtype)
    if want is None or want.kind not in "iuf":
        raise _bad(where, f"{name} is {spec.describe()} in the model's signature; this client reads numbers")
    if typed and a.dtype != want:
        raise _bad(where, f"{name} is {a.dtype}, the model's signature says {want}")
    if spec.shape is not None and (a.ndim != len(spec.shape)
                                   or any(d is not None and d != g for d, g in zip(spec.shape[1:], a.shape[1:]))):
        raise _bad(where, f"{name} has shape {a.shape}, the model's signature says {spec.describe()}")
    if a.size:
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise _bad(where, f"{name} holds NaN or infinity")
        if want.kind in "iu":
            if a.dtype.kind == "f" and not np.array_equal(a, np.round(a)):
                raise _bad(where, f"{name} holds fractions; its values are whole numbers ({want})")
            info = np.iinfo(want)
            low, high = a.min(), a.max()
            if low < info.min or high > info.max:
                bad = high if high > info.max else low
                raise _bad(where, f"{name} holds {bad:g}, outside {info.min}..{info.max} ({want})")
    return a.astype(want, copy=False)


def read_reply(values, signature, sent, where, outputs=None, typed=False, classes=None):
    """The outputs of a reply as checked arrays, or a one-line `UserError` naming `where` and the problem.

    Args:
        values: {output name: array or nested lists}, as the reply gave them.
        signature: the model's `Signature` (from the server's metadata).
        sent: a `Sent`: how many images the request held, and their size.
        where: the server's address, for messages.
        outputs: the output names asked for (default: all of the signature's).
        typed: whether the reply carries dtypes (gRPC) that must be the signature's.
        classes: the model's number of classes, where the signature does not say it (`serving_decoded`
            and `serving_bytes` return the mask without the probabilities that tell).
    """
    names = sorted(outputs or signature.outputs)  # a fixed order, so one reply gives one message
    if not isinstance(values, dict):
        raise _bad(where, "no named outputs")
    missing = [n for n in names if n not in values]
    if missing:
        raise _bad(where, f"no {', '.join(missing)} in it (it has: {', '.join(sorted(map(str, values))) or 'nothing'})")
    out = {name: _checked(name, values[name], signature.outputs[name], sent, where, typed) for name in names}
    # Pixel outputs come at the size of the images sent, and agree with each other.
    pictures = {n: a for n, a in out.items() if a.ndim >= 3}
    size = sent.size or next((a.shape[1:3] for a in pictures.values()), None)
    for name, a in pictures.items():
        if tuple(a.shape[1:3]) != tuple(size):
            sent_or_other = "the images sent are" if sent.size else f"{next(iter(pictures))} is"
            raise _bad(where, f"{name} is {a.shape[2]}x{a.shape[1]} pixels; {sent_or_other} {size[1]}x{size[0]}")
    if "probabilities" in out and out["probabilities"].size:
        p = out["probabilities"]
        if p.min() < 0 or p.max() > 1 + _PROBABILITY_SLACK:
            raise _bad(where, f"probabilities holds {p.min() if p.min() < 0 else p.max():g}, outside 0..1")
    if "mask" in out and out["mask"].size:
        classes = classes or signature.classes or (out["probabilities"].shape[-1] if "probabilities" in out
                                                   else None)
        if classes and out["mask"].max() >= classes:
            raise _bad(where, f"mask holds class {out['mask'].max()}, but the model has {classes} classes "
                              f"(0..{classes - 1})")
    return out


# === REST ===

def _base_url(url, model_name, version=None):
    base = url.rstrip("/")
    if "://" not in base:
        base = "http://" + base
    return f"{base}/v1/models/{model_name}" + (f"/versions/{int(version)}" if version else "")


def rest_url(url, model_name, version=None):
    return _base_url(url, model_name, version) + ":predict"


class _Deadline:
    """Shuts a request's connections when `seconds` have passed since it began, unless `finish`ed first.

    A socket timeout bounds each read, so a server sending a byte a second
    would hold a client forever; shutting the socket from a timer bounds the
    whole request (connecting, sending, the status line, headers and body).
    """

    def __init__(self, seconds):
        self.expired = False
        self._done = False
        self._sockets = []
        self._lock = threading.Lock()
        self._timer = None
        if seconds is not None:
            self._timer = threading.Timer(seconds, self._expire)
            self._timer.daemon = True
            self._timer.start()

    def watch(self, sock):
        with self._lock:
            self._sockets.append(sock)
            if self.expired:
                self._shut(sock)

    @staticmethod
    def _shut(sock):
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _expire(self):
        with self._lock:
            if self._done:
                return
            self.expired = True
            for sock in self._sockets:
                self._shut(sock)

    def finish(self):
        with self._lock:
            self._done = True
        if self._timer is not None:
            self._timer.cancel()


def _opener(deadline):
    """A urllib opener (proxies and redirects as usual) whose connections `deadline` watches."""

    class Connection(http.client.HTTPConnection):
        def connect(self):
            super().connect()
            deadline.watch(self.sock)

    class SecureConnection(http.client.HTTPSConnection):
        def connect(self):
            super().connect()
            deadline.watch(self.sock)

    class Handler(urllib.request.HTTPHandler):
        def http_open(self, req):
            return self.do_open(Connection, req)

    class SecureHandler(urllib.request.HTTPSHandler):
        def https_open(self, req):
            return self.do_open(SecureConnection, req, context=self._context)

    return urllib.request.build_opener(Handler, SecureHandler)


def _fetch(request, timeout, deadline, where):
    """(body, Content-Length text) of the answer to `request`; an HTTP error keeps its first bytes in `.body`."""
    try:
        with _opener(deadline).open(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length", "")
            if length.isdigit() and int(length) > MAX_REPLY_BYTES:
                raise _bad(where, f"{_mib(int(length))}, more than the {_mib(MAX_REPLY_BYTES)} this client reads")
            return response.read(MAX_REPLY_BYTES + 1), length
    except urllib.error.HTTPError as e:
        e.body = e.read(_MAX_ERROR_BYTES)
        raise


def _late(where, timeout):
    return UserError(f"TF Serving at {where} did not answer within {timeout:g} s (the whole request: "
                     "connecting, sending and the complete reply)")


def _http_json(request, where, timeout):
    """The parsed JSON answer to `request`, or a one-line `UserError` (HTTP errors, timeouts, bad bodies).

    `timeout` bounds the whole request (`_Deadline`), not each read.
    """
    deadline = _Deadline(timeout)
    try:
        try:
            raw, length = _fetch(request, timeout, deadline, where)
        finally:
            deadline.finish()
    except urllib.error.HTTPError as e:
        if deadline.expired:
            raise _late(where, timeout) from None
        detail = e.body.decode("utf-8", "replace")
        try:
            detail = json.loads(detail).get("error", detail)
        except (ValueError, AttributeError, RecursionError):
            pass
        raise UserError(f"TF Serving at {where} answered HTTP {e.code}: {_first_line(detail)}") from None
    except UserError:
        raise
    except TimeoutError:
        raise _late(where, timeout) from None
    except urllib.error.URLError as e:
        if deadline.expired or isinstance(e.reason, TimeoutError):
            raise _late(where, timeout) from None
        raise UserError(f"cannot reach TF Serving at {where} ({e.reason})") from None
    except http.client.IncompleteRead as e:
        if deadline.expired:
            raise _late(where, timeout) from None
        raise _bad(where, f"the body was cut short ({len(e.partial)} bytes, {e.expected} more expected)") from None
    except (http.client.HTTPException, OSError) as e:
        if deadline.expired:
            raise _late(where, timeout) from None
        if isinstance(e, (ConnectionError, http.client.HTTPException)):
            raise _bad(where, f"the connection broke off ({type(e).__name__})") from None
        raise UserError(f"cannot reach TF Serving at {where} ({e})") from None
    if deadline.expired:  # the connection was shut mid-body, and the body ends there
        raise _late(where, timeout)
    if len(raw) > MAX_REPLY_BYTES:
        raise _bad(where, f"more than the {_mib(MAX_REPLY_BYTES)} this client reads")
    if length.isdigit() and len(raw) < int(length):
        raise _bad(where, f"the body was cut short ({len(raw)} of {int(length)} bytes)")
    try:
        return json.loads(raw)
    except json.JSONDecodeError as e:
        raise _bad(where, f"not valid JSON ({e.msg} at byte {e.pos} of {len(raw)})") from None
    except RecursionError:
        raise _bad(where, "not valid JSON (nested too deeply)") from None
    except ValueError as e:  # bytes that are not UTF-8
        raise _bad(where, f"not valid JSON ({type(e).__name__})") from None


def rest_signature(url, model_name, signature_name="serving_default", version=None, timeout=60):
    """The model's `Signature` named `signature_name`, from `GET {url}/v1/models/{name}[/versions/{v}]/metadata`."""
    where = _base_url(url, model_name, version) + "/metadata"
    answer = _http_json(urllib.request.Request(where, method="GET"), where, timeout)
    return signature_from_metadata(answer, signature_name, where)


def _json_values(key, value):
    if key == BYTES_KEY:
        return [{"b64": base64.b64encode(b).decode("ascii")} for b in value]
    return value.tolist()


def _json_kind(value):
    return {dict: "object", list: "list", str: "string", bool: "true/false", type(None): "null"}.get(
        type(value), "number")


def _rest_values(answer, signature, where):
    """{output name: values} from a REST predict answer (row or columnar form)."""
    names = sorted(signature.outputs)
    single = names[0] if len(names) == 1 else None
    if not isinstance(answer, dict):
        raise _bad(where, f"a JSON {_json_kind(answer)} where an object with predictions or outputs belongs")
    if "predictions" in answer:
        rows = answer["predictions"]
        if not isinstance(rows, list):
            raise _bad(where, f"predictions is a JSON {_json_kind(rows)}, not a list of results")
        if not rows:
            return {name: [] for name in names}
        if all(isinstance(r, dict) for r in rows):
            keys = set(rows[0])
            if any(set(r) != keys for r in rows):
                raise _bad(where, "the results in predictions name different outputs")
            return {k: [r[k] for r in rows] for k in keys}
        if single is None or any(isinstance(r, dict) for r in rows):
            raise _bad(where, f"predictions holds bare values where results naming {', '.join(names)} belong")
        return {single: rows}
    if "outputs" in answer:
        outs = answer["outputs"]
        if isinstance(outs, dict):
            return outs
        if single is None:
            raise _bad(where, f"outputs is a JSON {_json_kind(outs)} where an object naming {', '.join(names)} "
                              "belongs")
        return {single: outs}
    if "error" in answer:
        raise UserError(f"TF Serving at {where} answered an error: {_first_line(answer['error'])}")
    raise _bad(where, f"an object without predictions or outputs (keys: {', '.join(sorted(map(str, answer)))})")


def rest_predict(url, model_name, images=None, encoded=None, signature_name=None, version=None,
                 columnar=False, timeout=60, signature=None, classes=None):
    """POSTs to TF Serving's REST API; returns {output name: array}, checked by `read_reply`.

    Args:
        url: the server's REST address, e.g. "http://localhost:8501".
        model_name: the model's name in `models.config`.
        images: uint8 (N, H, W, 3) images, or
        encoded: a list of encoded image files (bytes).
        signature_name: default `serving_default` for images, `serving_bytes` for bytes.
        version: a model version (default: the server's latest).
        columnar: send `{"inputs": ...}` instead of `{"instances": ...}`.
        signature: the model's `Signature` from `rest_signature` (default: asked for here first).
        classes: the model's number of classes, to check a mask with (see `read_reply`).
    """
    signature_name, key, value = _request(images, encoded, signature_name or (signature and signature.name))
    if signature is None:
        signature = rest_signature(url, model_name, signature_name, version, timeout)
    target = rest_url(url, model_name, version)
    sent = Sent(len(value), value.shape[1:3] if key == IMAGES_KEY else None)
    check_sizes(signature, sent.count, sent.size or (encoded_size(value) if key == BYTES_KEY else None), "rest",
                target, pixels_sent=key == IMAGES_KEY)
    values = _json_values(key, value)
    body = {"signature_name": signature_name}
    body.update({"inputs": {key: values}} if columnar else {"instances": [{key: v} for v in values]})
    data = json.dumps(body).encode("utf-8")
    del body, values
    request = urllib.request.Request(target, data=data, method="POST", headers={"Content-Type": "application/json"})
    answer = _http_json(request, target, timeout)
    return read_reply(_rest_values(answer, signature, target), signature, sent, target, classes=classes)


# === gRPC ===

def _grpc_call(method, request, target, timeout):
    import grpc

    try:
        return method(request, timeout=timeout)
    except grpc.RpcError as e:
        code = e.code()
        if code == grpc.StatusCode.UNAVAILABLE:
            raise UserError(f"cannot reach TF Serving at {target} over gRPC ({_first_line(e.details())})") from None
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            raise _late(target, timeout) from None
        raise UserError(f"TF Serving at {target} answered {code.name}: {_first_line(e.details())}") from None


def _grpc_channel(target):
    import grpc

    options = [("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
               ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)]
    return grpc.insecure_channel(target, options=options)


def _model_spec(spec, model_name, version, signature_name=None):
    spec.name = model_name
    if signature_name:
        spec.signature_name = signature_name
    if version:
        spec.version.value = int(version)


def grpc_signature(target, model_name, signature_name="serving_default", version=None, timeout=60):
    """The model's `Signature` named `signature_name`, from `PredictionService/GetModelMetadata`."""
    from google.protobuf import json_format
    from tensorflow_serving.apis import get_model_metadata_pb2, prediction_service_pb2_grpc

    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    _model_spec(request.model_spec, model_name, version)
    with _grpc_channel(target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        response = _grpc_call(stub.GetModelMetadata, request, target, timeout)
    defs = get_model_metadata_pb2.SignatureDefMap()
    if "signature_def" not in response.metadata or not response.metadata["signature_def"].Unpack(defs):
        raise _bad(target, "the model's metadata has no signature_def")
    metadata = {"metadata": {"signature_def": json_format.MessageToDict(defs, preserving_proto_field_name=True)}}
    return signature_from_metadata(metadata, signature_name, target)


def _set_tensor(proto, value):
    """Fills the TensorProto `proto` with `value`: uint8 pixels as one bytes field (no other copy), or strings."""
    import tensorflow as tf

    if value.dtype == object:
        proto.CopyFrom(tf.make_tensor_proto(value))
        return
    proto.dtype = tf.as_dtype(value.dtype).as_datatype_enum
    for d in value.shape:
        proto.tensor_shape.dim.add(size=d)
    proto.tensor_content = np.ascontiguousarray(value).tobytes()


def _grpc_values(response, target):
    """{output name: array} of a PredictResponse; each tensor is dropped from the response once read."""
    import tensorflow as tf

    values = {}
    for key in list(response.outputs):
        try:
            values[key] = tf.make_ndarray(response.outputs[key])
        except (ValueError, TypeError, KeyError) as e:
            raise _bad(target, f"{key} is not a readable tensor ({_first_line(e)})") from None
        del response.outputs[key]
    return values


def grpc_predict(target, model_name, images=None, encoded=None, signature_name=None, version=None,
                 timeout=60, signature=None, outputs=None, classes=None):
    """Calls `PredictionService/Predict` over gRPC; returns {output name: array}, checked by `read_reply`.

    Args:
        target: the server's gRPC address, "host:port" (e.g. "localhost:8500").
        signature: the model's `Signature` from `grpc_signature` (default: asked for here first).
        outputs: the output names to ask for (default: all; the server computes them all, but sends
            only these).
        Other arguments as `rest_predict`.
    """
    signature_name, key, value = _request(images, encoded, signature_name or (signature and signature.name))
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    if signature is None:
        signature = grpc_signature(target, model_name, signature_name, version, timeout)
    unknown = [n for n in outputs or () if n not in signature.outputs]
    if unknown:
        raise UserError(f"model {model_name} at {target} has no output(s) {', '.join(unknown)} (it has: "
                        f"{', '.join(sorted(signature.outputs))})")
    sent = Sent(len(value), value.shape[1:3] if key == IMAGES_KEY else None)
    check_sizes(signature, sent.count, sent.size or (encoded_size(value) if key == BYTES_KEY else None), "grpc",
                target, outputs, pixels_sent=key == IMAGES_KEY)
    request = predict_pb2.PredictRequest()
    _model_spec(request.model_spec, model_name, version, signature_name)
    request.output_filter.extend(outputs or ())
    _set_tensor(request.inputs[key], np.array(value, dtype=object) if key == BYTES_KEY else value)
    with _grpc_channel(target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        response = _grpc_call(stub.Predict, request, target, timeout)
    del request
    return read_reply(_grpc_values(response, target), signature, sent, target, outputs, typed=True,
                      classes=classes)
