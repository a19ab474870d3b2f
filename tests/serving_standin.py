"""A stand-in for TensorFlow Serving, for testing the clients (the real server cannot be installed here).

It reads a `models.config` with the official `ModelServerConfig` proto, loads
the latest SavedModel version of every model with `tf.saved_model.load`, and
answers the two protocols the way `tensorflow_model_server` does:

- gRPC `tensorflow.serving.PredictionService/Predict` and `/GetModelMetadata`
  (a servicer built from `tensorflow_serving.apis`), with NOT_FOUND /
  INVALID_ARGUMENT errors;
- REST `POST /v1/models/NAME[/versions/N]:predict` with the row
  (`instances`) or columnar (`inputs`) JSON formats, binary values as
  `{"b64": ...}`, and `{"error": ...}` bodies on failure; `GET
  /v1/models/NAME[/versions/N]/metadata` with the signatures in TF Serving's
  JSON form (proto field names, 64-bit integers as strings).

Only what the clients use is implemented; everything it answers comes from
the real exported SavedModel, unless a test sets `StandInServer.tamper` to
make it a hostile server: {"outputs": fn(outputs) -> outputs} (both
protocols), {"body": fn(bytes) -> (bytes, Content-Length or None)} (REST
predict replies), {"response": fn(PredictResponse) -> PredictResponse} (gRPC),
{"metadata": fn(dict) -> JSON value} (REST metadata).
"""

import base64
import concurrent.futures
import http.server
import json
import os
import re
import sys
import threading

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import json_format, text_format
from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2, prediction_service_pb2_grpc
from tensorflow_serving.config import model_server_config_pb2


class ServingError(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code  # a grpc.StatusCode


class Models:
    """The models of a `models.config`, base paths mapped from `mount` to a local folder."""

    def __init__(self, config_path, mount, local_root):
        config = model_server_config_pb2.ModelServerConfig()
        with open(config_path) as f:
            text_format.Parse(f.read(), config)
        self.models = {}
        for entry in config.model_config_list.config:
            assert entry.model_platform == "tensorflow", entry.model_platform
            base = entry.base_path
            assert base.startswith(mount + "/"), base
            folder = os.path.join(local_root, base[len(mount) + 1:])
            versions = sorted(int(n) for n in os.listdir(folder) if n.isdigit())
            self.models[entry.name] = {v: os.path.join(folder, str(v)) for v in versions}
        self._loaded = {}
        self._lock = threading.Lock()

    def signature(self, name, version, signature_name):
        if name not in self.models or not self.models[name]:
            raise ServingError(grpc.StatusCode.NOT_FOUND, f"Servable not found for request: Latest({name})")
        version = version or max(self.models[name])
        if version not in self.models[name]:
            raise ServingError(grpc.StatusCode.NOT_FOUND,
                               f"Servable not found for request: Specific({name}, {version})")
        with self._lock:
            key = (name, version)
            if key not in self._loaded:
                self._loaded[key] = tf.saved_model.load(self.models[name][version])
        loaded = self._loaded[key]
        signature_name = signature_name or "serving_default"
        if signature_name not in loaded.signatures:
            raise ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                               f'Serving signature key "{signature_name}" not found.')
        return loaded.signatures[signature_name], version, signature_name

    def metadata(self, name, version):
        """The `SignatureDefMap` of every signature of the model, as TF Serving's GetModelMetadata gives it."""
        self.signature(name, version, None)  # loads it, or NOT_FOUND
        version = version or max(self.models[name])
        defs = get_model_metadata_pb2.SignatureDefMap()
        for key, fn in self._loaded[(name, version)].signatures.items():
            sig = defs.signature_def[key]
            sig.method_name = "tensorflow/serving/predict"
            specs = list(fn.structured_input_signature[1].items()) + list(fn.structured_outputs.items())
            n_inputs = len(fn.structured_input_signature[1])
            for i, (k, spec) in enumerate(specs):
                info = (sig.inputs if i < n_inputs else sig.outputs)[k]
                info.name = f"{key}_{k}:0"
                info.dtype = spec.dtype.as_datatype_enum
                info.tensor_shape.CopyFrom(spec.shape.as_proto())
        return defs, version

    def predict(self, name, version, signature_name, inputs):
        """inputs: {key: np.ndarray} -> ({key: np.ndarray}, version, signature_name)."""
        fn, version, signature_name = self.signature(name, version, signature_name)
        specs = fn.structured_input_signature[1]
        if set(inputs) != set(specs):
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"input keys {sorted(inputs)} do not match the signature's {sorted(specs)}")
        args = {}
        for key, spec in specs.items():
            value = inputs[key]
            if spec.dtype == tf.string:
                value = np.asarray(value, dtype=object)
            elif np.asarray(value).dtype != spec.dtype.as_numpy_dtype:
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"Expects arg[0] to be {spec.dtype.name} but "
                                   f"{tf.as_dtype(np.asarray(value).dtype).name} is provided")
            if not spec.shape.is_compatible_with(np.shape(value)):
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"input {key} has shape {np.shape(value)}, the signature wants {spec.shape}")
            args[key] = tf.constant(value, dtype=spec.dtype)
        try:
            outputs = fn(**args)
        except (tf.errors.InvalidArgumentError, ValueError) as e:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, str(e).strip().splitlines()[0]) from None
        return {k: v.numpy() for k, v in outputs.items()}, version, signature_name


class _Servicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, models, tamper):
        self.models = models
        self.tamper = tamper

    def GetModelMetadata(self, request, context):
        spec = request.model_spec
        try:
            defs, version = self.models.metadata(spec.name, spec.version.value if spec.HasField("version") else None)
        except ServingError as e:
            context.abort(e.code, str(e))
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = spec.name
        response.model_spec.version.value = version
        response.metadata["signature_def"].Pack(defs)
        return response

    def Predict(self, request, context):
        spec = request.model_spec
        inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
        try:
            outputs, version, signature_name = self.models.predict(
                spec.name, spec.version.value if spec.HasField("version") else None,
                spec.signature_name, inputs)
        except ServingError as e:
            context.abort(e.code, str(e))
        if "outputs" in self.tamper:
            outputs = self.tamper["outputs"](outputs)
        response = predict_pb2.PredictResponse()
        response.model_spec.name = spec.name
        response.model_spec.version.value = version
        response.model_spec.signature_name = signature_name
        for key, value in outputs.items():
            if not request.output_filter or key in request.output_filter:
                response.outputs[key].CopyFrom(tf.make_tensor_proto(value))
        if "response" in self.tamper:
            response = self.tamper["response"](response)
        return response


_PATH = re.compile(r"^/v1/models/([^/:]+)(?:/versions/(\d+))?:predict$")
_METADATA_PATH = re.compile(r"^/v1/models/([^/:]+)(?:/versions/(\d+))?/metadata$")
_HTTP_STATUS = {grpc.StatusCode.NOT_FOUND: 404, grpc.StatusCode.INVALID_ARGUMENT: 400,
                grpc.StatusCode.FAILED_PRECONDITION: 400}


def _from_json(value):
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"])
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


def _rest_inputs(body, specs):
    """{key: np.ndarray} from a row or columnar TF Serving request body."""
    keys = sorted(specs)
    if "instances" in body:
        rows = body["instances"]
        if not isinstance(rows, list) or not rows:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "instances must be a non-empty list")
        if all(isinstance(r, dict) and "b64" not in r for r in rows):
            columns = {k: [_from_json(r.get(k)) for r in rows] for k in {k for r in rows for k in r}}
        elif len(keys) == 1:
            columns = {keys[0]: [_from_json(r) for r in rows]}
        else:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "instances must be objects keyed by input name")
    elif "inputs" in body:
        inputs = body["inputs"]
        columns = ({k: _from_json(v) for k, v in inputs.items()}
                   if isinstance(inputs, dict) and "b64" not in inputs else {keys[0]: _from_json(inputs)})
    else:
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "Missing 'inputs' or 'instances' key")
    out = {}
    for key, value in columns.items():
        spec = specs.get(key)
        if spec is not None and spec.dtype == tf.string:
            out[key] = np.asarray(value, dtype=object)
        else:
            # JSON numbers become the signature's dtype, as the real server converts them.
            dtype = spec.dtype.as_numpy_dtype if spec is not None else None
            try:
                out[key] = np.asarray(value, dtype=dtype)
            except (ValueError, TypeError) as e:
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, f"input {key}: {e}") from None
    return out


def _handler(models, tamper):
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _reply(self, status, payload, body_tamper=None):
            data = json.dumps(payload).encode("utf-8")
            length = None
            if body_tamper is not None:
                data, length = body_tamper(data)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data) if length is None else length))
            self.end_headers()
            try:
                self.wfile.write(data)
            except ConnectionError:  # a client that stopped reading (a reply it refused by its header)
                self.close_connection = True
            if length is not None and length != len(data):
                self.close_connection = True

        def do_GET(self):
            match = _METADATA_PATH.match(self.path)
            if not match:
                return self._reply(404, {"error": f"Malformed request: GET {self.path}"})
            name, version = match.group(1), int(match.group(2)) if match.group(2) else None
            try:
                defs, version = models.metadata(name, version)
            except ServingError as e:
                return self._reply(_HTTP_STATUS.get(e.code, 500), {"error": str(e)})
            answer = {"model_spec": {"name": name, "signature_name": "", "version": str(version)},
                      "metadata": {"signature_def": json_format.MessageToDict(defs, preserving_proto_field_name=True)}}
            if "metadata" in tamper:
                answer = tamper["metadata"](answer)
            return self._reply(200, answer)

        def do_POST(self):
            match = _PATH.match(self.path)
            if not match:
                return self._reply(404, {"error": f"Malformed request: POST {self.path}"})
            name, version = match.group(1), int(match.group(2)) if match.group(2) else None
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                fn, _, signature_name = models.signature(name, version, body.get("signature_name"))
                inputs = _rest_inputs(body, fn.structured_input_signature[1])
                outputs, _, _ = models.predict(name, version, signature_name, inputs)
                if "outputs" in tamper:
                    outputs = tamper["outputs"](outputs)
            except json.JSONDecodeError as e:
                return self._reply(400, {"error": f"JSON Parse error: {e.msg}"})
            except ServingError as e:
                return self._reply(_HTTP_STATUS.get(e.code, 500), {"error": str(e)})
            if "instances" in body:
                n = len(next(iter(outputs.values())))
                rows = [{k: v[i].tolist() for k, v in outputs.items()} for i in range(n)]
                if len(outputs) == 1:
                    rows = [next(iter(r.values())) for r in rows]
                return self._reply(200, {"predictions": rows}, tamper.get("body"))
            columns = {k: v.tolist() for k, v in outputs.items()}
            return self._reply(200, {"outputs": columns if len(columns) > 1 else next(iter(columns.values()))},
                               tamper.get("body"))

    return Handler


class _HTTPServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        # A client that hangs up early is no error of the server's (and its traceback would reach a test's stderr).
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class StandInServer:
    """Serves `models.config` on 127.0.0.1: `.rest_url` and `.grpc_target`; use as a context manager."""

    def __init__(self, config_path, local_root, mount="/models"):
        self.models = Models(config_path, mount, local_root)
        self.tamper = {}  # see the module docstring; tests fill and empty it
        # TF Serving takes messages of any size (its gRPC server's limit is INT_MAX); the clients set theirs.
        self.grpc_server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=4),
                                       options=[("grpc.max_receive_message_length", -1),
                                                ("grpc.max_send_message_length", -1)])
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(_Servicer(self.models, self.tamper),
                                                                            self.grpc_server)
        port = self.grpc_server.add_insecure_port("127.0.0.1:0")
        self.grpc_target = f"127.0.0.1:{port}"
        self.http_server = _HTTPServer(("127.0.0.1", 0), _handler(self.models, self.tamper))
        self.rest_url = f"http://127.0.0.1:{self.http_server.server_address[1]}"

    def __enter__(self):
        self.grpc_server.start()
        threading.Thread(target=self.http_server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.http_server.shutdown()
        self.http_server.server_close()
        self.grpc_server.stop(None)
