"""The hub (``engine/hub.py``) without Flask: publish -> MemoryBroker -> deliver -> queues."""

from __future__ import annotations

import json
import subprocess
import sys
import typing as t
from collections.abc import Iterator

import pytest

from realtime_flask.config import Settings
from realtime_flask.core.events import AuthUser
from realtime_flask.core.events import Event
from realtime_flask.core.sse import ServerSentEvent
from realtime_flask.core.sse import SSEParser
from realtime_flask.core.topics import parse_topic
from realtime_flask.engine.broker import MemoryBroker
from realtime_flask.engine.hub import RESET_EVENT
from realtime_flask.engine.hub import RealtimeState
from realtime_flask.engine.hub import may_change_auth
from realtime_flask.engine.manager import RealtimeClient
from realtime_flask.engine.manager import RealtimeManager
from realtime_flask.engine.router import LocalRouter
from tests.support.clock import FakeClock

USERS = "_pb_users_auth_"
ALICE = AuthUser(USERS, "alice0000000001", "users", {"id": "alice0000000001", "tokenKey": "k1"})


class Hub:
    """A started hub over a synchronous MemoryBroker, with a fake clock."""

    def __init__(self, **parts: t.Any) -> None:
        self.clock = FakeClock()
        self.broker = MemoryBroker(history_size=parts.pop("history_size", 64))
        self.manager = RealtimeManager(clock=self.clock, queue_size=32)
        self.state = RealtimeState(
            settings=Settings.from_mapping({}),
            manager=self.manager,
            broker=self.broker,
            reaper=None,
            auth_resolver=lambda request: None,
            router=LocalRouter(self.manager, grace=60.0),
            **parts,
        )
        self.state.start()
        self.parsers: dict[str, SSEParser] = {}

    def connect(self, *topics: str, user: AuthUser | None = None) -> RealtimeClient:
        client = self.state.open_client("127.0.0.1")
        self.manager.subscribe(client.id, [parse_topic(x) for x in topics], user)
        return client

    def read(self, client: RealtimeClient) -> list[ServerSentEvent]:
        """Every frame queued for ``client`` so far, parsed."""
        chunk = client.controller.get(timeout=0)
        parser = self.parsers.setdefault(client.id, SSEParser())
        return [] if chunk is None else parser.feed(chunk)

    def publish(
        self, collection: str, action: str, record: dict[str, object], **kw: t.Any
    ) -> Event:
        return self.state.publish(Event(collection, action, record, **kw))


@pytest.fixture
def hub() -> Iterator[Hub]:
    hub = Hub()
    yield hub
    hub.state.shutdown()


def test_publish_reaches_a_subscribed_client(hub: Hub) -> None:
    client = hub.connect("posts/*")
    other = hub.connect("users/*")
    published = hub.publish("posts", "create", {"id": "p1", "title": "hi"})
    assert published.id == "1"  # the broker's id
    [frame] = hub.read(client)
    assert (frame.event, frame.id) == ("posts/*", f"{client.id}.1")
    assert json.loads(frame.data) == {"record": {"id": "p1", "title": "hi"}, "action": "create"}
    assert hub.read(other) == []
    assert hub.state.last_delivered == "1"


def test_a_backlog_is_delivered_in_order(hub: Hub) -> None:
    client = hub.connect("posts/*")
    events = [Event("posts", "create", {"id": f"p{i}"}).with_id(str(i)) for i in range(1, 4)]
    result = hub.state.deliver_many(events)
    assert (result.frames, result.clients) == (3, 1)
    frames = hub.read(client)
    assert [json.loads(f.data)["record"]["id"] for f in frames] == ["p1", "p2", "p3"]
    assert hub.state.last_delivered == "3"


def test_a_rotated_token_key_drops_the_auth_in_its_place_in_the_order(hub: Hub) -> None:
    client = hub.connect("posts/*", "users/*", user=ALICE)
    stored = {**ALICE.record, "tokenKey": "k2"}
    rotate = Event("users", "update", {"id": ALICE.id}, collection_id=USERS, stored=stored)
    assert may_change_auth(rotate.with_id("2"))
    hub.state.deliver_many(
        [
            Event("posts", "create", {"id": "p1"}).with_id("1"),
            rotate.with_id("2"),
            Event("posts", "create", {"id": "p2"}).with_id("3"),
        ]
    )
    assert [f.event for f in hub.read(client)] == ["posts/*", "users/*", "posts/*"]
    assert client.user is None  # a password change logs the client out


def test_an_update_with_the_same_token_key_refreshes_the_auth(hub: Hub) -> None:
    client = hub.connect("posts/*", user=ALICE)
    stored = {**ALICE.record, "name": "Alice"}
    hub.publish("users", "update", {"id": ALICE.id}, collection_id=USERS, stored=stored)
    assert client.user is not None and client.user.record["name"] == "Alice"


def test_the_owner_of_a_deleted_auth_record_still_gets_its_delete_frame(hub: Hub) -> None:
    client = hub.connect("users/*", user=ALICE)
    hub.publish("users", "delete", {"id": ALICE.id}, collection_id=USERS, stored=ALICE.record)
    [frame] = hub.read(client)
    assert json.loads(frame.data)["action"] == "delete"
    assert client.user is None


def test_events_without_a_stored_token_key_change_no_auth() -> None:
    assert not may_change_auth(Event("posts", "update", {"id": "p1"}, stored={"id": "p1"}))
    created = Event("users", "create", {"id": "u"}, stored={"id": "u", "tokenKey": "k"})
    assert not may_change_auth(created)


def test_reset_reaches_every_client(hub: Hub) -> None:
    clients = [hub.connect("posts/*"), hub.connect()]
    assert hub.state.reset("redis_outage") == 2
    for client in clients:
        [frame] = hub.read(client)
        assert (frame.event, json.loads(frame.data)) == (RESET_EVENT, {"reason": "redis_outage"})


def test_a_resumed_client_gets_what_it_missed_with_refreshed_auth() -> None:
    seen: list[AuthUser] = []

    def refresh(user: AuthUser) -> AuthUser | None:
        seen.append(user)
        return None  # e.g. its record is gone: it resumes as a guest

    hub = Hub(auth_refresher=refresh)
    client = hub.connect("posts/*", user=ALICE)
    hub.publish("posts", "create", {"id": "p1"})
    [first] = hub.read(client)
    hub.manager.remove_client(client.id, reason="network")
    hub.publish("posts", "create", {"id": "p2"})
    back = hub.state.open_client("127.0.0.1", first.id)
    assert back.id == client.id and back.user is None
    assert seen == [ALICE]
    [missed] = hub.read(back)
    assert json.loads(missed.data)["record"]["id"] == "p2"
    hub.state.shutdown()


def test_a_resume_past_the_history_gets_a_reset() -> None:
    hub = Hub(history_size=2)
    client = hub.connect("posts/*")
    hub.publish("posts", "create", {"id": "p1"})
    [first] = hub.read(client)
    hub.manager.remove_client(client.id, reason="network")
    for i in range(2, 6):
        hub.publish("posts", "create", {"id": f"p{i}"})
    back = hub.state.open_client("127.0.0.1", first.id)
    [frame] = hub.read(back)
    assert (frame.event, json.loads(frame.data)) == (RESET_EVENT, {"reason": "history_lost"})
    hub.state.shutdown()


def test_shutdown_closes_every_client_and_the_broker(hub: Hub) -> None:
    client = hub.connect("posts/*")
    assert hub.state.shutdown() == 1
    assert client.controller.closed
    hub.publish("posts", "create", {"id": "late"})  # a closed broker drops it
    assert hub.manager.get_client_count() == 0


def test_the_hub_loads_no_web_framework() -> None:
    code = (
        "import sys, realtime_flask.engine.hub; print(sorted(m for m in "
        "('flask', 'werkzeug', 'gevent', 'redis', 'sqlite3') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_realtime_state_is_public() -> None:
    import realtime_flask

    assert realtime_flask.RealtimeState is RealtimeState
