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

Metrics in multi-process mode (``GET /api/realtime/metrics`` answers for
every worker, see ``web/api/metrics.py``):

* ``on_starting`` (the master, before any worker forks): when
  ``PROMETHEUS_MULTIPROC_DIR`` is not set, a private folder is made for this
  master and set, so its workers share it (whatever ``-w``: counters then
  also survive a worker's restart); one that is set is used as given, and
  its metric files of an earlier run are removed.  The workers import
  ``prometheus_client`` after that, so it is in multi-process mode there.
  With ``--preload`` the app (and ``prometheus_client``) loads before this
  hook: set ``PROMETHEUS_MULTIPROC_DIR`` in the environment yourself then.
* ``child_exit`` (the master, after a worker ended):
  ``prometheus_client.multiprocess.mark_process_dead`` drops that worker's
  live gauges (its counters stay in the sums).
* ``on_exit``: the private folder is removed.

Use them from a gunicorn config file (the repository's ``gunicorn.conf.py`` does)::

    from realtime_flask.server.gunicorn_hooks import child_exit  # noqa: F401
    from realtime_flask.server.gunicorn_hooks import on_exit  # noqa: F401
    from realtime_flask.server.gunicorn_hooks import on_starting  # noqa: F401
    from realtime_flask.server.gunicorn_hooks import post_worker_init  # noqa: F401
    from realtime_flask.server.gunicorn_hooks import worker_exit  # noqa: F401
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import tempfile
import typing as t
from pathlib import Path

from realtime_flask.engine.hub import RealtimeState
from realtime_flask.runtime import tune_gc
from realtime_flask.web.state import EXTENSION_KEY

__all__ = [
    "HOOKS",
    "MULTIPROC_ENV",
    "child_exit",
    "close_app",
    "drain_app",
    "on_exit",
    "on_starting",
    "post_worker_init",
    "shutdown_app",
    "worker_exit",
]

#: The variable ``prometheus_client`` reads for its multi-process folder.
MULTIPROC_ENV: t.Final = "PROMETHEUS_MULTIPROC_DIR"
#: Set by ``on_starting`` when it made the folder itself (``on_exit`` removes it).
_OWN_DIR_ENV: t.Final = "RF_METRICS_DIR_OWNED"
#: File names of ``prometheus_client``'s multi-process files.
_METRIC_FILES: t.Final = ("counter_*.db", "gauge_*.db", "histogram_*.db", "summary_*.db")

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


def on_starting(server: t.Any) -> None:
    """gunicorn hook, in the master before workers fork: the metrics folder
    (see the module doc)."""
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        folder = Path(given)
        folder.mkdir(parents=True, exist_ok=True)
        for pattern in _METRIC_FILES:  # an earlier run's numbers would be summed in
            for stale in folder.glob(pattern):
                stale.unlink(missing_ok=True)
        return
    folder = Path(tempfile.mkdtemp(prefix=f"realtime-metrics-{os.getpid()}-"))
    os.environ[MULTIPROC_ENV] = str(folder)
    os.environ[_OWN_DIR_ENV] = str(folder)
    logger.info("realtime_flask: metrics of all workers in %s", folder)


def child_exit(server: t.Any, worker: t.Any) -> None:
    """gunicorn hook, in the master after a worker ended: drop its live gauges."""
    folder = os.environ.get(MULTIPROC_ENV)
    if folder:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid, folder)  # type: ignore[no-untyped-call]


def on_exit(server: t.Any) -> None:
    """gunicorn hook, as the master stops: remove the metrics folder it made."""
    own = os.environ.get(_OWN_DIR_ENV)
    if own and own == os.environ.get(MULTIPROC_ENV):
        shutil.rmtree(own, ignore_errors=True)


def _chained(worker: t.Any, previous: t.Callable[[int, t.Any], None]) -> t.Any:
    def handler(signum: int, frame: t.Any) -> None:
        previous(signum, frame)
        import gevent

        gevent.spawn(_drain, worker)

    return handler


def _drain(worker: t.Any) -> None:
    closed = drain_app(worker.wsgi)
    logger.info("realtime_flask: worker %s closed %d streams on shutdown", worker.pid, closed)


#: Every server hook above by its gunicorn setting name: what ``gunicorn.conf.py``
#: names and ``serve --workers N`` sets (a unit test keeps the two equal).
HOOKS: t.Final[t.Mapping[str, t.Callable[..., None]]] = {
    "on_starting": on_starting,
    "post_worker_init": post_worker_init,
    "worker_exit": worker_exit,
    "child_exit": child_exit,
    "on_exit": on_exit,
}
