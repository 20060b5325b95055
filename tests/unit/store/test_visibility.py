"""What the realtime fan-out of a store event reads from SQLite (``store.visibility``).

Issue #12: a public collection's fan-out never touches SQLite, and a rule that
follows a relation reads each related record once per event, not once per
subscriber.  Counted with the store's own statement counter
(``RecordStore.db.statements``).
"""

from __future__ import annotations

import typing as t

import pytest

from realtime_flask.core.events import AuthUser
from realtime_flask.core.events import Event
from realtime_flask.core.rules import RequestContext
from realtime_flask.core.schema import Schema
from realtime_flask.core.topics import parse_topic
from realtime_flask.store.auth import Passwords
from realtime_flask.store.records import RecordStore
from realtime_flask.store.visibility import StoreVisibility

SU = RequestContext(auth=None, superuser=True)

SCHEMA: list[dict[str, object]] = [
    {
        "name": "users",
        "type": "auth",
        "fields": [{"name": "name", "type": "text"}],
        "listRule": "",
        "viewRule": "",
        "createRule": "",
    },
    {
        "name": "public",
        "fields": [{"name": "title", "type": "text"}],
        "listRule": "",
        "viewRule": "",
    },
    {
        # The listRule follows the owner relation: the fan-out must read the owner.
        "name": "hopped",
        "fields": [
            {"name": "title", "type": "text"},
            {"name": "owner", "type": "relation", "collectionId": "users"},
        ],
        "listRule": "owner.name != '' && @request.auth.id != ''",
        "viewRule": "owner.name != '' && @request.auth.id != ''",
    },
]

SUBSCRIBERS = 40


class Setup:
    def __init__(self, path: str) -> None:
        self.events: list[Event] = []
        self.store = RecordStore(
            Schema.from_json(SCHEMA),
            path,
            on_event=self.events.append,
            passwords=Passwords(n=2**4),
        )
        self.visibility = StoreVisibility(self.store)
        self.users = [self.user(i) for i in range(SUBSCRIBERS)]

    def user(self, i: int) -> AuthUser:
        pw = "password123"
        body = {
            "email": f"u{i}@example.com",
            "password": pw,
            "passwordConfirm": pw,
            "name": f"u{i}",
        }
        record = self.store.create("users", body, SU)
        coll = self.store.collection("users")
        return AuthUser(coll.id, record["id"], coll.name, record, False)

    def fan_out(self, event: Event, topic: str) -> tuple[int, int]:
        """(frames produced, statements run) for every user subscribed to ``topic``."""
        sub = parse_topic(topic)
        before = self.store.db.statements
        view = self.visibility.begin(event)
        frames = sum(view.data_for(user, sub) is not None for user in self.users)
        return frames, self.store.db.statements - before


@pytest.fixture(params=[":memory:", "file"])
def setup(request: pytest.FixtureRequest, tmp_path: t.Any) -> t.Iterator[Setup]:
    path = ":memory:" if request.param == ":memory:" else str(tmp_path / "data.db")
    env = Setup(path)
    yield env
    env.store.close()


def test_a_public_collections_fan_out_runs_no_statement(setup: Setup) -> None:
    setup.store.create("public", {"title": "hello"}, SU)
    frames, statements = setup.fan_out(setup.events[-1], "public/*")
    assert frames == SUBSCRIBERS
    assert statements == 0


def test_a_relation_rule_reads_the_related_record_once_per_event(setup: Setup) -> None:
    owner = setup.users[0]
    setup.store.create("hopped", {"title": "a", "owner": owner.id}, SU)
    frames, statements = setup.fan_out(setup.events[-1], "hopped/*")
    assert frames == SUBSCRIBERS  # every signed-in user passes, each checked on its own
    assert statements == 1  # one lookup of the owner, shared by the 40 checks


def test_a_relation_rule_that_fails_for_everyone_still_reads_once(setup: Setup) -> None:
    setup.store.create("hopped", {"title": "orphan", "owner": ""}, SU)
    frames, statements = setup.fan_out(setup.events[-1], "hopped/*")
    assert frames == 0
    assert statements <= 1
