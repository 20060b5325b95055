"""``python -m realtime_flask``: serve, and manage superusers.

    python -m realtime_flask serve [--host H] [--port P]
    python -m realtime_flask superuser upsert EMAIL PASSWORD

The ``serve`` command monkey-patches first (it is an entry point); the library
itself never does.
"""

from __future__ import annotations

import argparse
import sys
import typing as t

__all__ = ["main"]


def main(argv: t.Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m realtime_flask")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the standalone service with gevent")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    su = commands.add_parser("superuser", help="manage superusers")
    su_commands = su.add_subparsers(dest="action", required=True)
    upsert = su_commands.add_parser("upsert", help="create a superuser or set its password")
    upsert.add_argument("email")
    upsert.add_argument("password")
    args = parser.parse_args(argv)

    from realtime_flask.errors import RealtimeError

    if args.command == "serve":
        from realtime_flask import runtime

        if not runtime.gevent_active():
            from gevent import monkey

            monkey.patch_all()
        from realtime_flask.server.serve import serve as run
        from realtime_flask.web.app import create_app
        from realtime_flask.web.state import get_state

        try:
            app = create_app()
        except RealtimeError as exc:  # a bad setting, schema, or a missing extra: one line
            print(f"error: {exc.message}", file=sys.stderr)
            return 1
        runtime.tune_gc()  # no full GC passes over start-up objects, fewer promotions
        settings = get_state(app).settings
        run(app, args.host or settings.host, args.port or settings.port)
        return 0

    from realtime_flask.store.records import RecordStore
    from realtime_flask.web.api.records import STORE_KEY
    from realtime_flask.web.app import create_app

    try:
        app = create_app({"REALTIME_REAPER_ENABLED": False})
    except RealtimeError as exc:  # a bad schema file or setting: one line, no traceback
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    store = t.cast(RecordStore, app.extensions[STORE_KEY])
    try:
        _, created = store.upsert_superuser(args.email, args.password)
    except RealtimeError as exc:
        details = "; ".join(f"{k}: {v.get('message', v)}" for k, v in exc.data.items())
        print(f"error: {exc.message} {details}".strip(), file=sys.stderr)
        return 1
    finally:
        store.close()
    print(f"Successfully {'created' if created else 'updated'} superuser {args.email!r}!")
    return 0
