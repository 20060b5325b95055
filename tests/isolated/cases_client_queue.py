"""ClientQueue cases for both flavours, run by tests/unit/test_isolated.py in a fresh interpreter.

Importing gevent changes what the library decides for the rest of a process
(``RedisBroker`` refuses to start when gevent is imported without patched
sockets), so these cases never run inside the main test session.  The gevent
flavour needs only gevent's hub, not monkey-patching; it is driven by
greenlets, the thread flavour by real threads.
"""

from __future__ import annotations

import threading
import typing as t

import gevent
import gevent.event
import pytest

from realtime_flask import runtime
from realtime_flask.runtime import ClientQueue
from realtime_flask.runtime import QueueClosed

Flavour = t.Callable[..., ClientQueue]
FLAVOURS: dict[str, Flavour] = {
    "threads": runtime._ThreadClientQueue,
    "gevent": runtime._GeventClientQueue,
}


@pytest.fixture(params=sorted(FLAVOURS))
def flavour(request: pytest.FixtureRequest) -> str:
    return t.cast(str, request.param)


def in_background(flavour: str, target: t.Callable[[], None]) -> t.Callable[[], None]:
    """Start ``target`` as a thread or a greenlet; returns ``join``."""
    if flavour == "gevent":
        greenlet = gevent.spawn(target)
        return lambda: greenlet.join(timeout=10)
    thread = threading.Thread(target=target)
    thread.start()
    return lambda: thread.join(timeout=10)


def let_run(flavour: str) -> None:
    """Give a just-started greenlet its turn (threads run by themselves)."""
    if flavour == "gevent":
        gevent.sleep(0)


class TestClientQueue:
    def test_get_joins_pending_frames_in_order(self, flavour: str) -> None:
        q = FLAVOURS[flavour](4)
        assert q.put_nowait(b"a") and q.put_nowait(b"b")
        q.put_front([b"0", b"1"])
        assert q.qsize() == 4
        assert q.get(timeout=0) == b"01ab"
        assert q.get(timeout=0) is None

    def test_full_and_closed(self, flavour: str) -> None:
        q = FLAVOURS[flavour](1)
        assert q.put_nowait(b"a")
        assert not q.put_nowait(b"b")
        q.close()
        q.close()  # idempotent
        assert q.closed
        assert not q.put_nowait(b"c")
        q.put_front([b"x"])  # ignored once closed
        with pytest.raises(QueueClosed):
            q.get(timeout=0)

    def test_bytes_bound_the_queue_but_an_empty_queue_takes_any_frame(self, flavour: str) -> None:
        q = FLAVOURS[flavour](100, 10)
        assert q.put_nowait(b"x" * 50)  # bigger than the bound, but the queue is empty
        assert not q.put_nowait(b"y")  # 50 bytes queued: nothing more fits
        assert q.get(timeout=0) == b"x" * 50
        assert q.put_nowait(b"12345") and q.put_nowait(b"67890")
        assert not q.put_nowait(b"!")  # 10 bytes: the bound
        assert not q.put_many([b"a"])
        assert q.get(timeout=0) == b"1234567890"
        assert q.put_many([b"abc", b"defghijklmnop"])  # an empty queue takes a whole batch
        assert not q.put_many([b"z"])
        q.put_front([b">"])  # a replay goes in whatever the bound
        assert q.get(timeout=0) == b">abcdefghijklmnop"

    def test_keepalive_timeout_returns_none(self, flavour: str) -> None:
        q = FLAVOURS[flavour](4)
        assert q.get(timeout=0.01) is None
        assert q.get(timeout=0.01) is None  # the timer is re-armed per wait
        assert q.get(timeout=0.02) is None  # and replaced when the timeout changes

    def test_put_wakes_a_waiting_reader_with_everything_queued(self, flavour: str) -> None:
        q = FLAVOURS[flavour](8)
        got: list[bytes | None] = []
        waiting = threading.Event()

        def reader() -> None:
            waiting.set()
            got.append(q.get(timeout=30))

        join = in_background(flavour, reader)
        let_run(flavour)
        assert waiting.wait(5)
        assert q.put_nowait(b"x")
        join()
        assert got and got[0] is not None and got[0].startswith(b"x")

    def test_close_wakes_a_blocked_reader(self, flavour: str) -> None:
        q = FLAVOURS[flavour](1)
        outcome: list[str] = []
        started = threading.Event()

        def reader() -> None:
            started.set()
            try:
                q.get(timeout=30)
            except QueueClosed:
                outcome.append("closed")

        join = in_background(flavour, reader)
        let_run(flavour)
        assert started.wait(5)
        q.close()
        join()
        assert outcome == ["closed"]


def test_the_keepalive_wait_is_full_length_after_an_expiry() -> None:
    """A re-armed timer waits its whole delay again: after one keep-alive expiry
    the next wait must still be woken by the frame, not expire at once."""
    q = runtime._GeventClientQueue(8)
    assert q.get(timeout=0.01) is None  # one expiry

    def later() -> None:
        gevent.sleep(0.05)
        q.put_nowait(b"x")

    putter = gevent.spawn(later)
    assert q.get(timeout=30) == b"x"
    putter.join(timeout=10)


def test_a_late_wakeup_never_resumes_the_reader_inside_another_wait() -> None:
    """The keep-alive timer and a put can land in one loop turn: the reader is
    resumed by the first, and the second must find nobody waiting, even though
    the reader is parked in some other wait by then (a socket write, say)."""
    q = runtime._GeventClientQueue(8)
    elsewhere = gevent.event.Event()
    seen: list[object] = []

    def reader() -> None:
        seen.append(q.get(timeout=30))
        seen.append(elsewhere.wait(timeout=30))

    greenlet = gevent.spawn(reader)
    gevent.sleep(0)  # the reader parks in get()
    hub = gevent.get_hub()
    hub.loop.run_callback(q._expire)  # as if the keep-alive timer fired first
    assert q.put_nowait(b"frame")  # its wake-up is queued behind the expiry
    gevent.sleep(0)  # both callbacks run; the reader is now in elsewhere.wait()
    gevent.sleep(0)
    assert seen == [b"frame"]
    elsewhere.set()
    greenlet.join(timeout=10)
    assert seen == [b"frame", True]
    assert greenlet.successful()
