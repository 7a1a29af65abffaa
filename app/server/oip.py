"""The Open Inference Protocol v2 (KServe, Triton, MLServer): REST, with the binary tensor extension.

``POST /v2/models/{name}[/versions/{version}]/infer`` takes one input, a ``[N, features]``
tensor of numbers, as JSON ``data`` or, with ``Inference-Header-Content-Length``, as raw
little-endian bytes after the JSON header (``parameters.binary_data_size``). It answers two
outputs: ``label`` (BYTES, one class name per row) and ``probabilities`` (FP32, ``[N,
classes]``), each as JSON data or as binary data when the request asks for it (an output's
``parameters.binary_data``, or the request's ``parameters.binary_data_output``, which
``tritonclient`` sends by default). Errors are ``{"error": ...}`` (with the project's
``status`` beside it). The metadata, health and readiness routes are here too.
"""

from __future__ import annotations

import struct
from importlib import metadata

import numpy as np

from app.errors import InvalidInput, ModelNotReady, NotFound
from app.server.calls import JSON, Reply
from app.server.codec import decode_object, encode
from app.server.validation import as_matrix, check_row

INFER_EXAMPLE = ('{"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", '
                 '"data": [5.1, 3.5, 1.4, 0.2]}]}')
# Datatypes an input may have, and their little-endian layout in the binary extension.
NUMERIC = {"FP16": "<f2", "FP32": "<f4", "FP64": "<f8", "INT8": "<i1", "INT16": "<i2", "INT32": "<i4",
           "INT64": "<i8", "UINT8": "<u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8"}
OUTPUTS = ("label", "probabilities")
SERVER_NAME = "bluegreen"
EXTENSIONS = ["binary_tensor_data"]
try:
    SERVER_VERSION = metadata.version("bluegreen-model-server")
except metadata.PackageNotFoundError:  # run from a source tree that was not installed
    SERVER_VERSION = "unknown"


def check_model(srv, name: str, version: str | None) -> None:
    """Refuse (404) a model name or a version this server does not serve."""
    if name != srv.model_name:
        raise NotFound(f"unknown model {name[:64]!r}: this server serves model {srv.model_name!r}")
    if version is not None and version != srv.version:
        raise NotFound(f"model {srv.model_name} has no version {version[:64]!r} here: this server serves "
                       f"{srv.version}")


def input_datatype(srv) -> str:
    return "FP32" if np.dtype(srv.input_limit.dtype) == np.float32 else "FP64"


def server_metadata(srv, call) -> Reply:
    """``GET /v2``."""
    return Reply(200, encode({"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": EXTENSIONS}))


def live(srv, call) -> Reply:
    """``GET /v2/health/live``: 200 while the process runs."""
    return Reply(200, encode({"live": True}))


def ready(srv, call) -> Reply:
    """``GET /v2/health/ready``: 200 once the model is loaded and warmed, 503 while loading or draining."""
    if not srv.is_ready():
        raise ModelNotReady("not ready: the model is loading or the server is draining")
    return Reply(200, encode({"ready": True}))


def model_metadata(srv, call) -> Reply:
    """``GET /v2/models/{name}[/versions/{version}]``: the input and the outputs, typed and shaped."""
    check_model(srv, call.params["name"], call.params.get("version"))
    return Reply(200, encode({
        "name": srv.model_name,
        "versions": [srv.version],
        "platform": "onnxruntime_onnx" if srv.predictor.name == "onnx" else "sklearn",
        "inputs": [{"name": "input", "datatype": input_datatype(srv), "shape": [-1, srv.n_features]}],
        "outputs": [{"name": "label", "datatype": "BYTES", "shape": [-1]},
                    {"name": "probabilities", "datatype": "FP32", "shape": [-1, len(srv.class_names)]}],
    }))


def model_ready(srv, call) -> Reply:
    """``GET /v2/models/{name}[/versions/{version}]/ready``."""
    check_model(srv, call.params["name"], call.params.get("version"))
    if not srv.is_ready():
        raise ModelNotReady(f"model {srv.model_name} {srv.version} is not ready: loading or draining")
    return Reply(200, encode({"name": srv.model_name, "ready": True}))


def split_body(call) -> tuple[bytes, bytes]:
    """(the JSON header, the binary data after it)."""
    encoding = (call.header("HTTP_CONTENT_ENCODING") or "identity").strip().lower()
    if encoding != "identity":
        raise InvalidInput(f"Content-Encoding {encoding[:32]!r} is not supported: send the request uncompressed")
    body = call.body
    length = call.header("HTTP_INFERENCE_HEADER_CONTENT_LENGTH")
    if length is None:
        return body, b""
    if not length.strip().isdigit() or int(length) > len(body):
        raise InvalidInput(f"Inference-Header-Content-Length must be the JSON header's length in bytes, at most "
                           f"the body's {len(body)}; got {length[:32]!r}")
    return body[:int(length)], body[int(length):]


def _object(value, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput(f"{where} must be an object")
    return value


def _flag(parameters: dict, key: str, where: str) -> bool:
    value = parameters.get(key, False)
    if not isinstance(value, bool):
        raise InvalidInput(f'{where}"{key}" must be true or false')
    return value


def read_input(srv, request: dict, head: bytes, binary: bytes) -> tuple[str, np.ndarray]:
    """(the input's name, its rows as float64) from the request's one input."""
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise InvalidInput(f'"inputs" must be a list of one input tensor, like {INFER_EXAMPLE}')
    tensor = inputs[0]
    name, shape, datatype = tensor.get("name"), tensor.get("shape"), tensor.get("datatype")
    if not isinstance(name, str) or not name:
        raise InvalidInput('"inputs"[0]["name"] must be a non-empty string')
    where = f'input "{name[:64]}"'
    n, max_rows = srv.n_features, srv.settings["MAX_BATCH_ROWS"]
    if (not isinstance(shape, list) or len(shape) != 2 or not all(type(d) is int for d in shape)
            or shape[1] != n or not 1 <= shape[0] <= max_rows):
        raise InvalidInput(f"{where} must have shape [N, {n}] with N from 1 to {max_rows}; got {shape!r}"[:300])
    if not isinstance(datatype, str) or datatype not in NUMERIC:
        raise InvalidInput(f"{where} has datatype {str(datatype)[:16]!r}; expected one of {', '.join(NUMERIC)}")
    parameters = _object(tensor.get("parameters"), f'{where} "parameters"')
    size = parameters.get("binary_data_size")
    if size is not None:
        return name, binary_rows(srv, where, shape, datatype, size, binary)
    if binary:
        raise InvalidInput(f"the body has {len(binary)} bytes after the JSON header, but {where} names no "
                           '"binary_data_size"')
    return name, json_rows(srv, where, shape, tensor.get("data"), head)


def json_rows(srv, where: str, shape: list[int], data, head: bytes) -> np.ndarray:
    """An input's JSON ``data`` (flat and row-major, or a list of rows) as rows."""
    if not isinstance(data, list):
        raise InvalidInput(f'{where} needs "data" (a list of numbers) or "parameters": {{"binary_data_size": N}}')
    values = [v for row in data for v in row] if data and all(isinstance(row, list) for row in data) else data
    rows, n = shape
    if len(values) != rows * n:
        raise InvalidInput(f'{where} has {len(values)} values in "data"; its shape {shape} needs {rows * n}')
    flat = as_matrix([values], len(values), srv.input_limit, head)
    if flat is None:
        flat = np.array([check_row(values, f"{where} data", len(values), srv.input_limit)], dtype=np.float64)
    return flat.reshape(rows, n)


def binary_rows(srv, where: str, shape: list[int], datatype: str, size, binary: bytes) -> np.ndarray:
    """An input's raw bytes (the binary tensor extension) as rows."""
    dtype = np.dtype(NUMERIC[datatype])
    expected = shape[0] * shape[1] * dtype.itemsize
    if type(size) is not int or size != expected or len(binary) != expected:
        raise InvalidInput(f'{where}: "binary_data_size" must be {expected} ({shape[0]}x{shape[1]} {datatype} '
                           f"values) and the body must hold exactly that after the JSON header; got "
                           f"binary_data_size {str(size)[:32]} and {len(binary)} bytes")
    rows = np.frombuffer(binary, dtype=dtype).astype(np.float64).reshape(shape[0], shape[1])
    finite = np.isfinite(rows)
    if not finite.all():
        i = int(np.argmin(finite.reshape(-1)))
        raise InvalidInput(f"{where} value {i} is {rows.reshape(-1)[i]}; expected a finite number")
    limit = srv.input_limit
    if np.abs(rows).max() > limit.max_abs:
        i = int(np.argmax(np.abs(rows).reshape(-1) > limit.max_abs))
        raise InvalidInput(f"{where} value {i} is out of range: {limit.describe()}")
    return rows


def requested_outputs(request: dict) -> list[tuple[str, bool]]:
    """(output name, as binary data?) for each output to answer, in order."""
    parameters = _object(request.get("parameters"), '"parameters"')
    binary_default = _flag(parameters, "binary_data_output", '"parameters" ')
    outputs = request.get("outputs")
    if outputs is None:
        return [(name, binary_default) for name in OUTPUTS]
    if not isinstance(outputs, list) or not outputs:
        raise InvalidInput(f'"outputs" must be a non-empty list of {{"name": ...}} naming {" or ".join(OUTPUTS)}')
    wanted = []
    for i, output in enumerate(outputs):
        name = output.get("name") if isinstance(output, dict) else None
        if name not in OUTPUTS:
            raise InvalidInput(f'"outputs"[{i}] must name an output of this model: {" or ".join(OUTPUTS)}')
        options = _object(output.get("parameters"), f'"outputs"[{i}] "parameters"')
        binary = _flag(options, "binary_data", f'"outputs"[{i}] "parameters" ') if "binary_data" in options \
            else binary_default
        wanted.append((name, binary))
    return wanted


def encode_bytes(labels: list[str]) -> bytes:
    """A BYTES tensor in the binary extension: each element's length (4 bytes, little-endian), then it."""
    parts = []
    for label in labels:
        data = label.encode()
        parts.append(struct.pack("<I", len(data)))
        parts.append(data)
    return b"".join(parts)


def infer(srv, call) -> Reply:
    """``POST /v2/models/{name}[/versions/{version}]/infer``."""
    check_model(srv, call.params["name"], call.params.get("version"))
    head, binary = split_body(call)
    request = decode_object(head, INFER_EXAMPLE)
    if request.get("id") is not None and not isinstance(request["id"], str):
        raise InvalidInput('"id" must be a string')
    outputs = requested_outputs(request)
    name, rows = read_input(srv, request, head, binary)
    labels, probabilities = srv.answer(rows, where=lambda i: f'input "{name[:64]}" row {i}')
    call.exchange.predictions = labels
    answer = {"model_name": srv.model_name, "model_version": srv.version}
    if request.get("id") is not None:
        answer["id"] = request["id"]
    tensors, blobs = [], []
    for output, as_binary in outputs:
        if output == "label":
            tensor = {"name": "label", "datatype": "BYTES", "shape": [len(labels)]}
            data = labels
            blob = encode_bytes(labels) if as_binary else b""
        else:
            tensor = {"name": "probabilities", "datatype": "FP32", "shape": list(probabilities.shape)}
            data = probabilities.astype(np.float64).round(6).reshape(-1).tolist()
            blob = probabilities.astype("<f4").tobytes() if as_binary else b""
        if as_binary:
            tensor["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            tensor["data"] = data
        tensors.append(tensor)
    answer["outputs"] = tensors
    header = encode(answer)
    if not blobs:
        return Reply(200, header, JSON)
    return Reply(200, header + b"".join(blobs), "application/octet-stream",
                 (("Inference-Header-Content-Length", str(len(header))),))
