"""``GET /api/realtime`` (the event stream) and ``POST /api/realtime`` (set topics).

Rules of the streaming view (a generator under gevent):

1. Everything is read from ``request`` before the generator is returned; the
   generator only gets plain arguments (no request context for hours).
2. The client is registered in the view, so a POST can find it as soon as the
   PB_CONNECT frame arrives, and is removed in *both* the generator's
   ``finally`` and ``call_on_close`` (a generator that never started has no
   ``finally``).  Removal is idempotent.
3. The generator blocks only in ``controller.get(timeout=keepalive)``; a quiet
   stream gets a ``:ping`` comment, which finds dead peers.  Under gevent a
   peer-EOF watcher also closes the client the moment the socket closes.
4. Nothing is yielded after GeneratorExit; no bare ``except``.
"""

from __future__ import annotations

import logging
import typing as t
from collections.abc import Iterator

from flask import Blueprint
from flask import Response
from flask import request
from werkzeug.exceptions import HTTPException

from realtime_flask import runtime
from realtime_flask.core import sse
from realtime_flask.core.topics import validate_subscribe_request
from realtime_flask.engine.hub import RealtimeState
from realtime_flask.engine.hub import drain_retry_ms
from realtime_flask.engine.manager import RealtimeClient
from realtime_flask.engine.manager import RealtimeManager
from realtime_flask.errors import RealtimeError
from realtime_flask.runtime import QueueClosed
from realtime_flask.web.api import NOT_FOUND
from realtime_flask.web.api import error_response
from realtime_flask.web.api import http_error_response
from realtime_flask.web.api import json_object
from realtime_flask.web.api import limit_body
from realtime_flask.web.api.cors import cors
from realtime_flask.web.proxies import addresses_unreliable
from realtime_flask.web.state import get_state

__all__ = ["bp"]

logger = logging.getLogger(__name__)

bp = Blueprint("realtime", __name__)

KEEPALIVE_FRAME: t.Final[bytes] = sse.format_sse_comment("ping")
#: Upper bound of a subscriptions POST: 1000 topics of 2500 bytes, JSON
#: escaped, fit well below this.
#: WSGI environ keys under which servers expose the connection's socket.
SOCKET_KEYS: t.Final[tuple[str, ...]] = ("gunicorn.socket", "realtime_flask.socket")

bp.register_error_handler(RealtimeError, error_response)
bp.register_error_handler(HTTPException, http_error_response)
bp.after_request(cors)


#: The ``RF_RESET`` reason of a resume refused because the request came through a
#: proxy that ``REALTIME_TRUSTED_PROXIES`` does not trust.
UNTRUSTED_PROXY_RESET: t.Final = "untrusted_proxy"


@bp.get("/api/realtime")
def connect() -> Response:
    state = get_state()
    if state.draining:
        return _turned_away(state.settings.drain_window)
    manager = state.manager
    last_event_id = request.headers.get("Last-Event-ID", "")
    if last_event_id and addresses_unreliable(request.environ):
        # Behind a proxy that is not trusted every client has the proxy's address:
        # the resume's address check cannot tell the owner from anyone else.
        client = state.open_fresh_client(request.remote_addr, UNTRUSTED_PROXY_RESET)
    else:
        client = state.open_client(request.remote_addr, last_event_id)
    try:
        state.routing.register(client.id)  # before PB_CONNECT: a POST may reach another worker
        stop_watcher = _watch_peer_eof(request.environ, manager, client)
        sock = _socket_of(request.environ)
        if sock is not None:
            # A peer gone without FIN: the kernel fails the connection once sent data stays
            # unacknowledged this long, and the EOF watch ends the client.
            runtime.set_user_timeout(sock, state.settings.write_timeout)
            client.abort = lambda: runtime.abort_socket(sock)
    except Exception:
        manager.remove_client(client.id, reason="connect failed", expected=client)
        raise

    def close() -> None:
        # Remove first: it never blocks, so nothing can skip it.
        manager.remove_client(client.id, reason="stream closed", expected=client)
        if stop_watcher is not None:
            stop_watcher()

    response = Response(
        _stream(manager, client, state.settings.keepalive_interval, close, state),
        status=200,
        content_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
    response.call_on_close(close)
    return response


def _turned_away(window: float) -> Response:
    """A stream request during a graceful stop: only a ``retry:`` hint, then the end.

    Nothing is taken from the registry, so a client parked by the drain stays
    parked for its reconnect (on another worker); an EventSource reconnects
    after the hint with the same ``Last-Event-ID``.  A 503 would end a plain
    EventSource for good (the WHATWG spec fails the connection on a non-200).
    """
    return Response(
        [sse.format_retry(drain_retry_ms(window))],
        status=200,
        content_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def _stream(
    manager: RealtimeManager,
    client: RealtimeClient,
    keepalive: float,
    close: t.Callable[[], None],
    state: RealtimeState,
) -> Iterator[bytes]:
    try:
        yield client.connect_frame()
        controller = client.controller
        while True:
            try:
                chunk = controller.get(timeout=keepalive)
            except QueueClosed:
                if state.draining:  # come back later, spread over the drain window
                    yield sse.format_retry(drain_retry_ms(state.settings.drain_window))
                return
            client.writing_since = manager.clock()  # cleared when the write returned
            if chunk is None:
                yield KEEPALIVE_FRAME
                client.writing_since = None
                continue
            manager.touch(client)
            yield chunk
            client.writing_since = None
    finally:
        close()


@bp.post("/api/realtime")
def set_subscriptions() -> tuple[str, int]:
    state: RealtimeState = get_state()
    client_id, subscriptions = validate_subscribe_request(
        _read_body(),
        max_subscriptions=state.settings.max_subscriptions,
        max_topic_length=state.settings.max_topic_length,
    )
    user = state.auth_resolver(request)
    state.routing.subscribe(client_id, subscriptions, user, request.remote_addr)
    return "", 204


@bp.route("/api/realtime", methods=["PUT", "PATCH", "DELETE"])
def wrong_method() -> tuple[dict[str, object], int]:
    return {"data": {}, "message": NOT_FOUND, "status": 404}, 404


def _read_body() -> dict[str, object]:
    """The POST body as a dict, the way PocketBase's binder reads it.

    JSON only with a JSON content type (else the body is ignored, which then
    fails as "clientId blank"); urlencoded and multipart forms by field.
    """
    limit_body()
    if request.is_json:
        raw = request.get_data(cache=False)
        if not raw.strip():
            return {}
        return _fold_keys(json_object(raw))
    if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = request.form
        out: dict[str, object] = {}
        if "clientId" in form:
            out["clientId"] = form.get("clientId")
        if "subscriptions" in form:
            out["subscriptions"] = form.getlist("subscriptions")
        return out
    return {}


def _fold_keys(body: dict[str, object]) -> dict[str, object]:
    """Match body keys case-insensitively, as Go's JSON decoder does (exact key wins)."""
    out: dict[str, object] = {}
    for name in ("clientId", "subscriptions"):
        if name in body:
            out[name] = body[name]
            continue
        for key, value in body.items():
            if key.lower() == name.lower():
                out[name] = value
    return out


def _socket_of(environ: t.Mapping[str, object]) -> object | None:
    """The connection's socket, where the WSGI server exposes it (gevent, gunicorn)."""
    return next((environ[k] for k in SOCKET_KEYS if environ.get(k) is not None), None)


def _watch_peer_eof(
    environ: t.Mapping[str, object], manager: RealtimeManager, client: RealtimeClient
) -> t.Callable[[], None] | None:
    """Close the client as soon as its peer closes the connection (gevent only):
    the SDK's old client id must answer 404 within milliseconds, as PocketBase's
    does, not at the next keep-alive.  See ``runtime.watch_peer_eof``."""
    sock = _socket_of(environ)
    return runtime.watch_peer_eof(
        sock,
        lambda: manager.remove_client(
            client.id, reason="peer closed the connection", expected=client
        ),
    )
