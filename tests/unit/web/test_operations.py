"""Operations through Flask's test client: metrics, health, the client listing, the log lines.

The multi-worker behaviour (multi-process metrics, listing across workers,
health while Redis is down) is tests/e2e/test_operations.py.
"""

from __future__ import annotations

import logging
import os
import socket
import typing as t
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from realtime_flask import Realtime
from realtime_flask.core.events import AuthUser
from realtime_flask.core.topics import parse_topic
from realtime_flask.engine.manager import RealtimeManager
from realtime_flask.engine.reaper import IDLE_TIMEOUT_REASON
from realtime_flask.engine.reaper import SLOW_CONSUMER_REASON
from realtime_flask.server import gunicorn_hooks
from realtime_flask.store.records import RecordStore
from realtime_flask.testing import TestEventStream
from realtime_flask.web.api.metrics import MAX_TOPIC_LABELS
from realtime_flask.web.api.metrics import ProcessMetrics
from realtime_flask.web.api.metrics import reason_label
from realtime_flask.web.api.records import STORE_KEY
from realtime_flask.web.app import create_app
from realtime_flask.web.extension import get_state
from tests.support.clock import FakeClock
from tests.support.env import TEST_CONFIG

PASSWORD: t.Final = "secret-password-42"
SU_PASSWORD: t.Final = "root-password-42"
METRICS_TOKEN: t.Final = "metrics-token-xyz"
UNAUTHORIZED: t.Final = {
    "data": {},
    "message": "The request requires valid record authorization token.",
    "status": 401,
}
FORBIDDEN: t.Final = {
    "data": {},
    "message": "The authorized record is not allowed to perform this action.",
    "status": 403,
}
NOT_FOUND: t.Final = {"data": {}, "message": "The requested resource wasn't found.", "status": 404}


class Service(t.NamedTuple):
    app: Flask
    client: FlaskClient
    root: str
    user: str
    user_id: str


@pytest.fixture
def service() -> Iterator[Service]:
    app = create_app({**TEST_CONFIG, "REALTIME_METRICS_TOKEN": METRICS_TOKEN})
    client = app.test_client()
    store = t.cast(RecordStore, app.extensions[STORE_KEY])
    store.upsert_superuser("root@example.com", SU_PASSWORD)
    body = {"email": "ann@example.com", "password": PASSWORD, "passwordConfirm": PASSWORD}
    created = client.post("/api/collections/users/records", json=body)
    assert created.status_code == 200, created.json
    try:
        yield Service(
            app,
            client,
            log_in(client, "_superusers", "root@example.com", SU_PASSWORD),
            log_in(client, "users", "ann@example.com", PASSWORD),
            t.cast(dict[str, str], created.json)["id"],
        )
    finally:
        get_state(app).shutdown()
        store.close()


def log_in(client: FlaskClient, collection: str, identity: str, password: str) -> str:
    response = client.post(
        f"/api/collections/{collection}/auth-with-password",
        json={"identity": identity, "password": password},
    )
    assert response.status_code == 200, response.json
    return str(t.cast(dict[str, object], response.json)["token"])


def connect(client: FlaskClient) -> tuple[TestEventStream, str]:
    stream = TestEventStream(client.get("/api/realtime", buffered=False))
    first = stream.next_event(timeout=5)
    assert first.event == "PB_CONNECT"
    return stream, first.id


def subscribe(client: FlaskClient, client_id: str, topics: list[str], token: str = "") -> None:
    headers = {"Authorization": token} if token else {}
    body = {"clientId": client_id, "subscriptions": topics}
    response = client.post("/api/realtime", json=body, headers=headers)
    assert response.status_code == 204, response.json


def scrape(client: FlaskClient, token: str = f"Bearer {METRICS_TOKEN}") -> dict[str, float]:
    response = client.get("/api/realtime/metrics", headers={"Authorization": token})
    assert response.status_code == 200, response.json
    assert response.content_type.startswith("text/plain; version=")
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return out


# --- metrics -----------------------------------------------------------------------------


def test_metrics_need_a_superuser_or_the_metrics_token(service: Service) -> None:
    c = service.client
    assert c.get("/api/realtime/metrics").json == UNAUTHORIZED
    for wrong in ("Bearer nope", "garbage", f"Bearer {METRICS_TOKEN}x"):
        response = c.get("/api/realtime/metrics", headers={"Authorization": wrong})
        assert (response.status_code, response.json) == (401, UNAUTHORIZED)
    response = c.get("/api/realtime/metrics", headers={"Authorization": service.user})
    assert (response.status_code, response.json) == (403, FORBIDDEN)
    assert "realtime_open_streams" in scrape(c, service.root)
    assert "realtime_open_streams" in scrape(c)


def test_metrics_follow_streams_subscriptions_and_events(service: Service) -> None:
    c = service.client
    before = scrape(c)
    streams = [connect(c) for _ in range(3)]
    for _, cid in streams[:2]:
        subscribe(c, cid, ["posts/*"])
    subscribe(c, streams[2][1], ["posts/r1", "posts", "chat-room"])
    now = scrape(c)
    assert now["realtime_open_streams"] == 3
    assert now["realtime_subscriptions{topic=posts}"] == 4
    assert now["realtime_subscriptions{topic=chat-room}"] == 1
    for n in range(5):
        response = c.post(
            "/api/realtime/publish",
            json={"collection": "posts", "action": "create", "record": {"id": f"r{n}"}},
            headers={"Authorization": "Bearer test-secret"},
        )
        assert response.status_code == 200
    for stream, _ in streams[:2]:
        assert len(stream.next_events(5)) == 5
    assert len(streams[2][0].next_events(6)) == 6  # posts x5 and posts/r1 once
    now = scrape(c)
    assert now["realtime_events_published_total"] - before["realtime_events_published_total"] == 5
    assert now["realtime_events_dispatched_total"] - before["realtime_events_dispatched_total"] == 5
    delivered = now["realtime_events_delivered_total"] - before["realtime_events_delivered_total"]
    assert delivered == 2 * 5 + 6
    assert now["realtime_dispatch_duration_seconds_count"] >= 1
    assert c.get("/api/collections/posts/records").status_code == 200
    statements = scrape(c)["realtime_sqlite_statements_total"]
    assert statements > before["realtime_sqlite_statements_total"]
    for stream, _ in streams:
        stream.close()
    after = scrape(c)
    assert after["realtime_open_streams"] == 0
    assert after["realtime_subscriptions{topic=posts}"] == 0  # gone, reported as 0
    assert after["realtime_streams_opened_total"] - before["realtime_streams_opened_total"] == 3
    closed = sum(v for k, v in after.items() if k.startswith("realtime_streams_closed_total{"))
    assert (
        closed - sum(v for k, v in before.items() if k.startswith("realtime_streams_closed_total{"))
        == 3
    )
    assert after["realtime_broker_connected"] == 1 and after["realtime_broker_degraded"] == 0


def test_dropped_frames_and_clients_are_counted_by_reason(fake_clock: FakeClock) -> None:
    manager = RealtimeManager(queue_size=2, clock=fake_clock)
    slow = manager.register_client()
    idle = manager.register_client()
    for client in (slow, idle):
        manager.set_subscriptions(client.id, [parse_topic("posts/*")])
    from realtime_flask.core.events import Event

    manager.dispatch(Event("posts", "create", {"id": "a"}))  # one frame queued each
    manager.dispatch_many([(Event("posts", "create", {"id": f"b{n}"}), None) for n in range(2)])
    assert slow.close_reason == SLOW_CONSUMER_REASON  # 1 queued + 2 refused
    manager.remove_client(idle.id, IDLE_TIMEOUT_REASON)
    stats = manager.stats()
    assert stats.closed == {SLOW_CONSUMER_REASON: 2}
    assert stats.frames_dropped == {SLOW_CONSUMER_REASON: 6}
    assert (stats.open, stats.subscriptions, stats.queued_frames) == (0, {}, 0)
    assert [reason_label(r) for r in (SLOW_CONSUMER_REASON, IDLE_TIMEOUT_REASON, "x")] == [
        "slow",
        "idle",
        "other",
    ]


def test_topic_labels_are_bounded() -> None:
    metrics = ProcessMetrics()
    metrics._sample_topics({f"t{n}": 1 for n in range(MAX_TOPIC_LABELS + 50)})
    shown = {
        sample.labels["topic"]: sample.value
        for family in metrics.registry.collect()
        if family.name == "realtime_subscriptions"
        for sample in family.samples
    }
    assert len(shown) == MAX_TOPIC_LABELS + 1
    assert shown["other"] == 50


def test_extension_mode_metrics_take_the_token_or_the_apps_superusers() -> None:
    def resolver(request: t.Any) -> AuthUser | None:
        name = request.headers.get("X-User")
        return None if name is None else AuthUser("admins", name, "admins", {}, name == "root")

    app = Flask("ext_app")
    app.config.update({**TEST_CONFIG, "REALTIME_METRICS_TOKEN": METRICS_TOKEN})
    Realtime(app, auth_resolver=resolver)
    c = app.test_client()
    try:
        assert c.get("/api/realtime/metrics").status_code == 401
        assert c.get("/api/realtime/metrics", headers={"X-User": "bob"}).status_code == 403
        assert c.get("/api/realtime/metrics", headers={"X-User": "root"}).status_code == 200
        assert "realtime_open_streams" in scrape(c)
        assert c.get("/api/realtime/clients", headers={"X-User": "root"}).status_code == 200
    finally:
        get_state(app).shutdown()


# --- health ------------------------------------------------------------------------------


def test_health_answers_as_pocketbase_with_the_realtime_state(service: Service) -> None:
    body = t.cast(dict[str, t.Any], service.client.get("/api/health").json)
    assert (body["code"], body["message"]) == (200, "API is healthy.")
    realtime = body["data"]["realtime"]
    assert realtime["state"] == "ok"
    assert {"broker", "connected", "degraded", "clients", "droppedSlow"} <= set(realtime)


# --- the client listing ------------------------------------------------------------------


def test_client_listing_and_delete_for_superusers(service: Service) -> None:
    c = service.client
    guest, guest_id = connect(c)
    ann, ann_id = connect(c)
    subscribe(c, ann_id, ["posts/*", 'users?options={"headers":{"x":"y"}}'], service.user)
    root = {"Authorization": service.root}
    assert c.get("/api/realtime/clients").json == UNAUTHORIZED
    response = c.get("/api/realtime/clients", headers={"Authorization": service.user})
    assert (response.status_code, response.json) == (403, FORBIDDEN)
    listing = t.cast(dict[str, t.Any], c.get("/api/realtime/clients", headers=root).json)
    worker = f"{socket.gethostname()}:{os.getpid()}"
    assert (listing["workers"], listing["unanswered"], listing["totalItems"]) == ([worker], [], 2)
    rows = {row["id"]: row for row in listing["items"]}
    assert rows[guest_id]["authRecordId"] == "" and rows[guest_id]["subscriptions"] == []
    row = rows[ann_id]
    assert (row["authRecordId"], row["authCollectionName"]) == (service.user_id, "users")
    # Topic options may carry other people's headers: the listing shows topics without them.
    assert row["subscriptions"] == ["posts/*", "users"] and row["worker"] == worker
    assert row["connectedAt"].endswith("Z")
    assert set(row) >= {"queuedFrames", "queuedBytes", "remoteAddr", "authCollectionId"}

    assert c.delete(f"/api/realtime/clients/{ann_id}", headers=root).status_code == 204
    ann.wait_closed(timeout=5)  # its stream ended
    for unknown in (ann_id, "nope", "a.b"):
        response = c.delete(f"/api/realtime/clients/{unknown}", headers=root)
        assert (response.status_code, response.json) == (404, NOT_FOUND)
    user = {"Authorization": service.user}
    response = c.delete(f"/api/realtime/clients/{guest_id}", headers=user)
    assert response.status_code == 403
    assert get_state(service.app).manager.get_client(guest_id) is not None  # unchanged
    guest.close()


def test_a_deleted_client_is_not_resumable(fake_clock: FakeClock) -> None:
    from realtime_flask.engine.router import LocalRouter

    manager = RealtimeManager(clock=fake_clock)
    router = LocalRouter(manager, grace=60)
    client = manager.register_client(remote_addr="1.2.3.4")
    assert router.close_client(client.id) is True
    assert router.close_client(client.id) is False
    assert router.take_parked(client.id, "1.2.3.4") is None


# --- log lines ---------------------------------------------------------------------------


def test_one_log_line_per_connect_subscribe_disconnect_and_no_secret(
    service: Service, caplog: pytest.LogCaptureFixture
) -> None:
    c = service.client
    caplog.set_level(logging.DEBUG)  # everything any logger says
    token = log_in(c, "users", "ann@example.com", PASSWORD)
    stream, cid = connect(c)
    with_token = f'posts?options={{"headers":{{"Authorization":"{token}"}}}}'
    subscribe(c, cid, ["posts/*", with_token], token)
    stream.close()
    lines = [r for r in caplog.records if r.name == "realtime_flask.clients"]
    assert [r.levelno for r in lines] == [logging.INFO] * 3
    connect_line, subscribe_line, disconnect_line = (r.getMessage() for r in lines)
    assert connect_line.startswith(f"event=connect client={cid} auth=- ")
    assert subscribe_line.startswith(f"event=subscribe client={cid} auth={service.user_id} ")
    assert "collection=users" in subscribe_line and "topics=2 collections=posts" in subscribe_line
    assert disconnect_line.startswith(f"event=disconnect client={cid} auth={service.user_id} ")
    assert 'reason="' in disconnect_line
    text = "\n".join(r.getMessage() for r in caplog.records) + caplog.text
    for secret in (token, PASSWORD, SU_PASSWORD, service.root, token.split(".")[2]):
        assert secret not in text


def test_log_values_cannot_forge_fields_or_lines(
    fake_clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="realtime_flask.clients")
    manager = RealtimeManager(clock=fake_clock)
    client = manager.register_client(remote_addr="1.2.3.4")
    manager.subscribe(client.id, [parse_topic('a b\nevent=x"/*')], None)
    line = caplog.records[-1].getMessage()
    assert "\n" not in line and line.endswith('collections="a b?event=x\\""')


# --- gunicorn hooks ----------------------------------------------------------------------


def test_gunicorn_hooks_make_clean_and_remove_the_metrics_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(gunicorn_hooks.MULTIPROC_ENV, raising=False)
    monkeypatch.delenv("RF_METRICS_DIR_OWNED", raising=False)
    gunicorn_hooks.on_starting(None)
    made = Path(os.environ[gunicorn_hooks.MULTIPROC_ENV])
    assert made.is_dir()
    live = made / "gauge_livesum_4242.db"
    live.write_bytes(b"")
    kept = made / "counter_4242.db"
    kept.write_bytes(b"")
    gunicorn_hooks.child_exit(None, t.cast(t.Any, type("W", (), {"pid": 4242})))
    assert not live.exists() and kept.exists()  # a dead worker's counters stay in the sums
    gunicorn_hooks.on_exit(None)
    assert not made.exists()

    given = tmp_path / "given"
    given.mkdir()
    (given / "counter_1.db").write_bytes(b"old run")
    (given / "notes.txt").write_text("mine")
    monkeypatch.setenv(gunicorn_hooks.MULTIPROC_ENV, str(given))
    monkeypatch.delenv("RF_METRICS_DIR_OWNED")
    gunicorn_hooks.on_starting(None)
    assert sorted(p.name for p in given.iterdir()) == ["notes.txt"]
    gunicorn_hooks.on_exit(None)
    assert given.is_dir()  # not ours: left alone
