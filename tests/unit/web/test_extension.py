from __future__ import annotations

import json

import pytest
from flask import Flask

from realtime_flask import Realtime
from realtime_flask.core import sse
from realtime_flask.core.events import AuthUser
from realtime_flask.core.events import Event
from realtime_flask.core.topics import parse_topic
from realtime_flask.engine.access import EventView
from realtime_flask.engine.access import OpenVisibility
from realtime_flask.engine.broker import MemoryBroker
from realtime_flask.errors import InvalidEvent
from realtime_flask.store.visibility import StoreVisibility
from realtime_flask.testing import TestEventStream
from realtime_flask.web.api.records import STORE_KEY
from realtime_flask.web.app import create_app
from realtime_flask.web.extension import get_state
from tests.support.env import TEST_CONFIG

CONFIG = {"TESTING": True, "REALTIME_REAPER_ENABLED": False, "REALTIME_KEEPALIVE_INTERVAL": 0.05}


def make_app(realtime: Realtime) -> Flask:
    app = Flask("user_app")
    app.config.update(CONFIG)
    realtime.init_app(app)
    return app


def test_init_app_registers_state_and_routes() -> None:
    realtime = Realtime()
    app = make_app(realtime)
    state = get_state(app)
    assert app.extensions["realtime"] is state
    assert state.reaper is None
    assert {r.rule for r in app.url_map.iter_rules()} >= {"/api/realtime"}
    # the extension object is app-agnostic: a second app gets its own state
    other = make_app(realtime)
    assert get_state(other) is not state
    state.shutdown()
    get_state(other).shutdown()


def test_constructor_form_and_custom_broker() -> None:
    app = Flask("user_app")
    app.config.update(CONFIG)
    broker = MemoryBroker(history_size=4)
    Realtime(app, broker=broker)
    assert get_state(app).broker is broker
    get_state(app).shutdown()


def test_broadcast_from_app_code_reaches_subscribers() -> None:
    realtime = Realtime()
    app = make_app(realtime)
    client = app.test_client()
    stream = TestEventStream(client.get("/api/realtime", buffered=False))
    cid = stream.next_event().id
    topics = ["posts/*", "posts/abc", "posts", "pbc_posts/*", "posts/other", "users/*"]
    assert (
        client.post("/api/realtime", json={"clientId": cid, "subscriptions": topics}).status_code
        == 204
    )
    with app.app_context():
        event = realtime.broadcast(
            "posts", "update", {"id": "abc", "title": "x"}, collection_id="pbc_posts"
        )
    assert event.id == "1"
    received = stream.next_events(4)
    assert sorted(e.event for e in received) == sorted(
        ["posts/*", "posts/abc", "posts", "pbc_posts/*"]
    )
    for e in received:
        assert json.loads(e.data) == {"record": {"id": "abc", "title": "x"}, "action": "update"}
    # with an explicit app, outside any context
    realtime.broadcast("users", "delete", {"id": "u1"}, app=app)
    assert stream.next_event().event == "users/*"
    stream.close()
    get_state(app).shutdown()


@pytest.mark.parametrize(
    ("collection", "action", "record"),
    [
        ("posts", "upsert", {}),
        ("", "create", {}),
        ("a?b", "create", {}),
        ("p", "create", {"id": 1}),
    ],
)
def test_broadcast_rejects_bad_events(
    collection: str, action: str, record: dict[str, object]
) -> None:
    realtime = Realtime()
    app = make_app(realtime)
    with pytest.raises(InvalidEvent):
        realtime.broadcast(collection, action, record, app=app)
    get_state(app).shutdown()


def test_get_state_without_init() -> None:
    with pytest.raises(RuntimeError, match="not initialised"):
        get_state(Flask("bare"))


def test_shutdown_closes_streams() -> None:
    realtime = Realtime()
    app = make_app(realtime)
    client = app.test_client()
    stream = TestEventStream(client.get("/api/realtime", buffered=False))
    stream.next_event()
    assert get_state(app).shutdown() == 1
    assert stream.wait_closed() == []


class _Picky(OpenVisibility):
    """A visibility that fails for one record."""

    def begin(self, event: Event) -> EventView:
        if event.record.get("id") == "bad":
            raise RuntimeError("custom visibility failed")
        return super().begin(event)


def test_a_failing_event_in_a_batch_costs_only_itself() -> None:
    app = Flask(__name__)
    app.config.update(REALTIME_REAPER_ENABLED=False)
    Realtime(app, visibility=_Picky())
    state = get_state(app)
    client = state.open_client("127.0.0.1")
    state.manager.set_subscriptions(client.id, [parse_topic("posts/*")])
    events = [Event("posts", "create", {"id": rid}, id=str(n)) for n, rid in enumerate("abc", 1)]
    events[1] = Event("posts", "create", {"id": "bad"}, id="2")
    result = state.deliver_many(events)
    assert result.frames == 2
    data = [
        json.loads(m.data)["record"]["id"]
        for m in sse.SSEParser().feed(client.controller.get(timeout=0) or b"")
    ]
    assert data == ["a", "c"]
    state.shutdown()


def test_init_app_takes_its_parts_as_keywords() -> None:
    """Keywords of ``init_app`` win over the constructor's; the hub is built with them."""
    realtime = Realtime(visibility=OpenVisibility())
    app = Flask("user_app")
    app.config.update(CONFIG)
    broker = MemoryBroker()
    picky = _Picky()

    def resolver(request: object) -> AuthUser | None:
        return None

    def refresher(user: AuthUser) -> AuthUser | None:
        return user

    realtime.init_app(
        app, broker=broker, visibility=picky, auth_resolver=resolver, auth_refresher=refresher
    )
    state = get_state(app)
    assert state.broker is broker and state.visibility is picky
    assert state.auth_resolver is resolver and state.auth_refresher is refresher
    state.shutdown()


def test_create_app_wires_the_store_to_the_broker_and_the_hub_to_the_store() -> None:
    app = create_app(TEST_CONFIG)
    state = get_state(app)
    store = app.extensions[STORE_KEY]
    assert store.on_event == state.broker.publish  # no call up into the web layer
    assert isinstance(state.visibility, StoreVisibility) and state.visibility.store is store
    assert state.auth_refresher is not None
    state.shutdown()
