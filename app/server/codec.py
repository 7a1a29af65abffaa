"""JSON in and out of the hot path: orjson first, the standard library for the exact messages.

orjson decodes a small body ~9x and encodes an answer ~12x faster than ``json`` here
(docs/PERFORMANCE.md). Where the two differ, the standard library decides: a body orjson
refuses (NaN, an integer past 64 bits, nesting past 1024 levels, bytes that are not UTF-8)
is decoded again by ``json``, whose answer or error is the one the client gets, so every
message stays what ``app/server/validation.py`` always said. orjson writes NaN as null
instead of refusing it: the hot path only encodes probabilities already checked finite.
"""

from __future__ import annotations

import json

import orjson

from app.server.validation import parse_json_object


def decode_object(raw: bytes, example: str) -> dict:
    """``raw`` as a JSON object, or InvalidInput quoting ``example`` (validation's messages)."""
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return parse_json_object(raw, example)
    if isinstance(payload, dict):
        return payload
    return parse_json_object(raw, example)  # the message for a list, a number, ...


def encode(obj) -> bytes:
    """The answer's bytes (compact, as the inference protocols' own servers write them)."""
    return orjson.dumps(obj)


def encode_spaced(obj, plain: bool) -> bytes:
    """The answer's bytes laid out as ``json.dumps`` lays them out (``", "`` and ``": "``).

    ``/predict`` has always answered that way, and line-oriented clients (``utils/test_req.sh``,
    a ``grep``) match on it. ``plain``: no string in ``obj`` holds a comma, a colon, a quote,
    a backslash or anything but printable ASCII, so every comma and colon in orjson's output
    is a separator and can be widened in place; otherwise ``json.dumps`` writes it.
    """
    if plain:
        return orjson.dumps(obj).replace(b",", b", ").replace(b":", b": ")
    return json.dumps(obj, allow_nan=False).encode()


def plain_text(*texts: str) -> bool:
    """Whether ``texts`` are printable ASCII without a comma, colon, quote or backslash."""
    return all(32 <= ord(c) < 127 and c not in ',:"\\' for text in texts for c in text)
