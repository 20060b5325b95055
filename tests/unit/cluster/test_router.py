"""RedisRouter against a private redis-server: two workers in one process.

Each worker is a RealtimeManager with its own RedisRouter (its own node id,
heartbeat and control loop) on the same Redis, which is what two gunicorn
workers are.  The routers' loops run as plain threads (this process never
imports gevent).  A worker whose loops never run (``spawn=never``) is a dead
one: it beat once at start and its heartbeat then expires.  Waits are on
conditions (``wait_until``, thread joins), never sleeps.
"""

from __future__ import annotations

import json
import threading
import time
import typing as t
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis

from realtime_flask.cluster.router import CONTROL_VERSION
from realtime_flask.cluster.router import NODES_FORGET_AFTER
from realtime_flask.cluster.router import RedisRouter
from realtime_flask.core.events import AuthUser
from realtime_flask.core.events import Event
from realtime_flask.core.topics import Subscription
from realtime_flask.core.topics import parse_topic
from realtime_flask.engine.manager import RealtimeManager
from realtime_flask.errors import AccessDenied
from realtime_flask.errors import BadRequest
from realtime_flask.errors import ClientNotFound
from tests.support.redis_server import RedisServer
from tests.support.servers import wait_until

pytestmark = pytest.mark.redis

WAIT = 10.0
ADDR = "10.0.0.1"
CLIENTS = "realtime:clients"
ALICE = AuthUser(
    collection_id="_pb_users_auth_",
    id="alice0000000001",
    collection_name="users",
    record={"id": "alice0000000001", "email": "alice@example.com", "tokenKey": "k1"},
)
BOB = AuthUser(collection_id="_pb_users_auth_", id="bob000000000001", collection_name="users")


def subs(*topics: str) -> list[Subscription]:
    return [parse_topic(topic) for topic in topics]


def raws(items: tuple[Subscription, ...]) -> list[str]:
    return [sub.raw for sub in items]


def never(target: t.Callable[[], None]) -> object:
    """The spawn of a dead worker: its loops never run."""
    return None


@dataclass
class Worker:
    manager: RealtimeManager
    router: RedisRouter

    def connect(self) -> str:
        """A stream opened here: registered, as the web layer does before PB_CONNECT."""
        client = self.manager.register_client(remote_addr=ADDR)
        self.router.register(client.id)
        return client.id

    def client(self, client_id: str) -> t.Any:
        client = self.manager.get_client(client_id)
        assert client is not None
        return client


MakeWorker = t.Callable[..., Worker]


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with RedisServer() as srv:
        yield srv


@pytest.fixture
def raw(server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(server.url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def make_worker(server: RedisServer) -> Iterator[MakeWorker]:
    threads: list[threading.Thread] = []
    routers: list[RedisRouter] = []

    def spawn(target: t.Callable[[], None]) -> object:
        thread = threading.Thread(target=target, name=f"test-{target.__name__}", daemon=True)
        thread.start()
        threads.append(thread)
        return thread

    def make(**options: t.Any) -> Worker:
        manager = RealtimeManager(queue_size=8)
        router = RedisRouter(server.url, manager, **{"spawn": spawn, **options})
        routers.append(router)
        router.start()
        return Worker(manager, router)

    yield make
    for router in routers:
        router.close()
    for thread in threads:
        thread.join(WAIT)  # the control loop's BLPOP returns within a second
    assert [th.name for th in threads if th.is_alive()] == []


def ignored_messages(caplog: pytest.LogCaptureFixture, kind: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if f"ignoring a {kind} " in r.getMessage()]


# -- routing -----------------------------------------------------------------------------


def test_a_post_on_another_worker_is_applied_by_the_owner(make_worker: MakeWorker) -> None:
    owner, other = make_worker(), make_worker()
    client_id = owner.connect()
    other.router.subscribe(client_id, subs("posts", "posts/r1"), ALICE, ADDR)
    client = owner.client(client_id)
    assert raws(client.subscriptions) == ["posts", "posts/r1"]
    assert client.user == ALICE and client.user.record == ALICE.record
    assert owner.manager.dispatch(Event("posts", "create", {"id": "r1"})).frames == 2
    assert other.manager.get_client_count() == 0


def test_the_owner_s_refusals_come_back_as_the_same_errors(make_worker: MakeWorker) -> None:
    owner, other = make_worker(), make_worker()
    client_id = owner.connect()
    other.router.subscribe(client_id, subs("posts"), ALICE, ADDR)
    with pytest.raises(BadRequest):
        other.router.subscribe(client_id, subs("comments"), ALICE, "10.0.0.2")
    with pytest.raises(AccessDenied):
        other.router.subscribe(client_id, subs("comments"), BOB, ADDR)
    client = owner.client(client_id)
    assert (raws(client.subscriptions), client.user) == (["posts"], ALICE)


def test_a_local_client_never_leaves_the_process(
    make_worker: MakeWorker, server: RedisServer
) -> None:
    worker = make_worker()
    client_id = worker.connect()
    server.stop()
    worker.router.subscribe(client_id, subs("posts"), None, ADDR)  # no Redis round trip
    assert raws(worker.client(client_id).subscriptions) == ["posts"]


def test_an_unknown_client_is_not_found(make_worker: MakeWorker, raw: redis.Redis) -> None:
    worker = make_worker()
    with pytest.raises(ClientNotFound):
        worker.router.subscribe("x" * 40, subs("posts"), None, ADDR)
    # An entry naming this very node, for a client that is not here (closed meanwhile).
    raw.hset(CLIENTS, "y" * 40, worker.router.node_id)
    with pytest.raises(ClientNotFound):
        worker.router.subscribe("y" * 40, subs("posts"), None, ADDR)


def test_a_client_of_a_dead_worker_is_not_found_once_its_heartbeat_expired(
    make_worker: MakeWorker, raw: redis.Redis
) -> None:
    dead, live = make_worker(ttl=0.3, spawn=never), make_worker()
    client_id = dead.connect()
    assert raw.hget(CLIENTS, client_id) == dead.router.node_id
    node_key = f"realtime:node:{dead.router.node_id}"
    wait_until(lambda: not raw.exists(node_key), WAIT, message="the heartbeat key expired")
    with pytest.raises(ClientNotFound):
        live.router.subscribe(client_id, subs("posts"), None, ADDR)
    assert raw.hget(CLIENTS, client_id) is None  # swept by the POST that found it dead
    assert dead.client(client_id).subscriptions == ()


def test_a_post_waiting_on_an_owner_that_dies_is_not_found(
    make_worker: MakeWorker, raw: redis.Redis
) -> None:
    dead, live = make_worker(spawn=never), make_worker()
    client_id = dead.connect()
    errors: list[ClientNotFound] = []

    def post() -> None:
        try:
            live.router.subscribe(client_id, subs("posts"), None, ADDR)
        except ClientNotFound as exc:
            errors.append(exc)

    poster = threading.Thread(target=post)
    poster.start()
    ctl = f"realtime:ctl:{dead.router.node_id}"
    wait_until(lambda: raw.llen(ctl) == 1, WAIT, message="the command is queued")
    raw.delete(f"realtime:node:{dead.router.node_id}")  # what the TTL does to a dead worker
    poster.join(WAIT)
    assert not poster.is_alive()
    assert [type(exc) for exc in errors] == [ClientNotFound]
    assert raw.hget(CLIENTS, client_id) is None


def test_a_heartbeat_registers_the_clients_again_after_redis_lost_them(
    make_worker: MakeWorker, raw: redis.Redis
) -> None:
    worker = make_worker(ttl=0.3)
    client_id = worker.connect()
    raw.flushall()
    wait_until(lambda: raw.hget(CLIENTS, client_id) == worker.router.node_id, WAIT)


def test_close_forgets_the_closed_clients_and_the_node(
    make_worker: MakeWorker, raw: redis.Redis
) -> None:
    worker = make_worker()
    closed, kept = worker.connect(), worker.connect()
    worker.manager.remove_client(closed)
    worker.router.close()
    assert raw.hget(CLIENTS, closed) is None
    assert raw.hget(CLIENTS, kept) == worker.router.node_id  # lazily swept once found dead
    assert not raw.exists(f"realtime:node:{worker.router.node_id}")


# -- the wire format and its version -------------------------------------------------------


def test_replies_carry_the_version(make_worker: MakeWorker, raw: redis.Redis) -> None:
    owner = make_worker()
    client_id = owner.connect()
    ctl = f"realtime:ctl:{owner.router.node_id}"
    base = {"v": CONTROL_VERSION, "until": time.time() + 60, "client": client_id, "addr": ADDR}
    raw.rpush(ctl, json.dumps({**base, "req": "ok", "subs": ["posts"], "auth": None}))
    raw.rpush(ctl, json.dumps({**base, "req": "no", "subs": ["posts"], "auth": None, "addr": "x"}))
    replies = [raw.blpop([f"realtime:reply:{req}"], timeout=WAIT) for req in ("ok", "no")]
    assert [json.loads(reply[1]) if reply else None for reply in replies] == [
        {"v": "1", "status": 204},
        {"v": "1", "status": 400, "message": "Invalid realtime client."},
    ]


def test_commands_of_another_version_are_ignored_and_logged_once(
    make_worker: MakeWorker, raw: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    owner, other = make_worker(), make_worker()
    client_id = owner.connect()
    ctl = f"realtime:ctl:{owner.router.node_id}"
    base = {"until": time.time() + 60, "client": client_id, "subs": ["old"], "addr": ADDR}
    raw.rpush(ctl, json.dumps({**base, "req": "unversioned", "auth": None}))
    raw.rpush(ctl, json.dumps({**base, "v": "2", "req": "newer1", "auth": None}))
    raw.rpush(ctl, json.dumps({**base, "v": "2", "req": "newer2", "auth": None}))
    # Queued behind them: once it is applied, the owner has read (and skipped) the others.
    other.router.subscribe(client_id, subs("posts"), None, ADDR)
    assert raws(owner.client(client_id).subscriptions) == ["posts"]
    assert raw.exists(*(f"realtime:reply:{r}" for r in ("unversioned", "newer1", "newer2"))) == 0
    assert len(ignored_messages(caplog, "control command")) == 2  # once per version


def test_a_reply_of_another_version_counts_as_no_reply(
    make_worker: MakeWorker, raw: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    worker = make_worker()
    node, client_id = "a-worker-of-another-version", "c" * 40
    raw.set(f"realtime:node:{node}", "1", px=60_000)
    raw.hset(CLIENTS, client_id, node)
    seen: list[dict[str, t.Any]] = []

    def foreign_owner() -> None:
        item = raw.blpop([f"realtime:ctl:{node}"], timeout=WAIT)
        if item is not None:
            command = json.loads(item[1])
            seen.append(command)
            reply = json.dumps({"v": "2", "status": 204})
            raw.rpush(f"realtime:reply:{command['req']}", reply)

    owner = threading.Thread(target=foreign_owner)
    owner.start()
    with pytest.raises(ClientNotFound):
        worker.router.subscribe(client_id, subs("posts"), ALICE, ADDR)
    owner.join(WAIT)
    assert len(seen) == 1
    assert {k: seen[0][k] for k in ("v", "client", "subs", "addr")} == {
        "v": "1",
        "client": client_id,
        "subs": ["posts"],
        "addr": ADDR,
    }
    assert seen[0]["auth"]["id"] == ALICE.id
    assert len(ignored_messages(caplog, "control reply")) == 1


# -- parked clients ------------------------------------------------------------------------


def test_a_client_closed_on_one_worker_resumes_on_another(
    make_worker: MakeWorker, raw: redis.Redis
) -> None:
    first, second = make_worker(grace=30), make_worker(grace=30)
    client_id = first.connect()
    first.manager.subscribe(client_id, subs("posts"), ALICE, remote_addr=ADDR)
    first.client(client_id).since = "1700000000000-3"  # where its stream started
    first.manager.remove_client(client_id, reason="stream ended")
    key = f"realtime:parked:{client_id}"
    wait_until(lambda: raw.exists(key), WAIT, message="parked")
    assert json.loads(t.cast(str, raw.get(key)))["v"] == CONTROL_VERSION
    assert second.router.take_parked(client_id, "10.0.0.2") is None
    parked = second.router.take_parked(client_id, ADDR)
    assert parked is not None
    assert (parked.user, raws(parked.subscriptions), parked.reason, parked.since) == (
        ALICE,
        ["posts"],
        "stream ended",
        "1700000000000-3",  # a bare-id resume on the second worker replays from here
    )
    assert parked.user is not None and parked.user.record == ALICE.record
    assert second.router.take_parked(client_id, ADDR) is None  # taken once


def test_a_parked_state_of_another_version_is_not_resumed(
    make_worker: MakeWorker, raw: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    worker = make_worker(grace=30)
    key = f"realtime:parked:{'p' * 40}"
    raw.set(key, json.dumps({"v": "2", "subs": ["posts"], "addr": ADDR}), px=60_000)
    assert worker.router.take_parked("p" * 40, ADDR) is None
    assert raw.exists(key)  # left for a worker that reads that version
    assert len(ignored_messages(caplog, "parked client")) == 1


# --- the client listing and delete (GET/DELETE /api/realtime/clients) -------------------------


def test_listing_gathers_every_live_worker_and_names_a_silent_one(make_worker: MakeWorker) -> None:
    one, two = make_worker(), make_worker()
    silent = make_worker(spawn=never, ttl=30, reply_timeout=0.5)  # beats once, never answers
    a, b = one.connect(), two.connect()
    one.router.subscribe(b, subs("posts/*"), ALICE, ADDR)  # routed to its owner
    two.router.reply_timeout = 1.0
    listing = two.router.list_clients()
    rows = {row["id"]: row for row in listing["items"]}
    assert {a: one.router.node_id, b: two.router.node_id} == {
        cid: rows[cid]["worker"] for cid in (a, b)
    }
    assert rows[b]["subscriptions"] == ["posts/*"]
    assert (rows[b]["authRecordId"], rows[b]["authCollectionName"]) == (ALICE.id, "users")
    assert set(listing["workers"]) == {one.router.node_id, two.router.node_id}
    assert listing["unanswered"] == [silent.router.node_id]


def test_delete_ends_a_client_on_its_owner_and_is_not_resumable(
    make_worker: MakeWorker, raw: redis.Redis
) -> None:
    one, two = make_worker(grace=60), make_worker(grace=60)
    a = one.connect()
    client = one.client(a)
    assert two.router.close_client(a) is True  # another worker holds it
    assert client.controller.closed and one.manager.get_client(a) is None
    assert two.router.close_client(a) is False  # gone now: 404
    assert two.router.close_client("unknown") is False
    wait_until(lambda: raw.hget(CLIENTS, a) is None, WAIT, message="registry entry left")
    assert two.router.take_parked(a, ADDR) is None  # a deleted client is not resumable
    b = two.connect()
    assert two.router.close_client(b) is True  # a local one
    assert two.manager.get_client(b) is None


def test_an_unknown_op_gets_no_reply_and_changes_nothing(
    make_worker: MakeWorker, raw: redis.Redis
) -> None:
    one = make_worker()
    a = one.connect()
    message = {"v": CONTROL_VERSION, "op": "reboot", "req": "r1", "until": time.time() + 30}
    raw.rpush(f"realtime:ctl:{one.router.node_id}", json.dumps({**message, "client": a}))
    marker = {"v": CONTROL_VERSION, "op": "clients", "req": "r2", "until": time.time() + 30}
    raw.rpush(f"realtime:ctl:{one.router.node_id}", json.dumps(marker))
    reply = raw.blpop(["realtime:reply:r2"], timeout=WAIT)  # the next command is answered
    assert reply is not None and json.loads(reply[1])["status"] == 200
    assert raw.llen("realtime:reply:r1") == 0 and one.manager.get_client(a) is not None


def test_a_node_gone_long_ago_leaves_the_nodes_set_at_the_next_heartbeat(
    make_worker: MakeWorker, raw: redis.Redis
) -> None:
    one = make_worker()
    key = one.router._nodes_key
    gone_at = time.time() - NODES_FORGET_AFTER * one.router.ttl - 60  # a SIGKILLed worker
    raw.zadd(key, {"gone-node": gone_at})
    two = make_worker()  # beats once at start
    members = {str(m) for m in raw.zrange(key, 0, -1)}
    assert members == {one.router.node_id, two.router.node_id}
