"""CORS for every blueprint of the package, as PocketBase's middleware answers.

``REALTIME_CORS_ORIGIN`` (PocketBase allows ``*``) is the allowed origin; empty
turns CORS off.  Every response varies on ``Origin``.  With CORS on, a request
with an ``Origin`` gets ``Access-Control-Allow-Origin``; a preflight
(``OPTIONS``) is answered ``204`` with no body, and with an ``Origin`` also
gets the allowed methods and the requested headers echoed back.  Blueprints
register it with ``bp.after_request(cors)``.
"""

from __future__ import annotations

import typing as t

from flask import Response
from flask import request

from realtime_flask.web.state import get_state

__all__ = ["CORS_METHODS", "cors"]

#: PocketBase's (echo's default) allowed methods.
CORS_METHODS: t.Final = "GET,HEAD,PUT,PATCH,POST,DELETE"


def cors(response: Response) -> Response:
    """Add the CORS headers to ``response`` (a blueprint's ``after_request``);
    turn a preflight into its ``204``."""
    response.vary.add("Origin")
    origin = get_state().settings.cors_origin
    if not origin:
        return response
    preflight = request.method == "OPTIONS"
    if preflight:
        response.status_code = 204
        response.set_data(b"")
        response.headers.pop("Content-Type", None)
        response.headers.pop("Allow", None)
    if not request.headers.get("Origin"):
        return response
    response.headers["Access-Control-Allow-Origin"] = origin
    if preflight:
        response.vary.add("Access-Control-Request-Method")
        response.vary.add("Access-Control-Request-Headers")
        response.headers["Access-Control-Allow-Methods"] = CORS_METHODS
        requested = request.headers.get("Access-Control-Request-Headers")
        if requested:
            response.headers["Access-Control-Allow-Headers"] = requested
    return response
