"""One CORS policy (``web/api/cors.py``) on every blueprint, as PocketBase answers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask
from werkzeug.test import TestResponse

from realtime_flask.web.api.cors import CORS_METHODS
from realtime_flask.web.app import create_app
from realtime_flask.web.state import get_state
from tests.support.env import TEST_CONFIG

ORIGIN = {"Origin": "http://app.test"}
PREFLIGHT = {
    **ORIGIN,
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization,content-type",
}
#: One route of each blueprint: realtime, records, publish.
PATHS = ["/api/realtime", "/api/collections/posts/records", "/api/realtime/publish"]


def make_app(**config: object) -> Flask:
    return create_app({**TEST_CONFIG, **config})


@pytest.fixture
def app() -> Iterator[Flask]:
    app = make_app()
    yield app
    get_state(app).shutdown()


def cors_headers(response: TestResponse) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("Access-Control-")}


@pytest.mark.parametrize("path", PATHS)
def test_preflight_is_the_same_on_every_blueprint(app: Flask, path: str) -> None:
    response = app.test_client().options(path, headers=PREFLIGHT)
    assert response.status_code == 204 and response.data == b""
    assert cors_headers(response) == {
        "Access-Control-Allow-Origin": "*",
        "Access-Control-Allow-Methods": CORS_METHODS,
        "Access-Control-Allow-Headers": "authorization,content-type",
    }
    assert CORS_METHODS == "GET,HEAD,PUT,PATCH,POST,DELETE"  # PocketBase's
    assert "Content-Type" not in response.headers and "Allow" not in response.headers
    assert {"Origin", "Access-Control-Request-Method", "Access-Control-Request-Headers"} <= set(
        response.vary
    )


@pytest.mark.parametrize("path", PATHS)
def test_preflight_without_an_origin_is_an_empty_204(app: Flask, path: str) -> None:
    response = app.test_client().options(path)
    assert response.status_code == 204 and response.data == b""
    assert cors_headers(response) == {}


@pytest.mark.parametrize("path", PATHS)
def test_a_request_with_an_origin_is_allowed(app: Flask, path: str) -> None:
    # a POST with no body: answered (an error on realtime and publish), with CORS either way
    response = app.test_client().post(path, headers=ORIGIN)
    assert response.status_code < 500
    assert cors_headers(response) == {"Access-Control-Allow-Origin": "*"}
    assert "Origin" in response.vary
    without = app.test_client().post(path)
    assert cors_headers(without) == {}
    assert "Origin" in without.vary


def test_the_event_stream_carries_the_same_headers(app: Flask) -> None:
    response = app.test_client().get("/api/realtime", headers=ORIGIN, buffered=False)
    try:
        assert response.status_code == 200
        assert cors_headers(response) == {"Access-Control-Allow-Origin": "*"}
        assert "Origin" in response.vary
    finally:
        response.close()


@pytest.mark.parametrize("path", PATHS)
def test_the_configured_origin_is_sent(path: str) -> None:
    app = make_app(REALTIME_CORS_ORIGIN="https://app.example")
    try:
        response = app.test_client().options(path, headers=PREFLIGHT)
        assert response.headers["Access-Control-Allow-Origin"] == "https://app.example"
    finally:
        get_state(app).shutdown()


@pytest.mark.parametrize("path", PATHS)
def test_an_empty_origin_turns_cors_off(path: str) -> None:
    app = make_app(REALTIME_CORS_ORIGIN="")
    try:
        response = app.test_client().options(path, headers=PREFLIGHT)
        assert response.status_code == 200  # Flask's own OPTIONS answer
        assert cors_headers(response) == {}
    finally:
        get_state(app).shutdown()
