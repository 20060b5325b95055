from __future__ import annotations

import re
import typing as t

import pytest

from realtime_flask.core.events import Event
from realtime_flask.core.rules import RequestContext
from realtime_flask.core.schema import Schema
from realtime_flask.errors import BadRequest
from realtime_flask.errors import Forbidden
from realtime_flask.errors import MissingCollection
from realtime_flask.errors import NotFound
from realtime_flask.errors import ValidationFailed
from realtime_flask.store.auth import Passwords
from realtime_flask.store.records import RecordStore

SCHEMA = [
    {
        "name": "users",
        "type": "auth",
        "fields": [
            {"name": "name", "type": "text"},
            {"name": "created", "type": "autodate", "onCreate": True},
            {"name": "updated", "type": "autodate", "onCreate": True, "onUpdate": True},
        ],
        "listRule": '@request.auth.id != ""',
        "viewRule": '@request.auth.id != ""',
        "createRule": "",
        "updateRule": "id = @request.auth.id",
        "deleteRule": "id = @request.auth.id",
    },
    {
        "name": "posts",
        "fields": [
            {"name": "title", "type": "text", "required": True},
            {"name": "owner", "type": "relation", "collectionId": "users", "maxSelect": 1},
            {"name": "views", "type": "number"},
            {"name": "published", "type": "bool"},
            {"name": "tags", "type": "json"},
            {"name": "created", "type": "autodate", "onCreate": True},
            {"name": "updated", "type": "autodate", "onCreate": True, "onUpdate": True},
        ],
        "listRule": '@request.auth.id != ""',
        "viewRule": '@request.auth.id != ""',
        "createRule": '@request.auth.id != ""',
        "updateRule": '@request.auth.id != ""',
        "deleteRule": '@request.auth.id != ""',
    },
    {
        "name": "notes",
        "fields": [
            {"name": "title", "type": "text"},
            {"name": "owner", "type": "relation", "collectionId": "users"},
        ],
        "listRule": "owner = @request.auth.id",
        "viewRule": "owner = @request.auth.id",
        "createRule": '@request.auth.id != "" && @request.body.owner = @request.auth.id',
        "updateRule": "owner = @request.auth.id",
        "deleteRule": "owner = @request.auth.id",
    },
    {
        "name": "public_posts",
        "fields": [{"name": "title", "type": "text"}],
        "listRule": "",
        "viewRule": "",
        "createRule": "",
        "updateRule": "",
        "deleteRule": "",
    },
    {"name": "locked", "fields": [{"name": "title", "type": "text"}]},
]

GUEST = RequestContext(auth=None)
SU = RequestContext(auth=None, superuser=True)
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}Z$")


class Env:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.store = RecordStore(
            Schema.from_json(SCHEMA),
            ":memory:",
            on_event=self.events.append,
            passwords=Passwords(n=2**4),
        )

    def user(self, email: str, password: str = "password123", **extra: object) -> dict[str, t.Any]:
        record = self.store.create(
            "users",
            {"email": email, "password": password, "passwordConfirm": password, **extra},
            GUEST,
        )
        return record

    def ctx(self, user: dict[str, t.Any], **kw: t.Any) -> RequestContext:
        return RequestContext(auth=self.store.get_record("users", user["id"]), **kw)


@pytest.fixture
def env() -> Env:
    return Env()


class TestCreate:
    def test_record_shape_and_one_event(self, env: Env) -> None:
        alice = env.user("alice@example.com")
        env.events.clear()
        post = env.store.create("posts", {"title": "Hello"}, env.ctx(alice))
        assert re.fullmatch(r"[a-z0-9]{15}", post["id"])
        assert post["collectionName"] == "posts" and post["collectionId"].startswith("pbc_")
        assert TIMESTAMP.match(post["created"]) and post["created"] == post["updated"]
        assert (post["owner"], post["views"], post["published"], post["tags"]) == (
            "",
            0,
            False,
            None,
        )
        assert [(e.action, e.record["id"]) for e in env.events] == [("create", post["id"])]

    def test_client_id(self, env: Env) -> None:
        record = env.store.create("public_posts", {"id": "custom000000001", "title": "x"}, GUEST)
        assert record["id"] == "custom000000001"
        with pytest.raises(ValidationFailed) as info:
            env.store.create("public_posts", {"id": "bad"}, GUEST)
        assert info.value.data == {
            "id": {
                "code": "validation_min_text_constraint",
                "message": "Must be at least 15 character(s).",
                "params": {"min": 15},
            }
        }
        with pytest.raises(ValidationFailed) as info:
            env.store.create("public_posts", {"id": "custom000000001"}, GUEST)
        assert info.value.data["id"]["code"] == "validation_not_unique"

    def test_failed_writes_emit_nothing(self, env: Env) -> None:
        alice = env.user("alice@example.com")
        env.events.clear()
        with pytest.raises(ValidationFailed) as info:
            env.store.create("posts", {"title": ""}, env.ctx(alice))
        assert info.value.message == "Failed to create record."
        assert info.value.data == {
            "title": {"code": "validation_required", "message": "Cannot be blank."}
        }
        with pytest.raises(ValidationFailed) as info:  # createRule fails: plain 400, no data
            env.store.create("posts", {"title": "x"}, GUEST)
        assert (info.value.message, info.value.data) == ("Failed to create record.", {})
        with pytest.raises(ValidationFailed):
            env.store.create("posts", {"title": "x", "owner": "nope00000000000"}, env.ctx(alice))
        assert env.events == []
        assert env.store.list_records("posts", SU).total_items == 0

    def test_create_rule_sees_the_body(self, env: Env) -> None:
        alice, bob = env.user("alice@example.com"), env.user("bob@example.com")
        with pytest.raises(ValidationFailed):
            env.store.create(
                "notes",
                {"title": "n", "owner": bob["id"]},
                env.ctx(alice, body={"owner": bob["id"]}),
            )
        note = env.store.create(
            "notes",
            {"title": "n", "owner": alice["id"]},
            env.ctx(alice, body={"owner": alice["id"]}),
        )
        assert note["owner"] == alice["id"]

    def test_null_rule_is_403_before_any_lookup(self, env: Env) -> None:
        for call in (
            lambda: env.store.create("locked", {}, GUEST),
            lambda: env.store.view("locked", "doesnotexist123", GUEST),
            lambda: env.store.update("locked", "doesnotexist123", {}, GUEST),
            lambda: env.store.delete("locked", "doesnotexist123", GUEST),
            lambda: env.store.list_records("locked", GUEST),
        ):
            with pytest.raises(Forbidden):
                call()
        assert env.store.create("locked", {"title": "su"}, SU)["title"] == "su"

    def test_unknown_collection(self, env: Env) -> None:
        with pytest.raises(MissingCollection):
            env.store.list_records("nope", GUEST)


class TestUpdateDelete:
    def test_update_event_carries_new_state(self, env: Env) -> None:
        alice = env.user("alice@example.com")
        post = env.store.create("posts", {"title": "a"}, env.ctx(alice))
        env.events.clear()
        updated = env.store.update(
            "posts", post["id"], {"title": "b", "views": "7"}, env.ctx(alice)
        )
        assert (updated["title"], updated["views"]) == ("b", 7)
        assert [(e.action, e.record["title"]) for e in env.events] == [("update", "b")]

    def test_rule_failure_is_an_indistinguishable_404(self, env: Env) -> None:
        alice, bob = env.user("alice@example.com"), env.user("bob@example.com")
        note = env.store.create(
            "notes",
            {"title": "n", "owner": alice["id"]},
            env.ctx(alice, body={"owner": alice["id"]}),
        )
        env.events.clear()
        calls: list[t.Callable[[], object]] = [
            lambda: env.store.view("notes", note["id"], env.ctx(bob)),
            lambda: env.store.update("notes", note["id"], {"title": "x"}, env.ctx(bob)),
            lambda: env.store.delete("notes", note["id"], env.ctx(bob)),
            lambda: env.store.view("notes", "missing00000000", env.ctx(alice)),
        ]
        for call in calls:
            with pytest.raises(NotFound) as info:
                call()
            assert info.value.to_body() == {
                "data": {},
                "message": "The requested resource wasn't found.",
                "status": 404,
            }
        assert env.events == []

    def test_delete_event_carries_the_pre_delete_record(self, env: Env) -> None:
        alice = env.user("alice@example.com")
        note = env.store.create(
            "notes",
            {"title": "last words", "owner": alice["id"]},
            env.ctx(alice, body={"owner": alice["id"]}),
        )
        env.events.clear()
        env.store.delete("notes", note["id"], env.ctx(alice))
        assert len(env.events) == 1
        event = env.events[0]
        assert (event.action, event.record["title"], event.record["owner"]) == (
            "delete",
            "last words",
            alice["id"],
        )
        assert env.store.get_record("notes", note["id"]) is None
        with pytest.raises(NotFound):
            env.store.delete("notes", note["id"], env.ctx(alice))
        assert len(env.events) == 1


class TestList:
    def test_rule_filters_rows_and_paging(self, env: Env) -> None:
        alice = env.user("alice@example.com")
        for n in range(5):
            env.store.create("posts", {"title": f"t{n}", "views": n}, env.ctx(alice))
        assert env.store.list_records("posts", GUEST).items == []
        result = env.store.list_records("posts", env.ctx(alice), page=2, per_page=2, sort="-views")
        assert [r["views"] for r in result.items] == [2, 1]
        assert (result.page, result.per_page, result.total_items, result.total_pages) == (
            2,
            2,
            5,
            3,
        )
        assert env.store.list_records("posts", env.ctx(alice), per_page=5000).per_page == 1000
        assert env.store.list_records("posts", env.ctx(alice), per_page=0).per_page == 30
        skipped = env.store.list_records("posts", env.ctx(alice), skip_total=True)
        assert (skipped.total_items, skipped.total_pages) == (-1, -1)
        filtered = env.store.list_records(
            "posts", env.ctx(alice), filter="views >= 3 && title ~ 't'"
        )
        assert sorted(r["views"] for r in filtered.items) == [3, 4]

    def test_bad_filter_sort_and_superuser_only_filters(self, env: Env) -> None:
        alice = env.user("alice@example.com")
        with pytest.raises(BadRequest):
            env.store.list_records("posts", env.ctx(alice), filter="title = ")
        with pytest.raises(BadRequest):
            env.store.list_records("posts", env.ctx(alice), sort="nope")
        with pytest.raises(Forbidden) as info:
            env.store.list_records("posts", env.ctx(alice), filter="@request.auth.id != ''")
        assert info.value.message == "Only superusers can filter by @request."
        env.store.list_records("posts", SU, filter="@request.auth.id = ''")


class TestAuth:
    def test_sign_up_validation(self, env: Env) -> None:
        with pytest.raises(ValidationFailed) as info:
            env.store.create("users", {}, GUEST)
        assert set(info.value.data) == {"password", "passwordConfirm"}
        with pytest.raises(ValidationFailed) as info:
            env.store.create(
                "users",
                {"email": "a@b.co", "password": "password123", "passwordConfirm": "different1"},
                GUEST,
            )
        assert info.value.data == {
            "passwordConfirm": {
                "code": "validation_values_mismatch",
                "message": "Values don't match.",
            }
        }
        with pytest.raises(ValidationFailed) as info:
            env.store.create(
                "users",
                {
                    "email": "not-an-email",
                    "password": "password123",
                    "passwordConfirm": "password123",
                },
                GUEST,
            )
        assert info.value.data["email"]["code"] == "validation_is_email"
        env.user("alice@example.com")
        with pytest.raises(ValidationFailed) as info:
            env.user("alice@example.com")
        assert info.value.data["email"]["code"] == "validation_not_unique"
        with pytest.raises(ValidationFailed) as info:
            env.user("carol@example.com", verified=True)
        assert info.value.data["verified"]["code"] == "validation_values_mismatch"

    def test_password_login_and_tokens(self, env: Env) -> None:
        alice = env.user("alice@example.com")
        assert env.store.auth_with_password("users", "alice@example.com", "wrong-password") is None
        assert env.store.auth_with_password("users", "nobody@example.com", "password123") is None
        assert env.store.auth_with_password("users", "ALICE@example.com", "password123") is None
        found = env.store.auth_with_password("users", "alice@example.com", "password123")
        assert found is not None and found["id"] == alice["id"]
        coll = env.store.collection("users")
        token = env.store.token_for(coll, found)
        resolved = env.store.auth_from_token(token)
        assert resolved is not None and resolved[1]["id"] == alice["id"]
        assert env.store.auth_from_token("garbage") is None
        assert env.store.auth_from_token(token[:-2] + "xx") is None

    def test_password_change_revokes_earlier_tokens(self, env: Env) -> None:
        alice = env.user("alice@example.com")
        coll = env.store.collection("users")
        old = env.store.token_for(
            coll, t.cast(dict[str, t.Any], env.store.get_record("users", alice["id"]))
        )
        with pytest.raises(ValidationFailed) as info:
            env.store.update(
                "users",
                alice["id"],
                {"password": "newpassword1", "passwordConfirm": "newpassword1"},
                env.ctx(alice),
            )
        assert info.value.data["oldPassword"]["code"] == "validation_required"
        env.store.update(
            "users",
            alice["id"],
            {
                "password": "newpassword1",
                "passwordConfirm": "newpassword1",
                "oldPassword": "password123",
            },
            env.ctx(alice),
        )
        assert env.store.auth_from_token(old) is None
        assert (
            env.store.auth_with_password("users", "alice@example.com", "newpassword1") is not None
        )

    def test_email_visibility_and_hidden_fields(self, env: Env) -> None:
        alice = env.user("alice@example.com")
        bob = env.user("bob@example.com", emailVisibility=True)
        coll = env.store.collection("users")
        stored_alice = t.cast(dict[str, t.Any], env.store.get_record("users", alice["id"]))
        as_bob = env.store.public_record(coll, stored_alice, env.ctx(bob))
        assert "email" not in as_bob and "password" not in as_bob and "tokenKey" not in as_bob
        assert (
            env.store.public_record(coll, stored_alice, env.ctx(alice))["email"]
            == "alice@example.com"
        )
        assert env.store.public_record(coll, stored_alice, SU)["email"] == "alice@example.com"
        assert "password" not in env.store.public_record(coll, stored_alice, SU)
        stored_bob = t.cast(dict[str, t.Any], env.store.get_record("users", bob["id"]))
        assert (
            env.store.public_record(coll, stored_bob, env.ctx(alice))["email"] == "bob@example.com"
        )

    def test_superuser_upsert(self, env: Env) -> None:
        _, created = env.store.upsert_superuser("root@example.com", "rootpassword1")
        assert created
        _, created = env.store.upsert_superuser("root@example.com", "otherpassword1")
        assert not created
        assert (
            env.store.auth_with_password("_superusers", "root@example.com", "otherpassword1")
            is not None
        )


class TestWriteLock:
    """Another process holding SQLite's write lock: waited for on the writer thread, bounded."""

    def make(self, path: str, write_timeout: float) -> RecordStore:
        return RecordStore(
            Schema.from_json(SCHEMA), path, passwords=Passwords(n=2**4), write_timeout=write_timeout
        )

    def test_a_write_waits_for_the_lock_then_succeeds(self, tmp_path: t.Any) -> None:
        import sqlite3
        import threading

        path = str(tmp_path / "data.db")
        store = self.make(path, write_timeout=10)
        other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")
        calls = store.db.statements
        out: list[object] = []
        writer = threading.Thread(
            target=lambda: out.append(
                store.create("public_posts", {"title": "after the lock"}, GUEST)
            )
        )
        writer.start()
        submitted = threading.Event()
        for _ in range(1000):  # the create's transaction reaches the writer thread
            if store.db.statements > calls:
                break
            submitted.wait(0.01)
        assert store.db.statements > calls
        assert writer.is_alive() and out == []  # it cannot commit while the lock is held
        other.execute("COMMIT")
        writer.join(10)
        record = t.cast(dict[str, t.Any], out[0])
        assert store.get_record("public_posts", record["id"]) is not None
        other.close()
        store.close()

    def test_a_lock_held_too_long_is_a_503_and_changes_nothing(self, tmp_path: t.Any) -> None:
        import sqlite3

        from realtime_flask.errors import StoreBusy

        path = str(tmp_path / "data.db")
        store = self.make(path, write_timeout=0.1)
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreBusy) as info:
            store.create("public_posts", {"title": "x"}, GUEST)
        assert info.value.status_hint == 503
        other.execute("COMMIT")
        other.close()
        assert store.list_records("public_posts", GUEST).total_items == 0
        store.close()


def test_record_ids_have_pocketbase_shape_and_do_not_repeat() -> None:
    from realtime_flask.store.validate import ID_ALPHABET
    from realtime_flask.store.validate import new_record_id

    ids = [new_record_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 15 and set(i) <= set(ID_ALPHABET) for i in ids)
    assert set("".join(ids)) == set(ID_ALPHABET)  # every symbol can occur
