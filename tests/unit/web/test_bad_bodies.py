"""Bad request bodies on every route that reads one (issue #10): always a 4xx with
PocketBase's JSON body, never a 500, and nothing changes.

Instances of the kind: a body nested 5,000 levels deep (Python's parser raised
RecursionError: a 500), nesting past ``MAX_JSON_DEPTH``, invalid UTF-8, a body
over ``REALTIME_MAX_BODY`` (413).  The body readers are then fuzzed with
arbitrary bytes under every content type, and the records routes' query
parameters (sort, filter, fields, expand, paging) and token header with
arbitrary text (``RF_FUZZ_EXAMPLES``, 10,000 by default).
"""

from __future__ import annotations

import os
import typing as t

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from realtime_flask.errors import BadRequest
from realtime_flask.web.api import MAX_JSON_DEPTH
from realtime_flask.web.api import json_object
from realtime_flask.web.app import create_app
from tests.support.env import TEST_CONFIG

SECRET: t.Final = "publish-secret"
MAX_BODY: t.Final = 64 * 1024
FUZZ_EXAMPLES: t.Final = int(os.environ.get("RF_FUZZ_EXAMPLES", "10000"))
FUZZ = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
pytestmark = pytest.mark.timeout(600)

#: (method, path, headers) of every route that reads a JSON body.
ROUTES: t.Final = [
    ("POST", "/api/realtime", {}),
    ("POST", "/api/collections/posts/records", {}),
    ("PATCH", "/api/collections/posts/records/{id}", {}),
    ("POST", "/api/collections/users/auth-with-password", {}),
    ("POST", "/api/realtime/publish", {"Authorization": f"Bearer {SECRET}"}),
]


@pytest.fixture(scope="module")
def app() -> t.Iterator[Flask]:
    app = create_app(
        {**TEST_CONFIG, "REALTIME_PUBLISH_SECRET": SECRET, "REALTIME_MAX_BODY": MAX_BODY}
    )
    yield app
    app.extensions["realtime"].shutdown()


@pytest.fixture(scope="module")
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture(scope="module")
def post_id(client: FlaskClient) -> str:
    created = client.post("/api/collections/posts/records", json={"title": "kept"})
    assert created.status_code == 200
    return str(created.get_json()["id"])


def send(
    client: FlaskClient,
    route: tuple[str, str, dict[str, str]],
    post_id: str,
    body: bytes,
    content_type: str = "application/json",
) -> t.Any:
    method, path, headers = route
    return client.open(
        path.format(id=post_id),
        method=method,
        data=body,
        headers={**headers, "Content-Type": content_type},
    )


#: The content types the body readers branch on, and some they refuse.
CONTENT_TYPES: t.Final = [
    "application/json",
    "application/json; charset=latin-1",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=xyz",
    "multipart/form-data",
    "text/plain",
    "",
]


def nested(depth: int) -> bytes:
    return b'{"clientId": "x", "subscriptions": ' + b"[" * depth + b"]" * depth + b"}"


def unchanged(client: FlaskClient, post_id: str) -> None:
    listed = client.get("/api/collections/posts/records").get_json()
    assert [(item["id"], item["title"]) for item in listed["items"]] == [(post_id, "kept")]


def assert_below_500(response: t.Any, context: object = None) -> None:
    """No 5xx, and any error is PocketBase's JSON body (its ``data`` may name fields)."""
    assert response.status_code < 500, (context, response.get_data())
    if response.status_code >= 400:
        assert is_pocketbase_error(response, response.status_code, empty_data=False), (
            response.get_data()
        )


def is_pocketbase_error(response: t.Any, status: int, *, empty_data: bool = True) -> bool:
    body = response.get_json()
    return (
        response.status_code == status
        and set(body) == {"status", "message", "data"}
        and body["status"] == status
        and isinstance(body["message"], str)
        and isinstance(body["data"], dict)
        and (body["data"] == {} or not empty_data)
    )


#: Bodies every route must answer with PocketBase's 400, each an instance of the kind.
BAD_BODIES: t.Final = {
    "nested 5,000 levels": nested(5000),
    "nested one level past the limit": nested(MAX_JSON_DEPTH + 1),
    "invalid UTF-8": b'{"title": "\xff\xfe"}',
}


@pytest.mark.parametrize("route", ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
@pytest.mark.parametrize("body", list(BAD_BODIES.values()), ids=list(BAD_BODIES))
def test_a_bad_body_answers_400_and_changes_nothing(
    client: FlaskClient, post_id: str, route: tuple[str, str, dict[str, str]], body: bytes
) -> None:
    response = send(client, route, post_id, body)
    assert is_pocketbase_error(response, 400), response.get_data()
    unchanged(client, post_id)


@pytest.mark.parametrize("route", ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
def test_a_body_over_the_limit_answers_413_and_others_are_served(
    client: FlaskClient, post_id: str, route: tuple[str, str, dict[str, str]]
) -> None:
    body = b'{"title": "' + b"x" * MAX_BODY + b'"}'
    response = send(client, route, post_id, body)
    assert is_pocketbase_error(response, 413), response.get_data()
    assert response.get_json()["message"] == "Request entity too large."
    unchanged(client, post_id)
    assert client.get("/api/health").status_code == 200


def test_json_object_accepts_nesting_up_to_the_limit() -> None:
    inner = b"[" * (MAX_JSON_DEPTH - 1) + b"]" * (MAX_JSON_DEPTH - 1)
    assert json_object(b'{"a": ' + inner + b"}")["a"] is not None
    with pytest.raises(BadRequest):
        json_object(b'{"a": [' + inner + b"]}")


@FUZZ
@given(raw=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_json_object_on_any_bytes_is_an_object_or_a_400(raw: bytes) -> None:
    try:
        body = json_object(raw)
    except BadRequest as exc:
        assert exc.status_hint == 400
    else:
        assert isinstance(body, dict)


@FUZZ
@given(
    raw=st.binary(max_size=200)
    | st.text(max_size=200).map(str.encode)
    | st.builds(
        lambda parts: b"--xyz\r\n" + b"\r\n--xyz\r\n".join(parts) + b"\r\n--xyz--\r\n",
        st.lists(st.binary(max_size=60), max_size=4),
    ),
    route=st.sampled_from(ROUTES),
    content_type=st.sampled_from(CONTENT_TYPES),
)
def test_any_body_on_any_route_answers_below_500(
    client: FlaskClient,
    post_id: str,
    raw: bytes,
    route: tuple[str, str, dict[str, str]],
    content_type: str,
) -> None:
    """Every body reader (JSON, urlencoded and multipart forms, others) on every route."""
    assert_below_500(send(client, route, post_id, raw, content_type))


#: Query parameters the records routes read, and header names the app reads.
QUERY_KEYS: t.Final = ["page", "perPage", "sort", "filter", "skipTotal", "fields", "expand"]


@FUZZ
@given(
    query=st.dictionaries(st.sampled_from(QUERY_KEYS), st.text(max_size=60), max_size=4),
    one=st.booleans(),
    auth=st.text(max_size=80),
)
def test_any_query_string_or_token_on_the_records_routes_answers_below_500(
    client: FlaskClient, post_id: str, query: dict[str, str], one: bool, auth: str
) -> None:
    """The sort, filter, fields, expand and paging parsers, and the token reader."""
    path = f"/api/collections/posts/records/{post_id}" if one else "/api/collections/posts/records"
    headers = {"Authorization": auth} if auth.isprintable() else {}
    assert_below_500(client.get(path, query_string=query, headers=headers), query)


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ({"page": "99999999999999999999"}, 400),  # past int64: Go's strconv.Atoi refuses it
        ({"perPage": "-99999999999999999999"}, 400),
        ({"page": str(2**63 - 1)}, 200),  # the largest page: an empty page, not an overflow
        ({"page": str(2**63 - 2), "perPage": "500"}, 200),  # its offset is past SQLite's integers
    ],
)
def test_paging_numbers_at_and_past_64_bits_answer_pocketbase_bodies(
    client: FlaskClient, query: dict[str, str], status: int
) -> None:
    """Found by the fuzz test above: these answered 500 (OverflowError binding the offset)."""
    response = client.get("/api/collections/posts/records", query_string=query)
    assert response.status_code == status, response.get_data()
    body = response.get_json()
    if status == 400:
        assert set(body) == {"status", "message", "data"} and body["status"] == 400
    else:
        assert body["items"] == [] and body["page"] == int(query["page"])
