"""Custom topics over HTTP: ``Realtime.send`` from an app's own route, the topic
authorizer, and ``POST /api/realtime/publish`` with ``{"topic", "data"}``."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from flask import Flask
from flask import Request
from flask import request
from flask.testing import FlaskClient

from realtime_flask import Realtime
from realtime_flask.core.events import AuthUser
from realtime_flask.core.events import TopicMessage
from realtime_flask.engine.broker import MemoryBroker
from realtime_flask.errors import InvalidEvent
from realtime_flask.testing import TestEventStream
from realtime_flask.web.app import create_app
from realtime_flask.web.extension import get_state
from tests.support.env import TEST_CONFIG

CONFIG = {"TESTING": True, "REALTIME_REAPER_ENABLED": False, "REALTIME_KEEPALIVE_INTERVAL": 0.05}
SECRET = {"Authorization": "Bearer test-secret"}


def user_of(req: Request) -> AuthUser | None:
    name = req.headers.get("Authorization", "")
    return AuthUser("users", name, "users", {"id": name}) if name else None


def subscribe(
    client: FlaskClient, topics: list[str], who: str | None = None
) -> tuple[TestEventStream, str]:
    stream = TestEventStream(client.get("/api/realtime", buffered=False))
    cid = stream.next_event().id
    headers = {"Authorization": who} if who else {}
    body = {"clientId": cid, "subscriptions": topics}
    assert client.post("/api/realtime", json=body, headers=headers).status_code == 204
    return stream, cid


# -- extension mode --------------------------------------------------------------------------


def room_app(realtime: Realtime) -> Flask:
    """An app that sends chat messages from its own route, as the README shows."""
    app = Flask("chat_app")
    app.config.update(CONFIG)
    realtime.init_app(app)

    @app.post("/rooms/<room>/messages")
    def post_message(room: str) -> tuple[dict[str, object], int]:
        body = request.get_json()
        message = realtime.send(f"rooms/{room}", {"room": room, "text": body["text"]})
        return {"id": message.id}, 200

    return app


def test_send_from_the_apps_own_route_reaches_the_topics_subscribers() -> None:
    realtime = Realtime()
    app = room_app(realtime)
    client = app.test_client()
    options = 'rooms/lobby?options={"query":{"x":"1"}}'
    lobby, cid = subscribe(client, ["rooms/lobby", options, "rooms/*", "rooms"])
    other, _ = subscribe(client, ["rooms/kitchen"])
    answer = client.post("/rooms/lobby/messages", json={"text": "hi"})
    assert answer.status_code == 200 and answer.json == {"id": "1"}
    frames = lobby.next_events(2)
    assert [(f.event, f.id) for f in frames] == [("rooms/lobby", cid), (options, f"{cid}.1")]
    assert [json.loads(f.data) for f in frames] == [{"room": "lobby", "text": "hi"}] * 2
    client.post("/rooms/kitchen/messages", json={"text": "soup"})
    [frame] = other.next_events(1)
    assert (frame.event, json.loads(frame.data)) == (
        "rooms/kitchen",
        {"room": "kitchen", "text": "soup"},
    )
    # the lobby got nothing else: the next frame it gets is the next lobby message
    client.post("/rooms/lobby/messages", json={"text": "bye"})
    assert json.loads(lobby.next_event().data) == {"room": "lobby", "text": "bye"}
    for stream in (lobby, other):
        stream.close()
    get_state(app).shutdown()


def test_the_topic_authorizer_picks_who_receives() -> None:
    members = {"rooms/staff": {"alice"}}
    seen: list[tuple[str | None, str]] = []

    def may_receive(auth: AuthUser | None, topic: str) -> bool:
        seen.append((None if auth is None else auth.id, topic))
        if topic not in members:
            return True  # a public room
        return auth is not None and auth.id in members[topic]

    realtime = Realtime(auth_resolver=user_of, topic_authorizer=may_receive)
    app = room_app(realtime)
    client = app.test_client()
    alice, _ = subscribe(client, ["rooms/staff"], "alice")
    bob, _ = subscribe(client, ["rooms/staff", "rooms/lobby"], "bob")
    guest, _ = subscribe(client, ["rooms/staff"])
    client.post("/rooms/staff/messages", json={"text": "staff only"})
    assert json.loads(alice.next_event().data)["text"] == "staff only"
    client.post("/rooms/lobby/messages", json={"text": "after"})
    # bob's first frame is the lobby's: the staff message never reached him
    frame = bob.next_event()
    assert (frame.event, json.loads(frame.data)["text"]) == ("rooms/lobby", "after")
    assert sorted(seen, key=str) == sorted(
        [
            ("alice", "rooms/staff"),
            ("bob", "rooms/staff"),
            (None, "rooms/staff"),
            ("bob", "rooms/lobby"),
        ],
        key=str,
    )
    for stream in (alice, bob, guest):
        stream.close()
    get_state(app).shutdown()


def test_init_app_s_authorizer_wins_over_the_constructor_s() -> None:
    app = Flask("a")
    app.config.update(CONFIG)
    realtime = Realtime(topic_authorizer=lambda auth, topic: True)
    never = lambda auth, topic: False  # noqa: E731
    realtime.init_app(app, topic_authorizer=never)
    assert get_state(app).topic_authorizer is never
    get_state(app).shutdown()


def test_send_refuses_a_bad_topic_or_data_and_publishes_nothing() -> None:
    broker = MemoryBroker()
    app = Flask("a")
    app.config.update(CONFIG)
    realtime = Realtime(app, broker=broker)
    with pytest.raises(InvalidEvent, match="topic"):
        realtime.send("room?x=1", {}, app=app)
    with pytest.raises(InvalidEvent, match="JSON"):
        realtime.send("room", {"bad": float("nan")}, app=app)
    assert broker.history() == []
    sent = realtime.send("room", [1, 2], app=app)
    assert isinstance(sent, TopicMessage) and (sent.id, sent.data) == ("1", [1, 2])
    get_state(app).shutdown()


# -- the publish route -----------------------------------------------------------------------


@pytest.fixture
def app() -> Iterator[Flask]:
    app = create_app(dict(TEST_CONFIG))
    yield app
    get_state(app).shutdown()


def logged(app: Flask) -> list[object]:
    broker = get_state(app).broker
    assert isinstance(broker, MemoryBroker)
    return list(broker.history() or [])


def test_publish_a_custom_message(app: Flask) -> None:
    client = app.test_client()
    stream, cid = subscribe(client, ["chat-room-1"])
    data = {"text": "h\u00e9llo", "n": [1, None, True]}
    answer = client.post(
        "/api/realtime/publish", json={"topic": "chat-room-1", "data": data}, headers=SECRET
    )
    assert (answer.status_code, answer.json) == (200, {"id": "1"})
    frame = stream.next_event()
    assert (frame.event, frame.id, json.loads(frame.data)) == ("chat-room-1", f"{cid}.1", data)
    # today's record bodies still work, in the same log
    record = {"collection": "chat-room-1", "action": "create", "record": {"id": "r1"}}
    answer = client.post("/api/realtime/publish", json=record, headers=SECRET)
    assert (answer.status_code, answer.json) == (200, {"id": "2"})
    assert json.loads(stream.next_event().data) == {"record": {"id": "r1"}, "action": "create"}
    values: tuple[object, ...] = (None, "text", 0, [])
    for value in values:
        body = {"topic": "chat-room-1", "data": value}
        assert client.post("/api/realtime/publish", json=body, headers=SECRET).status_code == 200
        assert json.loads(stream.next_event().data) == value
    stream.close()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"topic": "", "data": 1}, "topic must be a non-empty string, got ''"),
        ({"topic": 5, "data": 1}, "topic must be a non-empty string, got 5"),
        ({"topic": None, "data": 1}, "topic must be a non-empty string, got None"),
        ({"topic": ["a"], "data": 1}, "topic must be a non-empty string, got ['a']"),
        (
            {"topic": "a?options={}", "data": 1},
            "topic must not contain '?' (it starts the options), got 'a?options={}'",
        ),
        ({"topic": "a\nb", "data": 1}, "topic must not contain control characters, got 'a\\nb'"),
        ({"topic": "PB_CONNECT", "data": 1}, "topic 'PB_CONNECT' is reserved for the protocol"),
        ({"topic": "x" * 2501, "data": 1}, "topic must be at most 2500 UTF-8 bytes, got 2501"),
        ({"topic": "room"}, "data is required (any JSON value)."),
        (
            {"topic": "room", "data": 1, "action": "create"},
            "A topic message takes only topic and data, not action.",
        ),
        (
            {"topic": "room", "data": 1, "collection": "posts", "record": {}},
            "A topic message takes only topic and data, not collection, record.",
        ),
    ],
)
def test_a_bad_message_body_is_a_400_and_publishes_nothing(
    app: Flask, body: dict[str, object], message: str
) -> None:
    client = app.test_client()
    answer = client.post("/api/realtime/publish", json=body, headers=SECRET)
    assert answer.status_code == 400
    assert answer.json == {"status": 400, "message": message, "data": {}}
    assert logged(app) == []


def test_a_lone_surrogate_topic_and_nan_data_are_400s(app: Flask) -> None:
    client = app.test_client()
    for raw in ('{"topic":"\\udc00","data":1}', '{"topic":"room","data":NaN}'):
        answer = client.post(
            "/api/realtime/publish",
            data=raw,
            headers={**SECRET, "Content-Type": "application/json"},
        )
        assert answer.status_code == 400, raw
        assert answer.json is not None and set(answer.json) == {"status", "message", "data"}
    assert logged(app) == []


def test_a_message_needs_the_publish_secret(app: Flask) -> None:
    client = app.test_client()
    body = {"topic": "room", "data": 1}
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        answer = client.post("/api/realtime/publish", json=body, headers=headers)
        assert answer.status_code == 401
    closed = create_app({**TEST_CONFIG, "REALTIME_PUBLISH_SECRET": ""})
    answer = closed.test_client().post("/api/realtime/publish", json=body, headers=SECRET)
    assert answer.status_code == 404
    get_state(closed).shutdown()
    assert logged(app) == []
