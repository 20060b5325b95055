"""``create_app``: the standalone realtime service.

Order as in the Flask tutorial: defaults, then ``REALTIME_*`` environment
variables, then the ``config`` passed in, then extensions, then blueprints.
The service is the extension plus the embedded record store: every committed
write of the records API is published as a realtime event.

Parts are built bottom-up and never patched afterwards: the broker first, then
the store (its ``on_event`` is the broker's ``publish``), then the hub with the
store's visibility and auth hooks.  The store never calls into the web layer.
"""

from __future__ import annotations

import logging
import typing as t
from collections.abc import Mapping
from pathlib import Path

from flask import Flask
from flask import Request
from flask import Response
from flask import jsonify
from werkzeug.exceptions import HTTPException

from realtime_flask import runtime
from realtime_flask.config import Settings
from realtime_flask.config import env_overrides
from realtime_flask.core.events import AuthUser
from realtime_flask.core.events import Event
from realtime_flask.core.schema import SUPERUSERS
from realtime_flask.core.schema import Schema
from realtime_flask.core.schema import default_schema
from realtime_flask.core.schema import load_schema_file
from realtime_flask.store.auth import Blocking
from realtime_flask.store.auth import Passwords
from realtime_flask.store.auth import token_from_header
from realtime_flask.store.present import without_password
from realtime_flask.store.records import RecordStore
from realtime_flask.store.visibility import StoreVisibility
from realtime_flask.web.api import http_error_response
from realtime_flask.web.api.files import bp as files_bp
from realtime_flask.web.api.publish import bp as publish_bp
from realtime_flask.web.api.records import STORE_KEY
from realtime_flask.web.api.records import bp as records_bp
from realtime_flask.web.demo import bp as demo_bp
from realtime_flask.web.extension import Realtime
from realtime_flask.web.extension import build_broker
from realtime_flask.web.proxies import trust_proxies
from realtime_flask.web.state import get_state

__all__ = ["create_app", "open_store"]

logger = logging.getLogger(__name__)


def _blocking_runner() -> Blocking | None:
    """Run CPU-heavy hashing in gevent's thread pool when the process is patched."""
    if not runtime.gevent_active():
        return None
    return runtime.run_blocking


def open_store(settings: Settings, *, on_event: t.Callable[[Event], object]) -> RecordStore:
    """The record store of ``settings`` (``REALTIME_SCHEMA``, ``REALTIME_DATA_DIR``),
    calling ``on_event`` with every committed change.

    Raises SchemaError (a ConfigError) for a bad schema file; OSError when
    the data folder cannot be made.
    """
    schema: Schema = load_schema_file(settings.schema) if settings.schema else default_schema()
    if schema.unsupported:  # once per process: what the export has that is not honoured
        logger.warning("schema: accepted but not supported: %s", "; ".join(schema.unsupported))
    if settings.data_dir == ":memory:":
        path = ":memory:"
    else:
        folder = Path(settings.data_dir)
        folder.mkdir(parents=True, exist_ok=True)
        path = str(folder / "data.db")
    return RecordStore(
        schema,
        path,
        on_event=on_event,
        passwords=Passwords(_blocking_runner()),
        readers=settings.db_readers,
        query_timeout=settings.query_timeout,
    )


def store_auth_resolver(store: RecordStore) -> t.Callable[[Request], AuthUser | None]:
    """Realtime POSTs authenticate with the store's tokens (raw or Bearer; bad = guest)."""

    def resolve(request: Request) -> AuthUser | None:
        found = store.auth_from_token(token_from_header(request.headers.get("Authorization")))
        if found is None:
            return None
        coll, record = found
        return AuthUser(
            coll.id, record["id"], coll.name, without_password(record), coll.name == SUPERUSERS
        )

    return resolve


def store_auth_refresher(store: RecordStore) -> t.Callable[[AuthUser], AuthUser | None]:
    """A resumed client's auth, re-read: None once the record is gone or its
    tokenKey rotated (a password change while the client was away)."""

    def refresh(user: AuthUser) -> AuthUser | None:
        coll = store.schema.get(user.collection_id)
        record = None if coll is None else store.get_record(coll.name, user.id)
        if record is None or record.get("tokenKey") != user.record.get("tokenKey"):
            return None
        return AuthUser(
            user.collection_id,
            user.id,
            user.collection_name,
            without_password(record),
            user.superuser,
        )

    return refresh


def create_app(config: Mapping[str, t.Any] | None = None) -> Flask:
    """Build the standalone service: realtime, records/auth API, the publish route
    and the live demo page at ``/`` (``web/demo.py``).

    :param config: Flask config overrides (``REALTIME_*`` keys and others);
        they win over ``REALTIME_*`` environment variables.
    """
    app = Flask("realtime_flask")
    app.config.update(env_overrides())
    if config:
        app.config.update(config)
    settings = Settings.from_mapping(app.config)
    broker = build_broker(settings)
    try:
        store = open_store(settings, on_event=broker.publish)
    except BaseException:
        broker.close()
        raise
    try:
        Realtime(
            app,
            broker=broker,
            visibility=StoreVisibility(store),
            auth_resolver=store_auth_resolver(store),
            auth_refresher=store_auth_refresher(store),
        )
    except BaseException:  # e.g. BrokerUnavailable from the broker's start
        broker.close()
        store.close()
        raise
    app.extensions[STORE_KEY] = store
    app.register_blueprint(records_bp)
    app.register_blueprint(files_bp)
    app.register_blueprint(publish_bp)
    app.register_blueprint(demo_bp)  # the live demo page at /
    app.register_error_handler(HTTPException, _app_http_error)
    trust_proxies(app, settings.trusted_proxies)  # init_app applied it: a no-op, kept explicit

    app.add_url_rule("/api/health", "health", health)

    return app


def health() -> dict[str, object]:
    """``GET /api/health``: PocketBase's answer (``code`` 200, ``message``
    ``API is healthy.``) with this worker's realtime state in ``data.realtime``.

    ``data.realtime.state`` is ``ok``, or ``degraded`` while the broker is
    degraded or not connected (Redis unreachable, outbox events waiting too
    long) or the Redis router's heartbeat fails.  The status stays 200 while
    degraded, as the worker still serves its own clients; monitor ``state``.
    The other keys: the broker's and router's ``status()`` (``broker``,
    ``connected``, ``degraded``, ``outbox``, ``dropped``, ``lastId``,
    ``router``, ``node``), ``clients`` (this worker's streams) and the
    close counters ``droppedSlow``, ``reapedIdle``, ``reapedLifetime``.
    """
    state = get_state()
    manager = state.manager
    broker = state.broker.status()
    routing = state.routing.status()
    ok = (
        not broker.get("degraded")
        and broker.get("connected", True)
        and routing.get("connected", True)
    )
    return {
        "code": 200,
        "message": "API is healthy.",
        "data": {
            "realtime": {
                **broker,
                **routing,
                "state": "ok" if ok else "degraded",
                "clients": manager.get_client_count(),
                "droppedSlow": manager.dropped_slow,
                "reapedIdle": manager.reaped_idle,
                "reapedLifetime": manager.reaped_lifetime,
            }
        },
    }


def _app_http_error(exc: HTTPException) -> tuple[Response, int]:
    """Unknown routes and wrong methods: PocketBase's ``File not found.`` 404."""
    if exc.code in (404, 405):
        return jsonify({"data": {}, "message": "File not found.", "status": 404}), 404
    return http_error_response(exc)
