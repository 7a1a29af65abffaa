"""Request parsing and validation.

Shapes and types are checked here, before the model sees anything, so bad client input is
always a 400 that says what was wrong and what is expected, never a 500.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

from app.errors import InvalidInput, UnsupportedMediaType


@dataclass(frozen=True)
class InputLimit:
    """The largest magnitude a model's input type represents (float32 for the ONNX path)."""

    dtype: str
    max_abs: float

    @classmethod
    def of(cls, dtype) -> InputLimit:
        dtype = np.dtype(dtype)
        return cls(dtype.name, float(np.finfo(dtype).max))

    def describe(self) -> str:
        return f"this model computes in {self.dtype}, so each value must lie within ±{self.max_abs:.8g}"


# curl -d sends application/x-www-form-urlencoded; existing scripts rely on it, so the
# raw body is read as JSON for that type too (and when no type is sent at all).
ACCEPTED_TYPES = ("", "application/json", "application/x-www-form-urlencoded")


def check_content_type(mimetype: str) -> None:
    """Refuse bodies that are announced as something other than JSON."""
    if mimetype in ACCEPTED_TYPES or mimetype.endswith("+json"):
        return
    raise UnsupportedMediaType(
        f"unsupported Content-Type {mimetype!r}: send the body as application/json"
    )


def parse_json_object(raw: bytes, example: str) -> dict:
    """Decode ``raw`` as a JSON object or raise InvalidInput quoting ``example``."""
    if not raw.strip():
        raise InvalidInput(f"empty request body; expected a JSON object like {example}")
    try:
        payload = json.loads(raw)
    except RecursionError as exc:
        # Python's parser recurses once per nesting level; the API nests three levels deep.
        raise InvalidInput(f"request body nests JSON too deeply; expected a JSON object like {example}") from exc
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"request body is not UTF-8 text; expected a JSON object like {example}") from exc
    except ValueError as exc:
        raise InvalidInput(f"request body is not valid JSON ({exc}); expected {example}") from exc
    if not isinstance(payload, dict):
        raise InvalidInput(f"request body must be a JSON object like {example}, got {_kind(payload)}")
    return payload


def _kind(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, (int, float)):
        return "a number"
    return type(value).__name__


def check_row(row, where: str, n_features: int, limit: InputLimit) -> list[float]:
    """Return ``row`` as numbers, or raise InvalidInput naming the bad element."""
    if not isinstance(row, list):
        raise InvalidInput(f"{where} must be a list of {n_features} numbers, got {_kind(row)}")
    if len(row) != n_features:
        raise InvalidInput(f"{where} has {len(row)} values; expected {n_features} numbers")
    for i, value in enumerate(row):
        # bool is an int subclass: true/false must not pass as 1/0.
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidInput(f"{where}[{i}] is {_kind(value)}; expected a number")
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidInput(f"{where}[{i}] is {value}; expected a finite number")
        if abs(value) > limit.max_abs:
            raise InvalidInput(f"{where}[{i}] is out of range: {limit.describe()}")
    return row


def parse_rows(payload: dict, n_features: int, max_rows: int, limit: InputLimit,
               raw: bytes | None = None) -> tuple[np.ndarray, bool]:
    """Return (rows, single) from ``{"x": [...]}`` or ``{"instances": [[...], ...]}``.

    ``raw``: the body the payload was decoded from, which lets a batch be checked as one
    array (``parse_table``).
    """
    has_x, has_instances = "x" in payload, "instances" in payload
    if has_x and has_instances:
        raise InvalidInput('send either "x" (one row) or "instances" (a batch), not both')
    if has_x:
        row = check_row(payload["x"], '"x"', n_features, limit)
        return np.array([row], dtype=np.float64), True
    if not has_instances:
        raise InvalidInput(
            f'missing "x": expected {{"x": [{n_features} numbers]}} '
            f'or {{"instances": [[{n_features} numbers], ...]}}'
        )
    return parse_table(payload["instances"], '"instances"', n_features, max_rows, limit, raw), False


def parse_table(values, where: str, n_features: int, max_rows: int, limit: InputLimit,
                raw: bytes | None = None) -> np.ndarray:
    """Rows (float64, one per row) from a JSON list of rows named ``where`` in messages.

    The whole batch is checked as one array (``as_matrix``); only when that fails are the
    values checked one by one, to name the first bad one with the same message as always.
    """
    if not isinstance(values, list):
        raise InvalidInput(f"{where} must be a list of rows, got {_kind(values)}")
    if not values:
        raise InvalidInput(f"{where} is empty; expected 1 to {max_rows} rows")
    if len(values) > max_rows:
        raise InvalidInput(f"{where} has {len(values)} rows; the limit is {max_rows}")
    rows = as_matrix(values, n_features, limit, raw)
    if rows is None:
        rows = np.array([check_row(row, f"{where}[{i}]", n_features, limit) for i, row in enumerate(values)],
                        dtype=np.float64)
    return rows


def as_matrix(values: list, n_features: int, limit: InputLimit, raw: bytes | None) -> np.ndarray | None:
    """``values`` as a (rows, n_features) float64 array when every value is a finite number in
    range; None when anything is off (the caller then finds what, value by value).

    numpy reads true/false as 1/0 among numbers, and JSON has no other booleans than those
    two words: a body without either cannot hold one (a body with them, even inside a
    string, takes the value-by-value path). Strings, nulls, objects and ragged rows give
    numpy a dtype that is not a number, or an error.
    """
    if raw is None or b"true" in raw or b"false" in raw:
        return None
    try:
        array = np.array(values)
    except (ValueError, TypeError, OverflowError):
        return None
    if array.ndim != 2 or array.shape[1] != n_features or array.dtype.kind not in "fi":
        return None
    array = array.astype(np.float64, copy=False)
    if not np.isfinite(array).all() or np.abs(array).max() > limit.max_abs:
        return None
    return array


def parse_labels(payload: dict, single: bool, count: int, class_names: list[str]) -> list[str]:
    """Return the class labels of a feedback body: ``label`` or ``labels``."""
    if single:
        if "label" not in payload:
            raise InvalidInput(f'missing "label": expected one of {class_names}')
        labels = [payload["label"]]
        names = ['"label"']
    else:
        labels = payload.get("labels")
        if not isinstance(labels, list) or len(labels) != count:
            raise InvalidInput(f'"labels" must be a list of {count} class names, one per instance')
        names = [f'"labels"[{i}]' for i in range(count)]
    for name, label in zip(names, labels):
        if label not in class_names:
            raise InvalidInput(f"{name} is {json.dumps(label)}; expected one of {class_names}")
    return labels
