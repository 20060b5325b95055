"""One error tree for everything realtime_flask raises on purpose.

Rule: every layer raises these; only ``realtime_flask.web`` turns them into
PocketBase's JSON error body ``{"status", "message", "data"}`` (built by
:meth:`RealtimeError.to_body`).  No module here imports Flask or Werkzeug, and
no other module defines an error class.

::

    RealtimeError                           500   the root; status_hint, message, data
     ├─ ConfigError (ValueError)                  start-up only: a bad REALTIME_* or schema
     ├─ SSEFormatError (ValueError)               a frame that would break the stream
     ├─ BadRequest                          400   PocketBase's generic bind/validation error
     │   ├─ ValidationFailed                400   with per-field ``data``
     │   ├─ UnsupportedContentType          400   a body that is neither JSON nor a form
     │   ├─ QueryTimeout                    400   a statement ran past REALTIME_QUERY_TIMEOUT
     │   ├─ RelationRequired                400   a delete would empty a required relation
     │   └─ InvalidEvent (ValueError)       400   an event that cannot be published
     ├─ Unauthorized                        401   a token or credential is required
     ├─ Forbidden                           403   authenticated, not allowed
     │   └─ AccessDenied                    403   a realtime POST changed the client's auth
     ├─ NotFound (LookupError)              404   no such record or collection
     │   ├─ MissingCollection               404   "Missing collection context."
     │   ├─ AuthContextMissing              404   not an auth collection
     │   └─ ClientNotFound                  404   "Missing or invalid client id."
     ├─ TooManyClients                      429   a stream cap (per worker or address) reached
     ├─ StoreBusy                           503   SQLite stayed locked past the write timeout
     └─ BrokerUnavailable                   503   the broker cannot be used

Not in the tree, on purpose: ``core.rules.RuleError`` and ``core.schema.SchemaError``
derive from it (BadRequest, ConfigError) where the filter language and schema
are defined; ``runtime.QueueClosed`` is a signal between a stream and its queue,
never an error a caller sees.
"""

from __future__ import annotations

import typing as t

__all__ = [
    "AccessDenied",
    "BadRequest",
    "BrokerUnavailable",
    "ClientNotFound",
    "ConfigError",
    "ErrorData",
    "AuthContextMissing",
    "InvalidEvent",
    "UnsupportedContentType",
    "Forbidden",
    "MissingCollection",
    "NotFound",
    "QueryTimeout",
    "RelationRequired",
    "RealtimeError",
    "SSEFormatError",
    "StoreBusy",
    "TooManyClients",
    "Unauthorized",
    "ValidationFailed",
]

#: The ``data`` member of a PocketBase error body: field name -> error detail.
ErrorData = dict[str, t.Any]

GENERIC_400 = "Something went wrong while processing your request."


class RealtimeError(Exception):
    """Root of every error realtime_flask raises on purpose.

    ``status_hint`` is the HTTP status the API layer answers with; ``message``
    is the user-facing text (PocketBase's wording where PocketBase has one) and
    ``data`` the per-field details of the error body.
    """

    status_hint: t.ClassVar[int] = 500
    default_message: t.ClassVar[str] = "Something went wrong while processing your request."

    def __init__(self, message: str | None = None, data: ErrorData | None = None) -> None:
        self.message = message if message is not None else self.default_message
        self.data: ErrorData = data if data is not None else {}
        super().__init__(self.message)

    def to_body(self) -> dict[str, t.Any]:
        """PocketBase's error body for this error."""
        return {"data": self.data, "message": self.message, "status": self.status_hint}


class ConfigError(RealtimeError, ValueError):
    """A ``REALTIME_*`` setting is missing or invalid (raised at start-up)."""


class SSEFormatError(RealtimeError, ValueError):
    """A value cannot be written as an SSE field without corrupting the stream."""


class BadRequest(RealtimeError):
    """The request body could not be read (PocketBase's generic 400)."""

    status_hint = 400
    default_message = GENERIC_400


class ValidationFailed(BadRequest):
    """The request body was read but a field is invalid; ``data`` names the fields."""


class UnsupportedContentType(BadRequest):
    """A request body that is neither JSON nor a form."""

    default_message = "Unsupported Content-Type."


class QueryTimeout(BadRequest):
    """A statement ran past ``REALTIME_QUERY_TIMEOUT`` and was interrupted.

    PocketBase answers a query cancelled by its deadline with its generic 400.
    """


class RelationRequired(BadRequest):
    """A delete would leave a required relation of another record empty; nothing
    changes (PocketBase's 400)."""

    default_message = (
        "Failed to delete record. Make sure that the record is not part of a required "
        "relation reference."
    )


class InvalidEvent(BadRequest, ValueError):
    """An event that cannot be published (bad collection, action or record)."""


class Unauthorized(RealtimeError):
    """A valid token (or, for the publish route, the publish secret) is required."""

    status_hint = 401
    default_message = "The request requires valid record authorization token."


class Forbidden(RealtimeError):
    """The caller is known but may not do this (PocketBase's 403)."""

    status_hint = 403
    default_message = "Only superusers can perform this action."


class AccessDenied(Forbidden):
    """The POST's auth differs from the auth already stored on the client."""

    default_message = "The current and the previous request authorization don't match."


class NotFound(RealtimeError, LookupError):
    """No such record, collection or route (PocketBase's 404)."""

    status_hint = 404
    default_message = "The requested resource wasn't found."


class MissingCollection(NotFound):
    """The collection named in the URL does not exist."""

    default_message = "Missing collection context."


class AuthContextMissing(NotFound):
    """An auth route named a collection that is not an auth collection."""

    default_message = "Missing or invalid collection context."


class ClientNotFound(NotFound):
    """No realtime client with that id exists (never did, or its stream closed)."""

    default_message = "Missing or invalid client id."


class TooManyClients(RealtimeError):
    """A new stream would pass ``REALTIME_MAX_CLIENTS`` (this worker) or
    ``REALTIME_MAX_CLIENTS_PER_IP`` (its client address); PocketBase's 429 body."""

    status_hint = 429
    default_message = "Too Many Requests."


class StoreBusy(RealtimeError):
    """SQLite stayed locked by another writer past the store's write timeout."""

    status_hint = 503
    default_message = "The database is busy, try again."


class BrokerUnavailable(RealtimeError):
    """The configured broker cannot be used (missing package, unpatched sockets)."""

    status_hint = 503
    default_message = "The realtime broker is unavailable."
