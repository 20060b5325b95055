"""``REALTIME_*`` settings: defaults in one place, validated once into a frozen Settings.

Rule: every key the package reads is in ``DEFAULTS`` with its documentation in
``DOCS``; the README table is generated from the same two mappings and a test
keeps them in sync.  A bad value raises ConfigError at start-up, never on a
request.
"""

from __future__ import annotations

import os
import typing as t
from collections.abc import Mapping
from dataclasses import dataclass

from realtime_flask.errors import ConfigError

__all__ = ["DEFAULTS", "DOCS", "Settings", "env_overrides", "markdown_table"]

DEFAULTS: t.Final[Mapping[str, object]] = {
    "REALTIME_IDLE_TIMEOUT": 300.0,
    "REALTIME_MAX_LIFETIME": 1800.0,
    "REALTIME_KEEPALIVE_INTERVAL": 15.0,
    "REALTIME_QUEUE_SIZE": 512,
    "REALTIME_QUEUE_BYTES": 1024 * 1024,
    "REALTIME_MAX_SUBSCRIPTIONS": 1000,
    "REALTIME_MAX_TOPIC_LENGTH": 2500,
    "REALTIME_REAPER_ENABLED": True,
    "REALTIME_REAPER_INTERVAL": 5.0,
    "REALTIME_CORS_ORIGIN": "*",
    "REALTIME_PUBLISH_SECRET": "",
    "REALTIME_METRICS_TOKEN": "",
    "REALTIME_REDIS_URL": "",
    "REALTIME_HISTORY_SIZE": 10000,
    "REALTIME_OUTBOX_SIZE": 10000,
    "REALTIME_REGISTRY_TTL": 10.0,
    "REALTIME_RESUME_GRACE": 60.0,
    "REALTIME_DRAIN_WINDOW": 5.0,
    "REALTIME_MAX_BODY": 1024 * 1024,
    "REALTIME_MAX_CLIENTS": 0,
    "REALTIME_WRITE_TIMEOUT": 30.0,
    "REALTIME_MAX_CLIENTS_PER_IP": 0,
    "REALTIME_TRUSTED_PROXIES": 0,
    "REALTIME_SCHEMA": "",
    "REALTIME_DATA_DIR": "rf_data",
    "REALTIME_DB_READERS": 4,
    "REALTIME_QUERY_TIMEOUT": 10.0,
    "REALTIME_HOST": "127.0.0.1",
    "REALTIME_PORT": 8090,
}

DOCS: t.Final[Mapping[str, str]] = {
    "REALTIME_IDLE_TIMEOUT": "Seconds without a delivered frame or an accepted POST after which "
    "the idle reaper closes a stream (PocketBase: 300).",
    "REALTIME_MAX_LIFETIME": "Seconds after which any stream is closed, active or not "
    "(PocketBase: 1800). The SDK reconnects by itself.",
    "REALTIME_KEEPALIVE_INTERVAL": "Seconds between `:ping` comment frames on a quiet stream; "
    "they find dead peers and keep proxies open. They do not count as activity.",
    "REALTIME_QUEUE_SIZE": "Frames a client may have queued; a client whose queue is full is "
    "disconnected (it reconnects and resubscribes) so it never slows the others.",
    "REALTIME_QUEUE_BYTES": "Bytes a client may have queued (a frame that reaches an empty "
    "queue always fits); past it, as past `REALTIME_QUEUE_SIZE`, the client is closed as too "
    "slow (it reconnects and resumes). `0`: frames only.",
    "REALTIME_MAX_SUBSCRIPTIONS": "Most topics in one `POST /api/realtime` (PocketBase: 1000).",
    "REALTIME_MAX_TOPIC_LENGTH": "Most UTF-8 bytes in one topic (PocketBase: 2500).",
    "REALTIME_REAPER_ENABLED": "Run the idle-reaper greenlet (tests turn it off and call "
    "`RealtimeManager.reap()` with an injected clock).",
    "REALTIME_REAPER_INTERVAL": "Seconds between two passes of the idle reaper.",
    "REALTIME_CORS_ORIGIN": "`Access-Control-Allow-Origin` for the realtime and records routes "
    "(PocketBase allows `*`); empty turns CORS headers off.",
    "REALTIME_PUBLISH_SECRET": "Standalone service only: bearer secret for "
    "`POST /api/realtime/publish`; empty (the default) disables that route.",
    "REALTIME_METRICS_TOKEN": "Bearer token that may read `GET /api/realtime/metrics` "
    "(Prometheus) besides a superuser's token; empty: superusers only (in extension mode: "
    "those your `auth_resolver` marks `superuser`). See `docs/operations.md`.",
    "REALTIME_REDIS_URL": "Redis URL (`redis://host:6379/0`): share one event log and the "
    "client registry between workers and hosts; empty = one process, in-memory broker.",
    "REALTIME_HISTORY_SIZE": "Events kept in the log (Redis Stream `MAXLEN ~`, or the memory "
    "broker's ring buffer).",
    "REALTIME_OUTBOX_SIZE": "Events a process holds while Redis is unreachable; past it, "
    "clients get an `RF_RESET` event instead of a silent loss.",
    "REALTIME_REGISTRY_TTL": "Seconds a worker's heartbeat lives in Redis; clients of a "
    "crashed worker answer 404 this long after it died.",
    "REALTIME_RESUME_GRACE": "Seconds after a disconnect during which a plain EventSource "
    "that reconnects with `Last-Event-ID` from the same address gets its client back (id, "
    "topics, auth) and the events it missed; 0 turns resume off.",
    "REALTIME_DRAIN_WINDOW": "Seconds over which clients of a stopping worker come back: "
    "each stream closed by a graceful stop (SIGTERM, reload) gets a `retry:` drawn from "
    "this window, so reconnects arrive spread out, not all at once. Keep it well under "
    "gunicorn's `graceful_timeout`.",
    "REALTIME_MAX_BODY": "Most bytes in a request body on the realtime, records and publish "
    "routes; a longer body answers 413 with PocketBase's JSON body.",
    "REALTIME_MAX_CLIENTS": "Most realtime streams one worker holds at once; a stream past it "
    "answers 429 with PocketBase's JSON body (`0`: no cap but gunicorn's "
    "`worker_connections`).",
    "REALTIME_MAX_CLIENTS_PER_IP": "Most realtime streams one client address holds at once in "
    "one worker (429 past it; `0`: no cap). Behind a proxy, set `REALTIME_TRUSTED_PROXIES` "
    "first, or every client has the proxy's address.",
    "REALTIME_WRITE_TIMEOUT": "Seconds one write to a stream may take: a client that stopped "
    "reading (its connection's window stays full) is ended and its connection cut once a write "
    "has waited this long (checked at each idle-reaper pass), and a peer gone without FIN is "
    "dropped by the kernel once sent data stays unacknowledged this long (Linux "
    "`TCP_USER_TIMEOUT`). `0` turns both off.",
    "REALTIME_TRUSTED_PROXIES": "How many reverse proxies (nginx, a load balancer) stand in "
    "front of the app, each appending to `X-Forwarded-For`: the client's address, scheme and "
    "host are then read from `X-Forwarded-For/-Proto/-Host` (Werkzeug's `ProxyFix`), so the "
    "same-address checks of `POST /api/realtime` and resume hold. 0 = none: those headers are "
    "ignored and a request carrying them logs one warning. See `docs/deployment.md`.",
    "REALTIME_SCHEMA": "Standalone service: a collections JSON file in PocketBase's export "
    "shape; empty uses the built-in `users` (auth) and `posts` collections.",
    "REALTIME_DATA_DIR": "Standalone service: folder of the SQLite database (`data.db`, WAL "
    "mode); `:memory:` keeps records in memory (tests).",
    "REALTIME_DB_READERS": "Standalone service: SQLite reader connections for list queries, "
    "each running on its own thread off the gevent hub (WAL mode: they run in parallel); one "
    "client address may hold all but one of them. `0` runs every statement on the writer "
    "connection.",
    "REALTIME_QUERY_TIMEOUT": "Standalone service: seconds one SQLite statement may run before "
    "it is interrupted and the request answers 400 (`0`: no limit).",
    "REALTIME_HOST": "Interface `python wsgi.py` binds to.",
    "REALTIME_PORT": "Port `python wsgi.py` listens on.",
}


def _number(key: str, value: object, kind: type[float] | type[int], minimum: float) -> t.Any:
    if isinstance(value, bool):
        raise ConfigError(f"{key} must be a number, got {value!r}")
    try:
        number = kind(value)  # type: ignore[arg-type, call-overload]
    except (TypeError, ValueError):
        raise ConfigError(f"{key} must be a number, got {value!r}") from None
    if kind is int and isinstance(value, float) and not value.is_integer():
        raise ConfigError(f"{key} must be a whole number, got {value!r}")
    if number != number or number in (float("inf"), float("-inf")):
        raise ConfigError(f"{key} must be finite, got {value!r}")
    if number < minimum:
        raise ConfigError(f"{key} must be >= {minimum}, got {value!r}")
    return number


def _flag(key: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"1", "true", "yes", "on"}:
        return True
    if isinstance(value, str) and value.strip().lower() in {"0", "false", "no", "off", ""}:
        return False
    raise ConfigError(f"{key} must be a boolean, got {value!r}")


def _text(key: str, value: object) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{key} must be a string, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class Settings:
    """The validated, immutable view of every ``REALTIME_*`` key."""

    idle_timeout: float
    max_lifetime: float
    keepalive_interval: float
    queue_size: int
    queue_bytes: int
    max_subscriptions: int
    max_topic_length: int
    reaper_enabled: bool
    reaper_interval: float
    cors_origin: str
    publish_secret: str
    metrics_token: str
    redis_url: str
    history_size: int
    outbox_size: int
    registry_ttl: float
    resume_grace: float
    drain_window: float
    max_body: int
    max_clients: int
    write_timeout: float
    max_clients_per_ip: int
    trusted_proxies: int
    schema: str
    data_dir: str
    db_readers: int
    query_timeout: float
    host: str
    port: int

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, object]) -> Settings:
        """Read ``REALTIME_*`` keys from ``cfg`` (Flask config), defaults for the rest."""
        unknown = sorted(k for k in cfg if k.startswith("REALTIME_") and k not in DEFAULTS)
        if unknown:
            raise ConfigError(f"unknown setting(s) {', '.join(unknown)}; known: {sorted(DEFAULTS)}")

        def get(key: str) -> object:
            return cfg.get(key, DEFAULTS[key])

        settings = cls(
            idle_timeout=_number(
                "REALTIME_IDLE_TIMEOUT", get("REALTIME_IDLE_TIMEOUT"), float, 0.001
            ),
            max_lifetime=_number(
                "REALTIME_MAX_LIFETIME", get("REALTIME_MAX_LIFETIME"), float, 0.001
            ),
            keepalive_interval=_number(
                "REALTIME_KEEPALIVE_INTERVAL", get("REALTIME_KEEPALIVE_INTERVAL"), float, 0.001
            ),
            queue_size=_number("REALTIME_QUEUE_SIZE", get("REALTIME_QUEUE_SIZE"), int, 1),
            queue_bytes=_number("REALTIME_QUEUE_BYTES", get("REALTIME_QUEUE_BYTES"), int, 0),
            max_subscriptions=_number(
                "REALTIME_MAX_SUBSCRIPTIONS", get("REALTIME_MAX_SUBSCRIPTIONS"), int, 0
            ),
            max_topic_length=_number(
                "REALTIME_MAX_TOPIC_LENGTH", get("REALTIME_MAX_TOPIC_LENGTH"), int, 1
            ),
            reaper_enabled=_flag("REALTIME_REAPER_ENABLED", get("REALTIME_REAPER_ENABLED")),
            reaper_interval=_number(
                "REALTIME_REAPER_INTERVAL", get("REALTIME_REAPER_INTERVAL"), float, 0.001
            ),
            cors_origin=_text("REALTIME_CORS_ORIGIN", get("REALTIME_CORS_ORIGIN")),
            publish_secret=_text("REALTIME_PUBLISH_SECRET", get("REALTIME_PUBLISH_SECRET")),
            metrics_token=_text("REALTIME_METRICS_TOKEN", get("REALTIME_METRICS_TOKEN")),
            redis_url=_text("REALTIME_REDIS_URL", get("REALTIME_REDIS_URL")),
            history_size=_number("REALTIME_HISTORY_SIZE", get("REALTIME_HISTORY_SIZE"), int, 1),
            outbox_size=_number("REALTIME_OUTBOX_SIZE", get("REALTIME_OUTBOX_SIZE"), int, 1),
            registry_ttl=_number("REALTIME_REGISTRY_TTL", get("REALTIME_REGISTRY_TTL"), float, 0.1),
            resume_grace=_number("REALTIME_RESUME_GRACE", get("REALTIME_RESUME_GRACE"), float, 0),
            drain_window=_number("REALTIME_DRAIN_WINDOW", get("REALTIME_DRAIN_WINDOW"), float, 0),
            max_body=_number("REALTIME_MAX_BODY", get("REALTIME_MAX_BODY"), int, 1),
            max_clients=_number("REALTIME_MAX_CLIENTS", get("REALTIME_MAX_CLIENTS"), int, 0),
            write_timeout=_number(
                "REALTIME_WRITE_TIMEOUT", get("REALTIME_WRITE_TIMEOUT"), float, 0
            ),
            max_clients_per_ip=_number(
                "REALTIME_MAX_CLIENTS_PER_IP", get("REALTIME_MAX_CLIENTS_PER_IP"), int, 0
            ),
            trusted_proxies=_number(
                "REALTIME_TRUSTED_PROXIES", get("REALTIME_TRUSTED_PROXIES"), int, 0
            ),
            schema=_text("REALTIME_SCHEMA", get("REALTIME_SCHEMA")),
            data_dir=_text("REALTIME_DATA_DIR", get("REALTIME_DATA_DIR")),
            db_readers=_number("REALTIME_DB_READERS", get("REALTIME_DB_READERS"), int, 0),
            query_timeout=_number(
                "REALTIME_QUERY_TIMEOUT", get("REALTIME_QUERY_TIMEOUT"), float, 0
            ),
            host=_text("REALTIME_HOST", get("REALTIME_HOST")),
            port=_number("REALTIME_PORT", get("REALTIME_PORT"), int, 0),
        )
        if settings.port > 65535:
            raise ConfigError(f"REALTIME_PORT must be <= 65535, got {settings.port!r}")
        if settings.keepalive_interval >= settings.idle_timeout:
            raise ConfigError(
                "REALTIME_KEEPALIVE_INTERVAL must be shorter than REALTIME_IDLE_TIMEOUT "
                f"({settings.keepalive_interval!r} >= {settings.idle_timeout!r})"
            )
        return settings


def env_overrides(environ: Mapping[str, str] | None = None) -> dict[str, object]:
    """The ``REALTIME_*`` variables of the process environment (strings, validated later)."""
    source = os.environ if environ is None else environ
    return {k: v for k, v in source.items() if k in DEFAULTS}


def markdown_table() -> str:
    """The README's settings table, rendered from DEFAULTS and DOCS."""
    rows = ["| key | default | meaning |", "|---|---|---|"]
    for key, default in DEFAULTS.items():
        shown = (
            "(empty)"
            if default == ""
            else f"`{str(default).lower() if isinstance(default, bool) else default}`"
        )
        rows.append(f"| `{key}` | {shown} | {DOCS[key]} |")
    return "\n".join(rows)
