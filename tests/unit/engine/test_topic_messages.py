"""Custom messages (``TopicMessage``, ``Realtime.send``) through the hub: matching,
frames, the topic authorizer, resume; and the message's own validation."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from realtime_flask.core.events import AuthUser
from realtime_flask.core.events import TopicMessage
from realtime_flask.core.topics import parse_topic
from realtime_flask.engine.hub import may_change_auth
from realtime_flask.errors import InvalidEvent
from tests.unit.engine.test_hub import ALICE
from tests.unit.engine.test_hub import Hub

BOB = AuthUser("_pb_users_auth_", "bob000000000001", "users", {"id": "bob000000000001"})


@pytest.fixture
def hub() -> Iterator[Hub]:
    hub = Hub()
    yield hub
    hub.state.shutdown()


# -- the message itself ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "topic",
    [
        "",
        "chat?room",  # "?" starts a subscription's options: no subscription's path has one
        "chat\nroom",
        "chat\x00room",
        "chat\x7froom",
        "PB_CONNECT",
        "RF_RESET",
        "x" * 2501,
        "\u00e9" * 1251,  # 2502 UTF-8 bytes
        "\udc00",
        5,
        None,
    ],
)
def test_a_topic_no_client_can_subscribe_to_is_refused(topic: object) -> None:
    with pytest.raises(InvalidEvent, match="topic"):
        TopicMessage(topic, {"a": 1})  # type: ignore[arg-type]


@pytest.mark.parametrize("data", [float("nan"), float("inf"), object(), {"when": {1, 2}}, b"bytes"])
def test_data_that_is_not_json_is_refused(data: object) -> None:
    with pytest.raises(InvalidEvent, match="JSON"):
        TopicMessage("chat-room-1", data)


def test_data_is_encoded_once_when_the_message_is_made() -> None:
    data: dict[str, object] = {"text": "h\u00e9llo \U0001f600", "n": [1, 2.5, None, True]}
    message = TopicMessage("chat-room-1", data)
    data["text"] = "changed later"  # the caller's object is not what is sent
    assert json.loads(message.data_json) == {
        "text": "h\u00e9llo \U0001f600",
        "n": [1, 2.5, None, True],
    }
    stamped = message.with_id("7")
    assert (stamped.id, stamped.topic, stamped.data_json) == ("7", "chat-room-1", message.data_json)
    assert TopicMessage("a" * 2500, 1).names == ("a" * 2500,)
    assert TopicMessage("orders/42/items", 1).names == ("orders",)
    assert not may_change_auth(stamped)


# -- who gets it -----------------------------------------------------------------------------


def test_a_message_reaches_each_subscription_whose_path_is_its_topic(hub: Hub) -> None:
    options = 'chat-room-1?options={"query":{"a":"1"}}'
    sub = hub.connect("chat-room-1", options, "chat-room-1/*", "chat-room-10", "chat-room-1/x")
    other = hub.connect("chat-room-2", "posts/*")
    message = hub.state.publish(TopicMessage("chat-room-1", {"text": "hi", "n": 1}))
    assert message.id == "1"
    frames = hub.read(sub)
    # one frame per matching subscription, in subscription order, named as subscribed;
    # only the last one names the log position
    assert [(f.event, f.id) for f in frames] == [
        ("chat-room-1", sub.id),
        (options, f"{sub.id}.1"),
    ]
    assert [json.loads(f.data) for f in frames] == [{"text": "hi", "n": 1}] * 2
    assert hub.read(other) == []
    assert hub.state.last_delivered == "1"


def test_a_topic_with_slashes_matches_exactly_not_as_a_record_topic(hub: Hub) -> None:
    exact = hub.connect("orders/42")
    wildcard = hub.connect("orders/*", "orders", "orders/4")
    hub.state.publish(TopicMessage("orders/42", "shipped"))
    [frame] = hub.read(exact)
    assert (frame.event, frame.data) == ("orders/42", '"shipped"')  # a JSON string
    assert hub.read(wildcard) == []


@settings(max_examples=300, deadline=None)
@given(
    topics=st.lists(st.text(alphabet="ab/*?=x", min_size=1, max_size=6), max_size=8),
    topic=st.text(alphabet="ab/*x", min_size=1, max_size=4),
)
def test_frames_go_to_exactly_the_subscriptions_whose_path_is_the_topic(
    topics: list[str], topic: str
) -> None:
    hub = Hub()
    try:
        client = hub.connect(*topics)
        hub.state.publish(TopicMessage(topic, 1))
        unique = list(dict.fromkeys(topics))
        expected = [raw for raw in unique if raw.partition("?")[0] == topic]
        assert [f.event for f in hub.read(client)] == expected
    finally:
        hub.state.shutdown()


@pytest.mark.parametrize("data", [None, False, 0, "", [], {}, [1, {"a": None}], "multi\nline"])
def test_any_json_value_is_one_data_line(hub: Hub, data: object) -> None:
    client = hub.connect("t")
    hub.state.publish(TopicMessage("t", data))
    [frame] = hub.read(client)
    assert "\n" not in frame.data
    assert json.loads(frame.data) == data


def test_the_one_by_one_handler_delivers_messages_too(hub: Hub) -> None:
    """``deliver`` is the handler for brokers without ``subscribe_many``."""
    client = hub.connect("room")
    result = hub.state.deliver(TopicMessage("room", {"n": 1}).with_id("9"))
    assert (result.frames, result.clients) == (1, 1)
    [frame] = hub.read(client)
    assert (frame.id, json.loads(frame.data)) == (f"{client.id}.9", {"n": 1})
    assert hub.state.last_delivered == "9"


def test_messages_and_record_events_share_one_ordered_log(hub: Hub) -> None:
    client = hub.connect("posts/*", "posts")
    hub.publish("posts", "create", {"id": "p1"})
    hub.state.publish(TopicMessage("posts", {"note": "a custom message on a collection's name"}))
    hub.publish("posts", "delete", {"id": "p1"})
    frames = hub.read(client)
    assert [(f.event, f.id.partition(".")[2]) for f in frames] == [
        ("posts/*", ""),
        ("posts", "1"),
        ("posts", "2"),
        ("posts/*", ""),
        ("posts", "3"),
    ]
    assert json.loads(frames[2].data) == {"note": "a custom message on a collection's name"}


# -- the topic authorizer --------------------------------------------------------------------


def test_the_authorizer_decides_per_message_once_per_auth() -> None:
    calls: list[tuple[str | None, str]] = []
    members = {"chat-room-1": {ALICE.id}}

    def authorizer(auth: AuthUser | None, topic: str) -> bool:
        calls.append((None if auth is None else auth.id, topic))
        return auth is not None and auth.id in members.get(topic, set())

    hub = Hub(topic_authorizer=authorizer)
    try:
        alice = [hub.connect("chat-room-1", user=ALICE) for _ in range(3)]
        bob = hub.connect("chat-room-1", user=BOB)
        guest = hub.connect("chat-room-1")
        hub.state.publish(TopicMessage("chat-room-1", {"n": 1}))
        for client in alice:
            assert [json.loads(f.data) for f in hub.read(client)] == [{"n": 1}]
        assert hub.read(bob) == [] and hub.read(guest) == []
        assert sorted(calls, key=str) == sorted(
            [(ALICE.id, "chat-room-1"), (BOB.id, "chat-room-1"), (None, "chat-room-1")], key=str
        )
        # asked again for the next message: a right granted meanwhile counts at once
        members["chat-room-1"].add(BOB.id)
        hub.state.publish(TopicMessage("chat-room-1", {"n": 2}))
        assert [json.loads(f.data) for f in hub.read(bob)] == [{"n": 2}]
        assert hub.read(guest) == []
        # record events never reach the authorizer
        calls.clear()
        hub.connect("posts/*", user=ALICE)
        hub.publish("posts", "create", {"id": "p1"})
        assert calls == []
    finally:
        hub.state.shutdown()


def test_a_raising_authorizer_costs_only_that_subscriber_its_frame(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def authorizer(auth: AuthUser | None, topic: str) -> bool:
        if auth is not None and auth.id == BOB.id:
            raise RuntimeError("authorizer bug")
        return True

    hub = Hub(topic_authorizer=authorizer)
    try:
        bob = hub.connect("room", "posts/*", user=BOB)
        alice = hub.connect("room", user=ALICE)
        with caplog.at_level(logging.ERROR, logger="realtime_flask.engine.manager"):
            hub.state.publish(TopicMessage("room", {"n": 1}))
        assert [json.loads(f.data) for f in hub.read(alice)] == [{"n": 1}]
        assert hub.read(bob) == []
        assert any(
            "access check failed" in r.message and r.exc_info is not None for r in caplog.records
        )
        # bob's stream is intact: still registered and getting the rest
        assert hub.manager.get_client(bob.id) is bob and not bob.controller.closed
        hub.publish("posts", "create", {"id": "p1"})
        assert [f.event for f in hub.read(bob)] == ["posts/*"]
    finally:
        hub.state.shutdown()


# -- resume ----------------------------------------------------------------------------------


def test_missed_messages_are_replayed_on_resume_through_the_authorizer() -> None:
    allowed = {"room": True}
    hub = Hub(topic_authorizer=lambda auth, topic: allowed.get(topic, False))
    try:
        client = hub.connect("room", "secret", "posts/*")
        hub.state.publish(TopicMessage("room", {"n": 1}))
        [first] = hub.read(client)
        hub.manager.remove_client(client.id, reason="network")
        hub.state.publish(TopicMessage("room", {"n": 2}))
        hub.state.publish(TopicMessage("secret", {"n": 3}))  # not for this client
        hub.publish("posts", "create", {"id": "p1"})
        hub.state.publish(TopicMessage("elsewhere", {"n": 4}))
        back = hub.state.open_client("127.0.0.1", first.id)
        assert back.id == client.id
        frames = hub.read(back)
        assert [(f.event, f.data) for f in frames] == [
            ("room", '{"n":2}'),
            (
                "posts/*",
                json.dumps({"record": {"id": "p1"}, "action": "create"}, separators=(",", ":")),
            ),
        ]
        # then live
        hub.state.publish(TopicMessage("room", {"n": 5}))
        assert [json.loads(f.data) for f in hub.read(back)] == [{"n": 5}]
    finally:
        hub.state.shutdown()


def test_subscribing_to_a_custom_topic_is_the_same_as_any_topic() -> None:
    sub = parse_topic('chat-room-1?options={"headers":{"X-Room":"1"}}')
    assert (sub.collection, sub.record_id, sub.path) == ("chat-room-1", None, "chat-room-1")
    assert sub.options.headers == {"x_room": "1"}
    assert parse_topic("orders/42?options=").path == "orders/42"
