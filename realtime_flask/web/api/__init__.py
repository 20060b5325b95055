"""HTTP edge: Flask blueprints and the mapping of errors to PocketBase's JSON shape.

Rule: only this package (and app/cli) turns RealtimeError into HTTP responses;
every error body is ``{"data": {...}, "message": "...", "status": N}``.
"""

from __future__ import annotations

import json
import typing as t

from flask import Response
from flask import jsonify
from werkzeug.exceptions import HTTPException

from realtime_flask.errors import BadRequest
from realtime_flask.errors import RealtimeError

__all__ = ["error_response", "http_error_response", "json_object"]

NOT_FOUND = "The requested resource wasn't found."

_HTTP_MESSAGES: t.Final[dict[int, str]] = {
    404: NOT_FOUND,
    405: NOT_FOUND,
    413: "Request entity too large.",
}


def json_object(raw: str | bytes) -> dict[str, object]:
    """A JSON request body as PocketBase's binder reads it: an object, ``null`` as
    ``{}``; malformed JSON or another type is the generic 400."""
    try:
        body = json.loads(raw)
    except ValueError:
        raise BadRequest() from None
    if body is None:  # Go's decoder leaves the target empty for `null`
        return {}
    if not isinstance(body, dict):
        raise BadRequest()
    return body


def error_response(exc: RealtimeError) -> tuple[Response, int]:
    """PocketBase's error body for a RealtimeError."""
    return jsonify(exc.to_body()), exc.status_hint


def http_error_response(exc: HTTPException) -> tuple[Response, int]:
    """PocketBase's error body for a Werkzeug HTTP error (405 answers 404, as PocketBase)."""
    status = exc.code or 500
    if status == 405:
        status = 404
    message = _HTTP_MESSAGES.get(status, exc.name + ".")
    return jsonify({"data": {}, "message": message, "status": status}), status
