"""Resume with ``Last-Event-ID`` through real gunicorn -k gevent servers.

A raw client (a plain EventSource would do the same) drops its connection and
reconnects with the id of the last frame it got: it gets the same client back,
exactly the events it missed, then live ones.  With Redis and 4 workers the
reconnect lands on any worker.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from realtime_flask.testing import HTTPEventStream
from realtime_flask.testing import post_subscriptions
from tests.support.redis_server import RedisServer
from tests.support.redis_server import require_redis_server
from tests.support.servers import GunicornServer
from tests.support.servers import wait_until

pytestmark = pytest.mark.e2e


def record_ids(stream: HTTPEventStream, n: int) -> list[str]:
    return [json.loads(e.data)["record"]["id"] for e in stream.next_events(n, timeout=10)]


def gone(server: GunicornServer, client_id: str) -> bool:
    return post_subscriptions(server.host, server.port, client_id, [])[0] == 404


def drop_and_resume(server: GunicornServer) -> None:
    stream = HTTPEventStream(server.host, server.port)
    cid = stream.next_event().id
    assert post_subscriptions(server.host, server.port, cid, ["posts/*"])[0] == 204
    assert server.publish("posts", "create", {"id": "r1"}) == 200
    last = stream.next_event(timeout=10).id
    assert last.startswith(f"{cid}.")
    stream.abort()  # the connection dies (RST), as on a network change
    wait_until(lambda: gone(server, cid), timeout=5)

    for record_id in ("r2", "r3"):
        assert server.publish("posts", "create", {"id": record_id}) == 200
    assert server.publish("tags", "create", {"id": "t1"}) == 200

    # another address does not get the client back
    with HTTPEventStream(server.host, server.port, source_address=("127.0.0.2", 0)) as other:
        assert other.next_event().id != cid

    with HTTPEventStream(server.host, server.port, headers={"Last-Event-ID": last}) as resumed:
        assert resumed.next_event().id == cid  # PB_CONNECT names the same client
        assert record_ids(resumed, 2) == ["r2", "r3"]
        assert server.publish("posts", "create", {"id": "r4"}) == 200
        assert record_ids(resumed, 1) == ["r4"]
        # the POST path knows the resumed client again, on every worker
        for _ in range(8):
            status, _ = post_subscriptions(server.host, server.port, cid, ["posts/*", "tags/*"])
            assert status == 204
        assert server.publish("tags", "create", {"id": "t2"}) == 200
        assert record_ids(resumed, 1) == ["t2"]


def test_resume_on_one_worker() -> None:
    with GunicornServer(workers=1) as server:
        drop_and_resume(server)


@pytest.fixture
def redis_url() -> Iterator[str]:
    binary = require_redis_server()
    with RedisServer(binary) as redis:
        yield redis.url


@pytest.mark.redis
@pytest.mark.timeout(120)
def test_resume_on_any_of_four_workers_with_redis(redis_url: str) -> None:
    env = {"REALTIME_REDIS_URL": redis_url, "REALTIME_REGISTRY_TTL": "2"}
    with GunicornServer(workers=4, env=env) as server:
        drop_and_resume(server)


def bare_id_resume(server: GunicornServer) -> None:
    """Issue #10: an EventSource closed before its first event sends PB_CONNECT's bare
    id; it gets its client back and the record written while it was away."""
    stream = HTTPEventStream(server.host, server.port)
    cid = stream.next_event().id
    assert post_subscriptions(server.host, server.port, cid, ["posts/*"])[0] == 204
    stream.abort()
    wait_until(lambda: gone(server, cid), timeout=5)
    assert server.publish("posts", "create", {"id": "away"}) == 200
    with HTTPEventStream(server.host, server.port, headers={"Last-Event-ID": cid}) as resumed:
        assert resumed.next_event().id == cid
        assert record_ids(resumed, 1) == ["away"]
        assert server.publish("posts", "create", {"id": "live"}) == 200
        assert record_ids(resumed, 1) == ["live"]


def test_a_bare_id_resume_on_one_worker() -> None:
    with GunicornServer(workers=1) as server:
        bare_id_resume(server)


@pytest.mark.redis
@pytest.mark.timeout(120)
def test_a_bare_id_resume_on_any_of_four_workers_with_redis(redis_url: str) -> None:
    env = {"REALTIME_REDIS_URL": redis_url, "REALTIME_REGISTRY_TTL": "2"}
    with GunicornServer(workers=4, env=env) as server:
        assert server.publish("posts", "create", {"id": "first"}) == 200  # the log is not empty
        bare_id_resume(server)
