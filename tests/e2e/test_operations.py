"""Operations end to end, under real ``gunicorn -k gevent`` workers and a private Redis.

* Metrics: ``GET /api/realtime/metrics`` scraped during a short load on two
  workers (prometheus_client's multi-process mode, the folder made by the
  gunicorn hooks) follows the load: streams up, then down; events delivered
  = subscribers x events.
* Health: ``/api/health`` says ``degraded`` while the test's Redis is stopped
  and ``ok`` once it is back.
* The client listing of a ``-w 4`` server shows the clients of all four
  workers, and deleting one held by another worker than the one answering
  ends its stream.

Every wait polls with a deadline (``wait_until``); nothing sleeps to synchronise.
"""

from __future__ import annotations

import http.client
import typing as t
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from realtime_flask.config import Settings
from realtime_flask.testing import HTTPEventStream
from realtime_flask.testing import request_json
from realtime_flask.web.app import open_store
from tests.e2e.test_redis_cluster import KEEP_ALIVE_ARGS
from tests.e2e.test_redis_cluster import Pinned
from tests.e2e.test_redis_cluster import Registry
from tests.e2e.test_redis_cluster import cluster_env
from tests.e2e.test_redis_cluster import open_spread_streams
from tests.e2e.test_redis_cluster import open_stream
from tests.e2e.test_redis_cluster import pin_workers
from tests.support.redis_server import RedisServer
from tests.support.servers import GunicornServer
from tests.support.servers import wait_until

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

METRICS_TOKEN: t.Final = "e2e-metrics-token"
SU_EMAIL: t.Final = "ops@example.com"
SU_PASSWORD: t.Final = "ops-password-123"
#: Bound of every wait for something the server should do promptly (seconds).
WAIT: t.Final = 15.0


# --- helpers ----------------------------------------------------------------------------------


def scrape(server: GunicornServer, token: str = METRICS_TOKEN) -> dict[tuple[str, str], float]:
    """The metrics as ``{(sample name, sorted labels as text): value}``."""
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        conn.request("GET", "/api/realtime/metrics", headers={"Authorization": f"Bearer {token}"})
        response = conn.getresponse()
        body = response.read().decode()
    finally:
        conn.close()
    assert response.status == 200, body
    assert response.getheader("Content-Type", "").startswith("text/plain"), response.getheaders()
    out: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[sample.name, labels] = sample.value
    return out


def value(metrics: dict[tuple[str, str], float], name: str, labels: str = "") -> float:
    return metrics.get((name, labels), 0.0)


def make_superuser(data_dir: Path, schema: str) -> None:
    """A superuser in the data folder the server will open (before it starts)."""
    settings = Settings.from_mapping(
        {"REALTIME_DATA_DIR": str(data_dir), "REALTIME_SCHEMA": schema, "REALTIME_DB_READERS": 0}
    )
    store = open_store(settings, on_event=lambda event: None)
    try:
        store.upsert_superuser(SU_EMAIL, SU_PASSWORD)
    finally:
        store.close()


def log_in(server: GunicornServer, collection: str, identity: str, password: str) -> str:
    path = f"/api/collections/{collection}/auth-with-password"
    status, body = request_json(
        server.host, server.port, "POST", path, {"identity": identity, "password": password}
    )
    assert status == 200, body
    return str(body["token"])


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


# --- metrics ----------------------------------------------------------------------------------

STREAMS_PER_WORKER: t.Final = 3
EVENTS: t.Final = 7


@pytest.mark.timeout(120)
def test_metrics_follow_a_short_load_on_two_workers(redis_server: RedisServer) -> None:
    env = {**cluster_env(redis_server.url), "REALTIME_METRICS_TOKEN": METRICS_TOKEN}
    with GunicornServer(workers=2, env=env, extra_args=KEEP_ALIVE_ARGS) as server:
        registry = Registry(redis_server.url)
        streams: list[tuple[HTTPEventStream, str]] = []
        try:
            registry.wait_for_nodes(2)
            status, body = request_json(server.host, server.port, "GET", "/api/realtime/metrics")
            assert (status, body["status"]) == (401, 401), body
            before = scrape(server)
            assert value(before, "realtime_open_streams") == 0

            streams = open_spread_streams(server, registry, 2, STREAMS_PER_WORKER)
            subscribers = len(streams)
            for _, client_id in streams:
                with Pinned(server) as conn:  # any worker: the router finds the owner
                    assert conn.subscribe(client_id, ["posts/*"]) == (204, None)

            def streams_up() -> bool:
                now = scrape(server)
                return (
                    value(now, "realtime_open_streams") == subscribers
                    and value(now, "realtime_subscriptions", "topic=posts") == subscribers
                )

            wait_until(streams_up, WAIT, 0.1, message=lambda: f"{scrape(server)}")

            for n in range(EVENTS):
                assert server.publish("posts", "create", {"id": f"m{n}", "n": n}) == 200
            for stream, client_id in streams:
                got = stream.next_events(EVENTS, timeout=WAIT)
                assert [e.event for e in got] == ["posts/*"] * EVENTS, (client_id, got)

            def delivered() -> bool:
                now = scrape(server)
                return (
                    value(now, "realtime_events_delivered_total")
                    - value(before, "realtime_events_delivered_total")
                    == subscribers * EVENTS
                    and value(now, "realtime_events_published_total")
                    - value(before, "realtime_events_published_total")
                    == EVENTS
                    # each of the two workers fans out every event once
                    and value(now, "realtime_events_dispatched_total")
                    - value(before, "realtime_events_dispatched_total")
                    == 2 * EVENTS
                )

            wait_until(delivered, WAIT, 0.1, message=lambda: f"{scrape(server)}")
            during = scrape(server)
            assert value(during, "realtime_dispatch_duration_seconds_count") >= 2
            assert value(during, "realtime_broker_connected") == 1
            assert value(during, "realtime_broker_degraded") == 0

            for stream, _ in streams:
                stream.close()
            streams = []

            def streams_down() -> bool:
                now = scrape(server)
                closed = value(now, "realtime_streams_closed_total", "reason=peer_closed") + value(
                    now, "realtime_streams_closed_total", "reason=stream_closed"
                )
                return (
                    value(now, "realtime_open_streams") == 0
                    and value(now, "realtime_subscriptions", "topic=posts") == 0
                    and closed >= subscribers
                )

            wait_until(streams_down, WAIT, 0.1, message=lambda: f"{scrape(server)}")
            after = scrape(server)
            assert value(after, "realtime_streams_opened_total") >= subscribers
            # Nothing was delivered after the load ended.
            assert value(after, "realtime_events_delivered_total") == value(
                during, "realtime_events_delivered_total"
            )
            assert "Traceback" not in server.log_text(), server.log_tail()
        finally:
            for stream, _ in streams:
                stream.close()
            registry.close()


# --- health -----------------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_health_is_degraded_while_redis_is_stopped_and_ok_after(redis_server: RedisServer) -> None:
    env = {**cluster_env(redis_server.url), "REALTIME_REGISTRY_TTL": "1.5"}
    with GunicornServer(workers=1, env=env) as server:
        seen: list[dict[str, t.Any]] = []

        def state_is(wanted: str) -> bool:
            seen.append(server.health())
            return bool(seen[-1]["data"]["realtime"]["state"] == wanted)

        wait_until(lambda: state_is("ok"), WAIT, 0.1, message=lambda: f"{seen[-1:]}")
        body = seen[-1]
        assert (body["code"], body["message"]) == (200, "API is healthy.")
        assert {"outbox", "dropped", "clients", "node"} <= set(body["data"]["realtime"])

        redis_server.stop()
        wait_until(lambda: state_is("degraded"), WAIT, 0.1, message=lambda: f"{seen[-1:]}")
        assert seen[-1]["code"] == 200  # still serving its own clients

        redis_server.start()
        wait_until(lambda: state_is("ok"), WAIT, 0.1, message=lambda: f"{seen[-1:]}")
        assert "Traceback" not in server.log_text(), server.log_tail()


# --- the client listing ---------------------------------------------------------------------

WORKERS: t.Final = 4


@pytest.mark.timeout(180)
def test_client_listing_shows_all_four_workers_and_a_delete_ends_a_stream_elsewhere(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    env = cluster_env(redis_server.url, tmp_path / "data")
    make_superuser(tmp_path / "data", env["REALTIME_SCHEMA"])
    with GunicornServer(workers=WORKERS, env=env, extra_args=KEEP_ALIVE_ARGS) as server:
        registry = Registry(redis_server.url)
        streams: list[tuple[HTTPEventStream, str]] = []
        pinned: dict[str, Pinned] = {}
        try:
            nodes = registry.wait_for_nodes(WORKERS)
            token = log_in(server, "_superusers", SU_EMAIL, SU_PASSWORD)
            auth = {"Authorization": token}
            streams = open_spread_streams(server, registry, WORKERS, 1)
            owners = {client_id: str(registry.owner(client_id)) for _, client_id in streams}
            pinned = pin_workers(server, nodes)
            first = streams[0][1]
            assert pinned[owners[first]].subscribe(first, ["posts/*", "comments"]) == (204, None)

            # Anyone else: PocketBase's 401 (no token) and 403 (not a superuser).
            status, body = request_json(server.host, server.port, "GET", "/api/realtime/clients")
            assert (status, body) == (
                401,
                {
                    "data": {},
                    "message": "The request requires valid record authorization token.",
                    "status": 401,
                },
            )

            for node, conn in pinned.items():  # every worker answers for all of them
                status, listing = conn.request("GET", "/api/realtime/clients", headers=auth)
                assert status == 200, listing
                assert set(listing["workers"]) == nodes, (node, listing)
                assert listing["unanswered"] == []
                assert listing["totalItems"] == len(listing["items"])
                rows = {row["id"]: row for row in listing["items"]}
                assert {cid: rows[cid]["worker"] for cid in owners} == owners
            row = rows[first]
            assert row["subscriptions"] == ["posts/*", "comments"]
            assert row["authRecordId"] == ""
            assert row["connectedAt"].endswith("Z") and "T" in row["connectedAt"]
            assert row["queuedFrames"] == 0 and row["queuedBytes"] == 0

            # Delete a client that another worker holds than the one answering.
            victim, victim_stream = next(
                (cid, s) for s, cid in streams if owners[cid] != sorted(nodes)[0]
            )
            conn = pinned[sorted(nodes)[0]]
            assert owners[victim] != conn.node
            assert conn.request("DELETE", f"/api/realtime/clients/{victim}", headers=auth) == (
                204,
                None,
            )
            victim_stream.wait_closed(timeout=WAIT)  # its stream ended, on the other worker
            status, listing = conn.request("GET", "/api/realtime/clients", headers=auth)
            assert victim not in {row["id"] for row in listing["items"]}
            assert len(listing["items"]) >= len(streams) - 1
            status, body = conn.request("DELETE", f"/api/realtime/clients/{victim}", headers=auth)
            assert (status, body) == (
                404,
                {"data": {}, "message": "The requested resource wasn't found.", "status": 404},
            )
            assert "Traceback" not in server.log_text(), server.log_tail()
        finally:
            for stream, _ in streams:
                stream.close()
            for conn in pinned.values():
                conn.close()
            registry.close()


# --- log lines --------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_gunicorn_logs_one_line_per_connect_subscribe_disconnect_and_no_secret(
    tmp_path: Path,
) -> None:
    env = {"REALTIME_DATA_DIR": str(tmp_path / "data")}
    password = "log-test-password-9"
    with GunicornServer(workers=1, env=env) as server:
        body = {"email": "logs@example.com", "password": password, "passwordConfirm": password}
        status, user = request_json(
            server.host, server.port, "POST", "/api/collections/users/records", body
        )
        assert status == 200, user
        token = log_in(server, "users", "logs@example.com", password)
        stream, client_id = open_stream(server)
        topics = ["posts/*", f'posts?options={{"headers":{{"Authorization":"{token}"}}}}']
        status, answer = request_json(
            server.host,
            server.port,
            "POST",
            "/api/realtime",
            {"clientId": client_id, "subscriptions": topics},
            headers={"Authorization": token},
        )
        assert status == 204, answer
        stream.close()
        wanted = f"event=disconnect client={client_id} auth={user['id']}"
        wait_until(lambda: wanted in server.log_text(), WAIT, message=server.log_tail)
        lines = [line for line in server.log_text().splitlines() if client_id in line]
        assert [line.split(" event=")[1].split()[0] for line in lines] == [
            "connect",
            "subscribe",
            "disconnect",
        ], lines
        assert f"auth={user['id']} collection=users" in lines[1] and "topics=2" in lines[1]
        text = server.log_text()
        for secret in (token, password, token.split(".")[2]):
            assert secret not in text
