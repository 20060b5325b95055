"""The schema loader: PocketBase's collection-export JSON, and one clear error per bad file."""

from __future__ import annotations

import copy
import json
import typing as t
from pathlib import Path

import pytest

from realtime_flask.core.rules import RequestContext
from realtime_flask.core.schema import SUPERUSERS
from realtime_flask.core.schema import SUPERUSERS_ID
from realtime_flask.core.schema import Schema
from realtime_flask.core.schema import SchemaError
from realtime_flask.core.schema import collection_id_for
from realtime_flask.core.schema import default_schema
from realtime_flask.core.schema import load_schema_file
from realtime_flask.errors import ConfigError
from realtime_flask.errors import ValidationFailed
from realtime_flask.store.auth import Passwords
from realtime_flask.store.records import RecordStore
from realtime_flask.web.app import create_app
from tests.support.env import SCHEMA_FIXTURE

FIXTURE = SCHEMA_FIXTURE
SU = RequestContext(auth=None, superuser=True)

Raw = list[dict[str, t.Any]]


def users() -> dict[str, t.Any]:
    return {
        "name": "users",
        "type": "auth",
        "fields": [{"name": "name", "type": "text"}],
        "listRule": "",
        "viewRule": "",
    }


def posts(**extra: t.Any) -> dict[str, t.Any]:
    return {
        "name": "posts",
        "fields": [
            {"name": "title", "type": "text"},
            {"name": "owner", "type": "relation", "collectionId": "users", "maxSelect": 1},
        ],
        "listRule": "",
        **extra,
    }


def fail(data: object) -> str:
    """The message of the SchemaError ``data`` raises."""
    with pytest.raises(SchemaError) as info:
        Schema.from_json(data)
    return str(info.value)


class TestDefaults:
    def test_default_schema(self) -> None:
        schema = default_schema()
        assert [(c.name, c.id, c.type) for c in schema] == [
            ("users", "_pb_users_auth_", "auth"),
            ("posts", "pbc_1125843985", "base"),
            (SUPERUSERS, SUPERUSERS_ID, "auth"),
        ]
        su = schema.get("_superusers")
        assert su is not None and su.id == "pbc_3142635823" and su.token_duration == 86400
        users_coll = schema.get("_pb_users_auth_")
        assert users_coll is not None and users_coll.name == "users"
        assert users_coll.token_duration == 432000
        assert [f.name for f in users_coll.fields] == [
            "id",
            "password",
            "tokenKey",
            "email",
            "emailVisibility",
            "verified",
            "name",
            "created",
            "updated",
        ]
        posts_coll = schema.get("posts")
        assert posts_coll is not None
        owner = posts_coll.field("owner")
        assert owner is not None and owner.collection_id == "_pb_users_auth_"
        # every rule is compiled once, here; a null rule stays None
        assert schema.compiled_rule(posts_coll, "list") is not None
        assert all(schema.compiled_rule(su, action) is None for action in ("list", "view"))

    def test_fixture_file_loads(self) -> None:
        schema = load_schema_file(FIXTURE)
        assert [c.name for c in schema] == [
            "users",
            "posts",
            "public_posts",
            "notes",
            "locked",
            "bulk",
            SUPERUSERS,
        ]

    @pytest.mark.parametrize(
        ("type_", "name", "expected"),
        [
            ("base", "notes", "pbc_3395098727"),
            ("base", "posts", "pbc_1125843985"),
            ("auth", "_superusers", "pbc_3142635823"),
        ],
    )
    def test_collection_ids_follow_pocketbase(self, type_: str, name: str, expected: str) -> None:
        assert collection_id_for(type_, name) == expected
        schema = Schema.from_json([{"name": name, "type": type_}])
        coll = schema.get(name)
        assert coll is not None and coll.id == expected

    def test_a_users_auth_collection_without_an_id_gets_pocketbases_builtin_id(self) -> None:
        """Issue #11: exports name PocketBase's users collection ``_pb_users_auth_``."""
        raw = [users(), posts()]
        raw[0].pop("id", None)
        raw[1]["fields"][1]["collectionId"] = "_pb_users_auth_"
        schema = Schema.from_json(raw)
        coll = schema.get("users")
        assert coll is not None and coll.id == "_pb_users_auth_"
        owner = t.cast(t.Any, schema.get("posts")).field("owner")
        assert owner is not None and owner.collection_id == "_pb_users_auth_"
        # Only the auth collection named users: a base collection of that name keeps pbc_.
        base = Schema.from_json([{"name": "users"}]).get("users")
        assert base is not None and base.id == collection_id_for("base", "users")

    def test_an_explicit_id_wins(self) -> None:
        schema = Schema.from_json([{"id": "my_id", "name": "things"}])
        coll = schema.get("my_id")
        assert coll is not None and coll.name == "things"

    @pytest.mark.parametrize("target", ["users", "_pb_users_auth_"])
    def test_relation_by_name_or_id(self, target: str) -> None:
        raw = [dict(users(), id="_pb_users_auth_"), posts()]
        raw[1]["fields"][1]["collectionId"] = target
        coll = Schema.from_json(raw).get("posts")
        assert coll is not None
        owner = coll.field("owner")
        assert owner is not None and owner.collection_id == "_pb_users_auth_"

    def test_relation_to_superusers_and_to_itself(self) -> None:
        schema = Schema.from_json(
            [
                {
                    "name": "tree",
                    "fields": [
                        {"name": "parent", "type": "relation", "collectionId": "tree"},
                        {"name": "admin", "type": "relation", "collectionId": "_superusers"},
                    ],
                }
            ]
        )
        coll = schema.get("tree")
        assert coll is not None
        assert [(f.name, f.collection_id) for f in coll.fields[1:]] == [
            ("parent", coll.id),
            ("admin", SUPERUSERS_ID),
        ]

    def test_unknown_keys_are_ignored(self) -> None:
        raw = [
            {
                "name": "things",
                "type": "base",
                "system": False,
                "indexes": ["CREATE INDEX x ON things (title)"],
                "viewQuery": "",
                "fields": [
                    {
                        "name": "title",
                        "type": "text",
                        "id": "text123",
                        "presentable": True,
                        "autogeneratePattern": "",
                        "primaryKey": False,
                    }
                ],
                "listRule": "",
            }
        ]
        coll = Schema.from_json(raw).get("things")
        assert coll is not None and [f.name for f in coll.fields] == ["id", "title"]
        assert coll.list_rule == "" and coll.view_rule is None

    def test_a_pocketbase_export_loads(self, tmp_path: Path) -> None:
        """Exports repeat the system fields and write unset text limits as 0."""
        export = [
            {
                "id": "_pb_users_auth_",
                "name": "users",
                "type": "auth",
                "authToken": {"duration": 604800},
                "fields": [
                    {"name": "id", "type": "text", "min": 15, "max": 15, "system": True},
                    {"name": "password", "type": "password", "min": 8, "max": 0},
                    {"name": "tokenKey", "type": "text", "min": 30, "max": 60},
                    {"name": "email", "type": "email", "required": True},
                    {"name": "emailVisibility", "type": "bool"},
                    {"name": "verified", "type": "bool"},
                    {"name": "name", "type": "text", "min": 0, "max": 0},
                    {"name": "score", "type": "number", "min": None, "max": None},
                ],
                "listRule": "",
                "createRule": "",
            },
            # a base collection may have fields named like auth system fields
            {
                "name": "contacts",
                "type": "base",
                "fields": [
                    {"name": "email", "type": "email"},
                    {"name": "verified", "type": "bool"},
                ],
            },
            # an exported _superusers without authToken keeps its 1-day tokens
            {"name": "_superusers", "type": "auth", "fields": []},
        ]
        path = tmp_path / "export.json"
        path.write_text(json.dumps(export), encoding="utf-8")
        schema = load_schema_file(path)
        users_coll = schema.get("users")
        contacts = schema.get("contacts")
        su = schema.get(SUPERUSERS)
        assert users_coll is not None and contacts is not None and su is not None
        assert users_coll.token_duration == 604800 and su.token_duration == 86400
        assert su.id == SUPERUSERS_ID
        name = users_coll.field("name")
        assert name is not None and (name.min, name.max) == (None, None)
        assert [f.name for f in contacts.fields] == ["id", "email", "verified"]

        store = RecordStore(schema, ":memory:", passwords=Passwords(n=2**4))
        try:
            user = store.create(
                "users",
                {
                    "email": "a@example.com",
                    "password": "password123",
                    "passwordConfirm": "password123",
                    "name": "Alice",
                },
                SU,
            )
            assert user["name"] == "Alice"
            contact = store.create("contacts", {"email": "c@example.com", "verified": True}, SU)
            assert (contact["email"], contact["verified"]) == ("c@example.com", True)
        finally:
            store.close()


class TestInvalid:
    """Every invalid schema stops start-up with one SchemaError naming what is wrong."""

    def test_unknown_field_type(self) -> None:
        raw = [users(), posts()]
        raw[1]["fields"].append({"name": "cover", "type": "vector"})
        message = fail(raw)
        assert message.startswith("collection 'posts', field 'cover': unknown type 'vector'")

    def test_missing_field_type(self) -> None:
        assert fail([{"name": "a", "fields": [{"name": "x"}]}]).startswith(
            "collection 'a', field 'x': unknown type None"
        )

    @pytest.mark.parametrize(
        ("action", "rule", "reason"),
        [
            ("listRule", "title ==", "invalid operator '=='"),
            ("viewRule", "nope = 1", "unknown field 'nope'"),
            ("createRule", "(title = 'x'", ""),
            ("updateRule", "title = 'x' &&", ""),
            ("deleteRule", "title and 'x'", ""),
        ],
    )
    def test_rule_that_does_not_parse(self, action: str, rule: str, reason: str) -> None:
        message = fail([users(), posts(**{action: rule})])
        assert message.startswith(f"collection 'posts', {action} {rule!r}: ")
        assert reason in message

    def test_relation_to_a_missing_collection(self) -> None:
        raw = [users(), posts()]
        raw[1]["fields"][1]["collectionId"] = "ghosts"
        assert fail(raw) == (
            "collection 'posts', field 'owner': relation to missing collection 'ghosts'"
        )

    def test_relation_without_a_target(self) -> None:
        raw = [users(), posts()]
        del raw[1]["fields"][1]["collectionId"]
        assert fail(raw) == "collection 'posts', field 'owner': a relation needs 'collectionId'"

    @pytest.mark.parametrize("second", ["title", "Title", "ID"])
    def test_duplicate_field_names(self, second: str) -> None:
        raw = [users(), posts()]
        raw[1]["fields"].append({"name": second, "type": "number"})
        assert fail(raw) == f"collection 'posts', field {second!r}: the name is used twice"

    def test_duplicate_field_name_of_an_auth_system_field(self) -> None:
        raw = [users()]
        raw[0]["fields"].append({"name": "EMAIL", "type": "text"})
        assert fail(raw) == "collection 'users', field 'EMAIL': the name is used twice"

    @pytest.mark.parametrize("second", ["posts", "POSTS"])
    def test_duplicate_collection_names(self, second: str) -> None:
        assert fail([users(), posts(), posts(name=second)]) == (
            f"collection {second!r}: the name is used twice"
        )

    def test_duplicate_collection_ids(self) -> None:
        assert fail([{"name": "a", "id": "same"}, {"name": "b", "id": "same"}]) == (
            "collection 'b': the id 'same' is used twice"
        )

    @pytest.mark.parametrize("value", [5, True, ["x"], {"x": 1}])
    def test_bad_rule_type(self, value: object) -> None:
        assert fail([users(), posts(listRule=value)]) == (
            f"collection 'posts': listRule must be a string or null, got {value!r}"
        )

    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            ({"name": "a"}, "the schema must be a JSON array of collections"),
            ("posts", "the schema must be a JSON array of collections"),
            (None, "the schema must be a JSON array of collections"),
            ([5], "collection #0: must be an object"),
            ([{"name": ""}], "collection #0: invalid name ''"),
            ([{"name": "a b"}], "collection #0: invalid name 'a b'"),
            (
                [{"name": "a", "type": "collection"}],
                "collection 'a': type must be 'base', 'auth' or 'view'",
            ),
            ([{"name": "a", "fields": {}}], "collection 'a': 'fields' must be a list"),
            ([{"name": "a", "fields": [5]}], "collection 'a', field #0: must be an object"),
            (
                [{"name": "a", "fields": [{"name": "x", "type": "text", "required": "yes"}]}],
                "collection 'a', field 'x': 'required' must be bool",
            ),
            (
                [{"name": "a", "fields": [{"name": "expand", "type": "text"}]}],
                "collection 'a', field 'expand': the name is reserved",
            ),
            ([{"name": "_realtime_meta"}], "collection '_realtime_meta': the name is reserved"),
            ([{"name": "sqlite_stuff"}], "collection 'sqlite_stuff': the name is reserved"),
            (
                [{"name": "_superusers", "type": "base"}],
                "collection '_superusers': must be an auth collection",
            ),
            (
                [{"name": "u", "type": "auth", "authToken": {"duration": 5}}],
                "collection 'u': authToken duration must be at least 10 seconds",
            ),
        ],
    )
    def test_bad_shapes(self, raw: object, expected: str) -> None:
        assert fail(raw).startswith(expected)

    def test_bad_json_file(self, tmp_path: Path) -> None:
        path = tmp_path / "schema.json"
        path.write_text('[{"name": "posts",', encoding="utf-8")
        with pytest.raises(SchemaError) as info:
            load_schema_file(path)
        assert str(info.value).startswith(f"schema file {str(path)!r} is not valid JSON: ")

    @pytest.mark.parametrize("kind", ["missing", "directory"])
    def test_unreadable_file(self, tmp_path: Path, kind: str) -> None:
        path = tmp_path / "missing.json" if kind == "missing" else tmp_path
        with pytest.raises(SchemaError) as info:
            load_schema_file(path)
        assert str(info.value).startswith(f"cannot read schema file {str(path)!r}: ")

    def test_non_array_file(self, tmp_path: Path) -> None:
        path = tmp_path / "schema.json"
        path.write_text('{"collections": []}', encoding="utf-8")
        with pytest.raises(SchemaError, match="must be a JSON array"):
            load_schema_file(path)

    def test_the_fixture_with_one_mistake(self, tmp_path: Path) -> None:
        raw: Raw = json.loads(FIXTURE.read_text(encoding="utf-8"))
        broken = copy.deepcopy(raw)
        broken[3]["listRule"] = "owner.nope = @request.auth.id"
        path = tmp_path / "schema.json"
        path.write_text(json.dumps(broken), encoding="utf-8")
        with pytest.raises(SchemaError) as info:
            load_schema_file(path)
        message = str(info.value)
        assert message.startswith("collection 'notes', listRule 'owner.nope = @request.auth.id': ")
        assert "\n" not in message

    def test_create_app_refuses_to_start(self, tmp_path: Path) -> None:
        path = tmp_path / "schema.json"
        path.write_text(json.dumps([users(), posts(viewRule="title ~")]), encoding="utf-8")
        config = {
            "TESTING": True,
            "REALTIME_SCHEMA": str(path),
            "REALTIME_DATA_DIR": ":memory:",
            "REALTIME_REAPER_ENABLED": False,
        }
        with pytest.raises(SchemaError, match=r"^collection 'posts', viewRule 'title ~': "):
            create_app(config)
        with pytest.raises(ConfigError, match="cannot read schema file"):
            create_app({**config, "REALTIME_SCHEMA": str(tmp_path / "nope.json")})


class TestPocketBaseExportOptions:
    """Every field type and collection option of a PocketBase 0.40 export is accepted;
    what is not honoured is listed in ``Schema.unsupported`` (logged once at start-up)."""

    def export(self) -> list[dict[str, t.Any]]:
        auth = {
            **users(),
            "authRule": "verified = true",
            "manageRule": None,
            "oauth2": {"enabled": True, "providers": []},
            "otp": {"enabled": False, "duration": 180},
            "mfa": {"enabled": True, "duration": 600},
            "authAlert": {"enabled": False},
            "passwordAuth": {"enabled": True, "identityFields": ["email", "username"]},
            "fileToken": {"duration": 60},
            "verificationTemplate": {"subject": "s", "body": "b"},
        }
        auth["fields"] = [
            *auth["fields"],
            {"name": "avatar", "type": "file", "maxSelect": 1, "mimeTypes": ["image/png"]},
        ]
        things = {
            "name": "things",
            "type": "base",
            "indexes": ["CREATE UNIQUE INDEX `idx_x` ON `things` (`code`)"],
            "fields": [
                {"name": "code", "type": "text", "autogeneratePattern": "[a-z]{5}"},
                {"name": "body", "type": "editor", "maxSize": 0, "convertURLs": False},
                {"name": "when", "type": "date", "min": "", "max": ""},
                {"name": "place", "type": "geoPoint"},
                {"name": "link", "type": "url", "onlyDomains": ["example.com"]},
                {
                    "name": "pics",
                    "type": "file",
                    "maxSelect": 4,
                    "maxSize": 100,
                    "mimeTypes": [],
                    "thumbs": ["10x10"],
                    "protected": True,
                },
                {"name": "view", "type": "relation", "collectionId": "pbc_view", "maxSelect": 1},
            ],
            "listRule": 'pics:length > 0 && place.lon > 1 && body != ""',
        }
        view = {"id": "pbc_view", "name": "things_view", "type": "view", "viewQuery": "SELECT 1"}
        return [auth, things, view, posts()]

    def test_everything_loads_and_the_unhonoured_is_listed(self) -> None:
        schema = Schema.from_json(self.export())
        assert schema.get("things_view") is None and schema.get("pbc_view") is None
        things = schema.get("things")
        assert things is not None and things.field("view") is None
        pics = things.field("pics")
        assert pics is not None and pics.multiple and pics.protected
        assert (pics.max_size, pics.max_select, pics.thumbs) == (100, 4, ("10x10",))
        users_ = schema.get("users")
        assert users_ is not None and users_.file_token_duration == 60
        avatar = users_.field("avatar")
        assert avatar is not None and not avatar.multiple and avatar.file_max_size == 5 << 20
        listed = dict(line.split(": ", 1) for line in schema.unsupported)
        assert set(listed) == {"users", "things", "things_view"}
        for option in ("oauth2", "mfa", "authRule", "passwordAuth", "email templates"):
            assert option in listed["users"]
        assert "otp" not in listed["users"] and "authAlert" not in listed["users"]
        for option in ("indexes", "code.autogeneratePattern", "link.onlyDomains", "pics.thumbs"):
            assert option in listed["things"]
        assert "view (relation to a view)" in listed["things"]
        assert listed["things_view"] == "view collection (left out)"

    def test_new_field_types_store_and_validate(self) -> None:
        store = RecordStore(Schema.from_json(self.export()), passwords=Passwords(n=2))
        su = RequestContext(auth=None, superuser=True)
        try:
            created = store.create(
                "things", {"body": "<p>x</p>", "place": {"lon": 10.5, "lat": -3}}, su
            )
            assert created["place"] == {"lon": 10.5, "lat": -3}
            assert created["pics"] == [] and created["body"] == "<p>x</p>"
            empty = store.create("things", {}, su)
            assert empty["place"] == {"lon": 0, "lat": 0}
            with pytest.raises(ValidationFailed) as info:
                store.create("things", {"place": {"lon": 0, "lat": 91}}, su)
            assert info.value.data["place"]["code"] == "validation_invalid_latitude"
        finally:
            store.close()
