"""``POST /api/realtime/publish``: the standalone service's way to emit an event.

A trusted caller publishes either a record event,
``{"collection", "action", "record", "collectionId"?, "unfiltered"?}``, or a
custom message (``Realtime.send``), ``{"topic": "chat-room-1", "data": <any
JSON value>}`` and nothing else.  It is guarded by the bearer secret in
``REALTIME_PUBLISH_SECRET`` and disabled (404) while that is empty.  An event of
a collection of the record store is filtered by that collection's rules like a
write through the API, unless the body says ``"unfiltered": true``; a custom
message reaches every subscriber of its topic (the standalone service has no
topic authorizer).  Answers ``{"id": <log position>}`` (``""`` under Redis,
where the log assigns it), or 400 with PocketBase's error body for a body of
another shape, changing nothing.
"""

from __future__ import annotations

import hmac
import typing as t

from flask import Blueprint
from flask import request
from werkzeug.exceptions import HTTPException

from realtime_flask.core.events import Event
from realtime_flask.core.events import TopicMessage
from realtime_flask.errors import BadRequest
from realtime_flask.errors import RealtimeError
from realtime_flask.errors import Unauthorized
from realtime_flask.web.api import NOT_FOUND
from realtime_flask.web.api import error_response
from realtime_flask.web.api import http_error_response
from realtime_flask.web.api import json_object
from realtime_flask.web.api import limit_body
from realtime_flask.web.api.cors import cors
from realtime_flask.web.state import get_state

__all__ = ["bp"]

bp = Blueprint("realtime_publish", __name__)
bp.register_error_handler(RealtimeError, error_response)
bp.register_error_handler(HTTPException, http_error_response)
bp.after_request(cors)


@bp.post("/api/realtime/publish")
def publish() -> tuple[dict[str, object], int]:
    secret = get_state().settings.publish_secret
    if not secret:
        return {"data": {}, "message": NOT_FOUND, "status": 404}, 404
    given = request.headers.get("Authorization", "")
    given = given.removeprefix("Bearer ").strip()
    if not hmac.compare_digest(given.encode(), secret.encode()):
        raise Unauthorized("The request requires valid publish credentials.")
    limit_body()
    try:
        raw = request.get_data(cache=False)
        body = json_object(raw) if request.is_json and raw.strip() else None
    except BadRequest:
        body = None
    if body is None:
        raise BadRequest("The body must be a JSON object.")
    if "topic" in body:
        return {"id": get_state().publish(_message(body)).id}, 200
    collection = body.get("collection")
    action = body.get("action")
    record = body.get("record")
    if not isinstance(collection, str) or not isinstance(action, str):
        raise BadRequest("collection and action must be strings.")
    if not isinstance(record, dict):
        raise BadRequest("record must be a JSON object.")
    collection_id = body.get("collectionId", "")
    if not isinstance(collection_id, str):
        raise BadRequest("collectionId must be a string.")
    unfiltered = body.get("unfiltered", False)
    if not isinstance(unfiltered, bool):
        raise BadRequest("unfiltered must be a boolean.")
    try:
        event = Event(
            collection, action, record, collection_id=collection_id, unfiltered=unfiltered
        )
    except RealtimeError as exc:
        raise BadRequest(exc.message) from None
    published = get_state().publish(event)
    return {"id": published.id}, 200


def _message(body: dict[str, object]) -> TopicMessage:
    """The custom message of a ``{"topic", "data"}`` body; BadRequest for any other shape."""
    extra = sorted(set(body) - {"topic", "data"})
    if extra:
        raise BadRequest(f"A topic message takes only topic and data, not {', '.join(extra)}.")
    if "data" not in body:
        raise BadRequest("data is required (any JSON value).")
    try:
        return TopicMessage(t.cast(str, body["topic"]), body["data"])
    except RealtimeError as exc:
        raise BadRequest(exc.message) from None
