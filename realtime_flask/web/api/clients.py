"""``GET /api/realtime/clients`` and ``DELETE /api/realtime/clients/{id}``, for superusers.

The listing names every connected client of every worker (and host) sharing
the Redis of ``REALTIME_REDIS_URL``, or of this process without Redis::

    {"items": [{"id", "authRecordId", "authCollectionId", "authCollectionName",
                "subscriptions": [<topic>, ...], "connectedAt": "2026-12-01T07:25:35.123Z",
                "queuedFrames", "queuedBytes", "remoteAddr", "worker"}, ...],
     "totalItems": <len(items)>,
     "workers": [<worker that answered>, ...],
     "unanswered": [<worker that did not answer in time>, ...]}

``worker`` is the Redis router's node id (``<host>-<pid>-<nanoid>``) or
``<host>:<pid>``; ``unanswered`` is ``["*"]`` while Redis is unreachable
(the items are then this worker's only).  The delete ends that client's
stream wherever it is (204); the client is not resumable, its EventSource
comes back as a new client.  An unknown id answers PocketBase's 404 body.

Who may: a superuser's token (``_superusers`` of the standalone service; in
extension mode whoever the app's ``auth_resolver`` marks ``superuser``).
Otherwise PocketBase's 401 (no valid token) or 403 (not a superuser) body, as
its ``RequireSuperuserAuth`` middleware answers.
"""

from __future__ import annotations

from flask import Blueprint
from flask import request
from werkzeug.exceptions import HTTPException

from realtime_flask.engine.hub import RealtimeState
from realtime_flask.errors import Forbidden
from realtime_flask.errors import NotFound
from realtime_flask.errors import RealtimeError
from realtime_flask.errors import Unauthorized
from realtime_flask.web.api import error_response
from realtime_flask.web.api import http_error_response
from realtime_flask.web.state import get_state

__all__ = ["FORBIDDEN_MESSAGE", "bp", "require_superuser"]

#: PocketBase's 403 text for an auth record outside ``_superusers`` on a superuser route.
FORBIDDEN_MESSAGE = "The authorized record is not allowed to perform this action."

bp = Blueprint("realtime_clients", __name__)
bp.register_error_handler(RealtimeError, error_response)
bp.register_error_handler(HTTPException, http_error_response)


def require_superuser(state: RealtimeState) -> None:
    """Return when the request carries a superuser's token.

    :raises Unauthorized: no valid token (401).
    :raises Forbidden: a valid token of another auth record (403).
    """
    user = state.auth_resolver(request)
    if user is None:
        raise Unauthorized()
    if not user.superuser:
        raise Forbidden(FORBIDDEN_MESSAGE)


@bp.get("/api/realtime/clients")
def list_clients() -> dict[str, object]:
    state = get_state()
    require_superuser(state)
    listing = state.routing.list_clients()
    return {
        "items": listing["items"],
        "totalItems": len(listing["items"]),
        "workers": listing["workers"],
        "unanswered": listing["unanswered"],
    }


@bp.delete("/api/realtime/clients/<client_id>")
def delete_client(client_id: str) -> tuple[str, int]:
    state = get_state()
    require_superuser(state)
    if not client_id.isalnum() or not state.routing.close_client(client_id):
        raise NotFound()
    return "", 204
