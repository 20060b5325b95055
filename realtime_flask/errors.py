"""One error tree for everything realtime_flask raises on purpose.

Rule: the core raises these; only ``realtime_flask.web.api`` turns them into
PocketBase's JSON error shape ``{"status", "message", "data"}``.  No module here
imports Flask or Werkzeug.

::

    RealtimeError
     ├─ ConfigError (ValueError)            start-up only
     ├─ SSEFormatError (ValueError)         a frame that would break the stream
     ├─ BadRequest                    400   PocketBase's generic bind/validation error
     │   └─ ValidationFailed          400   with per-field ``data``
     ├─ ClientNotFound (LookupError)  404   "Missing or invalid client id."
     ├─ AccessDenied                  403   auth transition not allowed
     └─ BrokerUnavailable             503
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
    "RealtimeError",
    "SSEFormatError",
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


class ClientNotFound(RealtimeError, LookupError):
    """No realtime client with that id exists (never did, or its stream closed)."""

    status_hint = 404
    default_message = "Missing or invalid client id."


class AccessDenied(RealtimeError):
    """The POST's auth differs from the auth already stored on the client."""

    status_hint = 403
    default_message = "The current and the previous request authorization don't match."


class BrokerUnavailable(RealtimeError):
    """The configured broker cannot be used (missing package, unpatched sockets)."""

    status_hint = 503
    default_message = "The realtime broker is unavailable."
