"""RedisBroker against a private redis-server: order, history, outages, overflow, resets.

Each test gets its own ``redis-server`` (tests/support/redis_server.py), so outage tests
can stop and restart it on the same port.  The broker's loops run as threads
(these tests do not monkey-patch); synchronisation waits on conditions set by
handlers, with timeouts, and on ``wait_until`` for broker status changes that
have no event to wait on.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import typing as t
from collections.abc import Iterator

import pytest
import redis

from realtime_flask.cluster.broker import HISTORY_LOST
from realtime_flask.cluster.broker import OUTBOX_OVERFLOW
from realtime_flask.cluster.broker import RedisBroker
from realtime_flask.core.events import Event
from realtime_flask.core.events import Published
from realtime_flask.core.events import TopicMessage
from realtime_flask.errors import BrokerUnavailable
from realtime_flask.errors import InvalidEvent
from tests.support.clock import FakeClock
from tests.support.redis_server import RedisServer
from tests.support.servers import REPO_ROOT
from tests.support.servers import wait_until

pytestmark = pytest.mark.redis

STREAM = "realtime:events"
WAIT = 10.0

MakeBroker = t.Callable[..., RedisBroker]


def ev(n: int) -> Event:
    return Event("posts", "create", {"id": f"r{n}", "n": n})


def id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq)


class Recorder:
    """What a broker's handlers saw, in call order: events and resets in one log."""

    def __init__(self) -> None:
        self.log: list[tuple[str, object, str]] = []  # ("event", n, id) | ("reset", reason, "")
        self.full: list[Published] = []
        self._cond = threading.Condition()

    def attach(self, broker: RedisBroker) -> Recorder:
        broker.subscribe(self.on_event)
        broker.subscribe_reset(self.on_reset)
        return self

    def on_event(self, event: Published) -> None:
        with self._cond:
            if isinstance(event, TopicMessage):
                self.log.append(("message", event.topic, event.id))
            else:
                self.log.append(("event", event.record.get("n"), event.id))
            self.full.append(event)
            self._cond.notify_all()

    def on_reset(self, reason: str) -> None:
        with self._cond:
            self.log.append(("reset", reason, ""))
            self._cond.notify_all()

    def numbers(self) -> list[object]:
        with self._cond:
            return [n for kind, n, _ in self.log if kind == "event"]

    def ids(self) -> list[str]:
        with self._cond:
            return [i for kind, _, i in self.log if kind == "event"]

    def resets(self) -> list[object]:
        with self._cond:
            return [reason for kind, reason, _ in self.log if kind == "reset"]

    def wait(self, predicate: t.Callable[[Recorder], bool], timeout: float = WAIT) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: predicate(self), timeout):
                raise AssertionError(f"not seen within {timeout}s; log: {self.log}")

    def wait_events(self, count: int, timeout: float = WAIT) -> None:
        self.wait(lambda r: len(r.numbers()) >= count, timeout)


class Threads:
    """A spawn that records the threads it started, to prove none outlives close()."""

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []

    def __call__(self, target: t.Callable[[], None]) -> object:
        thread = threading.Thread(target=target, name=f"test-{target.__name__}", daemon=True)
        thread.start()
        self.threads.append(thread)
        return thread

    def alive(self) -> list[str]:
        return [th.name for th in self.threads if th.is_alive()]


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with RedisServer() as srv:
        yield srv


@pytest.fixture
def threads() -> Threads:
    return Threads()


@pytest.fixture
def make_broker(server: RedisServer, threads: Threads) -> Iterator[MakeBroker]:
    brokers: list[RedisBroker] = []

    def make(**options: t.Any) -> RedisBroker:
        settings: dict[str, t.Any] = {
            "stream": STREAM,
            "block_ms": 100,
            "backoff_cap": 0.1,
            "socket_timeout": 2.0,
            "spawn": threads,
            **options,
        }
        broker = RedisBroker(server.url, **settings)
        brokers.append(broker)
        return broker

    yield make
    for broker in brokers:
        broker.close()
    assert threads.alive() == []


@pytest.fixture
def raw(server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(server.url, decode_responses=True)
    yield client
    client.close()


def entries(client: redis.Redis) -> list[tuple[str, dict[str, str]]]:
    """The raw stream entries (ids and fields), oldest first."""
    return t.cast("list[tuple[str, dict[str, str]]]", client.xrange(STREAM))


def recovered(broker: RedisBroker) -> bool:
    status = broker.status()
    return status["connected"] is True and status["degraded"] is False and status["outbox"] == 0


# -- delivery ------------------------------------------------------------------


def test_publish_delivers_in_log_order_with_stream_ids(
    make_broker: MakeBroker, raw: redis.Redis
) -> None:
    broker = make_broker()
    rec = Recorder().attach(broker)
    broker.start()
    returned = [broker.publish(ev(n)) for n in range(10)]
    assert {e.id for e in returned} == {""}  # the log assigns ids, asynchronously
    rec.wait_events(10)
    assert rec.numbers() == list(range(10))
    stream_ids = [entry_id for entry_id, _ in entries(raw)]
    assert rec.ids() == stream_ids
    assert rec.ids() == sorted(rec.ids(), key=id_key)
    assert broker.status() == {
        "broker": "redis",
        "connected": True,
        "degraded": False,
        "outbox": 0,
        "dropped": 0,
        "published": 10,
        "lastId": stream_ids[-1],
    }


def test_event_fields_survive_the_wire(make_broker: MakeBroker) -> None:
    broker = make_broker()
    rec = Recorder().attach(broker)
    broker.start()
    sent = Event(
        "posts",
        "delete",
        {"id": "r1", "title": "h\u00e9llo \U0001f600", "tags": ["a", None, 1.5]},
        collection_id="pbc_123",
        stored={"id": "r1", "secret": "hidden"},
    )
    broker.publish(sent)
    rec.wait_events(1)
    got = rec.full[0]
    assert isinstance(got, Event)
    assert got == sent.with_id(got.id)
    assert got.stored == {"id": "r1", "secret": "hidden"}
    assert got.collection_id == "pbc_123"


def test_custom_messages_share_the_log_with_record_events(
    make_broker: MakeBroker, raw: redis.Redis
) -> None:
    a, b = make_broker(), make_broker()
    rec_a, rec_b = Recorder().attach(a), Recorder().attach(b)
    a.start()
    b.start()
    data = {"text": "h\u00e9llo \U0001f600", "list": [1, 2.5, None, False], "nested": {"k": ""}}
    a.publish(ev(0))
    sent = a.publish(TopicMessage("chat-room-1", data))
    assert sent.id == ""  # the log assigns it
    b.publish(ev(1))
    for rec in (rec_a, rec_b):
        rec.wait(lambda r: len(r.log) >= 3)
    assert [kind for kind, _, _ in rec_a.log] == ["event", "message", "event"]
    assert rec_a.log == rec_b.log  # one order for every process, ids included
    got = rec_b.full[1]
    assert isinstance(got, TopicMessage)
    assert (got.topic, got.data, got.data_json) == ("chat-room-1", data, sent.data_json)
    assert got.id == rec_a.log[1][2]
    # events stay version 1 (readable by the previous release); messages are version 2
    assert [fields["v"] for _, fields in entries(raw)] == ["1", "2", "1"]
    assert "m" in entries(raw)[1][1] and "e" not in entries(raw)[1][1]
    # and a resume's history holds the message in its place
    history = a.history(rec_a.ids()[0], 10)
    assert history is not None and [e.id for e in history] == [got.id, rec_a.ids()[1]]
    assert history[0] == got


def test_entries_of_every_readable_version_decode_and_bad_messages_are_skipped(
    make_broker: MakeBroker, raw: redis.Redis
) -> None:
    broker = make_broker()
    rec = Recorder().attach(broker)
    broker.start()
    broker.publish(ev(0))
    rec.wait_events(1)

    def event(n: int) -> str:
        return json.dumps(
            {"collection": "posts", "action": "create", "record": {"id": "x", "n": n}}
        )

    raw.xadd(STREAM, {"v": "1", "e": event(1)})  # the first release's record event
    raw.xadd(STREAM, {"v": "2", "e": event(2)})
    raw.xadd(STREAM, {"v": "2", "m": json.dumps({"topic": "room", "data": [1]})})
    raw.xadd(STREAM, {"v": "2", "m": "not json"})
    raw.xadd(STREAM, {"v": "2", "m": json.dumps({"topic": "room"})})  # no data
    raw.xadd(STREAM, {"v": "2", "m": json.dumps({"topic": "PB_CONNECT", "data": 1})})
    raw.xadd(STREAM, {"v": "2", "m": json.dumps({"topic": 5, "data": 1})})
    raw.xadd(STREAM, {"v": "2", "m": '{"topic":"room","data":NaN}'})
    raw.xadd(STREAM, {"v": "3", "m": json.dumps({"topic": "room", "data": 2})})  # newer: skipped
    broker.publish(ev(3))
    rec.wait_events(4)
    assert [(kind, n) for kind, n, _ in rec.log] == [
        ("event", 0),
        ("event", 1),
        ("event", 2),
        ("message", "room"),
        ("event", 3),
    ]
    message = rec.full[3]
    assert isinstance(message, TopicMessage) and message.data == [1]
    assert rec.resets() == []


def test_two_processes_see_every_event_in_the_same_order(make_broker: MakeBroker) -> None:
    a, b = make_broker(), make_broker()
    rec_a, rec_b = Recorder().attach(a), Recorder().attach(b)
    a.start()
    b.start()
    for n in range(40):
        (a if n % 2 else b).publish(ev(n))
    rec_a.wait_events(40)
    rec_b.wait_events(40)
    assert rec_a.log == rec_b.log
    numbers = rec_a.numbers()
    assert sorted(t.cast(list[int], numbers)) == list(range(40))
    for parity in (0, 1):  # each publisher's own events keep their order
        own = [n for n in t.cast(list[int], numbers) if n % 2 == parity]
        assert own == sorted(own)


def test_a_failing_handler_does_not_stop_the_others(
    make_broker: MakeBroker, caplog: pytest.LogCaptureFixture
) -> None:
    broker = make_broker()

    def boom(event: Published) -> None:
        raise RuntimeError("handler bug")

    broker.subscribe(boom)
    rec = Recorder().attach(broker)
    broker.start()
    for n in range(3):
        broker.publish(ev(n))
    rec.wait_events(3)
    assert rec.numbers() == [0, 1, 2]
    assert caplog.text.count("realtime event handler failed") == 3


def test_publish_rejects_a_record_that_is_not_json(make_broker: MakeBroker) -> None:
    broker = make_broker()
    with pytest.raises(InvalidEvent, match="JSON"):
        broker.publish(Event("posts", "create", {"id": "r1", "when": object()}))
    assert broker.status()["outbox"] == 0


# -- history -------------------------------------------------------------------


def test_history_returns_the_later_events_and_none_once_trimmed(make_broker: MakeBroker) -> None:
    broker = make_broker(history_size=5, approximate_trim=False)
    rec = Recorder().attach(broker)
    broker.start()
    for n in range(3):
        broker.publish(ev(n))
    rec.wait_events(3)
    ids = rec.ids()

    def numbers(events: list[Published] | None) -> list[object] | None:
        return None if events is None else [t.cast(Event, e).record["n"] for e in events]

    history = broker.history(ids[0], 10)
    assert numbers(history) == [1, 2]
    assert history is not None and [e.id for e in history] == ids[1:]
    assert numbers(broker.history(ids[0], 1)) == [1]
    assert broker.history(ids[2], 10) == []
    assert broker.history(ids[0], 0) == []

    for n in range(3, 8):
        broker.publish(ev(n))
    rec.wait_events(8)
    ids = rec.ids()
    assert broker.history(ids[0], 10) is None  # n=0..2 were trimmed: cannot resume from 0
    assert numbers(broker.history(ids[3], 10)) == [4, 5, 6, 7]
    assert broker.history("not-an-id", 10) is None
    assert broker.history("1-0", 10) is None  # never an entry of this stream


# -- entries the broker did not write ----------------------------------------------


def test_foreign_malformed_duplicate_and_reset_entries(
    make_broker: MakeBroker, raw: redis.Redis
) -> None:
    broker = make_broker()
    rec = Recorder().attach(broker)
    broker.start()
    broker.publish(ev(0))
    rec.wait_events(1)
    payload = json.dumps({"collection": "posts", "action": "create", "record": {"id": "x", "n": 1}})
    raw.xadd(STREAM, {"v": "3", "e": payload})  # a newer wire version: skipped
    raw.xadd(STREAM, {"v": "1", "e": "not json"})
    raw.xadd(STREAM, {"v": "1", "e": json.dumps({"collection": "posts", "action": "explode"})})
    raw.xadd(STREAM, {"v": "1", "e": payload, "o": "other", "s": "7"})
    raw.xadd(STREAM, {"v": "1", "e": payload, "o": "other", "s": "7"})  # a resent copy
    broker.publish(ev(2))
    rec.wait_events(3)
    assert rec.numbers() == [0, 1, 2]
    assert rec.resets() == []
    first = rec.ids()[0]
    history = broker.history(first, 10)
    assert history is not None and [t.cast(Event, e).record["n"] for e in history] == [1, 2]

    raw.xadd(STREAM, {"v": "1", "reset": OUTBOX_OVERFLOW})
    broker.publish(ev(3))
    rec.wait_events(4)
    assert rec.log[-2:] == [("reset", OUTBOX_OVERFLOW, ""), ("event", 3, rec.ids()[-1])]
    assert broker.history(first, 10) is None  # a loss lies in that range
    assert broker.history(rec.ids()[-1], 10) == []  # after the reset: resumable


# -- outages -------------------------------------------------------------------


def test_outage_publish_never_blocks_and_nothing_is_lost(
    make_broker: MakeBroker, server: RedisServer
) -> None:
    broker = make_broker()
    rec = Recorder().attach(broker)
    broker.start()
    broker.publish(ev(-1))
    rec.wait_events(1)
    warm = rec.ids()[0]

    server.stop()
    for n in range(50):
        broker.publish(ev(n))  # must not raise: queued in the outbox, not sent
    status = broker.status()
    assert (status["outbox"], status["dropped"]) == (50, 0)
    wait_until(lambda: broker.status()["connected"] is False, WAIT, message="outage noticed")
    assert broker.status()["degraded"] is True
    with pytest.raises(BrokerUnavailable):
        broker.history(warm, 10)

    server.start()
    rec.wait_events(51)
    assert rec.numbers() == [-1, *range(50)]
    wait_until(lambda: recovered(broker), WAIT, message=lambda: f"recovery: {broker.status()}")
    # The restarted server came back empty: that is a lost history, said once.
    assert rec.resets() == [HISTORY_LOST]


def test_outbox_overflow_is_signalled_after_recovery(
    make_broker: MakeBroker, server: RedisServer
) -> None:
    broker = make_broker(outbox_size=5)
    rec = Recorder().attach(broker)
    broker.start()
    broker.publish(ev(-1))
    rec.wait_events(1)

    server.stop()
    for n in range(20):
        broker.publish(ev(n))
    status = broker.status()
    assert (status["outbox"], status["dropped"]) == (5, 15)

    server.start()
    rec.wait(lambda r: OUTBOX_OVERFLOW in r.resets())
    tail = [(kind, value) for kind, value, _ in rec.log[-6:]]
    assert tail == [*(("event", n) for n in range(5)), ("reset", OUTBOX_OVERFLOW)]
    assert broker.status()["dropped"] == 15
    wait_until(lambda: recovered(broker), WAIT, message=lambda: f"recovery: {broker.status()}")


def test_history_lost_when_the_stream_was_trimmed_past_a_listener(
    make_broker: MakeBroker, raw: redis.Redis
) -> None:
    away = make_broker(history_size=5, approximate_trim=False)
    entered, gate = threading.Event(), threading.Event()

    def stall_on_first(event: Published) -> None:
        if isinstance(event, Event) and event.record["n"] == 0:
            entered.set()
            gate.wait(WAIT)

    away.subscribe(stall_on_first)
    rec = Recorder().attach(away)
    away.start()
    publisher = make_broker(history_size=5, approximate_trim=False)
    publisher.start()

    publisher.publish(ev(0))
    assert entered.wait(WAIT)
    for n in range(1, 21):
        publisher.publish(ev(n))
    wait_until(lambda: raw.xinfo_stream(STREAM)["entries-added"] == 21, WAIT, message="written")
    assert raw.xlen(STREAM) == 5  # n=16..20: the rest is gone
    listeners = [c for c in raw.client_list() if c["name"] == f"realtime-listen-{away.origin}"]
    assert len(listeners) == 1
    raw.client_kill_filter(_id=listeners[0]["id"])  # and the listener must reconnect
    gate.set()

    rec.wait(lambda r: r.numbers()[-1:] == [20])
    kinds = [(kind, value) for kind, value, _ in rec.log]
    assert kinds == [("event", 0), ("reset", HISTORY_LOST), *(("event", n) for n in range(16, 21))]


def test_start_while_redis_is_down_holds_events_until_it_answers(
    make_broker: MakeBroker, server: RedisServer
) -> None:
    server.stop()
    broker = make_broker()
    rec = Recorder().attach(broker)
    broker.start()  # not fatal: Redis may come up after the app
    for n in range(3):
        broker.publish(ev(n))
    assert broker.status()["degraded"] is True
    server.start()
    rec.wait_events(3)
    assert rec.numbers() == [0, 1, 2]
    assert rec.resets() == []


def test_status_reports_a_stale_outbox_as_degraded(make_broker: MakeBroker) -> None:
    clock = FakeClock()
    broker = make_broker(clock=clock, degraded_after=1.0)  # not started: nothing drains
    broker.publish(ev(0))
    assert broker.status()["degraded"] is False
    clock.advance(1.5)
    assert broker.status()["degraded"] is True
    assert broker.status()["outbox"] == 1


# -- lifecycle -----------------------------------------------------------------


@pytest.mark.parametrize("redis_up", [True, False])
def test_close_is_idempotent_and_leaves_no_thread(
    make_broker: MakeBroker, server: RedisServer, threads: Threads, redis_up: bool
) -> None:
    broker = make_broker(block_ms=200)
    rec = Recorder().attach(broker)
    broker.start()
    broker.publish(ev(0))
    rec.wait_events(1)
    if not redis_up:
        server.stop()
        wait_until(lambda: broker.status()["connected"] is False, WAIT, message="outage")
    assert len(threads.threads) == 2
    broker.close()  # waits for both loops (at most one XREAD BLOCK)
    assert threads.alive() == []
    broker.close()
    assert threads.alive() == []
    assert broker.publish(ev(1)).id == ""
    assert broker.status()["connected"] is False


def test_close_sends_what_is_still_in_the_outbox(make_broker: MakeBroker, raw: redis.Redis) -> None:
    broker = make_broker()
    broker.start()
    for n in range(5):
        broker.publish(ev(n))
    broker.close()
    assert [json.loads(f["e"])["record"]["n"] for _, f in entries(raw)] == list(range(5))


@pytest.mark.parametrize(
    "options",
    [{"block_ms": 0}, {"history_size": 0}, {"outbox_size": -1}, {"backoff_cap": 0.01}],
)
def test_bad_settings_are_refused(options: dict[str, t.Any]) -> None:
    with pytest.raises(ValueError):
        RedisBroker("redis://127.0.0.1:1/0", **options)


def test_missing_redis_package_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(BrokerUnavailable, match=r"install realtime_flask\[redis\]"):
        RedisBroker("redis://127.0.0.1:1/0")


def run_python(code: str, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO_ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_refuses_to_start_under_gevent_with_unpatched_sockets() -> None:
    code = (
        "import gevent\n"
        "from realtime_flask.errors import BrokerUnavailable\n"
        "from realtime_flask.cluster.broker import RedisBroker\n"
        "broker = RedisBroker('redis://127.0.0.1:1/0')\n"
        "try:\n"
        "    broker.start()\n"
        "except BrokerUnavailable as exc:\n"
        "    print('refused:', exc)\n"
        "else:\n"
        "    print('started')\n"
    )
    out = run_python(code)
    assert out.startswith("refused: RedisBroker under gevent needs patched sockets")
    assert "patch_all()" in out


def test_works_under_gevent_with_patched_sockets(server: RedisServer) -> None:
    code = (
        "from gevent import monkey\n"
        "monkey.patch_all()\n"
        "import sys, threading\n"
        "from realtime_flask.core.events import Event\n"
        "from realtime_flask.cluster.broker import RedisBroker\n"
        "seen, done = [], threading.Event()\n"
        "def on_event(event):\n"
        "    seen.append(event.record['n'])\n"
        "    if len(seen) == 3:\n"
        "        done.set()\n"
        "broker = RedisBroker(sys.argv[1], block_ms=100)\n"
        "broker.subscribe(on_event)\n"
        "broker.start()\n"
        "for n in range(3):\n"
        "    broker.publish(Event('posts', 'create', {'id': f'r{n}', 'n': n}))\n"
        "assert done.wait(10), seen\n"
        "broker.close()\n"
        "print(seen)\n"
    )
    assert run_python(code, server.url) == "[0, 1, 2]"
