"""The rule-filtered dispatcher (``realtime_flask.engine.access``) behind ``dispatch``.

Wired as in production, without Flask: a RecordStore publishes committed
changes to the real MemoryBroker, whose handler is ``RealtimeState.deliver``
(auth side effects, then the fan-out through ``StoreVisibility``).  Frames are
read back from each client's queue and parsed with ``SSEParser``.  PocketBase
semantics: PROTOCOL.md sections 2.3-2.5 and 3.2.
"""

from __future__ import annotations

import json
import typing as t
from collections.abc import Mapping
from urllib.parse import quote

import pytest

from realtime_flask.config import Settings
from realtime_flask.core import sse
from realtime_flask.core.events import AuthUser
from realtime_flask.core.events import Event
from realtime_flask.core.rules import CompiledRule
from realtime_flask.core.rules import RequestContext
from realtime_flask.core.schema import SUPERUSERS
from realtime_flask.core.schema import Schema
from realtime_flask.core.topics import parse_topic
from realtime_flask.engine.access import OpenVisibility
from realtime_flask.engine.access import PythonRules
from realtime_flask.engine.access import Visibility
from realtime_flask.engine.broker import MemoryBroker
from realtime_flask.engine.hub import RealtimeState
from realtime_flask.engine.manager import RealtimeClient
from realtime_flask.engine.manager import RealtimeManager
from realtime_flask.store.auth import Passwords
from realtime_flask.store.records import RecordStore
from realtime_flask.store.visibility import StoreVisibility
from tests.support.clock import FakeClock

Record = dict[str, t.Any]
Frame = tuple[str, dict[str, t.Any]]

SU = RequestContext(auth=None, superuser=True)

SCHEMA: list[dict[str, object]] = [
    {
        "name": "users",
        "type": "auth",
        "fields": [{"name": "name", "type": "text"}],
        # Any signed-in user may list users, but only view (and so expand) oneself.
        "listRule": '@request.auth.id != ""',
        "viewRule": "id = @request.auth.id",
        "createRule": "",
    },
    {
        # listRule and viewRule differ, to show which one a topic is checked against.
        "name": "docs",
        "fields": [{"name": "kind", "type": "text"}],
        "listRule": "kind = 'listed'",
        "viewRule": "kind = 'viewable'",
    },
    {
        "name": "notes",
        "fields": [
            {"name": "title", "type": "text"},
            {"name": "owner", "type": "relation", "collectionId": "users"},
        ],
        "listRule": "owner = @request.auth.id",
        "viewRule": "owner = @request.auth.id",
    },
    {
        "name": "posts",
        "fields": [
            {"name": "title", "type": "text"},
            {"name": "owner", "type": "relation", "collectionId": "users"},
        ],
        "listRule": "",
        "viewRule": "",
    },
    {
        "name": "public",
        "fields": [
            {"name": "title", "type": "text"},
            {"name": "secret", "type": "text", "hidden": True},
        ],
        "listRule": "",
    },
    {"name": "locked", "fields": [{"name": "title", "type": "text"}]},
    {
        "name": "flagged",
        "fields": [{"name": "title", "type": "text"}],
        "listRule": "@request.headers.x_flag = 'on'",
    },
    {
        "name": "named",
        "fields": [{"name": "title", "type": "text"}],
        "listRule": "@request.auth.name = 'Alicia'",
    },
]


def with_options(topic: str, options: Mapping[str, object]) -> str:
    """The topic as the JS SDK sends it: ``?options=`` + encodeURIComponent(JSON)."""
    return f"{topic}?options={quote(json.dumps(options), safe='')}"


def read(client: RealtimeClient) -> list[Frame]:
    """Every frame queued for ``client`` as (event name, parsed data)."""
    chunk = client.controller.get(timeout=0)
    if chunk is None:
        return []
    frames: list[Frame] = []
    for event in sse.SSEParser().feed(chunk):
        assert event.id.partition(".")[0] == client.id  # id:<clientId>.<event id>
        frames.append((event.event, json.loads(event.data)))
    return frames


def created(record: Record) -> dict[str, t.Any]:
    """The data of a create frame carrying ``record``."""
    return {"record": record, "action": "create"}


class Env:
    """Store -> MemoryBroker -> RealtimeState.deliver -> manager, with a fake clock."""

    def __init__(self, clock: FakeClock, schema: list[dict[str, object]] = SCHEMA) -> None:
        self.broker = MemoryBroker()
        self.store = RecordStore(
            Schema.from_json(schema),
            ":memory:",
            on_event=self.broker.publish,
            passwords=Passwords(n=2**4),
        )
        self.manager = RealtimeManager(clock=clock, queue_size=64)
        self.state = RealtimeState(
            settings=Settings.from_mapping({}),
            manager=self.manager,
            broker=self.broker,
            reaper=None,
            auth_resolver=lambda request: None,
            visibility=StoreVisibility(self.store),
        )
        self.broker.subscribe(self.state.deliver)

    def cid(self, collection: str) -> str:
        return self.store.collection(collection).id

    def user(self, email: str, name: str = "", **extra: object) -> Record:
        pw = "password123"
        body = {"email": email, "password": pw, "passwordConfirm": pw, "name": name, **extra}
        return self.store.create("users", body, SU)

    def superuser(self) -> Record:
        record, _ = self.store.upsert_superuser("root@example.com", "password123")
        return record

    def auth(self, record: Record) -> AuthUser:
        """The AuthUser a POST with this record's token stores (see app.store_auth_resolver)."""
        coll = self.store.collection(record["collectionId"])
        stored = self.store.get_record(coll.name, record["id"])
        assert stored is not None
        return AuthUser(coll.id, stored["id"], coll.name, stored, coll.name == SUPERUSERS)

    def connect(self, *topics: str, auth: Record | None = None) -> RealtimeClient:
        client = self.manager.register_client()
        user = None if auth is None else self.auth(auth)
        return self.manager.subscribe(client.id, [parse_topic(x) for x in topics], user)

    def create(self, collection: str, **body: object) -> Record:
        return self.store.create(collection, body, SU)

    def update(self, collection: str, record_id: str, **body: object) -> Record:
        return self.store.update(collection, record_id, body, SU)

    def delete(self, collection: str, record_id: str) -> Record:
        return self.store.delete(collection, record_id, SU)


@pytest.fixture
def env(fake_clock: FakeClock) -> Env:
    return Env(fake_clock)


def shown(env: Env, collection: str, record: Record) -> Record:
    """What a non-superuser, non-owner sees of ``record`` (the REST shape)."""
    return env.store.public_record(env.store.collection(collection), record)


# -- which rule a topic is checked against --------------------------------------------


LIST_TOPICS = ["docs/*", "docs", "{cid}/*", "{cid}"]
VIEW_TOPICS = ["docs/{rid}", "{cid}/{rid}"]
LISTED_ID = "listed000000001"
VIEWABLE_ID = "viewable0000001"


class TestTopicRules:
    @pytest.mark.parametrize("topic", LIST_TOPICS)
    def test_wildcard_and_bare_topics_use_the_list_rule(self, env: Env, topic: str) -> None:
        raw = topic.format(cid=env.cid("docs"))
        guest = env.connect(raw)
        listed = env.create("docs", id=LISTED_ID, kind="listed")
        env.create("docs", id=VIEWABLE_ID, kind="viewable")
        assert read(guest) == [(raw, created(shown(env, "docs", listed)))]

    @pytest.mark.parametrize("topic", VIEW_TOPICS)
    def test_record_topics_use_the_view_rule(self, env: Env, topic: str) -> None:
        cid = env.cid("docs")
        listed_topic = topic.format(cid=cid, rid=LISTED_ID)
        viewable_topic = topic.format(cid=cid, rid=VIEWABLE_ID)
        guest = env.connect(listed_topic, viewable_topic)
        env.create("docs", id=LISTED_ID, kind="listed")
        viewable = env.create("docs", id=VIEWABLE_ID, kind="viewable")
        assert read(guest) == [(viewable_topic, created(shown(env, "docs", viewable)))]

    def test_record_topic_ignores_other_records(self, env: Env) -> None:
        guest = env.connect(f"docs/{VIEWABLE_ID}")
        env.create("docs", kind="viewable")
        assert read(guest) == []

    def test_null_rule_admits_only_superusers(self, env: Env) -> None:
        alice = env.user("alice@example.com")
        guest = env.connect("locked/*")
        user = env.connect("locked/*", auth=alice)
        root = env.connect("locked/*", auth=env.superuser())
        rec = env.create("locked", title="secret")
        assert read(guest) == []
        assert read(user) == []
        assert read(root) == [("locked/*", created(shown(env, "locked", rec)))]

    def test_empty_rule_admits_guests_and_hidden_fields_go_to_superusers_only(
        self, env: Env
    ) -> None:
        alice = env.user("alice@example.com")
        clients = [
            env.connect("public/*"),
            env.connect("public/*", auth=alice),
            env.connect("public/*", auth=env.superuser()),
        ]
        rec = env.create("public", title="hello", secret="s")
        expected = [("public/*", created(shown(env, "public", rec)))]
        assert "secret" not in expected[0][1]["record"]
        assert read(clients[0]) == read(clients[1]) == expected
        # Hidden fields are sent to superusers only.
        assert read(clients[2]) == [
            ("public/*", created({**shown(env, "public", rec), "secret": "s"}))
        ]

    def test_superuser_passes_a_failing_rule_but_its_filter_applies(self, env: Env) -> None:
        alice = env.user("alice@example.com")
        bob = env.user("bob@example.com")
        filtered = with_options("notes/*", {"query": {"filter": "title = 'keep'"}})
        root = env.connect("notes/*", filtered, auth=env.superuser())
        other = env.connect("notes/*", filtered, auth=alice)
        keep = env.create("notes", title="keep", owner=bob["id"])
        drop = env.create("notes", title="drop", owner=bob["id"])
        assert read(root) == [
            ("notes/*", created(shown(env, "notes", keep))),
            (filtered, created(shown(env, "notes", keep))),
            ("notes/*", created(shown(env, "notes", drop))),
        ]
        assert read(other) == []


# -- which state of the record is checked -------------------------------------------


class TestActions:
    def test_create_is_checked_on_the_new_record(self, env: Env) -> None:
        alice = env.user("alice@example.com")
        bob = env.user("bob@example.com")
        a = env.connect("notes/*", auth=alice)
        b = env.connect("notes/*", auth=bob)
        note = env.create("notes", title="mine", owner=alice["id"])
        assert read(a) == [("notes/*", created(shown(env, "notes", note)))]
        assert read(b) == []

    def test_update_moving_out_of_the_rule_stops_frames_and_into_it_starts_them(
        self, env: Env
    ) -> None:
        alice = env.user("alice@example.com")
        bob = env.user("bob@example.com")
        note = env.create("notes", title="n", owner=alice["id"])
        a = env.connect("notes/*", auth=alice)
        b = env.connect("notes/*", auth=bob)

        to_bob = env.update("notes", note["id"], owner=bob["id"])
        assert read(a) == []
        assert read(b) == [("notes/*", {"record": shown(env, "notes", to_bob), "action": "update"})]

        back = env.update("notes", note["id"], owner=alice["id"])
        assert read(a) == [("notes/*", {"record": shown(env, "notes", back), "action": "update"})]
        assert read(b) == []

    def test_delete_is_checked_on_the_last_state_and_carries_it(self, env: Env) -> None:
        alice = env.user("alice@example.com")
        bob = env.user("bob@example.com")
        note = env.create("notes", title="first", owner=alice["id"])
        env.update("notes", note["id"], title="last")
        a = env.connect("notes/*", f"notes/{note['id']}", auth=alice)
        b = env.connect("notes/*", auth=bob)
        env.delete("notes", note["id"])
        assert env.store.get_record("notes", note["id"]) is None
        last = {**shown(env, "notes", note), "title": "last"}
        assert read(a) == [
            ("notes/*", {"record": last, "action": "delete"}),
            (f"notes/{note['id']}", {"record": last, "action": "delete"}),
        ]
        assert read(b) == []


# -- per-subscription options -------------------------------------------------------


class TestOptions:
    def test_fields_shape_the_record(self, env: Env) -> None:
        topic = with_options("posts/*", {"query": {"fields": "id,title"}})
        guest = env.connect(topic)
        post = env.create("posts", title="hello")
        assert read(guest) == [(topic, created({"id": post["id"], "title": "hello"}))]

    def test_expand_goes_through_the_related_view_rule_per_subscriber(self, env: Env) -> None:
        alice = env.user("alice@example.com", name="alice")
        bob = env.user("bob@example.com", name="bob")
        topic = with_options("posts/*", {"query": {"expand": "owner"}})
        picked = with_options(
            "posts/*", {"query": {"expand": "owner", "fields": "id,title,expand.owner.name"}}
        )
        a = env.connect(topic, picked, auth=alice)
        b = env.connect(topic, picked, auth=bob)  # bob may list users but not view alice
        post = env.create("posts", title="one", owner=alice["id"])
        users = env.store.collection("users")
        own_alice = env.store.public_record(
            users, alice, RequestContext(auth=env.auth(alice).record)
        )
        assert own_alice["email"] == "alice@example.com"
        plain = shown(env, "posts", post)
        assert read(a) == [
            (topic, created({**plain, "expand": {"owner": own_alice}})),
            (
                picked,
                created({"id": post["id"], "title": "one", "expand": {"owner": {"name": "alice"}}}),
            ),
        ]
        # A relation the subscriber may not view: PocketBase still sends an empty
        # ``expand`` (core/record_query_expand.go inits it before filtering).
        assert read(b) == [
            (topic, created({**plain, "expand": {}})),
            (picked, created({"id": post["id"], "title": "one", "expand": {}})),
        ]

    def test_filter_is_anded_with_the_rule(self, env: Env) -> None:
        alice = env.user("alice@example.com")
        bob = env.user("bob@example.com")
        topic = with_options("notes/*", {"query": {"filter": "title = 'a'"}})
        a = env.connect(topic, auth=alice)
        match = env.create("notes", title="a", owner=alice["id"])
        env.create("notes", title="b", owner=alice["id"])  # fails the filter
        env.create("notes", title="a", owner=bob["id"])  # fails the rule
        assert read(a) == [(topic, created(shown(env, "notes", match)))]

    def test_request_in_a_filter_is_refused_for_non_superusers(self, env: Env) -> None:
        alice = env.user("alice@example.com")
        topic = with_options("posts/*", {"query": {"filter": "@request.auth.id != ''"}})
        user = env.connect(topic, "posts/*", auth=alice)
        root = env.connect(topic, auth=env.superuser())
        post = env.create("posts", title="p")
        frame = created(shown(env, "posts", post))
        assert read(user) == [("posts/*", frame)]
        assert read(root) == [(topic, frame)]

    @pytest.mark.parametrize("source", ["title = ", "nope = 1", "title = 'p' &&"])
    def test_a_filter_that_does_not_compile_yields_no_frames(self, env: Env, source: str) -> None:
        topic = with_options("posts/*", {"query": {"filter": source}})
        root = env.connect(topic, "posts/*", auth=env.superuser())
        post = env.create("posts", title="p")
        assert read(root) == [("posts/*", created(shown(env, "posts", post)))]

    def test_headers_feed_request_headers_in_the_rule(self, env: Env) -> None:
        # topics.py snake-cases header names as PocketBase does: X-Flag -> x_flag.
        assert parse_topic(with_options("f", {"headers": {"X-Flag": "on"}})).options.headers == {
            "x_flag": "on"
        }
        on = with_options("flagged/*", {"headers": {"X-Flag": "on"}})
        off = with_options("flagged/*", {"headers": {"X-Flag": "off"}})
        client = env.connect(on, off, "flagged/*")
        rec = env.create("flagged", title="f")
        assert read(client) == [(on, created(shown(env, "flagged", rec)))]

    def test_same_topic_with_and_without_options_gives_two_frames(self, env: Env) -> None:
        topic = with_options("posts/*", {"query": {"fields": "title"}})
        guest = env.connect("posts/*", topic)
        post = env.create("posts", title="twice")
        assert read(guest) == [
            ("posts/*", created(shown(env, "posts", post))),
            (topic, created({"title": "twice"})),
        ]

    def test_expand_follows_request_headers_per_subscription(self, fake_clock: FakeClock) -> None:
        # The related collection's viewRule may read @request.headers: two guests
        # with different headers must not share one cached expanded payload.
        env = Env(fake_clock, HEADER_EXPAND_SCHEMA)
        on = with_options("items/*", {"query": {"expand": "owner"}, "headers": {"X-Flag": "on"}})
        off = with_options("items/*", {"query": {"expand": "owner"}})
        first = env.connect(on)
        second = env.connect(off)
        owner = env.create("owners", name="o")
        item = env.create("items", owner=owner["id"])
        plain = shown(env, "items", item)
        expanded = {**plain, "expand": {"owner": shown(env, "owners", owner)}}
        assert read(first) == [(on, created(expanded))]
        assert read(second) == [(off, created({**plain, "expand": {}}))]


HEADER_EXPAND_SCHEMA: list[dict[str, object]] = [
    {
        "name": "owners",
        "fields": [{"name": "name", "type": "text"}],
        "viewRule": "@request.headers.x_flag = 'on'",
    },
    {
        "name": "items",
        "fields": [{"name": "owner", "type": "relation", "collectionId": "owners"}],
        "listRule": "",
    },
]


# -- serialisation per requester -------------------------------------------------------


class TestSerialisation:
    def test_users_event_shows_email_to_owner_and_superuser_only(self, env: Env) -> None:
        alice = env.user("alice@example.com", name="Alice")
        bob = env.user("bob@example.com", name="Bob")
        a = env.connect("users/*", auth=alice)
        b = env.connect("users/*", auth=bob)
        root = env.connect("users/*", auth=env.superuser())
        guest = env.connect("users/*")

        env.update("users", alice["id"], name="Alicia")
        public = {
            "collectionId": env.cid("users"),
            "collectionName": "users",
            "id": alice["id"],
            "emailVisibility": False,
            "verified": False,
            "name": "Alicia",
        }
        with_email = {**public, "email": "alice@example.com"}
        assert read(a) == [("users/*", {"record": with_email, "action": "update"})]
        assert read(b) == [("users/*", {"record": public, "action": "update"})]
        assert read(root) == [("users/*", {"record": with_email, "action": "update"})]
        assert read(guest) == []  # the users listRule needs a signed-in user

        env.update("users", alice["id"], emailVisibility=True)
        visible = {**with_email, "emailVisibility": True}
        for client in (a, b, root):
            assert read(client) == [("users/*", {"record": visible, "action": "update"})]

    def test_password_and_token_key_are_never_sent(self, env: Env) -> None:
        alice = env.user("alice@example.com")
        a = env.connect("users/*", auth=alice)
        root = env.connect("users/*", auth=env.superuser())
        env.update("users", alice["id"], name="x")
        for client in (a, root):
            [(_, data)] = read(client)
            assert "password" not in data["record"]
            assert "tokenKey" not in data["record"]


# -- encode once, evaluate once --------------------------------------------------------


class TestSharing:
    def test_payload_encoded_once_per_distinct_payload_and_rule_once_per_auth(
        self, env: Env, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        users = [env.user(f"u{i}@example.com") for i in range(5)]
        picked = with_options("notes/*", {"query": {"fields": "id"}})
        clients = [
            env.connect("notes/*", *([picked] if n % 2 else []), auth=users[n % 5])
            for n in range(100)
        ]
        encodes: list[object] = []
        evaluations: list[str] = []
        format_data = sse.format_data
        matches = CompiledRule.matches

        def counting_format_data(data: object) -> bytes:
            encodes.append(data)
            return format_data(data)

        def counting_matches(rule: CompiledRule, *args: t.Any, **kwargs: t.Any) -> bool:
            evaluations.append(rule.source)
            return matches(rule, *args, **kwargs)

        monkeypatch.setattr(sse, "format_data", counting_format_data)
        monkeypatch.setattr(CompiledRule, "matches", counting_matches)
        note = env.create("notes", title="n", owner=users[0]["id"])

        # Once for the owner; the four others fail `owner = @request.auth.id` on the
        # owner field alone (StoreVisibility's guard) without evaluating the rule.
        assert evaluations == ["owner = @request.auth.id"]
        full = created(shown(env, "notes", note))
        slim = created({"id": note["id"]})
        assert encodes == [full, slim]  # once per distinct payload
        seen = {n: read(c) for n, c in enumerate(clients)}
        for n, frames in seen.items():
            if n % 5:
                assert frames == []
            elif n % 2:
                assert frames == [("notes/*", full), (picked, slim)]
            else:
                assert frames == [("notes/*", full)]

    @pytest.mark.parametrize(
        ("rule", "guarded"),
        [
            ("owner = @request.auth.id", True),
            ("@request.auth.id = owner && title != 'hidden'", True),
            ("title != 'hidden' && (owner = @request.auth.id)", True),
            ("owner = @request.auth.id || title = 'open'", False),
            ("owner ?= @request.auth.id", False),
            ("owner != @request.auth.id", False),
        ],
    )
    def test_owner_guard_never_changes_who_gets_a_frame(
        self, fake_clock: FakeClock, rule: str, guarded: bool, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        schema = [
            c if c["name"] != "notes" else {**c, "listRule": rule, "viewRule": rule} for c in SCHEMA
        ]
        env = Env(fake_clock, schema)
        users = [env.user(f"g{i}@example.com") for i in range(3)]
        clients = [env.connect("notes/*", auth=u) for u in users]
        guest = env.connect("notes/*")
        evaluations: list[str] = []
        matches = CompiledRule.matches

        def counting_matches(rule: CompiledRule, *args: t.Any, **kwargs: t.Any) -> bool:
            evaluations.append(rule.source)
            return matches(rule, *args, **kwargs)

        compiled = env.store.schema.compiled_rule(env.store.collection("notes"), "list")
        assert compiled is not None
        for owner in ("", users[0]["id"], users[1]["id"]):
            for title in ("open", "hidden", "other"):
                note = env.store.create("notes", {"title": title, "owner": owner}, SU)
                stored = env.store.get_record("notes", note["id"])
                assert stored is not None
                expected = [
                    compiled.matches(stored, RequestContext(auth=dict(env.auth(u).record)))
                    for u in users
                ] + [compiled.matches(stored, RequestContext(auth=None))]
                got = [bool(read(c)) for c in [*clients, guest]]
                assert got == expected, (owner, title)
        monkeypatch.setattr(CompiledRule, "matches", counting_matches)
        env.store.create("notes", {"title": "x", "owner": users[2]["id"]}, SU)
        # Guarded: only the owner's and the guest's checks run the rule.
        assert len(evaluations) == (2 if guarded else 4)

    def test_superusers_skip_rule_evaluation(
        self, env: Env, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        root = env.superuser()
        clients = [env.connect("notes/*", auth=root) for _ in range(10)]
        calls: list[str] = []
        matches = CompiledRule.matches

        def counting_matches(rule: CompiledRule, *args: t.Any, **kwargs: t.Any) -> bool:
            calls.append(rule.source)
            return matches(rule, *args, **kwargs)

        monkeypatch.setattr(CompiledRule, "matches", counting_matches)
        env.create("notes", title="n")
        assert calls == []
        assert [len(read(c)) for c in clients] == [1] * 10


# -- auth side effects (PROTOCOL 3.2) --------------------------------------------------


class TestAuthSideEffects:
    def test_auth_record_update_refreshes_the_stored_auth(self, env: Env) -> None:
        alice = env.user("alice@example.com", name="Alice")
        a = env.connect("named/*", auth=alice)
        env.create("named", title="before")
        assert read(a) == []

        env.update("users", alice["id"], name="Alicia")
        assert a.user is not None and a.user.record["name"] == "Alicia"
        rec = env.create("named", title="after")
        assert read(a) == [("named/*", created(shown(env, "named", rec)))]

    def test_the_auth_update_event_itself_sees_the_fresh_auth(self, env: Env) -> None:
        alice = env.user("alice@example.com", name="Alice")
        a = env.connect("named/*", "users/*", auth=alice)
        env.update("users", alice["id"], name="Alicia")
        [(topic, data)] = read(a)
        assert (topic, data["action"], data["record"]["name"]) == ("users/*", "update", "Alicia")

    def test_password_change_drops_the_auth(self, env: Env) -> None:
        alice = env.user("alice@example.com")
        a = env.connect("notes/*", "public/*", auth=alice)
        pw = "newpassword1"
        env.update("users", alice["id"], password=pw, passwordConfirm=pw)
        assert a.user is None
        env.create("notes", title="protected", owner=alice["id"])
        rec = env.create("public", title="open")
        assert read(a) == [("public/*", created(shown(env, "public", rec)))]

    def test_other_clients_keep_their_auth_on_a_password_change(self, env: Env) -> None:
        alice = env.user("alice@example.com")
        bob = env.user("bob@example.com")
        a = env.connect("notes/*", auth=alice)
        b = env.connect("notes/*", auth=bob)
        pw = "newpassword1"
        env.update("users", alice["id"], password=pw, passwordConfirm=pw)
        assert a.user is None
        assert b.user is not None and b.user.id == bob["id"]

    def test_deleting_the_auth_record_drops_the_auth(self, env: Env) -> None:
        alice = env.user("alice@example.com")
        bob = env.user("bob@example.com")
        a = env.connect("users/*", "public/*", auth=alice)
        env.delete("users", alice["id"])
        read(a)  # the delete frame itself: see the next test
        assert a.user is None
        env.update("users", bob["id"], name="bob")  # users/* needs a signed-in user
        rec = env.create("public", title="open")
        assert read(a) == [("public/*", created(shown(env, "public", rec)))]
        assert env.manager.get_client(a.id) is a  # the stream stays open

    def test_the_owner_gets_the_delete_frame_of_its_own_auth_record(self, env: Env) -> None:
        alice = env.user("alice@example.com")
        a = env.connect("users/*", auth=alice)
        deleted = env.delete("users", alice["id"])
        users = env.store.collection("users")
        own = env.store.public_record(users, deleted, RequestContext(auth=deleted))
        assert read(a) == [("users/*", {"record": own, "action": "delete"})]
        assert a.user is None


# -- extension mode: PythonRules and OpenVisibility ------------------------------------

ALICE = AuthUser("_pb_users_auth_", "alice0000000001", "users", {"name": "alice"})
BOB = AuthUser("_pb_users_auth_", "bob000000000001", "users", {"name": "bob"})
ROOT = AuthUser("pbc_3142635823", "root00000000001", SUPERUSERS, {}, superuser=True)


class Published:
    """No store: trusted code publishes events straight to the broker."""

    def __init__(self, visibility: Visibility) -> None:
        self.broker = MemoryBroker()
        self.manager = RealtimeManager(clock=FakeClock())
        state = RealtimeState(
            settings=Settings.from_mapping({}),
            manager=self.manager,
            broker=self.broker,
            reaper=None,
            auth_resolver=lambda request: None,
            visibility=visibility,
        )
        self.broker.subscribe(state.deliver)

    def connect(self, *topics: str, auth: AuthUser | None = None) -> RealtimeClient:
        client = self.manager.register_client()
        return self.manager.subscribe(client.id, [parse_topic(x) for x in topics], auth)

    def publish(self, collection: str, record: Mapping[str, object]) -> dict[str, object]:
        self.broker.publish(Event(collection, "create", record, collection_id=f"id_{collection}"))
        return created(dict(record))


class TestPythonRules:
    def test_callable_rule_gets_the_record_and_the_auth(self) -> None:
        seen: list[tuple[str, str | None]] = []

        def only_alice(record: Mapping[str, object], auth: AuthUser | None) -> bool:
            seen.append((t.cast(str, record["id"]), None if auth is None else auth.id))
            return auth is not None and auth.id == ALICE.id

        env = Published(PythonRules({"notes": {"list": only_alice, "view": ""}}))
        a = env.connect("notes/*", "notes/n1", auth=ALICE)
        b = env.connect("notes/*", "notes/n1", auth=BOB)
        guest = env.connect("notes/*")
        frame = env.publish("notes", {"id": "n1", "title": "t"})
        assert read(a) == [("notes/*", frame), ("notes/n1", frame)]
        assert read(b) == [("notes/n1", frame)]  # the view rule is ""
        assert read(guest) == []
        assert sorted(seen, key=repr) == [("n1", ALICE.id), ("n1", BOB.id), ("n1", None)]

    def test_rule_string_reads_the_record_and_request_auth(self) -> None:
        rule = "owner = @request.auth.id"
        env = Published(PythonRules({"notes": {"list": rule, "view": rule}}))
        a = env.connect("notes/*", auth=ALICE)
        b = env.connect("id_notes/*", auth=BOB)
        guest = env.connect("notes/*")
        mine = env.publish("notes", {"id": "n1", "owner": ALICE.id})
        theirs = env.publish("notes", {"id": "n2", "owner": BOB.id})
        assert read(a) == [("notes/*", mine)]
        assert read(b) == [("id_notes/*", theirs)]
        assert read(guest) == []

    def test_none_admits_only_superusers(self) -> None:
        env = Published(PythonRules({"audit": {"list": None, "view": None}}))
        clients = [env.connect("audit/*", auth=user) for user in (None, ALICE, ROOT)]
        frame = env.publish("audit", {"id": "a1"})
        assert [read(c) for c in clients] == [[], [], [("audit/*", frame)]]

    def test_a_collection_missing_from_the_rules_is_open(self) -> None:
        env = Published(PythonRules({"audit": {"list": None, "view": None}}))
        guest = env.connect("posts/*")
        frame = env.publish("posts", {"id": "p1"})
        assert read(guest) == [("posts/*", frame)]

    def test_an_action_missing_from_a_declared_collection_is_locked(self) -> None:
        # Fail closed, like an unset PocketBase rule (null): declaring only the
        # list rule must not leave ``notes/<id>`` open to everyone.
        env = Published(PythonRules({"notes": {"list": ""}}))
        user = env.connect("notes/*", "notes/n1", auth=ALICE)
        root = env.connect("notes/n1", auth=ROOT)
        frame = env.publish("notes", {"id": "n1"})
        assert read(user) == [("notes/*", frame)]
        assert read(root) == [("notes/n1", frame)]

    def test_unknown_action_is_rejected(self) -> None:
        with pytest.raises(ValueError, match="'list' and 'view'"):
            PythonRules({"notes": {"update": ""}})


class TestOpenVisibility:
    def test_fields_and_filter_apply_to_published_events(self) -> None:
        env = Published(OpenVisibility())
        picked = with_options("posts/*", {"query": {"fields": "id,title"}})
        filtered = with_options("posts/*", {"query": {"filter": "views > 10"}})
        guest = env.connect("posts/*", picked, filtered)
        low = env.publish("posts", {"id": "p1", "title": "low", "views": 5})
        high = env.publish("posts", {"id": "p2", "title": "high", "views": 50})
        assert read(guest) == [
            ("posts/*", low),
            (picked, created({"id": "p1", "title": "low"})),
            ("posts/*", high),
            (picked, created({"id": "p2", "title": "high"})),
            (filtered, high),
        ]

    def test_request_filters_are_superuser_only_and_bad_filters_send_nothing(self) -> None:
        env = Published(OpenVisibility())
        by_auth = with_options("posts/*", {"query": {"filter": "@request.auth.id != ''"}})
        broken = with_options("posts/*", {"query": {"filter": "views >"}})
        user = env.connect(by_auth, broken, auth=ALICE)
        root = env.connect(by_auth, broken, auth=ROOT)
        frame = env.publish("posts", {"id": "p1"})
        assert read(user) == []
        assert read(root) == [(by_auth, frame)]

    def test_store_visibility_sends_unfiltered_and_unknown_collections_as_published(
        self, env: Env
    ) -> None:
        topic = with_options("locked/*", {"query": {"fields": "title"}})
        guest = env.connect("locked/*", topic, "custom")
        env.broker.publish(Event("locked", "update", {"id": "x1", "title": "t"}, unfiltered=True))
        env.broker.publish(Event("custom", "create", {"id": "c1"}))
        assert read(guest) == [
            ("locked/*", {"record": {"id": "x1", "title": "t"}, "action": "update"}),
            (topic, {"record": {"title": "t"}, "action": "update"}),
            ("custom", created({"id": "c1"})),
        ]

    def test_a_trusted_publish_of_a_store_collection_goes_through_its_rules(self, env: Env) -> None:
        """Issue #10: a publish naming the owner-rule collection reached guests and others."""
        alice, bob = env.user("alice@example.com"), env.user("bob@example.com")
        guest = env.connect("notes/*", "locked/*")
        as_alice = env.connect("notes/*", auth=alice)
        as_bob = env.connect("notes/*", auth=bob)
        root = env.connect("locked/*", auth=env.superuser())
        note = {"id": "n1", "title": "private", "owner": alice["id"]}
        env.broker.publish(Event("notes", "create", note))
        env.broker.publish(Event("locked", "update", {"id": "x1", "title": "t"}))
        assert read(guest) == []
        assert read(as_bob) == []
        # Presented as the REST API shows the record (collection fields first).
        shown = {"collectionId": env.cid("notes"), "collectionName": "notes", **note}
        assert read(as_alice) == [("notes/*", created(shown))]
        assert [name for name, _ in read(root)] == ["locked/*"]  # superusers only

    def test_a_trusted_publish_hides_the_collections_hidden_fields(self, env: Env) -> None:
        guest = env.connect("public/*")
        env.broker.publish(Event("public", "create", {"id": "p1", "title": "t", "secret": "s"}))
        shown = {"collectionId": env.cid("public"), "collectionName": "public", "id": "p1"}
        assert read(guest) == [("public/*", created({**shown, "title": "t"}))]


# -- the reaper still runs on the injected clock --------------------------------------


def test_reaper_uses_the_injected_clock_after_dispatch(env: Env, fake_clock: FakeClock) -> None:
    idle = env.connect("public/*")
    active = env.connect("public/*")
    env.create("public", title="one")
    assert len(read(idle)) == len(read(active)) == 1
    fake_clock.advance(env.manager.idle_timeout - 1)
    env.manager.update_activity(active.id)
    assert env.manager.reap() == []
    fake_clock.advance(1)
    assert env.manager.reap() == [idle.id]
    assert idle.controller.closed and idle.close_reason == "idle timeout"
    env.create("public", title="two")
    assert len(read(active)) == 1
    fake_clock.advance(env.manager.idle_timeout)
    assert env.manager.reap() == [active.id]
    assert env.manager.get_client_count() == 0
