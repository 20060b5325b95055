"""Resume with ``Last-Event-ID``: same client back, missed events in order, then live."""

from __future__ import annotations

import json
import typing as t
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from realtime_flask.core.events import AuthUser
from realtime_flask.core.topics import Subscription
from realtime_flask.engine.access import _PublishedView
from realtime_flask.engine.hub import RESET_EVENT
from realtime_flask.testing import TestEventStream
from realtime_flask.web.app import create_app
from realtime_flask.web.extension import get_state
from tests.support.env import TEST_CONFIG


@pytest.fixture
def app() -> Iterator[Flask]:
    app = create_app({**TEST_CONFIG, "REALTIME_HISTORY_SIZE": 5})
    yield app
    get_state(app).shutdown()


def publish(client: FlaskClient, collection: str, record_id: str) -> str:
    response = client.post(
        "/api/realtime/publish",
        # Unfiltered: these tests are about the protocol, not the collections' rules.
        json={
            "collection": collection,
            "action": "create",
            "record": {"id": record_id},
            "unfiltered": True,
        },
        headers={"Authorization": "Bearer test-secret"},
    )
    assert response.status_code == 200
    return t.cast(str, response.json["id"])  # type: ignore[index]


def open_stream(
    client: FlaskClient, last_event_id: str = "", addr: str = "127.0.0.1"
) -> tuple[TestEventStream, str]:
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    response = client.get(
        "/api/realtime", buffered=False, headers=headers, environ_overrides={"REMOTE_ADDR": addr}
    )
    stream = TestEventStream(response)
    first = stream.next_event()
    assert first.event == "PB_CONNECT"
    return stream, first.id


def subscribe(client: FlaskClient, cid: str, topics: list[str]) -> None:
    response = client.post("/api/realtime", json={"clientId": cid, "subscriptions": topics})
    assert response.status_code == 204


def delivered(client: FlaskClient) -> None:
    """Wait until every event published so far has been fanned out: under gevent
    the memory broker delivers from a greenlet of its own, in publish order, so
    once a marker published now reaches an observer, everything before it has."""
    observer, cid = open_stream(client)
    subscribe(client, cid, ["sync"])
    publish(client, "sync", "marker")
    assert ids(observer, 1) == ["marker"]
    observer.close()


def ids(stream: TestEventStream, n: int) -> list[str]:
    return [json.loads(e.data)["record"]["id"] for e in stream.next_events(n)]


def test_resume_gets_the_same_client_then_missed_events_then_live(
    app: Flask, client: FlaskClient
) -> None:
    stream, cid = open_stream(client)
    subscribe(client, cid, ["posts/*"])
    publish(client, "posts", "r1")
    first = stream.next_event()
    assert first.id == f"{cid}.1"
    stream.close()
    assert client.post("/api/realtime", json={"clientId": cid}).status_code == 404

    publish(client, "posts", "r2")
    publish(client, "tags", "t1")  # not subscribed: not replayed
    publish(client, "posts", "r3")
    resumed, resumed_id = open_stream(client, first.id)
    assert resumed_id == cid
    assert ids(resumed, 2) == ["r2", "r3"]
    publish(client, "posts", "r4")
    live = resumed.next_event()
    assert (json.loads(live.data)["record"]["id"], live.id) == ("r4", f"{cid}.5")
    # the resumed client is the same client: its topics answer to its id
    subscribe(client, cid, ["tags/*"])
    publish(client, "tags", "t2")
    assert ids(resumed, 1) == ["t2"]
    resumed.close()


def test_a_client_that_saw_only_pb_connect_resumes_with_its_bare_id(client: FlaskClient) -> None:
    """Issue #10: an EventSource closed before its first event sends the bare client
    id (PB_CONNECT's id); it gets its client back and what it missed since it connected."""
    publish(client, "posts", "before")  # before the stream: never replayed
    delivered(client)
    stream, cid = open_stream(client)
    subscribe(client, cid, ["posts/*"])
    stream.close()
    publish(client, "posts", "r1")
    publish(client, "tags", "t1")  # not subscribed
    resumed, resumed_id = open_stream(client, cid)
    assert resumed_id == cid
    assert ids(resumed, 1) == ["r1"]
    publish(client, "posts", "r2")
    assert ids(resumed, 1) == ["r2"]
    resumed.close()


def test_a_bare_id_resume_after_a_resume_replays_from_the_resume(client: FlaskClient) -> None:
    stream, cid = open_stream(client)
    subscribe(client, cid, ["posts/*"])
    publish(client, "posts", "r1")
    first = stream.next_event()
    stream.close()
    resumed, _ = open_stream(client, first.id)  # nothing missed: no replay, no reset
    resumed.close()
    publish(client, "posts", "r2")
    # The resumed stream had only PB_CONNECT (id = bare cid): that is what it sends now.
    again, again_id = open_stream(client, cid)
    assert again_id == cid
    assert ids(again, 1) == ["r2"]  # not r1 again
    again.close()


def test_a_bare_id_resume_with_nothing_missed_gets_no_frame(client: FlaskClient) -> None:
    stream, cid = open_stream(client)
    subscribe(client, cid, ["posts/*"])
    stream.close()
    resumed, resumed_id = open_stream(client, cid)
    assert resumed_id == cid
    publish(client, "posts", "r1")
    assert ids(resumed, 1) == ["r1"]  # the first frame after PB_CONNECT: no reset, no replay
    resumed.close()


def test_another_address_or_an_unknown_id_starts_fresh(client: FlaskClient) -> None:
    stream, cid = open_stream(client)
    subscribe(client, cid, ["posts/*"])
    publish(client, "posts", "r1")
    last = stream.next_event().id
    stream.close()
    other, other_id = open_stream(client, last, addr="127.0.0.9")
    assert other_id != cid
    other.close()
    stranger, stranger_id = open_stream(client, "nobody1234.1")
    assert stranger_id != "nobody1234"
    stranger.close()
    # the parked client is still there for its own address
    again, again_id = open_stream(client, last)
    assert again_id == cid
    again.close()


def test_after_the_grace_period_a_reconnect_starts_fresh(app: Flask, client: FlaskClient) -> None:
    stream, cid = open_stream(client)
    subscribe(client, cid, ["posts/*"])
    publish(client, "posts", "r1")
    last = stream.next_event().id
    stream.close()
    manager = get_state(app).manager
    real_clock = manager.clock
    manager.clock = lambda: real_clock() + 61  # REALTIME_RESUME_GRACE is 60 s
    fresh, fresh_id = open_stream(client, last)
    assert fresh_id != cid
    fresh.close()


def test_history_that_no_longer_reaches_back_gives_one_reset_event(client: FlaskClient) -> None:
    stream, cid = open_stream(client)
    subscribe(client, cid, ["posts/*"])
    publish(client, "posts", "r1")
    last = stream.next_event().id
    stream.close()
    for n in range(8):  # REALTIME_HISTORY_SIZE is 5
        publish(client, "posts", f"m{n}")
    delivered(client)
    resumed, resumed_id = open_stream(client, last)
    assert resumed_id == cid
    reset = resumed.next_event()
    assert (reset.event, json.loads(reset.data)) == (RESET_EVENT, {"reason": "history_lost"})
    publish(client, "posts", "live")
    assert ids(resumed, 1) == ["live"]
    resumed.close()


def test_resume_replays_only_what_the_rules_allow_and_keeps_the_auth(tmp_path: t.Any) -> None:
    app = create_app(
        {**TEST_CONFIG, "REALTIME_SCHEMA": "tests/js/schema.json", "REALTIME_DATA_DIR": ":memory:"}
    )
    client = app.test_client()
    tokens: dict[str, str] = {}
    users: dict[str, str] = {}
    for name in ("alice", "bob"):
        body = {"email": f"{name}@example.com", "password": "password123"}
        created = client.post(
            "/api/collections/users/records", json={**body, "passwordConfirm": "password123"}
        )
        assert created.status_code == 200, created.json
        users[name] = t.cast(str, created.json["id"])  # type: ignore[index]
        auth = client.post(
            "/api/collections/users/auth-with-password",
            json={"identity": body["email"], "password": body["password"]},
        )
        tokens[name] = t.cast(str, auth.json["token"])  # type: ignore[index]

    def note(owner: str, title: str) -> None:
        response = client.post(
            "/api/collections/notes/records",
            json={"title": title, "owner": users[owner]},
            headers={"Authorization": tokens[owner]},
        )
        assert response.status_code == 200, response.json

    stream, cid = open_stream(client)
    response = client.post(
        "/api/realtime",
        json={"clientId": cid, "subscriptions": ["notes/*"]},
        headers={"Authorization": tokens["alice"]},
    )
    assert response.status_code == 204
    note("alice", "a1")
    last = stream.next_event().id
    stream.close()
    note("bob", "b1")
    note("alice", "a2")
    resumed, resumed_id = open_stream(client, last)
    assert resumed_id == cid
    got = resumed.next_event()
    assert json.loads(got.data)["record"]["title"] == "a2"
    # the resumed client is still alice: bob's token on it is a different auth
    hijack = client.post(
        "/api/realtime",
        json={"clientId": cid, "subscriptions": ["notes/*"]},
        headers={"Authorization": tokens["bob"]},
    )
    assert hijack.status_code == 403
    note("alice", "a3")
    assert json.loads(resumed.next_event().data)["record"]["title"] == "a3"
    resumed.close()
    get_state(app).shutdown()


def test_a_check_that_raises_during_replay_costs_only_its_frame(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replay builds frames exactly as the live fan-out does, with the same
    per-subscriber isolation: the stream stays up and the other frames arrive."""
    stream, cid = open_stream(client)
    subscribe(client, cid, ["posts/*", "posts/r2"])
    publish(client, "posts", "r1")
    last = stream.next_event().id
    stream.close()
    publish(client, "posts", "r2")
    publish(client, "posts", "r3")

    original = _PublishedView.data_for

    def failing(self: _PublishedView, user: AuthUser | None, sub: Subscription) -> bytes | None:
        if sub.raw == "posts/r2":
            raise RuntimeError("a broken check")
        return original(self, user, sub)

    monkeypatch.setattr(_PublishedView, "data_for", failing)
    resumed, resumed_id = open_stream(client, last)
    assert resumed_id == cid
    replayed = resumed.next_events(2)
    assert [(e.event, json.loads(e.data)["record"]["id"]) for e in replayed] == [
        ("posts/*", "r2"),
        ("posts/*", "r3"),
    ]
    resumed.close()
