"""examples/extension_app.py works as its docstring says: rules declared in Python."""

from __future__ import annotations

import importlib.util
import json
import sys
from types import ModuleType

import pytest
from flask import Flask

from realtime_flask.testing import TestEventStream
from realtime_flask.web.extension import get_state
from tests.support.env import REPO_ROOT

EXAMPLE = REPO_ROOT / "examples" / "extension_app.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("extension_app_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def example_app() -> Flask:
    module = load_example()
    app: Flask = module.create_app(
        {"TESTING": True, "REALTIME_REAPER_ENABLED": False, "REALTIME_KEEPALIVE_INTERVAL": 0.05}
    )
    return app


def subscribe(app: Flask, who: str | None, topics: list[str]) -> TestEventStream:
    client = app.test_client()
    stream = TestEventStream(client.get("/api/realtime", buffered=False))
    cid = stream.next_event().id
    headers = {"Authorization": who} if who else {}
    response = client.post(
        "/api/realtime", json={"clientId": cid, "subscriptions": topics}, headers=headers
    )
    assert response.status_code == 204
    return stream


def test_owner_only_notes_and_public_announcements(example_app: Flask) -> None:
    alice = subscribe(example_app, "alice", ["notes/*", "announcements/*"])
    bob = subscribe(example_app, "bob", ["notes/*", "announcements/*"])
    guest = subscribe(example_app, None, ["notes/*", "announcements/*", "audit/*"])
    client = example_app.test_client()
    note = client.post("/notes", json={"text": "hi"}, headers={"Authorization": "alice"}).json
    assert note is not None
    realtime = get_state(example_app)
    with example_app.app_context():
        from realtime_flask.core.events import Event

        realtime.publish(Event("audit", "create", {"id": "a1"}))
        realtime.publish(Event("announcements", "create", {"id": "x1", "text": "all"}))
    assert (
        client.delete(f"/notes/{note['id']}", headers={"Authorization": "alice"}).status_code == 204
    )

    got_alice = alice.next_events(3)
    assert [(e.event, json.loads(e.data)["action"]) for e in got_alice] == [
        ("notes/*", "create"),
        ("announcements/*", "create"),
        ("notes/*", "delete"),
    ]
    with example_app.app_context():
        realtime.publish(Event("announcements", "create", {"id": "x2", "text": "end"}))
    # bob and the guest see the two announcements only: no note and no audit entry
    for stream in (bob, guest):
        seen = stream.next_events(2)
        assert [json.loads(e.data)["record"]["id"] for e in seen] == ["x1", "x2"]
    for s in (alice, bob, guest):
        s.close()
    realtime.shutdown()


def test_chat_rooms_are_custom_topics_sent_from_the_apps_route(example_app: Flask) -> None:
    alice = subscribe(example_app, "alice", ["rooms/staff", "rooms/lobby"])
    bob = subscribe(example_app, "bob", ["rooms/staff", "rooms/lobby"])
    guest = subscribe(example_app, None, ["rooms/lobby"])
    client = example_app.test_client()
    for who, room, text in (("alice", "staff", "members only"), ("bob", "lobby", "hi all")):
        answer = client.post(
            f"/rooms/{room}/messages", json={"text": text}, headers={"Authorization": who}
        )
        assert answer.status_code == 200
    assert client.post("/rooms/lobby/messages", json={"text": "anon"}).status_code == 401
    got = alice.next_events(2)
    assert [(e.event, json.loads(e.data)) for e in got] == [
        ("rooms/staff", {"room": "staff", "from": "alice", "text": "members only"}),
        ("rooms/lobby", {"room": "lobby", "from": "bob", "text": "hi all"}),
    ]
    # bob is no member of staff: his first frame is the lobby's, as the guest's
    for stream in (bob, guest):
        e = stream.next_event()
        assert (e.event, json.loads(e.data)["text"]) == ("rooms/lobby", "hi all")
    for s in (alice, bob, guest):
        s.close()
    get_state(example_app).shutdown()
