"""HTTP edge: Flask blueprints and the mapping of errors to PocketBase's JSON shape.

Rule: only this package (and app/cli) turns RealtimeError into HTTP responses;
every error body is ``{"data": {...}, "message": "...", "status": N}``.
"""

from __future__ import annotations

import json
import typing as t

from flask import Response
from flask import jsonify
from flask import request
from werkzeug.exceptions import HTTPException

from realtime_flask.errors import BadRequest
from realtime_flask.errors import RealtimeError

__all__ = ["MAX_JSON_DEPTH", "error_response", "http_error_response", "json_object", "limit_body"]

NOT_FOUND = "The requested resource wasn't found."

_HTTP_MESSAGES: t.Final[dict[int, str]] = {
    404: NOT_FOUND,
    405: NOT_FOUND,
    413: "Request entity too large.",
}


#: Deepest nesting of arrays and objects a JSON body may have.  Python's parser
#: and encoder recurse, and past about 1,000 levels they raise RecursionError
#: (a 500); no PocketBase client sends more than a few levels.
MAX_JSON_DEPTH: t.Final = 128


def json_object(raw: str | bytes) -> dict[str, object]:
    """A JSON request body as PocketBase's binder reads it: an object, ``null`` as
    ``{}``; malformed JSON, another type, invalid UTF-8 or nesting deeper than
    ``MAX_JSON_DEPTH`` is the generic 400.

    :raises BadRequest: the body is not such an object.
    """
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise BadRequest() from None
    if body is None:  # Go's decoder leaves the target empty for `null`
        return {}
    if not isinstance(body, dict) or _too_deep(body):
        raise BadRequest()
    return body


def _too_deep(value: object) -> bool:
    """Whether ``value`` nests arrays/objects deeper than ``MAX_JSON_DEPTH`` (no recursion)."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return True
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values() if isinstance(v, (dict, list)))
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item if isinstance(v, (dict, list)))
    return False


def limit_body() -> None:
    """Bound this request's body to ``REALTIME_MAX_BODY`` bytes: reading more
    raises Werkzeug's 413, answered with PocketBase's JSON body."""
    from realtime_flask.web.state import get_state

    request.max_content_length = get_state().settings.max_body


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
