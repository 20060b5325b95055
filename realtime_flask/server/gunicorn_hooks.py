"""gunicorn server hooks: a graceful stop that loses no acknowledged event.

gunicorn's gevent worker, told to stop (SIGTERM, or the master's reload),
closes its listening socket and serves the requests in flight for up to
``graceful_timeout``; an SSE stream never finishes on its own.  The hooks
order the stop:

1. SIGTERM (``post_worker_init`` chains onto the worker's handler): the
   realtime hub drains: every stream gets a ``retry:`` spread over
   ``REALTIME_DRAIN_WINDOW`` and is closed (parked for its resume on another
   worker); a stream request arriving meanwhile gets only a ``retry:``.  The
   broker stays open, so writes still being served publish their events.
2. gunicorn finishes the requests in flight.
3. ``worker_exit``: the hub closes: the router stops, the broker sends what
   is left in its outbox to Redis and closes.  Nothing is left to write then.

Use both from a gunicorn config file (the repository's ``gunicorn.conf.py`` does)::

    from realtime_flask.server.gunicorn_hooks import post_worker_init  # noqa: F401
    from realtime_flask.server.gunicorn_hooks import worker_exit  # noqa: F401
"""

from __future__ import annotations

import logging
import signal
import typing as t

from realtime_flask.engine.hub import RealtimeState
from realtime_flask.runtime import tune_gc
from realtime_flask.web.state import EXTENSION_KEY

__all__ = ["close_app", "drain_app", "post_worker_init", "shutdown_app", "worker_exit"]

logger = logging.getLogger(__name__)


def _state(app: object) -> RealtimeState | None:
    """The realtime hub of ``app`` (a Flask app, or a WSGI wrapper exposing
    ``.app`` or ``.wsgi_app``), or None."""
    seen = 0
    while app is not None and seen < 5:
        extensions = getattr(app, "extensions", None)
        if isinstance(extensions, dict) and EXTENSION_KEY in extensions:
            return t.cast(RealtimeState, extensions[EXTENSION_KEY])
        app = getattr(app, "app", None) or getattr(app, "wsgi_app", None)
        seen += 1
    return None


def drain_app(app: object) -> int:
    """Close every realtime stream of ``app`` and turn new ones away (step 1);
    returns how many were open."""
    state = _state(app)
    return 0 if state is None else state.drain()


def close_app(app: object) -> None:
    """Close ``app``'s realtime hub once no request is left (step 3)."""
    state = _state(app)
    if state is not None:
        state.close()


def shutdown_app(app: object) -> int:
    """``drain_app`` then ``close_app``, for a process with no request in flight."""
    closed = drain_app(app)
    close_app(app)
    return closed


def post_worker_init(worker: t.Any) -> None:
    """gunicorn hook: chain the drain onto the worker's SIGTERM handler, and tune
    the GC for many streams (``runtime.tune_gc``) now that the app is loaded.

    (SIGINT/SIGQUIT end the worker at once anyway.)
    """
    tune_gc()
    signal.signal(signal.SIGTERM, _chained(worker, worker.handle_exit))
    signal.siginterrupt(signal.SIGTERM, False)  # as gunicorn sets it


def worker_exit(server: t.Any, worker: t.Any) -> None:
    """gunicorn hook, in the worker once its requests are done: flush and close
    the realtime hub (step 3)."""
    close_app(worker.wsgi)
    logger.info("realtime_flask: worker %s closed its broker", worker.pid)


def _chained(worker: t.Any, previous: t.Callable[[int, t.Any], None]) -> t.Any:
    def handler(signum: int, frame: t.Any) -> None:
        previous(signum, frame)
        import gevent

        gevent.spawn(_drain, worker)

    return handler


def _drain(worker: t.Any) -> None:
    closed = drain_app(worker.wsgi)
    logger.info("realtime_flask: worker %s closed %d streams on shutdown", worker.pid, closed)
