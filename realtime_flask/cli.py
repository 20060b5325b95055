"""``python -m realtime_flask``: serve the standalone service, manage superusers,
check a schema file.

::

    python -m realtime_flask serve [--host H] [--port P] [--workers N]
    python -m realtime_flask superuser upsert EMAIL PASSWORD
    python -m realtime_flask schema check FILE

Built on click, as Flask's own CLI; the ``superuser`` and ``schema`` commands
are the same objects ``flask realtime`` offers (``realtime_flask.web.commands``).
Exit statuses: 0 done, 1 runtime failure, 2 bad input (usage, a setting or
schema that does not load).

``serve`` with one worker monkey-patches first (it is an entry point) and runs
gevent's server in this process; with more it runs gunicorn's arbiter here,
whose gevent workers patch themselves.  The library itself never patches.
"""

from __future__ import annotations

import contextlib
import sys
import typing as t
from collections.abc import Iterator
from collections.abc import Sequence

import click

from realtime_flask.errors import ConfigError
from realtime_flask.errors import RealtimeError
from realtime_flask.web.commands import EXIT_BAD_INPUT
from realtime_flask.web.commands import examples
from realtime_flask.web.commands import fail
from realtime_flask.web.commands import fail_start
from realtime_flask.web.commands import schema_group
from realtime_flask.web.commands import superuser_group

if t.TYPE_CHECKING:
    from realtime_flask.store.records import RecordStore

__all__ = ["cli", "main"]

PROG: t.Final[str] = "python -m realtime_flask"


@click.group(
    "realtime_flask",
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=examples(
        f"{PROG} serve --port 8090",
        f"REALTIME_REDIS_URL=redis://127.0.0.1:6379/0 {PROG} serve --workers 4",
        f"{PROG} superuser upsert admin@example.com 'a-long-password'",
        f"{PROG} schema check pb_schema.json",
    )
    + "\n\nSettings come from REALTIME_* environment variables (docs/configuration.md);"
    " the same commands run as `flask realtime ...` in an app using the Realtime extension.",
)
@click.version_option(package_name="realtime_flask", message="%(prog)s %(version)s")
def cli() -> None:
    """PocketBase-compatible realtime (SSE) service: serve it, manage its
    superusers, check a collections export.

    Exit status: 0 done, 1 runtime failure, 2 bad input (usage, a REALTIME_*
    setting or a schema file that does not load).
    """


@cli.command(
    "serve",
    short_help="Run the standalone service (gevent; gunicorn for --workers > 1).",
    epilog=examples(
        f"{PROG} serve",
        f"{PROG} serve --host 0.0.0.0 --port 8090",
        f"REALTIME_REDIS_URL=redis://127.0.0.1:6379/0 {PROG} serve --workers 4",
    ),
)
@click.option("--host", help="Interface to bind. [default: REALTIME_HOST, 127.0.0.1]")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    help="Port to listen on. [default: REALTIME_PORT, 8090]",
)
@click.option(
    "--workers",
    "-w",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Worker processes. 1 serves in this process with gevent; more run gunicorn "
    "with gevent workers, which needs REALTIME_REDIS_URL.",
)
def serve(host: str | None, port: int | None, workers: int) -> None:
    """Serve the realtime, records and auth API until SIGINT or SIGTERM, then
    close every stream (each told when to come back) and stop.

    With --workers 1 gevent's server runs in this process.  With more, this
    process is gunicorn's arbiter running N gevent workers with the settings of
    the repository's gunicorn.conf.py (hooks that drain streams on SIGTERM).
    Several workers share events only through Redis: without
    REALTIME_REDIS_URL, or with REALTIME_DATA_DIR=:memory:, --workers > 1 is
    refused (status 2).
    """
    if workers == 1:
        _serve_here(host, port)
    else:
        _serve_gunicorn(host, port, workers)


def _serve_here(host: str | None, port: int | None) -> None:
    from realtime_flask import runtime

    if not runtime.gevent_active():
        from gevent import monkey

        monkey.patch_all()
    from realtime_flask.server.logs import default_logging
    from realtime_flask.server.serve import serve as run
    from realtime_flask.web.app import create_app
    from realtime_flask.web.state import get_state

    default_logging()  # as wsgi.py: one INFO line per connect, subscription change, disconnect
    try:
        app = create_app()
    except RealtimeError as exc:  # a bad setting or schema, or a missing extra: one line
        fail_start(exc)
    runtime.tune_gc()  # no full GC passes over start-up objects, fewer promotions
    settings = get_state(app).settings
    run(app, host or settings.host, settings.port if port is None else port)


def _serve_gunicorn(host: str | None, port: int | None, workers: int) -> None:
    from realtime_flask.config import Settings
    from realtime_flask.config import env_overrides
    from realtime_flask.core.schema import load_schema_file
    from realtime_flask.server.workers import serve_gunicorn

    # Check here, once, what each worker would fail on at boot.
    try:
        settings = Settings.from_mapping(env_overrides())
        if settings.schema:
            load_schema_file(settings.schema)
    except ConfigError as exc:
        fail(exc, EXIT_BAD_INPUT)
    if not settings.redis_url:
        fail(
            f"--workers {workers} needs REALTIME_REDIS_URL: with the in-process broker an "
            "event reaches only the clients of the worker that published it",
            EXIT_BAD_INPUT,
        )
    if settings.data_dir == ":memory:":
        fail(f"--workers {workers} needs REALTIME_DATA_DIR on disk, not :memory:", EXIT_BAD_INPUT)
    code = serve_gunicorn(
        host or settings.host, settings.port if port is None else port, workers=workers
    )
    raise click.exceptions.Exit(code)


@contextlib.contextmanager
def _standalone_store() -> Iterator[RecordStore]:
    """The standalone service's store (REALTIME_SCHEMA, REALTIME_DATA_DIR), closed after."""
    from realtime_flask.store.records import RecordStore
    from realtime_flask.web.api.records import STORE_KEY
    from realtime_flask.web.app import create_app

    try:
        app = create_app({"REALTIME_REAPER_ENABLED": False})
    except RealtimeError as exc:  # a bad schema file or setting: one line, no traceback
        fail_start(exc)
    store = t.cast(RecordStore, app.extensions[STORE_KEY])
    try:
        yield store
    finally:
        store.close()


cli.add_command(superuser_group(_standalone_store, PROG))
cli.add_command(schema_group(PROG))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line on ``argv`` (default ``sys.argv[1:]``); its exit status."""
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name=PROG)
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
