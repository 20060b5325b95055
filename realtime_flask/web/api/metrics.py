"""``GET /api/realtime/metrics``: Prometheus exposition of what the realtime service does.

Metrics (``prometheus_client``; counters end in ``_total``, times are seconds,
sizes bytes)::

    realtime_open_streams                         gauge    streams connected now
    realtime_streams_opened_total                 counter  streams opened (resumes included)
    realtime_streams_closed_total{reason}         counter  streams ended, by reason
    realtime_frames_dropped_total{reason}         counter  frames that never reached their
                                                           client, by its close reason
    realtime_subscriptions{topic}                 gauge    subscriptions per collection or
                                                           custom topic (as the topics name it)
    realtime_events_published_total               counter  events this service published
    realtime_events_dispatched_total              counter  events fanned out (each worker
                                                           counts each event it received)
    realtime_events_delivered_total               counter  frames queued for clients (one
                                                           per matching subscription)
    realtime_dispatch_duration_seconds            histogram one fan-out pass (a batch of
                                                           events) from the broker to the queues
    realtime_queued_frames / realtime_queued_bytes gauge   waiting in the clients' queues
    realtime_broker_connected                     gauge    1 while every worker's broker is up
    realtime_broker_degraded                      gauge    1 while any worker's broker is degraded
    realtime_broker_outbox_events                 gauge    events waiting for Redis
    realtime_broker_events_dropped_total          counter  events lost to a full outbox
    realtime_sqlite_statements_total              counter  SQLite calls of the record store

``reason`` is one of ``slow``, ``idle``, ``lifetime``, ``write_timeout``,
``peer_closed``, ``stream_closed``, ``deleted``, ``shutdown``,
``connect_failed``, ``other``.  ``topic`` takes at most ``MAX_TOPIC_LABELS``
values per process (the first seen); the rest count under ``other``.

The hot path stays cheap: the fan-out calls ``ProcessMetrics.dispatched``
once per pass (three metric updates, whatever the number of clients); every
other number is read from the engine's own counters when sampled.

Multi-process mode (gunicorn): with ``PROMETHEUS_MULTIPROC_DIR`` set before
``prometheus_client`` is imported (``server/gunicorn_hooks.py`` makes a private
one per master), every worker writes its numbers to that folder, samples its
gauges every ``SAMPLE_INTERVAL`` seconds, and a scrape on any worker answers
for all of them (gauges summed over live workers; ``realtime_broker_*``
state: worst worker).  Otherwise the numbers are this process's.

Access: a superuser's token, or ``Authorization: Bearer <REALTIME_METRICS_TOKEN>``;
else PocketBase's 401 (no or bad token) or 403 (not a superuser) body.
"""

from __future__ import annotations

import hmac
import os
import typing as t

from flask import Blueprint
from flask import Flask
from flask import Response
from flask import current_app
from flask import request
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client import CollectorRegistry
from prometheus_client import Counter
from prometheus_client import Gauge
from prometheus_client import Histogram
from prometheus_client import generate_latest
from prometheus_client import values
from prometheus_client.multiprocess import MultiProcessCollector
from werkzeug.exceptions import HTTPException

from realtime_flask import runtime
from realtime_flask.engine.client import DELETED_REASON
from realtime_flask.engine.client import MAX_LIFETIME_REASON
from realtime_flask.engine.hub import RealtimeState
from realtime_flask.engine.manager import DispatchResult
from realtime_flask.engine.reaper import IDLE_TIMEOUT_REASON
from realtime_flask.engine.reaper import SLOW_CONSUMER_REASON
from realtime_flask.engine.reaper import WRITE_TIMEOUT_REASON
from realtime_flask.errors import RealtimeError
from realtime_flask.web.api import error_response
from realtime_flask.web.api import http_error_response
from realtime_flask.web.api.clients import require_superuser
from realtime_flask.web.state import get_state

__all__ = [
    "METRICS_KEY",
    "SAMPLE_INTERVAL",
    "ProcessMetrics",
    "bp",
    "multiprocess_dir",
    "reason_label",
]

#: Where an app keeps its ``ProcessMetrics``.
METRICS_KEY: t.Final = "realtime_metrics"
#: Seconds between two samples of a worker's gauges in multi-process mode.
SAMPLE_INTERVAL: t.Final = 1.0
#: Most ``topic`` label values one process reports (the rest: ``other``).
MAX_TOPIC_LABELS: t.Final = 100
#: Buckets of the dispatch histogram (seconds).
DISPATCH_BUCKETS: t.Final = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    float("inf"),
)

_REASONS: t.Final[dict[str, str]] = {
    SLOW_CONSUMER_REASON: "slow",
    IDLE_TIMEOUT_REASON: "idle",
    MAX_LIFETIME_REASON: "lifetime",
    WRITE_TIMEOUT_REASON: "write_timeout",
    "peer closed the connection": "peer_closed",
    "stream closed": "stream_closed",
    DELETED_REASON: "deleted",
    "server shutdown": "shutdown",
    "connect failed": "connect_failed",
}

bp = Blueprint("realtime_metrics", __name__)
bp.register_error_handler(RealtimeError, error_response)
bp.register_error_handler(HTTPException, http_error_response)


def reason_label(reason: str) -> str:
    """The ``reason`` label of a close reason (a bounded set; ``other`` for the rest)."""
    return _REASONS.get(reason, "other")


def multiprocess_dir() -> str | None:
    """``PROMETHEUS_MULTIPROC_DIR`` when this process writes its metrics there
    (it was set before ``prometheus_client`` was imported), else None."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder and values.ValueClass is not values.MutexValue:
        return folder
    return None


class ProcessMetrics:
    """One app's metrics in this process (see the module doc for the names).

    :param registry: where the metrics are registered: a private registry per
        app, so several apps in one process (tests) do not collide.  In
        multi-process mode a scrape reads the folder instead.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.multiprocess = multiprocess_dir()
        r = self.registry

        def gauge(
            name: str, doc: str, mode: str = "livesum", labels: tuple[str, ...] = ()
        ) -> Gauge:
            return Gauge(name, doc, labels, registry=r, multiprocess_mode=mode)  # type: ignore[arg-type]

        self.open_streams = gauge("realtime_open_streams", "Realtime streams connected now.")
        self.opened = Counter(
            "realtime_streams_opened", "Realtime streams opened (resumes included).", registry=r
        )
        self.closed = Counter(
            "realtime_streams_closed", "Realtime streams ended, by reason.", ["reason"], registry=r
        )
        self.frames_dropped = Counter(
            "realtime_frames_dropped",
            "Frames that never reached their client, by the client's close reason.",
            ["reason"],
            registry=r,
        )
        self.subscriptions = gauge(
            "realtime_subscriptions",
            "Subscriptions per collection or custom topic.",
            labels=("topic",),
        )
        self.published = Counter(
            "realtime_events_published", "Events published by this service.", registry=r
        )
        self.dispatched = Counter(
            "realtime_events_dispatched",
            "Events fanned out (each worker counts each event it received).",
            registry=r,
        )
        self.delivered = Counter(
            "realtime_events_delivered",
            "Frames queued for clients (one per matching subscription).",
            registry=r,
        )
        self.dispatch_seconds = Histogram(
            "realtime_dispatch_duration_seconds",
            "Seconds one fan-out pass (a batch of events) took from the broker to the queues.",
            registry=r,
            buckets=DISPATCH_BUCKETS,
        )
        self.queued_frames = gauge("realtime_queued_frames", "Frames waiting in client queues.")
        self.queued_bytes = gauge("realtime_queued_bytes", "Bytes waiting in client queues.")
        self.broker_connected = gauge(
            "realtime_broker_connected", "1 while the broker (every worker's) is up.", "livemin"
        )
        self.broker_degraded = gauge(
            "realtime_broker_degraded", "1 while the broker (any worker's) is degraded.", "livemax"
        )
        self.outbox = gauge("realtime_broker_outbox_events", "Events waiting for Redis.")
        self.broker_dropped = Counter(
            "realtime_broker_events_dropped", "Events lost to a full outbox.", registry=r
        )
        self.statements = Counter(
            "realtime_sqlite_statements", "SQLite calls of the record store.", registry=r
        )
        self._seen: dict[tuple[str, str], float] = {}
        self._topics: set[str] = set()
        self._shown_topics: set[str] = set()

    # -- the hot path: once per fan-out pass ----------------------------------------------

    def on_dispatch(self, events: int, result: DispatchResult, seconds: float) -> None:
        """``RealtimeState.on_dispatch``: count one fan-out pass."""
        self.dispatched.inc(events)
        if result.frames:
            self.delivered.inc(result.frames)
        self.dispatch_seconds.observe(seconds)

    # -- sampling ---------------------------------------------------------------------

    def sample(self, state: RealtimeState, statements: int | None = None) -> None:
        """Copy the engine's counters and gauges into the metrics (cheap: one pass
        over the clients under the manager's lock, no IO but the metric files)."""
        stats = state.manager.stats()
        self.open_streams.set(stats.open)
        opened = stats.open + sum(stats.closed.values())
        self._advance(self.opened, "opened", "", opened)
        for family, counts in (("closed", stats.closed), ("frames", stats.frames_dropped)):
            metric = self.closed if family == "closed" else self.frames_dropped
            by_label: dict[str, int] = {}
            for reason, count in counts.items():
                label = reason_label(reason)
                by_label[label] = by_label.get(label, 0) + count
            for label, count in by_label.items():
                self._advance(metric.labels(reason=label), family, label, count)
        self._sample_topics(stats.subscriptions)
        self.queued_frames.set(stats.queued_frames)
        self.queued_bytes.set(stats.queued_bytes)
        broker = state.broker.status()
        self._advance(self.published, "published", "", _number(broker.get("published")))
        router = state.routing.status()
        connected = bool(broker.get("connected", True)) and bool(router.get("connected", True))
        self.broker_connected.set(1 if connected else 0)
        self.broker_degraded.set(1 if broker.get("degraded") else 0)
        self.outbox.set(_number(broker.get("outbox")))
        self._advance(self.broker_dropped, "broker_dropped", "", _number(broker.get("dropped")))
        if statements is not None:
            self._advance(self.statements, "statements", "", statements)

    def _sample_topics(self, subscriptions: dict[str, int]) -> None:
        counts: dict[str, int] = {}
        for topic, count in subscriptions.items():
            if topic not in self._topics and len(self._topics) < MAX_TOPIC_LABELS:
                self._topics.add(topic)
            label = topic if topic in self._topics else "other"
            counts[label] = counts.get(label, 0) + count
        for label in self._shown_topics - counts.keys():
            self.subscriptions.labels(topic=label).set(0)  # gone since the last sample
        for label, count in counts.items():
            self.subscriptions.labels(topic=label).set(count)
        self._shown_topics = set(counts)

    def _advance(self, metric: t.Any, family: str, label: str, value: float) -> None:
        """Bring a counter up to ``value``, an engine counter that only grows."""
        key = (family, label)
        delta = value - self._seen.get(key, 0)
        if delta > 0:
            metric.inc(delta)
            self._seen[key] = value

    # -- exposition ---------------------------------------------------------------------

    def exposition(self) -> bytes:
        """The text format: every worker's numbers in multi-process mode, else this one's."""
        if self.multiprocess is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self.multiprocess)  # type: ignore[no-untyped-call]
        return generate_latest(registry)


def _number(value: object) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def install(app: Flask, state: RealtimeState, metrics: ProcessMetrics) -> None:
    """Keep ``metrics`` on ``app`` and, in multi-process mode, sample this
    worker every ``SAMPLE_INTERVAL`` seconds until its hub closes."""
    app.extensions[METRICS_KEY] = metrics
    if metrics.multiprocess is None:
        return

    def loop() -> None:
        while not state.closed:
            try:
                metrics.sample(state, _statements(app))
            except Exception:  # a failed sample must not end the loop
                import logging

                logging.getLogger(__name__).exception("realtime metrics sample failed")
            runtime.cooperative_sleep(SAMPLE_INTERVAL)

    runtime.spawn_daemon(loop, "realtime-metrics")


def _statements(app: Flask) -> int | None:
    """The record store's SQLite call count (standalone service), else None."""
    from realtime_flask.web.api.records import STORE_KEY

    store = app.extensions.get(STORE_KEY)
    db = getattr(store, "db", None)
    count = getattr(db, "statements", None)
    return count if isinstance(count, int) else None


@bp.get("/api/realtime/metrics")
def metrics() -> Response:
    state = get_state()
    token = state.settings.metrics_token
    given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if not (token and hmac.compare_digest(given.encode(), token.encode())):
        require_superuser(state)
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    process_metrics = t.cast(ProcessMetrics, app.extensions[METRICS_KEY])
    process_metrics.sample(state, _statements(app))
    return Response(process_metrics.exposition(), 200, content_type=CONTENT_TYPE_LATEST)
