"""The records/auth REST subset against PROTOCOL-REST.md (PocketBase 0.40.6), via a test client.

One app per module (``world``) keeps the number of scrypt hashes small; tests that
change users make their own.  Expected bodies are the measured ones of the
protocol document, byte for byte where it gives them.
"""

from __future__ import annotations

import json
import re
import time
import typing as t
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import jwt
import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from realtime_flask.store.records import RecordStore
from realtime_flask.web.app import create_app
from tests.support.env import SCHEMA_FIXTURE

FIXTURE = SCHEMA_FIXTURE
CONFIG: t.Final[dict[str, object]] = {
    "TESTING": True,
    "REALTIME_SCHEMA": str(FIXTURE),
    "REALTIME_DATA_DIR": ":memory:",
    "REALTIME_REAPER_ENABLED": False,
}
USERS = "/api/collections/users"
POSTS = "/api/collections/posts"
PUBLIC = "/api/collections/public_posts"
BULK = "/api/collections/bulk"

ID = re.compile(r"^[a-z0-9]{15}$")
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}Z$")
GENERIC_400 = {
    "data": {},
    "message": "Something went wrong while processing your request.",
    "status": 400,
}
NOT_FOUND = {"data": {}, "message": "The requested resource wasn't found.", "status": 404}
FILE_NOT_FOUND = {"data": {}, "message": "File not found.", "status": 404}
NEEDS_TOKEN = {
    "data": {},
    "message": "The request requires valid record authorization token.",
    "status": 401,
}
FAILED_AUTH = {"data": {}, "message": "Failed to authenticate.", "status": 400}
REQUIRED = {"code": "validation_required", "message": "Cannot be blank."}
MISMATCH = {"code": "validation_values_mismatch", "message": "Values don't match."}
#: Keys of a users record as others see it (tests/js/schema.json has no avatar field).
USER_KEYS = {
    "collectionId",
    "collectionName",
    "created",
    "emailVisibility",
    "id",
    "name",
    "updated",
    "verified",
}

Json = dict[str, t.Any]


def body_of(response: TestResponse, status: int = 200) -> Json:
    """The JSON object of ``response``, after checking its status and Content-Type."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.headers["Content-Type"] == "application/json"
    data = response.get_json()
    assert isinstance(data, dict)
    return data


def auth(token: str) -> dict[str, str]:
    return {"Authorization": token}


def sign_up(client: FlaskClient, email: str, password: str, **extra: object) -> Json:
    body = {"email": email, "password": password, "passwordConfirm": password, **extra}
    return body_of(client.post(f"{USERS}/records", json=body))


def log_in(client: FlaskClient, email: str, password: str, collection: str = "users") -> str:
    response = client.post(
        f"/api/collections/{collection}/auth-with-password",
        json={"identity": email, "password": password},
    )
    token = body_of(response)["token"]
    assert isinstance(token, str)
    return token


def claims(token: str) -> Json:
    return jwt.decode(token, options={"verify_signature": False})


@dataclass
class World:
    app: Flask
    client: FlaskClient
    store: RecordStore
    alice: Json
    bob: Json
    root: Json
    alice_token: str
    bob_token: str
    root_token: str
    post: Json


def make_app(config: dict[str, object] | None = None) -> Flask:
    return create_app({**CONFIG, **(config or {})})


def close_app(app: Flask) -> None:
    app.extensions["realtime"].shutdown()
    t.cast(RecordStore, app.extensions["realtime_store"]).close()


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    app = make_app()
    client = app.test_client()
    store = t.cast(RecordStore, app.extensions["realtime_store"])
    alice = sign_up(client, "alice@example.com", "alicepass123", name="Alice")
    bob = sign_up(client, "bob@example.com", "bobpass1234", emailVisibility=True)
    root, _ = store.upsert_superuser("root@example.com", "rootpass123")
    alice_token = log_in(client, "alice@example.com", "alicepass123")
    bob_token = log_in(client, "bob@example.com", "bobpass1234")
    root_token = log_in(client, "root@example.com", "rootpass123", "_superusers")
    post = body_of(
        client.post(
            f"{POSTS}/records",
            json={
                "title": "Hello",
                "owner": alice["id"],
                "views": 5,
                "published": True,
                "tags": ["a", "b"],
            },
            headers=auth(alice_token),
        )
    )
    for n in (3, 1, 5, 2, 4):
        body_of(client.post(f"{BULK}/records", json={"n": n}, headers=auth(root_token)))
    yield World(app, client, store, alice, bob, root, alice_token, bob_token, root_token, post)
    close_app(app)


# -- records: shape -----------------------------------------------------------------


class TestCreate:
    def test_create_returns_200_with_the_stored_record(self, world: World) -> None:
        post = world.post
        assert set(post) == {
            "collectionId",
            "collectionName",
            "created",
            "id",
            "owner",
            "published",
            "tags",
            "title",
            "updated",
            "views",
        }
        assert (post["collectionId"], post["collectionName"]) == ("pbc_1125843985", "posts")
        assert ID.match(post["id"])
        assert TIMESTAMP.match(post["created"]) and post["created"] == post["updated"]
        assert (post["title"], post["owner"], post["views"], post["published"], post["tags"]) == (
            "Hello",
            world.alice["id"],
            5,
            True,
            ["a", "b"],
        )
        stored = body_of(
            world.client.get(f"{POSTS}/records/{post['id']}", headers=auth(world.bob_token))
        )
        assert stored == post

    def test_empty_values_are_typed(self, world: World) -> None:
        post = body_of(
            world.client.post(
                f"{POSTS}/records", json={"title": "Empty"}, headers=auth(world.alice_token)
            )
        )
        assert (post["owner"], post["views"], post["published"], post["tags"]) == (
            "",
            0,
            False,
            None,
        )

    def test_no_autodate_fields_no_timestamps(self, world: World) -> None:
        record = body_of(world.client.post(f"{PUBLIC}/records", json={"title": "pub1"}))
        assert set(record) == {"collectionId", "collectionName", "id", "title"}
        assert record["collectionId"] == "pbc_778715644" and record["title"] == "pub1"

    def test_client_supplied_id(self, world: World) -> None:
        record = body_of(
            world.client.post(f"{PUBLIC}/records", json={"id": "custom000000001", "title": "c"})
        )
        assert record["id"] == "custom000000001"
        assert body_of(world.client.post(f"{PUBLIC}/records", json={"id": "bad"}), 400) == {
            "data": {
                "id": {
                    "code": "validation_min_text_constraint",
                    "message": "Must be at least 15 character(s).",
                    "params": {"min": 15},
                }
            },
            "message": "Failed to create record.",
            "status": 400,
        }

    def test_validation_and_rule_failures(self, world: World) -> None:
        client = world.client
        assert body_of(
            client.post(f"{POSTS}/records", json={"title": ""}, headers=auth(world.alice_token)),
            400,
        ) == {"data": {"title": REQUIRED}, "message": "Failed to create record.", "status": 400}
        missing = client.post(
            f"{POSTS}/records",
            json={"title": "x", "owner": "nope00000000000"},
            headers=auth(world.alice_token),
        )
        assert body_of(missing, 400)["data"]["owner"]["code"] == "validation_missing_rel_records"
        # a failed createRule is a plain 400 with no field errors
        assert body_of(client.post(f"{POSTS}/records", json={"title": "x"}), 400) == {
            "data": {},
            "message": "Failed to create record.",
            "status": 400,
        }
        assert body_of(client.get("/api/collections/locked/records"), 403) == {
            "data": {},
            "message": "Only superusers can perform this action.",
            "status": 403,
        }
        assert body_of(client.get("/api/collections/nope/records"), 404) == {
            "data": {},
            "message": "Missing collection context.",
            "status": 404,
        }

    def test_view_rule_failure_and_missing_record_look_the_same(self, world: World) -> None:
        client = world.client
        assert body_of(client.get(f"{POSTS}/records/{world.post['id']}"), 404) == NOT_FOUND
        response = client.get(f"{POSTS}/records/doesnotexist123", headers=auth(world.bob_token))
        assert body_of(response, 404) == NOT_FOUND

    def test_delete_is_204_with_an_empty_body(self, world: World) -> None:
        record = body_of(world.client.post(f"{PUBLIC}/records", json={"title": "bye"}))
        response = world.client.delete(f"{PUBLIC}/records/{record['id']}")
        assert response.status_code == 204
        assert response.data == b""
        assert "Content-Type" not in response.headers
        assert body_of(world.client.delete(f"{PUBLIC}/records/{record['id']}"), 404) == NOT_FOUND


# -- request bodies and routes --------------------------------------------------------


class TestBodies:
    def test_unsupported_content_type(self, world: World) -> None:
        response = world.client.post(f"{PUBLIC}/records", data="title=x", content_type="text/plain")
        assert body_of(response, 400) == {
            "data": {},
            "message": "Unsupported Content-Type.",
            "status": 400,
        }

    @pytest.mark.parametrize("raw", [b'{"title":', b"[1,2]", b'"text"', b"12"])
    def test_bad_json_is_the_generic_400(self, world: World, raw: bytes) -> None:
        response = world.client.post(f"{PUBLIC}/records", data=raw, content_type="application/json")
        assert body_of(response, 400) == GENERIC_400

    def test_body_without_content_type_is_ignored(self, world: World) -> None:
        response = world.client.post(f"{PUBLIC}/records", data=b'{"title":"x"}')
        assert body_of(response)["title"] == ""

    @pytest.mark.parametrize(
        ("data", "content_type"),
        [
            (b"null", "application/json"),  # Go's decoder leaves the map empty
            (b"", "text/plain"),  # an empty body is never bound, whatever its type
            (b"", "application/json"),  # what the SDK sends on body-less POSTs
        ],
    )
    def test_empty_bodies(self, world: World, data: bytes, content_type: str) -> None:
        response = world.client.post(f"{PUBLIC}/records", data=data, content_type=content_type)
        assert body_of(response)["title"] == ""

    def test_unknown_keys_are_ignored(self, world: World) -> None:
        response = world.client.post(f"{PUBLIC}/records", json={"title": "k", "nope": 1})
        record = body_of(response)
        assert record["title"] == "k" and "nope" not in record

    def test_form_body(self, world: World) -> None:
        response = world.client.post(
            f"{POSTS}/records",
            data={"title": "form", "views": "7", "published": "true", "tags": '["x"]'},
            headers=auth(world.alice_token),
        )
        record = body_of(response)
        assert (record["title"], record["views"], record["published"], record["tags"]) == (
            "form",
            7,
            True,
            ["x"],
        )

    def test_multipart_body_with_json_payload(self, world: World) -> None:
        # the JS SDK sends non-file object values of a FormData body as @jsonPayload
        response = world.client.post(
            f"{POSTS}/records",
            data={"title": "multi", "@jsonPayload": json.dumps({"tags": {"k": [1]}, "views": 2})},
            content_type="multipart/form-data",
            headers=auth(world.alice_token),
        )
        record = body_of(response)
        assert (record["title"], record["tags"], record["views"]) == ("multi", {"k": [1]}, 2)
        bad = world.client.post(
            f"{PUBLIC}/records",
            data={"@jsonPayload": "[1]"},
            content_type="multipart/form-data",
        )
        assert body_of(bad, 400) == GENERIC_400

    @pytest.mark.parametrize(
        ("method", "path"),
        [
            ("GET", "/api/nonexistent"),
            ("GET", f"{PUBLIC}/records/"),
            ("PUT", f"{PUBLIC}/records/custom000000001"),
            ("GET", f"{USERS}/auth-refresh"),
        ],
    )
    def test_unknown_routes(self, world: World, method: str, path: str) -> None:
        response = world.client.open(path, method=method, json={})
        assert body_of(response, 404) == FILE_NOT_FOUND

    def test_security_and_cors_headers(self, world: World) -> None:
        response = world.client.get(f"{PUBLIC}/records", headers={"Origin": "http://app.test"})
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "application/json"
        for name, value in {
            "Vary": "Origin",
            "X-Content-Type-Options": "nosniff",
            "X-Frame-Options": "SAMEORIGIN",
            "X-Xss-Protection": "1; mode=block",
            "Cross-Origin-Opener-Policy": "same-origin",
            "Access-Control-Allow-Origin": "*",
        }.items():
            assert response.headers[name] == value
        # errors carry them too; without an Origin there is no Allow-Origin
        response = world.client.get("/api/collections/nope/records")
        assert response.headers["X-Frame-Options"] == "SAMEORIGIN"
        assert "Access-Control-Allow-Origin" not in response.headers

    @pytest.mark.parametrize(
        "path", [f"{PUBLIC}/records", f"{PUBLIC}/records/x", f"{USERS}/auth-with-password"]
    )
    def test_cors_preflight(self, world: World, path: str) -> None:
        response = world.client.options(
            path,
            headers={
                "Origin": "http://app.test",
                "Access-Control-Request-Method": "PATCH",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        assert response.status_code == 204 and response.data == b""
        assert response.headers["Access-Control-Allow-Origin"] == "*"
        assert response.headers["Access-Control-Allow-Methods"] == "GET,HEAD,PUT,PATCH,POST,DELETE"
        assert response.headers["Access-Control-Allow-Headers"] == "authorization,content-type"

    def test_a_bad_token_on_a_normal_endpoint_is_a_guest(self, world: World) -> None:
        response = world.client.get(f"{PUBLIC}/records", headers=auth("garbage"))
        assert response.status_code == 200
        response = world.client.get(f"{POSTS}/records", headers=auth("garbage"))
        assert body_of(response)["items"] == []


# -- sign-up ----------------------------------------------------------------------------


class TestSignUp:
    def test_ok_shape_has_no_token_and_no_email(self, world: World) -> None:
        alice = world.alice
        assert set(alice) == USER_KEYS
        assert (alice["collectionId"], alice["collectionName"]) == ("_pb_users_auth_", "users")
        assert (alice["name"], alice["emailVisibility"], alice["verified"]) == (
            "Alice",
            False,
            False,
        )
        assert ID.match(alice["id"]) and TIMESTAMP.match(alice["created"])
        # emailVisibility true: the guest who signed up sees the email
        assert world.bob["email"] == "bob@example.com"
        assert set(world.bob) == USER_KEYS | {"email"}

    @pytest.mark.parametrize(
        ("body", "data"),
        [
            ({}, {"password": REQUIRED, "passwordConfirm": REQUIRED}),
            (
                {"email": "x@example.com", "password": "alicepass123", "passwordConfirm": "nope"},
                {"passwordConfirm": MISMATCH},
            ),
            ({"password": "alicepass123", "passwordConfirm": "alicepass123"}, {"email": REQUIRED}),
            (
                {"email": "x@example.com", "password": "alicepass123"},
                {"passwordConfirm": REQUIRED},
            ),
            (
                {"email": "x@example.com", "password": "short", "passwordConfirm": "short"},
                {
                    "password": {
                        "code": "validation_min_text_constraint",
                        "message": "Must be at least 8 character(s).",
                    }
                },
            ),
            (
                {"email": "x@example.com", "password": "p" * 72, "passwordConfirm": "p" * 72},
                {
                    "password": {
                        "code": "validation_max_text_constraint",
                        "message": "Must be less than 71 character(s).",
                    }
                },
            ),
            (
                {
                    "email": "not-an-email",
                    "password": "alicepass123",
                    "passwordConfirm": "alicepass123",
                },
                {
                    "email": {
                        "code": "validation_is_email",
                        "message": "Must be a valid email address.",
                    }
                },
            ),
            (
                {
                    "email": "alice@example.com",
                    "password": "alicepass123",
                    "passwordConfirm": "alicepass123",
                },
                {"email": {"code": "validation_not_unique", "message": "Value must be unique."}},
            ),
            (
                {
                    "email": "x@example.com",
                    "password": "alicepass123",
                    "passwordConfirm": "alicepass123",
                    "verified": True,
                },
                {"verified": MISMATCH},
            ),
        ],
    )
    def test_validation(self, world: World, body: Json, data: Json) -> None:
        response = world.client.post(f"{USERS}/records", json=body)
        assert body_of(response, 400) == {
            "data": data,
            "message": "Failed to create record.",
            "status": 400,
        }

    def test_racing_writers_get_a_field_error_not_a_500(
        self, world: World, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Another writer takes the email between validation and the INSERT/UPDATE."""
        store = world.store
        validate = store._validate
        rival = {"password": "rivalpass123", "passwordConfirm": "rivalpass123"}
        taken: list[str] = []

        def racing(coll: t.Any, body: t.Any, ctx: t.Any, *, existing: t.Any) -> t.Any:
            values = validate(coll, body, ctx, existing=existing)
            email = body.get("email")
            if email and email not in taken:
                taken.append(email)
                store.create("users", {**rival, "email": email}, ctx)
            return values

        monkeypatch.setattr(store, "_validate", racing)
        not_unique = {"code": "validation_not_unique", "message": "Value must be unique."}
        response = world.client.post(
            f"{USERS}/records", json={**rival, "email": "race@example.com"}
        )
        assert body_of(response, 400) == {
            "data": {"email": not_unique},
            "message": "Failed to create record.",
            "status": 400,
        }
        response = world.client.patch(
            f"{USERS}/records/{world.bob['id']}",
            json={"email": "race2@example.com"},
            headers=auth(world.root_token),
        )
        assert body_of(response, 400) == {
            "data": {"email": not_unique},
            "message": "Failed to update record.",
            "status": 400,
        }

    def test_guest_token_key_is_ignored(self, world: World) -> None:
        record = sign_up(world.client, "eve@example.com", "evepass1234", tokenKey="x")
        assert "tokenKey" not in record and "password" not in record
        stored = world.store.get_record("users", record["id"])
        assert stored is not None and stored["tokenKey"] not in ("", "x")


# -- auth-with-password / auth-refresh / tokens ------------------------------------------


class TestAuthWithPassword:
    def test_ok_shape_includes_the_owners_email(self, world: World) -> None:
        response = world.client.post(
            f"{USERS}/auth-with-password",
            json={"identity": "alice@example.com", "password": "alicepass123"},
        )
        data = body_of(response)
        assert set(data) == {"record", "token"}
        assert data["record"] == {**world.alice, "email": "alice@example.com"}
        assert data["token"].count(".") == 2

    @pytest.mark.parametrize(
        "body",
        [
            {"identity": "alice@example.com", "password": "wrongpass123"},
            {"identity": "nobody@example.com", "password": "alicepass123"},
            {"identity": "ALICE@example.com", "password": "alicepass123"},
        ],
    )
    def test_credential_failures_look_the_same(self, world: World, body: Json) -> None:
        response = world.client.post(f"{USERS}/auth-with-password", json=body)
        assert body_of(response, 400) == FAILED_AUTH

    @pytest.mark.parametrize("body", [{}, {"identity": "", "password": ""}])
    def test_blanks(self, world: World, body: Json) -> None:
        response = world.client.post(f"{USERS}/auth-with-password", json=body)
        assert body_of(response, 400) == {
            "data": {"identity": REQUIRED, "password": REQUIRED},
            "message": "An error occurred while validating the submitted data.",
            "status": 400,
        }

    def test_wrong_collections(self, world: World) -> None:
        creds = {"identity": "alice@example.com", "password": "alicepass123"}
        response = world.client.post(f"{POSTS}/auth-with-password", json=creds)
        assert body_of(response, 404) == {
            "data": {},
            "message": "Missing or invalid auth collection context.",
            "status": 404,
        }
        response = world.client.post("/api/collections/nope/auth-with-password", json=creds)
        assert body_of(response, 404) == {
            "data": {},
            "message": "Missing or invalid collection context.",
            "status": 404,
        }

    def test_fields_on_the_auth_response(self, world: World) -> None:
        response = world.client.post(
            f"{USERS}/auth-refresh?fields=token,record.id", headers=auth(world.alice_token)
        )
        data = body_of(response)
        assert set(data) == {"record", "token"} and data["record"] == {"id": world.alice["id"]}


class TestTokens:
    @pytest.mark.parametrize(
        ("email", "password", "collection", "collection_id", "duration"),
        [
            ("alice@example.com", "alicepass123", "users", "_pb_users_auth_", 432000),
            ("root@example.com", "rootpass123", "_superusers", "pbc_3142635823", 86400),
        ],
    )
    def test_claims(
        self,
        world: World,
        email: str,
        password: str,
        collection: str,
        collection_id: str,
        duration: int,
    ) -> None:
        before = int(time.time())
        token = log_in(world.client, email, password, collection)
        after = int(time.time())
        assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "JWT"}
        payload = claims(token)
        assert set(payload) == {"collectionId", "exp", "id", "refreshable", "type"}
        assert (payload["collectionId"], payload["refreshable"], payload["type"]) == (
            collection_id,
            True,
            "auth",
        )
        record = world.alice if collection == "users" else world.root
        assert payload["id"] == record["id"]
        assert before + duration <= payload["exp"] <= after + duration

    @pytest.mark.parametrize("scheme", ["", "Bearer ", "bearer ", "BEARER "])
    def test_refresh_accepts_raw_and_bearer(self, world: World, scheme: str) -> None:
        response = world.client.post(
            f"{USERS}/auth-refresh", headers=auth(scheme + world.alice_token)
        )
        data = body_of(response)
        assert data["record"] == {**world.alice, "email": "alice@example.com"}
        assert claims(data["token"])["id"] == world.alice["id"]

    def test_refresh_with_the_sdks_empty_json_body(self, world: World) -> None:
        # the SDK sends Content-Type: application/json and no body
        response = world.client.post(
            f"{USERS}/auth-refresh",
            headers={**auth(world.bob_token), "Content-Type": "application/json"},
        )
        assert set(body_of(response)) == {"record", "token"}

    def test_refresh_needs_a_valid_token(self, world: World) -> None:
        header, payload, _ = world.alice_token.split(".")
        forged = f"{header}.{payload}.{world.bob_token.split('.')[2]}"
        for headers in (
            {},
            auth("garbage"),
            auth("Token " + world.alice_token),
            auth(forged),
        ):
            response = world.client.post(f"{USERS}/auth-refresh", headers=headers)
            assert body_of(response, 401) == NEEDS_TOKEN

    def test_refresh_on_another_collection_names_the_tokens_collection(self, world: World) -> None:
        client = world.client
        response = client.post(f"{USERS}/auth-refresh", headers=auth(world.root_token))
        assert body_of(response, 403) == {
            "data": {},
            "message": "The request requires auth record from _superusers collection.",
            "status": 403,
        }
        users_only = {
            "data": {},
            "message": "The request requires auth record from users collection.",
            "status": 403,
        }
        for path in ("/api/collections/_superusers", POSTS):
            response = client.post(f"{path}/auth-refresh", headers=auth(world.alice_token))
            assert body_of(response, 403) == users_only
        response = client.post(
            "/api/collections/nope/auth-refresh", headers=auth(world.alice_token)
        )
        assert body_of(response, 404)["message"] == "Missing or invalid collection context."


# -- list -------------------------------------------------------------------------------


def page(world: World, query: str, token: str | None = None) -> Json:
    headers = auth(token) if token else {}
    return body_of(world.client.get(f"{BULK}/records?{query}", headers=headers))


def envelope(data: Json) -> tuple[int, int, int, int]:
    return data["page"], data["perPage"], data["totalItems"], data["totalPages"]


class TestList:
    def test_defaults_and_insertion_order(self, world: World) -> None:
        data = page(world, "")
        assert set(data) == {"items", "page", "perPage", "totalItems", "totalPages"}
        assert envelope(data) == (1, 30, 5, 1)
        assert [item["n"] for item in data["items"]] == [3, 1, 5, 2, 4]

    def test_paging_and_sort(self, world: World) -> None:
        data = page(world, "page=2&perPage=2&sort=-n")
        assert envelope(data) == (2, 2, 5, 3)
        assert [item["n"] for item in data["items"]] == [3, 2]
        data = page(world, "page=99&perPage=2")
        assert envelope(data) == (99, 2, 5, 3) and data["items"] == []
        assert [i["n"] for i in page(world, "sort=%2Bn")["items"]] == [1, 2, 3, 4, 5]

    @pytest.mark.parametrize(
        ("query", "expected"),
        [
            ("perPage=0", (1, 30)),
            ("perPage=-1", (1, 30)),
            ("page=0", (1, 30)),
            ("page=-3&perPage=-3", (1, 30)),
            ("perPage=5000", (1, 1000)),
            ("perPage=1000", (1, 1000)),
        ],
    )
    def test_page_and_per_page_fallbacks(
        self, world: World, query: str, expected: tuple[int, int]
    ) -> None:
        data = page(world, query)
        assert (data["page"], data["perPage"]) == expected
        assert len(data["items"]) == 5

    @pytest.mark.parametrize(
        "query",
        ["page=abc", "perPage=abc", "sort=bogus", "sort=-", "filter=%20%20%20", "filter=n%20=="],
    )
    def test_bad_params_are_the_generic_400(self, world: World, query: str) -> None:
        response = world.client.get(f"{BULK}/records?{query}")
        assert body_of(response, 400) == GENERIC_400

    @pytest.mark.parametrize("value", ["1", "true"])
    def test_skip_total(self, world: World, value: str) -> None:
        data = page(world, f"skipTotal={value}&perPage=2")
        assert envelope(data) == (1, 2, -1, -1) and len(data["items"]) == 2

    def test_empty_results_have_zero_pages(self, world: World) -> None:
        assert envelope(page(world, "filter=n>100")) == (1, 30, 0, 0)

    def test_empty_filter_means_none(self, world: World) -> None:
        assert envelope(page(world, "filter=")) == (1, 30, 5, 1)

    def test_request_fields_in_filter_or_sort_are_superuser_only(self, world: World) -> None:
        forbidden = {
            "data": {},
            "message": "Only superusers can filter by @request.",
            "status": 403,
        }
        for query in ("filter=@request.auth.id=''", "sort=@request.auth.id"):
            response = world.client.get(f"{BULK}/records?{query}", headers=auth(world.bob_token))
            assert body_of(response, 403) == forbidden
        assert page(world, "filter=@request.auth.id!=''", world.root_token)["totalItems"] == 5

    def test_fields_apply_to_items_not_the_envelope(self, world: World) -> None:
        data = page(world, "fields=n&sort=n&perPage=2")
        assert data["items"] == [{"n": 1}, {"n": 2}]
        assert envelope(data) == (1, 2, 5, 3)

    def test_list_rule_is_a_filter(self, world: World) -> None:
        guest = body_of(world.client.get(f"{POSTS}/records"))
        assert guest == {"items": [], "page": 1, "perPage": 30, "totalItems": 0, "totalPages": 0}


# -- fields and expand --------------------------------------------------------------------


class TestFieldsAndExpand:
    def get(self, world: World, query: str) -> Json:
        url = f"{POSTS}/records/{world.post['id']}?{query}"
        return body_of(world.client.get(url, headers=auth(world.bob_token)))

    def test_fields_pick(self, world: World) -> None:
        assert self.get(world, "fields=id,title") == {"id": world.post["id"], "title": "Hello"}

    def test_star_and_nested_expand_path(self, world: World) -> None:
        data = self.get(world, "fields=*,expand.owner.name&expand=owner")
        assert data == {**world.post, "expand": {"owner": {"name": "Alice"}}}

    def test_expand_owner(self, world: World) -> None:
        data = self.get(world, "expand=owner")
        # the related record goes through the email-visibility rule: no email
        assert data["expand"] == {"owner": world.alice}
        assert "email" not in data["expand"]["owner"]

    def test_fields_without_expand_drop_it(self, world: World) -> None:
        assert self.get(world, "fields=id,title&expand=owner") == {
            "id": world.post["id"],
            "title": "Hello",
        }
        assert self.get(world, "fields=id,expand.owner.name&expand=owner") == {
            "id": world.post["id"],
            "expand": {"owner": {"name": "Alice"}},
        }

    def test_expand_of_a_non_relation_adds_no_key(self, world: World) -> None:
        assert self.get(world, "expand=bogus") == world.post
        assert self.get(world, "expand=title") == world.post

    def test_expand_on_a_list(self, world: World) -> None:
        url = f"{POSTS}/records?filter=title='Hello'&expand=owner&fields=title,expand.owner.id"
        data = body_of(world.client.get(url, headers=auth(world.bob_token)))
        assert data["items"] == [{"title": "Hello", "expand": {"owner": {"id": world.alice["id"]}}}]

    def test_expand_not_viewable_is_an_empty_object(self, tmp_path: Path) -> None:
        raw = json.loads(FIXTURE.read_text(encoding="utf-8"))
        raw[0]["viewRule"] = raw[0]["listRule"] = "id = @request.auth.id"
        path = tmp_path / "schema.json"
        path.write_text(json.dumps(raw), encoding="utf-8")
        app = make_app({"REALTIME_SCHEMA": str(path)})
        try:
            client = app.test_client()
            alice = sign_up(client, "alice@example.com", "alicepass123", name="Alice")
            sign_up(client, "bob@example.com", "bobpass1234")
            bob_token = log_in(client, "bob@example.com", "bobpass1234")
            post = body_of(
                client.post(
                    f"{POSTS}/records",
                    json={"title": "Hello", "owner": alice["id"]},
                    headers=auth(bob_token),
                )
            )
            url = f"{POSTS}/records/{post['id']}?expand=owner"
            assert body_of(client.get(url, headers=auth(bob_token))) == {**post, "expand": {}}
        finally:
            close_app(app)


# -- auth records: hidden fields, email, password changes ----------------------------------


class TestAuthRecords:
    def users_seen_by(self, world: World, token: str, query: str = "") -> dict[str, Json]:
        ids = (world.alice["id"], world.bob["id"])
        url = f"{USERS}/records?filter=id='{ids[0]}'||id='{ids[1]}'&{query}"
        items = body_of(world.client.get(url, headers=auth(token)))["items"]
        return {item["id"]: item for item in items}

    def test_email_hidden_unless_own_visible_or_superuser(self, world: World) -> None:
        alice_id, bob_id = world.alice["id"], world.bob["id"]
        seen = self.users_seen_by(world, world.bob_token)
        assert seen[alice_id] == world.alice  # no "email" key at all
        assert seen[bob_id]["email"] == "bob@example.com"
        seen = self.users_seen_by(world, world.alice_token)
        assert seen[alice_id]["email"] == "alice@example.com"  # her own record
        assert seen[bob_id]["email"] == "bob@example.com"  # emailVisibility true
        seen = self.users_seen_by(world, world.root_token)
        assert seen[alice_id]["email"] == "alice@example.com"
        assert all("password" not in r and "tokenKey" not in r for r in seen.values())

    def test_password_and_token_key_are_never_returned(self, world: World) -> None:
        url = f"{USERS}/records/{world.alice['id']}?fields=id,email,password,tokenKey"
        data = body_of(world.client.get(url, headers=auth(world.root_token)))
        assert data == {"id": world.alice["id"], "email": "alice@example.com"}
        seen = self.users_seen_by(world, world.root_token, "fields=id,email,password,tokenKey")
        assert set(seen[world.bob["id"]]) == {"id", "email"}

    @pytest.mark.parametrize("field", ["password", "tokenKey"])
    def test_hidden_fields_cannot_be_filtered_or_sorted(self, world: World, field: str) -> None:
        # Deliberate divergence for the superuser: PocketBase lets superusers filter and
        # sort on hidden fields (apis/record_crud.go: SetAllowHiddenFields(superuser)).
        # We refuse for everyone: a filter on a password hash or token key has no use and
        # would be an oracle on secrets (the filter compiler in rules.py decides this).
        for query in (f"filter={field}='x'", f"sort={field}"):
            for token in (world.bob_token, world.root_token):
                response = world.client.get(f"{USERS}/records?{query}", headers=auth(token))
                assert body_of(response, 400) == GENERIC_400

    def test_a_hidden_email_is_unfilterable(self, world: World) -> None:
        def count(email: str, token: str) -> int:
            url = f"{USERS}/records?filter=email='{email}'"
            return int(body_of(world.client.get(url, headers=auth(token)))["totalItems"])

        assert count("alice@example.com", world.bob_token) == 0
        assert count("bob@example.com", world.bob_token) == 1  # visible
        assert count("alice@example.com", world.alice_token) == 1  # own
        assert count("alice@example.com", world.root_token) == 1  # superuser

    def test_email_cannot_change_through_patch(self, world: World) -> None:
        url = f"{USERS}/records/{world.bob['id']}"
        response = world.client.patch(
            url, json={"email": "new@example.com"}, headers=auth(world.bob_token)
        )
        assert body_of(response, 400) == {
            "data": {"email": MISMATCH},
            "message": "Failed to update record.",
            "status": 400,
        }
        # sending the unchanged email back is fine (the SDK may send the whole record)
        response = world.client.patch(
            url, json={"email": "bob@example.com"}, headers=auth(world.bob_token)
        )
        assert body_of(response)["email"] == "bob@example.com"

    def test_password_change_needs_old_password_and_revokes_tokens(self, world: World) -> None:
        client = world.client
        carol = sign_up(client, "carol@example.com", "carolpass123")
        old_token = log_in(client, "carol@example.com", "carolpass123")
        url = f"{USERS}/records/{carol['id']}"
        change = {"password": "carolpass456", "passwordConfirm": "carolpass456"}
        response = client.patch(url, json=change, headers=auth(old_token))
        assert body_of(response, 400) == {
            "data": {"oldPassword": REQUIRED},
            "message": "Failed to update record.",
            "status": 400,
        }
        response = client.patch(
            url, json={**change, "oldPassword": "wrongpass123"}, headers=auth(old_token)
        )
        data = body_of(response, 400)["data"]
        assert data["oldPassword"]["code"] == "validation_invalid_old_password"
        response = client.patch(
            url, json={**change, "oldPassword": "carolpass123"}, headers=auth(old_token)
        )
        updated = body_of(response)
        assert "token" not in updated and "password" not in updated
        assert updated["updated"] >= carol["updated"]
        # every earlier token stops working: 401 on refresh, a guest elsewhere
        assert body_of(client.post(f"{USERS}/auth-refresh", headers=auth(old_token)), 401) == (
            NEEDS_TOKEN
        )
        assert body_of(client.get(url, headers=auth(old_token)), 404) == NOT_FOUND
        bad = client.post(
            f"{USERS}/auth-with-password",
            json={"identity": "carol@example.com", "password": "carolpass123"},
        )
        assert body_of(bad, 400) == FAILED_AUTH
        new_token = log_in(client, "carol@example.com", "carolpass456")
        assert body_of(client.get(url, headers=auth(new_token)))["email"] == "carol@example.com"
