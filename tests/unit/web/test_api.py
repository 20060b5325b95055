"""The realtime routes through Flask's test client (the real-server suite is test_e2e_gunicorn)."""

from __future__ import annotations

import json
import typing as t

import pytest
from flask import Flask
from flask.testing import FlaskClient

from realtime_flask.testing import TestEventStream
from realtime_flask.web.extension import get_state


def connect(client: FlaskClient) -> tuple[TestEventStream, str]:
    response = client.get("/api/realtime", buffered=False)
    stream = TestEventStream(response)
    first = stream.next_event(timeout=5)
    assert first.event == "PB_CONNECT"
    return stream, first.id


def publish(client: FlaskClient, collection: str, action: str, record: dict[str, object]) -> None:
    response = client.post(
        "/api/realtime/publish",
        # Unfiltered: these tests are about the protocol, not the collections' rules.
        json={"collection": collection, "action": action, "record": record, "unfiltered": True},
        headers={"Authorization": "Bearer test-secret"},
    )
    assert response.status_code == 200, response.json


def test_stream_headers_and_connect_frame(client: FlaskClient) -> None:
    response = client.get("/api/realtime", buffered=False)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/event-stream"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Accel-Buffering"] == "no"
    assert "Content-Length" not in response.headers
    stream = TestEventStream(response)
    event = stream.next_event()
    assert bytes(stream.raw) == (
        f'id:{event.id}\nevent:PB_CONNECT\ndata:{{"clientId":"{event.id}"}}\n\n'.encode()
    )
    stream.close()


def test_subscribe_publish_receive(app: Flask, client: FlaskClient) -> None:
    stream, cid = connect(client)
    response = client.post("/api/realtime", json={"clientId": cid, "subscriptions": ["posts/*"]})
    assert response.status_code == 204 and response.data == b""
    publish(client, "posts", "create", {"id": "r1", "title": "hi"})
    event = stream.next_event()
    assert (event.event, event.id) == ("posts/*", f"{cid}.1")
    assert json.loads(event.data) == {"record": {"id": "r1", "title": "hi"}, "action": "create"}
    stream.close()
    assert get_state(app).manager.get_client_count() == 0


def test_form_body(client: FlaskClient) -> None:
    stream, cid = connect(client)
    response = client.post(
        "/api/realtime", data={"clientId": cid, "subscriptions": ["posts/*", "tags/*"]}
    )
    assert response.status_code == 204
    publish(client, "tags", "update", {"id": "t1"})
    assert stream.next_event().event == "tags/*"
    stream.close()


def test_keepalive_comments_do_not_count_as_activity(app: Flask, client: FlaskClient) -> None:
    stream, cid = connect(client)
    manager = get_state(app).manager
    target = manager.get_client(cid)
    assert target is not None
    before = target.last_activity
    with pytest.raises(TimeoutError):
        stream.next_event(timeout=0.3)
    assert stream.comment_count >= 1
    assert target.last_activity == before
    stream.close()


def test_removed_client_ends_its_stream(app: Flask, client: FlaskClient) -> None:
    stream, cid = connect(client)
    get_state(app).manager.remove_client(cid, reason="test")
    assert stream.wait_closed(timeout=5) == []
    assert client.post("/api/realtime", json={"clientId": cid}).status_code == 404


def test_cleanup_runs_when_the_generator_never_started(app: Flask) -> None:
    from realtime_flask.web.api.realtime import connect as connect_view

    manager = get_state(app).manager
    with app.test_request_context("/api/realtime"):
        response = connect_view()
    assert manager.get_client_count() == 1
    response.close()  # the server closes the iterable without iterating it
    assert manager.get_client_count() == 0


def test_cleanup_is_idempotent(app: Flask) -> None:
    from realtime_flask.web.api.realtime import connect as connect_view

    manager = get_state(app).manager
    with app.test_request_context("/api/realtime"):
        response = connect_view()
    chunks = iter(t.cast("t.Iterable[bytes]", response.response))
    assert next(chunks).startswith(b"id:")
    response.close()
    response.close()
    assert manager.get_client_count() == 0


def test_errors_use_pocketbase_shape(client: FlaskClient) -> None:
    response = client.post("/api/realtime", json={"clientId": "missing"})
    assert response.status_code == 404
    assert response.json == {"data": {}, "message": "Missing or invalid client id.", "status": 404}
    response = client.post("/api/realtime", data=b"[1]", content_type="application/json")
    assert response.status_code == 400
    assert response.json == {
        "data": {},
        "message": "Something went wrong while processing your request.",
        "status": 400,
    }


def test_too_large_body(client: FlaskClient) -> None:
    body = b'{"clientId":"' + b"a" * (17 * 1024 * 1024) + b'"}'
    response = client.post("/api/realtime", data=body, content_type="application/json")
    assert response.status_code == 413
    assert response.json is not None and response.json["status"] == 413


def test_cors_preflight(client: FlaskClient) -> None:
    response = client.options(
        "/api/realtime",
        headers={"Origin": "http://app.test", "Access-Control-Request-Headers": "authorization"},
    )
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert response.headers["Access-Control-Allow-Headers"] == "authorization"


class TestPublishRoute:
    def test_needs_the_secret(self, client: FlaskClient) -> None:
        body = {"collection": "posts", "action": "create", "record": {"id": "x"}}
        assert client.post("/api/realtime/publish", json=body).status_code == 401
        response = client.post(
            "/api/realtime/publish", json=body, headers={"Authorization": "Bearer wrong"}
        )
        assert response.status_code == 401

    @pytest.mark.parametrize(
        "body",
        [
            {"collection": "posts", "action": "explode", "record": {}},
            {"collection": "", "action": "create", "record": {}},
            {"collection": "a/b", "action": "create", "record": {}},
            {"collection": "posts", "action": "create", "record": []},
            {"collection": "posts", "action": "create", "record": {"id": 5}},
            [],
        ],
    )
    def test_bad_events_are_400(self, client: FlaskClient, body: object) -> None:
        response = client.post(
            "/api/realtime/publish", json=body, headers={"Authorization": "Bearer test-secret"}
        )
        assert response.status_code == 400
        assert response.json is not None and response.json["status"] == 400

    def test_disabled_without_a_secret(self) -> None:
        from realtime_flask.web.app import create_app

        app = create_app(
            {"TESTING": True, "REALTIME_REAPER_ENABLED": False, "REALTIME_DATA_DIR": ":memory:"}
        )
        response = app.test_client().post("/api/realtime/publish", json={})
        assert response.status_code == 404
        get_state(app).shutdown()


def test_json_body_null_and_case_insensitive_keys(client: FlaskClient) -> None:
    response = client.post("/api/realtime", data=b"null", content_type="application/json")
    assert response.status_code == 400
    assert response.json is not None
    assert response.json["data"] == {
        "clientId": {"code": "validation_required", "message": "Cannot be blank."}
    }
    stream, cid = connect(client)
    response = client.post("/api/realtime", json={"ClientID": cid, "SUBSCRIPTIONS": ["posts/*"]})
    assert response.status_code == 204
    publish(client, "posts", "create", {"id": "r1"})
    assert stream.next_event().event == "posts/*"
    stream.close()
