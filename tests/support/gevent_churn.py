"""Churn the RealtimeManager from many greenlets under monkey-patching.

Run by tests/unit/engine/test_manager.py in a fresh interpreter (patching must come first);
prints one JSON line with what was left behind.
"""

from gevent import monkey

monkey.patch_all()

import gc  # noqa: E402
import json  # noqa: E402

import gevent  # noqa: E402
import gevent.event  # noqa: E402
from gevent.pool import Group  # noqa: E402

from realtime_flask.core.events import Event  # noqa: E402
from realtime_flask.core.topics import parse_topic  # noqa: E402
from realtime_flask.engine.manager import QueueClosed  # noqa: E402
from realtime_flask.engine.manager import RealtimeManager  # noqa: E402

STABLE = 200
CHURN = 50
PUBLISHERS = 5
EVENTS_EACH = 20


def main() -> None:
    manager = RealtimeManager(queue_size=1024)
    errors: list[str] = []
    received: dict[str, int] = {}
    expected = PUBLISHERS * EVENTS_EACH
    complete: set[str] = set()
    all_received = gevent.event.Event()
    group = Group()

    def consume(client_id: str) -> None:
        client = manager.get_client(client_id)
        assert client is not None
        try:
            while True:
                chunk = client.controller.get(timeout=5)
                if chunk is not None:
                    received[client_id] = received.get(client_id, 0) + chunk.count(b"\n\n")
                    if received[client_id] == expected:
                        complete.add(client_id)
                        if len(complete) == STABLE:
                            all_received.set()
        except QueueClosed:
            pass

    stable = []
    for _ in range(STABLE):
        c = manager.register_client()
        manager.subscribe(c.id, [parse_topic("posts/*")], None)
        stable.append(c.id)
        group.spawn(consume, c.id)

    def churn(n: int) -> None:
        try:
            for i in range(20):
                c = manager.register_client()
                manager.subscribe(c.id, [parse_topic("posts/*"), parse_topic(f"posts/{i}")], None)
                gevent.sleep(0)
                manager.remove_client(c.id)
        except Exception as exc:  # noqa: BLE001 - reported in the output
            errors.append(repr(exc))

    def publish(p: int) -> None:
        for i in range(EVENTS_EACH):
            manager.dispatch(Event("posts", "create", {"id": f"p{p}e{i}"}))
            gevent.sleep(0)

    workers = [gevent.spawn(churn, n) for n in range(CHURN)]
    workers += [gevent.spawn(publish, p) for p in range(PUBLISHERS)]
    gevent.joinall(workers, timeout=30)
    all_received.wait(timeout=10)
    received_all = all(received.get(cid, 0) == expected for cid in stable)
    for cid in stable:
        manager.remove_client(cid)
    group.join(timeout=10)
    del workers
    gc.collect()
    alive = [g for g in gc.get_objects() if isinstance(g, gevent.Greenlet) and not g.dead]
    print(
        json.dumps(
            {
                "clients": manager.get_client_count(),
                "index": manager.index_size(),
                "greenlets": len(alive),
                "received_all": received_all,
                "errors": errors,
            }
        )
    )


if __name__ == "__main__":
    main()
