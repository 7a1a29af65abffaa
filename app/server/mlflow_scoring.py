"""MLflow's scoring server protocol (also SageMaker's container contract): ``POST /invocations``,
``GET /ping``, ``GET /version``.

A JSON body holds exactly one of ``dataframe_split`` (``{"columns": [...], "data": [[...]]}``),
``dataframe_records`` (``[{column: value}, ...]``), ``instances`` or ``inputs`` (lists of
rows); a ``text/csv`` body is a header row naming the columns, then one row per line. Columns
are the model card's feature names, in any order. The answer is ``{"predictions": [label,
...]}``; errors are MLflow's ``{"error_code": ..., "message": ...}``, with the project's
``error`` and ``status`` beside them.
"""

from __future__ import annotations

import csv
import io
import math

import numpy as np

from app.errors import ApiError, InvalidInput, ModelNotReady, UnsupportedMediaType
from app.server.calls import Reply
from app.server.codec import decode_object, encode
from app.server.validation import ACCEPTED_TYPES, _kind, parse_table

FIELDS = ("dataframe_split", "dataframe_records", "instances", "inputs")
EXAMPLE = '{"dataframe_split": {"columns": [...], "data": [[5.1, 3.5, 1.4, 0.2]]}} (or dataframe_records, ' \
          'instances, inputs)'
ERROR_CODES = {400: "BAD_REQUEST", 401: "UNAUTHENTICATED", 404: "RESOURCE_DOES_NOT_EXIST", 413: "BAD_REQUEST",
               415: "BAD_REQUEST", 500: "INTERNAL_ERROR", 503: "TEMPORARILY_UNAVAILABLE"}


def error(exc: ApiError) -> Reply:
    """MLflow's error shape, with the project's keys beside it."""
    body = {"error_code": ERROR_CODES.get(exc.status, "INTERNAL_ERROR"), "message": exc.message,
            "error": exc.message, "status": exc.status}
    return Reply(exc.status, encode(body), headers=tuple(exc.headers.items()))


def ping(srv, call) -> Reply:
    """``GET /ping``: 200 once the model is loaded and warmed."""
    if not srv.is_ready():
        raise ModelNotReady("not ready: the model is loading or the server is draining")
    return Reply(200, encode({"status": "ready"}))


def version(srv, call) -> Reply:
    """``GET /version``: the model version this server serves, as text."""
    return Reply(200, srv.version.encode(), "text/plain; charset=utf-8")


def invocations(srv, call) -> Reply:
    """``POST /invocations``."""
    mimetype = call.mimetype
    if mimetype == "text/csv":
        rows = csv_rows(srv, call.body)
    elif mimetype in ACCEPTED_TYPES or mimetype.endswith("+json"):
        rows = json_rows(srv, call.body)
    else:
        raise UnsupportedMediaType(f"unsupported Content-Type {mimetype[:64]!r}: send application/json or text/csv")
    labels, _ = srv.answer(rows, where=lambda i: f"row {i}")
    call.exchange.predictions = labels
    return Reply(200, encode({"predictions": labels}))


def json_rows(srv, raw: bytes) -> np.ndarray:
    payload = decode_object(raw, EXAMPLE)
    present = [field for field in FIELDS if field in payload]
    unknown = sorted(set(payload) - set(FIELDS) - {"params"})
    if len(present) != 1 or unknown:
        raise InvalidInput(f"the body must hold exactly one of {', '.join(FIELDS)}; got "
                           f"{', '.join(sorted(payload)) or 'none'}"[:300])
    if not isinstance(payload.get("params", {}), dict):
        raise InvalidInput('"params" must be an object')
    field = present[0]
    value = payload[field]
    n, max_rows, limit = srv.n_features, srv.settings["MAX_BATCH_ROWS"], srv.input_limit
    if field == "dataframe_split":
        if not isinstance(value, dict) or "data" not in value:
            raise InvalidInput('"dataframe_split" must be an object with "data" (a list of rows) and "columns"')
        rows = parse_table(value["data"], '"dataframe_split"."data"', n, max_rows, limit, raw)
        if "columns" not in value:
            return rows
        return rows[:, feature_order(srv, value["columns"], '"dataframe_split"."columns"')]
    if field == "dataframe_records":
        return parse_table(records_as_rows(srv, value), '"dataframe_records"', n, max_rows, limit, raw)
    return parse_table(value, f'"{field}"', n, max_rows, limit, raw)


def feature_order(srv, columns, where: str) -> list[int]:
    """Where each of the model's features is among ``columns``, which must name each exactly once."""
    features = srv.card["feature_names"]
    if not isinstance(columns, list) or sorted(map(str, columns)) != sorted(features) \
            or not all(isinstance(c, str) for c in columns):
        raise InvalidInput(f"{where} must name each of the model's columns once: {features}")
    return [columns.index(feature) for feature in features]


def records_as_rows(srv, records) -> list:
    """``[{column: value}, ...]`` as rows in the model's feature order."""
    features = srv.card["feature_names"]
    if not isinstance(records, list):
        raise InvalidInput(f'"dataframe_records" must be a list of records, got {_kind(records)}')
    rows = []
    for i, record in enumerate(records[:srv.settings["MAX_BATCH_ROWS"] + 1]):
        if not isinstance(record, dict) or sorted(record) != sorted(features):
            raise InvalidInput(f'"dataframe_records"[{i}] must be an object with exactly the columns {features}')
        rows.append([record[feature] for feature in features])
    return rows


def csv_rows(srv, raw: bytes) -> np.ndarray:
    """A CSV body: a header row naming the columns, then the rows."""
    try:
        lines = list(csv.reader(io.StringIO(raw.decode("utf-8"))))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InvalidInput(f"the CSV body could not be read ({exc})"[:300]) from exc
    lines = [line for line in lines if line]
    if len(lines) < 2:
        raise InvalidInput("the CSV body must be a header row naming the columns, then at least one row")
    order = feature_order(srv, [c.strip() for c in lines[0]], "the CSV header")
    max_rows, limit = srv.settings["MAX_BATCH_ROWS"], srv.input_limit
    if len(lines) - 1 > max_rows:
        raise InvalidInput(f"the CSV body has {len(lines) - 1} rows; the limit is {max_rows}")
    rows = []
    for i, line in enumerate(lines[1:]):
        if len(line) != len(order):
            raise InvalidInput(f"CSV row {i} has {len(line)} values; expected {len(order)}")
        row = []
        for column in order:
            try:
                value = float(line[column])
            except ValueError:
                raise InvalidInput(f"CSV row {i} column {lines[0][column].strip()!r} is {line[column][:32]!r}; "
                                   "expected a number") from None
            if not math.isfinite(value) or abs(value) > limit.max_abs:
                raise InvalidInput(f"CSV row {i} column {lines[0][column].strip()!r} is {line[column][:32]!r}: "
                                   f"expected a finite number; {limit.describe()}")
            row.append(value)
        rows.append(row)
    return np.array(rows, dtype=np.float64)
