"""gunicorn server hooks: close every realtime stream when a worker is told to stop.

gunicorn's gevent worker waits up to ``graceful_timeout`` for open connections
before it exits, and an SSE stream never finishes on its own.  This hook makes
SIGTERM end each stream cleanly first, so a restart takes
milliseconds and clients reconnect to the new worker at once.

Use it from a gunicorn config file (the repository's ``gunicorn.conf.py`` does)::

    from realtime_flask.server.gunicorn_hooks import post_worker_init  # noqa: F401
"""

from __future__ import annotations

import logging
import signal
import typing as t

from realtime_flask.runtime import tune_gc
from realtime_flask.web.state import EXTENSION_KEY

__all__ = ["post_worker_init", "shutdown_app"]

logger = logging.getLogger(__name__)


def shutdown_app(app: object) -> int:
    """Close every realtime stream of ``app`` (a Flask app, or a WSGI wrapper
    exposing ``.app``); returns how many were open."""
    seen = 0
    while app is not None and seen < 5:
        extensions = getattr(app, "extensions", None)
        if isinstance(extensions, dict) and EXTENSION_KEY in extensions:
            return int(extensions[EXTENSION_KEY].shutdown())
        app = getattr(app, "app", None) or getattr(app, "wsgi_app", None)
        seen += 1
    return 0


def post_worker_init(worker: t.Any) -> None:
    """gunicorn hook: chain a realtime shutdown onto the worker's SIGTERM handler,
    and tune the GC for many streams (``runtime.tune_gc``) now that the app is loaded.

    (SIGINT/SIGQUIT end the worker at once anyway.)
    """
    tune_gc()
    signal.signal(signal.SIGTERM, _chained(worker, worker.handle_exit))
    signal.siginterrupt(signal.SIGTERM, False)  # as gunicorn sets it


def _chained(worker: t.Any, previous: t.Callable[[int, t.Any], None]) -> t.Any:
    def handler(signum: int, frame: t.Any) -> None:
        previous(signum, frame)
        import gevent

        gevent.spawn(_close_streams, worker)

    return handler


def _close_streams(worker: t.Any) -> None:
    closed = shutdown_app(worker.wsgi)
    logger.info("realtime_flask: worker %s closed %d streams on shutdown", worker.pid, closed)
