from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest

from realtime_flask.core import sse
from realtime_flask.core.events import AuthUser
from realtime_flask.core.events import Event
from realtime_flask.core.topics import Subscription
from realtime_flask.core.topics import parse_topic
from realtime_flask.engine.client import RealtimeClient
from realtime_flask.engine.client import new_client_id
from realtime_flask.engine.manager import RealtimeManager
from realtime_flask.engine.reaper import Reaper
from realtime_flask.engine.reaper import expired
from realtime_flask.errors import AccessDenied
from realtime_flask.errors import BadRequest
from realtime_flask.errors import ClientNotFound
from realtime_flask.runtime import QueueClosed
from tests.support.clock import FakeClock
from tests.support.env import REPO_ROOT

ALICE = AuthUser(collection_id="_pb_users_auth_", id="alice0000000001", collection_name="users")
BOB = AuthUser(collection_id="_pb_users_auth_", id="bob000000000001", collection_name="users")


def subs(*topics: str) -> list[Subscription]:
    return [parse_topic(t) for t in topics]


def drain(manager: RealtimeManager, client_id: str) -> bytes:
    client = manager.get_client(client_id)
    assert client is not None
    return client.controller.get(timeout=0) or b""


def post_event(record_id: str = "r1", action: str = "create") -> Event:
    return Event("posts", action, {"id": record_id, "title": "t"}, collection_id="pbc_1")


class TestRegistry:
    def test_register_gives_unique_unguessable_ids(self, manager: RealtimeManager) -> None:
        ids = {manager.register_client().id for _ in range(200)}
        assert len(ids) == 200
        for cid in ids:
            assert len(cid) == 40 and cid.isalnum() and cid.isascii()
        assert manager.get_client_count() == 200

    def test_new_client_id_has_at_least_128_random_bits(self) -> None:
        # 40 symbols from a 62-letter alphabet: log2(62) * 40 ~ 238 bits.
        cid = new_client_id()
        assert len(cid) == 40
        assert len(set(new_client_id() for _ in range(50))) == 50

    def test_register_sets_times_and_empty_state(
        self, manager: RealtimeManager, fake_clock: FakeClock
    ) -> None:
        client = manager.register_client(remote_addr="127.0.0.1")
        assert client.connected_at == client.last_activity == fake_clock.now
        assert client.subscriptions == ()
        assert client.user is None
        assert client.remote_addr == "127.0.0.1"
        assert client.controller.qsize() == 0
        assert manager.get_client(client.id) is client

    def test_register_retries_on_id_collision(self, fake_clock: FakeClock) -> None:
        ids = iter(["same", "same", "other"])
        manager = RealtimeManager(clock=fake_clock, id_factory=lambda: next(ids))
        assert manager.register_client().id == "same"
        assert manager.register_client().id == "other"

    def test_get_missing_client(self, manager: RealtimeManager) -> None:
        assert manager.get_client("nope") is None

    def test_remove_is_the_single_idempotent_close_path(self, manager: RealtimeManager) -> None:
        client = manager.register_client()
        manager.set_subscriptions(client.id, subs("posts/*", "users/abc"))
        assert manager.index_size() == 2
        assert manager.remove_client(client.id, reason="test") is True
        assert manager.remove_client(client.id) is False
        assert manager.get_client(client.id) is None
        assert manager.get_client_count() == 0
        assert manager.index_size() == 0
        assert client.close_reason == "test"
        with pytest.raises(QueueClosed):
            client.controller.get(timeout=0)

    def test_set_client_auth(self, manager: RealtimeManager) -> None:
        client = manager.register_client()
        manager.set_client_auth(client.id, ALICE)
        assert client.user == ALICE
        manager.set_client_auth(client.id, None)
        assert client.user is None
        with pytest.raises(ClientNotFound):
            manager.set_client_auth("missing", ALICE)

    def test_set_subscriptions_replaces_and_dedupes(self, manager: RealtimeManager) -> None:
        client = manager.register_client()
        manager.set_subscriptions(client.id, subs("posts/*", "posts/*", "users/1"))
        assert [s.raw for s in client.subscriptions] == ["posts/*", "users/1"]
        manager.set_subscriptions(client.id, subs("tags"))
        assert [s.raw for s in client.subscriptions] == ["tags"]
        assert manager.index_size() == 1
        manager.set_subscriptions(client.id, [])
        assert client.subscriptions == ()
        assert manager.index_size() == 0
        with pytest.raises(ClientNotFound):
            manager.set_subscriptions("missing", subs("posts/*"))

    def test_update_activity(self, manager: RealtimeManager, fake_clock: FakeClock) -> None:
        client = manager.register_client()
        fake_clock.advance(42)
        manager.update_activity(client.id)
        assert client.last_activity == fake_clock.now
        manager.update_activity("missing")  # no error for a client already gone

    def test_client_count(self, manager: RealtimeManager) -> None:
        a = manager.register_client()
        manager.register_client()
        assert manager.get_client_count() == 2
        manager.remove_client(a.id)
        assert manager.get_client_count() == 1


class TestSubscribeTransitions:
    @pytest.mark.parametrize(
        ("before", "after"),
        [(None, None), (None, ALICE), (ALICE, ALICE)],
        ids=["guest->guest", "guest->user", "user->same user"],
    )
    def test_allowed(
        self, manager: RealtimeManager, before: AuthUser | None, after: AuthUser | None
    ) -> None:
        client = manager.register_client()
        manager.set_client_auth(client.id, before)
        manager.subscribe(client.id, subs("posts/*"), after)
        assert client.user == after
        assert [s.raw for s in client.subscriptions] == ["posts/*"]

    def test_same_user_refreshes_the_stored_record(self, manager: RealtimeManager) -> None:
        client = manager.register_client()
        manager.subscribe(client.id, [], ALICE)
        fresh = AuthUser(ALICE.collection_id, ALICE.id, "users", {"name": "new"})
        manager.subscribe(client.id, [], fresh)
        assert client.user is fresh

    @pytest.mark.parametrize("after", [BOB, None], ids=["user->other user", "user->guest"])
    def test_denied_changes_nothing(self, manager: RealtimeManager, after: AuthUser | None) -> None:
        client = manager.register_client()
        manager.subscribe(client.id, subs("posts/*"), ALICE)
        with pytest.raises(AccessDenied):
            manager.subscribe(client.id, subs("users/*"), after)
        assert client.user == ALICE
        assert [s.raw for s in client.subscriptions] == ["posts/*"]
        assert manager.dispatch(post_event()).frames == 1

    def test_same_id_other_collection_is_another_user(self, manager: RealtimeManager) -> None:
        client = manager.register_client()
        manager.subscribe(client.id, [], ALICE)
        with pytest.raises(AccessDenied):
            manager.subscribe(client.id, [], AuthUser("pbc_3142635823", ALICE.id))

    def test_missing_client(self, manager: RealtimeManager) -> None:
        with pytest.raises(ClientNotFound):
            manager.subscribe("missing", subs("posts/*"), None)

    def test_other_address(self, manager: RealtimeManager) -> None:
        client = manager.register_client(remote_addr="127.0.0.1")
        with pytest.raises(BadRequest) as info:
            manager.subscribe(
                client.id, subs("posts/*"), None, remote_addr="127.0.0.2", check_addr=True
            )
        assert info.value.message == "Invalid realtime client."
        assert client.subscriptions == ()

    def test_accepted_post_is_activity(
        self, manager: RealtimeManager, fake_clock: FakeClock
    ) -> None:
        client = manager.register_client()
        fake_clock.advance(100)
        manager.subscribe(client.id, subs("posts/*"), None)
        assert client.last_activity == fake_clock.now


class TestDispatch:
    def test_frames_byte_for_byte(self, manager: RealtimeManager) -> None:
        client = manager.register_client()
        manager.set_subscriptions(client.id, subs("posts/*"))
        result = manager.dispatch(post_event())
        assert result.frames == 1 and result.clients == 1 and result.dropped == 0
        assert (
            drain(manager, client.id)
            == (
                f"id:{client.id}\nevent:posts/*\n"
                'data:{"record":{"id":"r1","title":"t"},"action":"create"}\n\n'
            ).encode()
        )

    def test_one_frame_per_matching_subscription(self, manager: RealtimeManager) -> None:
        client = manager.register_client()
        topics = ["posts/*", "posts/r1", "pbc_1/*", "posts", "pbc_1/r1", "posts/r2", "users/*"]
        manager.set_subscriptions(client.id, subs(*topics))
        assert manager.dispatch(post_event("r1")).frames == 5
        parser = sse.SSEParser()
        events = parser.feed(drain(manager, client.id))
        # One frame each; across the name and the id of a collection the order is free.
        assert sorted(e.event for e in events) == sorted(
            ["posts/*", "posts/r1", "pbc_1/*", "posts", "pbc_1/r1"]
        )
        assert all(e.id == client.id for e in events)
        assert {e.data for e in events} == {'{"record":{"id":"r1","title":"t"},"action":"create"}'}

    def test_options_topic_is_echoed_raw(self, manager: RealtimeManager) -> None:
        raw = "posts/*?options=%7B%22query%22%3A%7B%22fields%22%3A%22id%22%7D%7D"
        client = manager.register_client()
        manager.set_subscriptions(client.id, subs(raw, "posts/*"))
        manager.dispatch(post_event())
        names = [e.event for e in sse.SSEParser().feed(drain(manager, client.id))]
        assert names == [raw, "posts/*"]

    def test_only_subscribed_clients_are_touched(self, manager: RealtimeManager) -> None:
        a, b, c = (manager.register_client() for _ in range(3))
        manager.set_subscriptions(a.id, subs("posts/*"))
        manager.set_subscriptions(b.id, subs("users/*"))
        manager.set_subscriptions(c.id, subs("posts/r9"))
        assert manager.dispatch(post_event("r1")).clients == 1
        assert drain(manager, a.id) != b""
        assert drain(manager, b.id) == b"" and drain(manager, c.id) == b""

    def test_record_without_id_reaches_only_wildcards(self, manager: RealtimeManager) -> None:
        client = manager.register_client()
        manager.set_subscriptions(client.id, subs("posts/*", "posts/r1"))
        assert manager.dispatch(Event("posts", "create", {"title": "x"})).frames == 1

    def test_payload_and_topic_lines_are_encoded_once(
        self, manager: RealtimeManager, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        calls = {"data": 0, "field": 0}
        real_data, real_field = sse.format_data, sse.format_field

        def count_data(data: object) -> bytes:
            calls["data"] += 1
            return real_data(data)

        def count_field(name: str, value: str) -> bytes:
            calls["field"] += name == "event"
            return real_field(name, value)

        clients = [manager.register_client() for _ in range(50)]
        for c in clients:
            manager.set_subscriptions(c.id, subs("posts/*", "posts/r1"))
        monkeypatch.setattr(sse, "format_data", count_data)
        monkeypatch.setattr(sse, "format_field", count_field)
        assert manager.dispatch(post_event("r1")).frames == 100
        assert calls == {"data": 1, "field": 2}

    def test_full_queue_drops_the_slow_client_only(self, fake_clock: FakeClock) -> None:
        manager = RealtimeManager(queue_size=3, clock=fake_clock)
        slow, fast = manager.register_client(), manager.register_client()
        for c in (slow, fast):
            manager.set_subscriptions(c.id, subs("posts/*"))
        received: list[bytes] = []
        for n in range(10):
            result = manager.dispatch(post_event(f"r{n}"))
            received.append(drain(manager, fast.id))
            assert result.dropped == (1 if n == 3 else 0)
        assert manager.get_client(slow.id) is None
        assert slow.close_reason is not None and "slow" in slow.close_reason
        assert manager.dropped_slow == 1
        events = sse.SSEParser().feed(b"".join(received))
        assert [json.loads(e.data)["record"]["id"] for e in events] == [f"r{n}" for n in range(10)]
        assert manager.index_size() == 1

    def test_nobody_subscribed(self, manager: RealtimeManager) -> None:
        manager.register_client()
        assert manager.dispatch(post_event()).frames == 0


class TestReaper:
    def test_idle_client_is_reaped(self, manager: RealtimeManager, fake_clock: FakeClock) -> None:
        idle, busy = manager.register_client(), manager.register_client()
        fake_clock.advance(299)
        manager.update_activity(busy.id)
        assert manager.reap() == []
        fake_clock.advance(1)
        assert manager.reap() == [idle.id]
        assert manager.get_client(busy.id) is busy
        assert idle.close_reason == "idle timeout"
        assert manager.reaped_idle == 1

    def test_max_lifetime_even_when_active(
        self, manager: RealtimeManager, fake_clock: FakeClock
    ) -> None:
        client = manager.register_client()
        for _ in range(17):
            fake_clock.advance(100)
            manager.update_activity(client.id)
            assert manager.reap() == []
        fake_clock.advance(100)
        manager.update_activity(client.id)
        assert manager.reap() == [client.id]
        assert client.close_reason == "max lifetime reached"
        assert manager.reaped_lifetime == 1

    def test_reap_with_explicit_now(self, manager: RealtimeManager, fake_clock: FakeClock) -> None:
        client = manager.register_client()
        assert manager.reap(now=fake_clock.now + 300) == [client.id]

    def test_expired_selects_too_old_first_then_idle(
        self, manager: RealtimeManager, fake_clock: FakeClock
    ) -> None:
        old, idle, busy = (manager.register_client() for _ in range(3))
        old.connected_at -= 1800  # resumed with its age: old and idle at once
        fake_clock.advance(300)
        busy.last_activity = fake_clock.now - 299
        clients = [idle, old, busy]
        assert expired(clients, fake_clock.now, idle_timeout=300, max_lifetime=1800) == (
            [old.id],
            [idle.id],
        )

    def test_reaper_loop_runs_and_stops(self, fake_clock: FakeClock) -> None:
        manager = RealtimeManager(idle_timeout=10, clock=fake_clock)
        client = manager.register_client()
        fake_clock.advance(11)
        ticked = threading.Event()
        threads: list[threading.Thread] = []

        class Probe(Reaper):
            def tick(self) -> list[str]:
                out = super().tick()
                ticked.set()
                return out

        def spawn(target: object) -> object:
            th = threading.Thread(target=target)  # type: ignore[arg-type]
            th.start()
            threads.append(th)
            return th

        reaper = Probe(manager, 0.001, spawn=spawn)
        reaper.start()
        assert ticked.wait(5)
        reaper.stop()
        threads[0].join(5)
        assert not threads[0].is_alive()
        assert manager.get_client(client.id) is None

    def test_tick_survives_an_error(self, manager: RealtimeManager) -> None:
        def broken(now: float | None = None) -> list[str]:
            raise RuntimeError("boom")

        manager.reap = broken  # type: ignore[method-assign]
        assert Reaper(manager, 1).tick() == []


def test_threads_hammering_the_manager_leave_nothing_behind(fake_clock: FakeClock) -> None:
    # Queues big enough that no client is dropped as slow: this test is about leaks.
    manager = RealtimeManager(queue_size=10_000, clock=fake_clock)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(100):
                c = manager.register_client()
                manager.subscribe(c.id, subs("posts/*", f"posts/r{i}", "users"), None)
                manager.dispatch(post_event(f"r{i}"))
                c.controller.get(timeout=0)
                manager.remove_client(c.id)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    assert errors == []
    assert manager.get_client_count() == 0
    assert manager.index_size() == 0


def test_greenlets_hammering_the_manager_leave_nothing_behind() -> None:
    """The same churn under gevent's monkey-patching, in a fresh interpreter."""
    script = REPO_ROOT / "tests" / "support" / "gevent_churn.py"
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=True
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {
        "clients": 0,
        "index": 0,
        "greenlets": 0,
        "received_all": True,
        "errors": [],
    }


def test_large_fan_out_pauses_between_slices(fake_clock: FakeClock) -> None:
    pauses: list[int] = []
    manager = RealtimeManager(
        clock=fake_clock, yield_every=10, pause=lambda: pauses.append(len(pauses))
    )
    clients = [manager.register_client() for _ in range(35)]
    for c in clients:
        manager.set_subscriptions(c.id, subs("posts/*"))
    assert manager.dispatch(post_event()).frames == 35
    # 35 subscriptions checked, then 35 queue puts: a pause every 10 steps
    assert len(pauses) == 7


def test_a_fan_out_pauses_only_once_its_time_slice_is_used(fake_clock: FakeClock) -> None:
    now = [0.0]
    pauses: list[float] = []
    manager = RealtimeManager(
        clock=fake_clock,
        slice_seconds=0.005,
        timer=lambda: now[0],
        pause=lambda: pauses.append(now[0]),
    )
    for _ in range(1000):
        manager.set_subscriptions(manager.register_client().id, subs("posts/*"))
    assert manager.dispatch(post_event("r1")).frames == 1000
    assert pauses == []  # no time passed: one slice

    def slow_timer() -> float:
        now[0] += 0.001  # every look at the clock finds a millisecond gone
        return now[0]

    manager._timer = slow_timer
    assert manager.dispatch(post_event("r2")).frames == 1000
    # The clock is read every 64 steps (2,000: checks, then puts): about one
    # pause per five reads.
    assert 2 <= len(pauses) <= 2000 // 64


def test_dispatch_many_queues_each_client_one_chunk_in_event_order(
    fake_clock: FakeClock,
) -> None:
    manager = RealtimeManager(clock=fake_clock, queue_size=64)  # the run fits in one pass
    both = manager.register_client()
    manager.set_subscriptions(both.id, subs("posts/*", "tags/*"))
    only_tags = manager.register_client()
    manager.set_subscriptions(only_tags.id, subs("tags/*"))
    events = [
        Event("posts", "create", {"id": "p1"}, id="1"),
        Event("tags", "create", {"id": "t1"}, id="2"),
        Event("posts", "update", {"id": "p1"}, id="3"),
    ]
    result = manager.dispatch_many([(e, None) for e in events])
    assert (result.frames, result.clients, result.dropped) == (4, 2, 0)
    assert both.controller.qsize() == 3 and only_tags.controller.qsize() == 1
    parsed = list(sse.SSEParser().feed(drain(manager, both.id)))
    assert [(m.id, m.event) for m in parsed] == [
        (f"{both.id}.1", "posts/*"),
        (f"{both.id}.2", "tags/*"),
        (f"{both.id}.3", "posts/*"),
    ]
    assert [json.loads(m.data)["action"] for m in parsed] == ["create", "create", "update"]


def test_dispatch_many_drops_a_client_whose_queue_cannot_take_the_batch(
    fake_clock: FakeClock,
) -> None:
    manager = RealtimeManager(clock=fake_clock, queue_size=2)
    client = manager.register_client()
    manager.set_subscriptions(client.id, subs("posts/*"))
    events = [(Event("posts", "create", {"id": f"p{i}"}, id=str(i)), None) for i in range(3)]
    assert manager.dispatch_many(events).dropped == 1
    assert manager.get_client(client.id) is None
    assert client.close_reason == "slow consumer: queue full"
    assert manager.dropped_slow == 1


def test_a_burst_bigger_than_the_queue_does_not_drop_a_client_that_keeps_up(
    fake_clock: FakeClock,
) -> None:
    """A run is fanned out in passes of ``queue_size // 8`` events with a pause
    between them, in which the stream drains (here: the pause drains it)."""
    client_box: list[RealtimeClient] = []
    received: list[bytes] = []

    def pause() -> None:  # the stream's turn: it writes out what is queued
        if client_box:
            received.append(client_box[0].controller.get(timeout=0) or b"")

    manager = RealtimeManager(clock=fake_clock, queue_size=16, pause=pause)
    client = manager.register_client()
    client_box.append(client)
    manager.set_subscriptions(client.id, subs("posts/*", "posts/r1"))  # two frames per event
    events = [
        (Event("posts", "update", {"id": "r1", "n": i}, id=str(i)), None) for i in range(1, 41)
    ]
    result = manager.dispatch_many(events)  # 80 frames through a queue of 16
    assert (result.frames, result.dropped) == (80, 0)
    received.append(client.controller.get(timeout=0) or b"")
    ids = [m.id for m in sse.SSEParser().feed(b"".join(received))]
    assert ids == [x for i in range(1, 41) for x in (client.id, f"{client.id}.{i}")]


def test_name_and_id_topics_of_one_event_name_the_position_once_in_replay_order(
    fake_clock: FakeClock,
) -> None:
    manager = RealtimeManager(clock=fake_clock)
    client = manager.register_client()
    manager.set_subscriptions(client.id, subs("pbc_1/*", "posts/*"))
    event = Event("posts", "update", {"id": "r1"}, collection_id="pbc_1", id="7")
    manager.dispatch(event)
    live = list(sse.SSEParser().feed(drain(manager, client.id)))
    replay = list(sse.SSEParser().feed(b"".join(manager.render(client, event, None))))
    assert [(m.event, m.id) for m in live] == [
        ("pbc_1/*", client.id),
        ("posts/*", f"{client.id}.7"),
    ]
    assert [(m.event, m.id) for m in live] == [(m.event, m.id) for m in replay]


def test_a_backlog_of_small_fan_outs_still_yields(fake_clock: FakeClock) -> None:
    now = [0.0]

    def timer() -> float:
        now[0] += 0.001  # every look at the clock finds a millisecond gone
        return now[0]

    pauses: list[int] = []
    manager = RealtimeManager(
        clock=fake_clock, queue_size=100_000, timer=timer, pause=lambda: pauses.append(1)
    )
    for _ in range(10):
        manager.set_subscriptions(manager.register_client().id, subs("users/*"))
    for i in range(1000):  # one by one, as auth-record updates are delivered
        manager.dispatch(Event("users", "update", {"id": "u"}, id=str(i)))
    assert len(pauses) >= 10


def test_names_that_moved_out_stay_importable_from_the_manager() -> None:
    from realtime_flask.engine import client
    from realtime_flask.engine import manager
    from realtime_flask.engine import reaper

    for name in ("RealtimeClient", "ParkedClient", "new_client_id"):
        assert getattr(manager, name) is getattr(client, name)
    assert manager.Reaper is reaper.Reaper


class TestStuckWrites:
    """Issue #10: a stream whose write cannot progress (a peer that stopped reading)
    is ended and its connection cut, instead of holding a greenlet, a socket and
    its queue forever."""

    def test_a_write_stuck_past_the_timeout_ends_the_client_and_cuts_it(
        self, fake_clock: FakeClock
    ) -> None:
        manager = RealtimeManager(clock=fake_clock, write_timeout=30.0)
        stuck, writing, idle = (manager.register_client() for _ in range(3))
        cut: list[str] = []
        for client in (stuck, writing, idle):
            client.abort = lambda client=client: cut.append(client.id)
        stuck.writing_since = fake_clock()
        fake_clock.advance(20)
        writing.writing_since = fake_clock()  # a write in progress for 10 s only
        fake_clock.advance(10)
        assert manager.reap() == [stuck.id]
        assert stuck.close_reason == "write timeout" and cut == [stuck.id]
        assert manager.get_client(writing.id) is not None
        assert manager.get_client(idle.id) is not None
        assert manager.closed_by_reason["write timeout"] == 1

    def test_a_slow_consumer_dropped_mid_write_is_cut_at_once(self, fake_clock: FakeClock) -> None:
        manager = RealtimeManager(queue_size=2, clock=fake_clock)
        slow = manager.register_client()
        manager.set_subscriptions(slow.id, subs("posts/*"))
        cut: list[str] = []
        slow.abort = lambda: cut.append(slow.id)
        slow.writing_since = fake_clock()  # its stream is blocked writing
        for n in range(3):
            manager.dispatch(post_event(f"r{n}"))
        assert manager.get_client(slow.id) is None and cut == [slow.id]
        assert manager.closed_by_reason["slow consumer: queue full"] == 1

    def test_a_client_removed_between_writes_is_not_cut(self, fake_clock: FakeClock) -> None:
        manager = RealtimeManager(clock=fake_clock)
        client = manager.register_client()
        cut: list[str] = []
        client.abort = lambda: cut.append(client.id)
        assert manager.remove_client(client.id, reason="stream closed")
        assert cut == []  # nothing to cut: the stream ends by itself

    def test_the_queue_is_bounded_in_bytes_too(self, fake_clock: FakeClock) -> None:
        manager = RealtimeManager(queue_size=100, queue_bytes=2000, clock=fake_clock)
        slow = manager.register_client()
        manager.set_subscriptions(slow.id, subs("posts/*"))
        big = "x" * 800
        event = Event  # 800-byte records: the frames, not their count, fill the queue
        results = [
            manager.dispatch(event("posts", "create", {"id": f"r{n}", "title": big}))
            for n in range(3)
        ]
        assert [r.dropped for r in results] == [0, 0, 1]  # the third 800-byte frame overflows
        assert manager.get_client(slow.id) is None
