"""Serving with gevent's WSGIServer (what ``python wsgi.py`` runs).

The caller must have monkey-patched already; this module only serves.  Its
handler exposes the connection socket to the app (``realtime_flask.socket``)
so a stream notices a closed peer at once, as under gunicorn.
"""

from __future__ import annotations

import logging
import signal
import typing as t

from gevent.pywsgi import WSGIHandler
from gevent.pywsgi import WSGIServer

from .extension import get_state

if t.TYPE_CHECKING:
    from flask import Flask

__all__ = ["serve"]

logger = logging.getLogger(__name__)


class _Handler(WSGIHandler):  # type: ignore[misc]
    def get_environ(self) -> dict[str, object]:
        environ: dict[str, object] = super().get_environ()
        environ["realtime_flask.socket"] = self.socket
        return environ


def serve(app: Flask, host: str, port: int, *, stop_timeout: float = 5.0) -> None:
    """Serve ``app`` until SIGINT/SIGTERM, then close every stream and stop."""
    import gevent

    server = WSGIServer((host, port), app, handler_class=_Handler, log=None)

    def shutdown() -> None:
        closed = get_state(app).shutdown()
        logger.info("realtime_flask: closed %d streams, stopping", closed)
        server.stop(timeout=stop_timeout)

    for sig in (signal.SIGINT, signal.SIGTERM):
        gevent.signal_handler(sig, lambda: gevent.spawn(shutdown))
    print(f"realtime_flask: serving on http://{host}:{server.server_port}", flush=True)
    server.serve_forever()
