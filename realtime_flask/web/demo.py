"""The live demo page of the standalone service (``create_app`` only, not ``Realtime(app)``).

``GET /`` serves ``static/demo.html``; its script and style are served from
``/demo/static/``.  The page talks to the API with plain ``fetch`` and
``EventSource`` as the PocketBase realtime protocol has it, on this origin
(the service's own page drops an ``?api=`` naming another one), or, for a copy
of the page served elsewhere, on the one given as ``?api=http://host:port``
(CORS: ``web/api/cors.py``).

PocketBase lists collections to superusers only, so the page reads their names
from ``GET /demo/collections``: ``{"items": [{"id", "name", "type"}]}``, names
and types only (no fields, no rules), in schema order.  The page's own
``Content-Security-Policy`` allows scripts and styles from this origin only
and connections anywhere (the API may be elsewhere); record values are shown
as text, never as markup.
"""

from __future__ import annotations

import typing as t
from urllib.parse import urlencode

from flask import Blueprint
from flask import current_app
from flask import redirect
from flask import request
from flask.typing import ResponseReturnValue

from realtime_flask.store.records import RecordStore
from realtime_flask.web.api.cors import cors
from realtime_flask.web.api.records import STORE_KEY

__all__ = ["CONTENT_SECURITY_POLICY", "bp"]

bp = Blueprint("demo", __name__, static_folder="static", static_url_path="/demo/static")
bp.after_request(cors)

#: The demo page's policy: its own script and style, fetch/EventSource to any API origin.
CONTENT_SECURITY_POLICY: t.Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src *; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


@bp.get("/")
def page() -> ResponseReturnValue:
    """The page; ``?api=`` naming another origin is dropped (302 to the same page
    without it): the page on this origin talks to this service only, so a link
    cannot make it send a password the browser fills in for this origin elsewhere.
    A copy of the page served from another origin may use ``?api=``."""
    api = request.args.get("api")
    if api is not None and api.rstrip("/") != request.host_url.rstrip("/"):
        rest = {k: v for k, v in request.args.items() if k != "api"}
        return redirect("/" + (f"?{urlencode(rest)}" if rest else ""), 302)
    response = bp.send_static_file("demo.html")
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@bp.get("/demo/collections")
def collections() -> dict[str, object]:
    store: RecordStore = current_app.extensions[STORE_KEY]
    items = [{"id": c.id, "name": c.name, "type": c.type} for c in store.schema]
    return {"items": items}
