"""Serving with gunicorn's gevent workers: ``python -m realtime_flask serve --workers N``.

This process becomes gunicorn's arbiter and is never monkey-patched (nor
imports gevent): each worker patches itself after the fork, as
``gunicorn -k gevent`` does, then builds the standalone service.
"""

from __future__ import annotations

import typing as t

__all__ = ["GUNICORN_SETTINGS", "serve_gunicorn"]

#: gunicorn settings of ``serve_gunicorn``: those of the repository's
#: ``gunicorn.conf.py`` (a unit test keeps them equal), which an installed
#: package cannot read.
GUNICORN_SETTINGS: t.Final[t.Mapping[str, object]] = {
    "worker_class": "gevent",
    "worker_connections": 1000,
    "timeout": 30,
    "graceful_timeout": 10,
    "control_socket_disable": True,
}


def serve_gunicorn(host: str, port: int, *, workers: int) -> int:
    """Run gunicorn's arbiter in this process with ``workers`` gevent workers,
    each serving the standalone service (``create_app()``), until SIGTERM or
    SIGINT; returns the arbiter's exit status (0 after a graceful stop, 3 when
    a worker failed to boot).

    The settings are :data:`GUNICORN_SETTINGS` plus every hook of
    ``realtime_flask.server.gunicorn_hooks.HOOKS`` (streams drained on SIGTERM,
    the broker flushed at worker exit, the metrics' multi-process folder made,
    cleaned for each dead worker and removed).
    """
    from gunicorn.app.base import BaseApplication  # type: ignore[import-untyped]

    from realtime_flask.server import gunicorn_hooks

    class Service(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            options: dict[str, object] = {
                **GUNICORN_SETTINGS,
                "bind": [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"],
                "workers": workers,
                **gunicorn_hooks.HOOKS,  # drain on SIGTERM, metrics folder, broker flush
            }
            for key, value in options.items():
                if key in self.cfg.settings:  # control_socket_disable: gunicorn 23+
                    self.cfg.set(key, value)

        def load(self) -> t.Any:
            from realtime_flask.server.logs import default_logging
            from realtime_flask.web.app import create_app

            default_logging()  # as wsgi.py under gunicorn: the connect/subscribe lines show
            return create_app()

    try:
        Service(prog="python -m realtime_flask serve").run()
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
    return 0
