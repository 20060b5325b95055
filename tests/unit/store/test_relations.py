"""Deleting a record that others point at (issue #10), as PocketBase does it.

Optional references lose the id (an ``update`` event each), ``cascadeDelete``
children go too (a ``delete`` event each, grandchildren included), a required
reference refuses the delete with PocketBase's 400 and nothing changes; all in
one transaction, events after the commit.
"""

from __future__ import annotations

import typing as t

import pytest

from realtime_flask.core.events import Event
from realtime_flask.core.rules import RequestContext
from realtime_flask.core.schema import Schema
from realtime_flask.errors import RelationRequired
from realtime_flask.store.auth import Passwords
from realtime_flask.store.records import RecordStore

SU = RequestContext(auth=None, superuser=True)
OPEN = {"listRule": "", "viewRule": "", "createRule": "", "updateRule": "", "deleteRule": ""}

SCHEMA: list[dict[str, object]] = [
    {"name": "users", "type": "auth", "fields": [{"name": "name", "type": "text"}], **OPEN},
    {
        "name": "posts",
        "fields": [
            {"name": "title", "type": "text"},
            {"name": "owner", "type": "relation", "collectionId": "users"},
            {"name": "readers", "type": "relation", "collectionId": "users", "maxSelect": 5},
            {"name": "updated", "type": "autodate", "onCreate": True, "onUpdate": True},
        ],
        **OPEN,
    },
    {
        "name": "comments",
        "fields": [
            {"name": "text", "type": "text"},
            {
                "name": "post",
                "type": "relation",
                "collectionId": "posts",
                "cascadeDelete": True,
            },
        ],
        **OPEN,
    },
    {
        "name": "replies",
        "fields": [
            {"name": "text", "type": "text"},
            {
                "name": "comment",
                "type": "relation",
                "collectionId": "comments",
                "cascadeDelete": True,
            },
        ],
        **OPEN,
    },
    {
        "name": "badges",
        "fields": [
            {"name": "holder", "type": "relation", "collectionId": "users", "required": True}
        ],
        **OPEN,
    },
    {
        "name": "nodes",
        "fields": [
            {"name": "label", "type": "text"},
            {"name": "parent", "type": "relation", "collectionId": "nodes", "cascadeDelete": True},
        ],
        **OPEN,
    },
]


class Store:
    def __init__(self, path: str) -> None:
        self.events: list[Event] = []
        self.store = RecordStore(
            Schema.from_json(SCHEMA), path, on_event=self.events.append, passwords=Passwords(n=2**4)
        )

    def user(self, name: str) -> str:
        pw = "password123"
        body = {"email": f"{name}@example.com", "password": pw, "passwordConfirm": pw, "name": name}
        return str(self.store.create("users", body, SU)["id"])

    def create(self, collection: str, **body: object) -> str:
        return str(self.store.create(collection, body, SU)["id"])

    def get(self, collection: str, record_id: str) -> dict[str, t.Any] | None:
        return self.store.get_record(collection, record_id)

    def delete(self, collection: str, record_id: str) -> list[tuple[str, str, str]]:
        """Delete and return the events it sent: (collection, action, record id)."""
        before = len(self.events)
        self.store.delete(collection, record_id, SU)
        return [(e.collection, e.action, str(e.record["id"])) for e in self.events[before:]]


@pytest.fixture(params=[":memory:", "file"])
def env(request: pytest.FixtureRequest, tmp_path: t.Any) -> t.Iterator[Store]:
    store = Store(":memory:" if request.param == ":memory:" else str(tmp_path / "data.db"))
    yield store
    store.store.close()


def test_an_optional_single_relation_is_cleared_with_an_update_event(env: Store) -> None:
    carol = env.user("carol")
    post = env.create("posts", title="hers", owner=carol)
    stamped = t.cast(dict[str, t.Any], env.get("posts", post))["updated"]
    assert env.delete("users", carol) == [("posts", "update", post), ("users", "delete", carol)]
    after = t.cast(dict[str, t.Any], env.get("posts", post))
    assert after["owner"] == ""
    assert after["updated"] >= stamped
    assert env.events[-2].record["owner"] == ""  # the update event shows the cleared field


def test_a_multiple_relation_loses_only_that_id(env: Store) -> None:
    alice, bob = env.user("alice"), env.user("bob")
    post = env.create("posts", title="shared", readers=[alice, bob])
    assert env.delete("users", alice) == [("posts", "update", post), ("users", "delete", alice)]
    assert t.cast(dict[str, t.Any], env.get("posts", post))["readers"] == [bob]


def test_cascade_deletes_children_and_grandchildren_each_with_its_event(env: Store) -> None:
    post = env.create("posts", title="thread")
    other = env.create("posts", title="other")
    comment = env.create("comments", text="first", post=post)
    kept = env.create("comments", text="elsewhere", post=other)
    reply = env.create("replies", text="re", comment=comment)
    sent = env.delete("posts", post)
    assert sent == [
        ("comments", "delete", comment),
        ("replies", "delete", reply),
        ("posts", "delete", post),
    ]
    assert env.get("comments", comment) is None and env.get("replies", reply) is None
    assert env.get("comments", kept) is not None


def test_a_required_relation_refuses_the_delete_and_nothing_changes(env: Store) -> None:
    dave = env.user("dave")
    badge = env.create("badges", holder=dave)
    post = env.create("posts", title="his", owner=dave)
    before = len(env.events)
    with pytest.raises(RelationRequired) as refused:
        env.store.delete("users", dave, SU)
    assert refused.value.to_body() == {
        "status": 400,
        "message": "Failed to delete record. Make sure that the record is not part of a "
        "required relation reference.",
        "data": {},
    }
    assert len(env.events) == before  # no event
    assert env.get("users", dave) is not None
    assert t.cast(dict[str, t.Any], env.get("posts", post))["owner"] == dave  # rolled back
    assert t.cast(dict[str, t.Any], env.get("badges", badge))["holder"] == dave


def test_a_cascade_cycle_ends(env: Store) -> None:
    root = env.create("nodes", label="root")
    child = env.create("nodes", label="child", parent=root)
    env.store.update("nodes", root, {"parent": child}, SU)  # root <-> child
    sent = env.delete("nodes", root)
    assert sent == [("nodes", "delete", child), ("nodes", "delete", root)]
    assert env.get("nodes", root) is None and env.get("nodes", child) is None
