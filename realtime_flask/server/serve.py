"""Serving with gevent's WSGIServer (what ``python wsgi.py`` runs).

The caller must have monkey-patched already; this module only serves.  Its
handler exposes the connection socket to the app (``realtime_flask.socket``)
so a stream notices a closed peer at once, as under gunicorn.

Small responses leave at once on kept-alive connections: every accepted TCP
connection gets ``TCP_NODELAY``, and the response head goes out in the same
write as the first body chunk.  (gevent writes the head and the body
separately; with Nagle's algorithm on, the body of every request after the
first on a connection then waits for the client's delayed ACK, ~40 ms.)
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import typing as t

from gevent.pywsgi import WSGIHandler
from gevent.pywsgi import WSGIServer

from realtime_flask.web.state import get_state

if t.TYPE_CHECKING:
    from flask import Flask

__all__ = ["serve", "set_nodelay"]

logger = logging.getLogger(__name__)

#: Pending connections the listening socket queues (gunicorn's default).
LISTEN_BACKLOG: t.Final[int] = 2048

_TCP_FAMILIES: t.Final = (socket.AF_INET, socket.AF_INET6)


def set_nodelay(sock: t.Any) -> None:
    """Turn Nagle's algorithm off on a TCP connection; other sockets are left alone.

    A connection the peer has already dropped may refuse the option; the
    request on it fails by itself, so that is not an error here.
    """
    if getattr(sock, "family", None) in _TCP_FAMILIES:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _Handler(WSGIHandler):  # type: ignore[misc]
    """gevent's handler, plus the environ socket, TCP_NODELAY and one write per head.

    The head is held back by the ``_sendall`` call that sends it inside
    ``_write_with_headers`` and goes out with the first body chunk.  If a
    gevent release renames these methods, responses are sent as gevent sends
    them (head and body apart); ``tests/e2e/test_tcp_nodelay.py`` notices.
    """

    _hold_head = False
    _held_head: bytes | None = None

    def handle(self) -> None:
        set_nodelay(self.socket)
        super().handle()

    def get_environ(self) -> dict[str, object]:
        environ: dict[str, object] = super().get_environ()
        environ["realtime_flask.socket"] = self.socket
        return environ

    def _write_with_headers(self, data: bytes) -> None:
        self._hold_head = True
        try:
            super()._write_with_headers(data)
        finally:
            self._hold_head = False
            head, self._held_head = self._held_head, None
            if head is not None:  # an empty first chunk: the head goes alone
                super()._sendall(head)

    def _sendall(self, data: bytes) -> None:
        if self._hold_head:
            self._hold_head = False
            self._held_head = bytes(data)
            return
        if self._held_head is not None:
            data, self._held_head = self._held_head + data, None
        super()._sendall(data)


def serve(app: Flask, host: str, port: int, *, stop_timeout: float = 5.0) -> None:
    """Serve ``app`` until SIGINT/SIGTERM, then close every stream and stop."""
    import gevent

    # gunicorn's listen backlog: gevent's default (128) drops connects when
    # hundreds of clients reconnect at once, and each waits out a 1 s SYN retry.
    server = WSGIServer((host, port), app, handler_class=_Handler, log=None, backlog=LISTEN_BACKLOG)

    def shutdown() -> None:
        # The order of gunicorn_hooks: drain the streams, finish the requests in
        # flight (the broker still publishes their events), then close the hub.
        state = get_state(app)
        closed = state.drain()
        logger.info("realtime_flask: closed %d streams, stopping", closed)
        server.stop(timeout=stop_timeout)
        state.close()

    for sig in (signal.SIGINT, signal.SIGTERM):
        gevent.signal_handler(sig, lambda: gevent.spawn(shutdown))
    print(f"realtime_flask: serving on http://{host}:{server.server_port}", flush=True)
    server.serve_forever()
