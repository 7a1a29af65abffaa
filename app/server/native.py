"""``POST /predict``: the project's own protocol, ``{"x": [...]}`` or ``{"instances": [...]}``."""

from __future__ import annotations

from app.server.calls import Reply
from app.server.codec import decode_object, encode_spaced
from app.server.validation import check_content_type, parse_rows

PREDICT_EXAMPLE = '{"x": [5.1, 3.5, 1.4, 0.2]} or {"instances": [[5.1, 3.5, 1.4, 0.2], ...]}'


def predict(srv, call) -> Reply:
    """One prediction for ``x``, or one per row of ``instances``."""
    check_content_type(call.mimetype)
    raw = call.body
    payload = decode_object(raw, PREDICT_EXAMPLE)
    rows, single = parse_rows(payload, srv.n_features, srv.settings["MAX_BATCH_ROWS"], srv.input_limit, raw)
    items = srv.predict(rows, single)
    call.exchange.predictions = [item["prediction"] for item in items]
    if single:
        body = dict(items[0], version=srv.version, color=srv.color, request_id=call.exchange.request_id)
    else:
        body = {"predictions": items, "version": srv.version, "color": srv.color,
                "request_id": call.exchange.request_id}
    return Reply(200, encode_spaced(body, srv.plain_strings))
