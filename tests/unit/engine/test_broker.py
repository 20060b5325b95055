"""MemoryBroker: ids, history, order, and the two delivery modes."""

from __future__ import annotations

import threading

from realtime_flask.core.events import Event
from realtime_flask.core.events import Published
from realtime_flask.engine.broker import MemoryBroker


def make(n: int) -> Event:
    return Event("posts", "create", {"id": f"r{n}"})


def test_synchronous_delivery_in_order_with_ids_and_bounded_history() -> None:
    broker = MemoryBroker(history_size=3)
    seen: list[str] = []
    broker.subscribe(lambda e: seen.append(e.id))
    assert [broker.publish(make(n)).id for n in range(5)] == ["1", "2", "3", "4", "5"]
    assert seen == ["1", "2", "3", "4", "5"]
    assert [e.id for e in broker.history() or []] == ["3", "4", "5"]


def test_a_failing_handler_does_not_stop_the_others() -> None:
    broker = MemoryBroker()
    seen: list[str] = []

    def boom(event: Published) -> None:
        raise RuntimeError("boom")

    broker.subscribe(boom)
    broker.subscribe(lambda e: seen.append(e.id))
    broker.publish(make(1))
    assert seen == ["1"]


def test_delivery_greenlet_mode_keeps_order_and_returns_before_delivery() -> None:
    threads: list[threading.Thread] = []

    def spawn(target: object) -> object:
        th = threading.Thread(target=target, daemon=True)  # type: ignore[arg-type]
        threads.append(th)
        return th

    broker = MemoryBroker(spawn=spawn)
    seen: list[str] = []
    done = threading.Event()

    def handler(event: Published) -> None:
        seen.append(event.id)
        if len(seen) == 100:
            done.set()

    broker.subscribe(handler)
    broker.start()
    published = [broker.publish(make(n)).id for n in range(100)]
    assert seen == []  # nothing delivered yet: the delivery thread was not started
    threads[0].start()
    assert done.wait(10)
    assert seen == published
    broker.close()
    threads[0].join(5)
    assert not threads[0].is_alive()


def test_history_after_an_id_and_when_it_no_longer_reaches_back() -> None:
    broker = MemoryBroker(history_size=3)
    for n in range(5):
        broker.publish(make(n))
    history = broker.history("3")
    assert history is not None and [e.id for e in history] == ["4", "5"]
    assert broker.history("2") is not None  # "3" is the oldest kept: nothing after 2 is lost
    assert broker.history("1") is None  # event 2 fell out
    assert broker.history("bogus") is None
    assert broker.history("5") == []
