"""Stream caps (issue #10): ``REALTIME_MAX_CLIENTS`` per worker and
``REALTIME_MAX_CLIENTS_PER_IP`` per client address answer 429 with PocketBase's
JSON body; everyone else keeps being served, and a closed stream frees its place."""

from __future__ import annotations

import typing as t

import pytest
from flask import Flask
from flask.testing import FlaskClient

from realtime_flask.testing import TestEventStream
from realtime_flask.web.app import create_app
from realtime_flask.web.extension import get_state
from tests.support.env import TEST_CONFIG

TOO_MANY: t.Final = {"status": 429, "message": "Too Many Requests.", "data": {}}


@pytest.fixture
def app() -> t.Iterator[Flask]:
    app = create_app({**TEST_CONFIG, "REALTIME_MAX_CLIENTS": 5, "REALTIME_MAX_CLIENTS_PER_IP": 2})
    yield app
    get_state(app).shutdown()


def from_addr(app: Flask, addr: str) -> FlaskClient:
    client = app.test_client()
    client.environ_base = {"REMOTE_ADDR": addr}
    return client


def open_stream(client: FlaskClient) -> t.Any:
    """A TestEventStream once PB_CONNECT arrived, else the refusing response."""
    response = client.get("/api/realtime", buffered=False)
    if response.status_code != 200:
        return response
    stream = TestEventStream(response)
    assert stream.next_event().event == "PB_CONNECT"
    return stream


def test_a_stream_past_the_per_address_cap_answers_429_and_others_are_served(app: Flask) -> None:
    crowd = from_addr(app, "10.0.0.1")
    held = [open_stream(crowd) for _ in range(2)]
    refused = open_stream(crowd)
    assert refused.status_code == 429 and refused.get_json() == TOO_MANY
    other = open_stream(from_addr(app, "10.0.0.2"))  # another address still gets one
    assert isinstance(other, TestEventStream)
    assert crowd.get("/api/health").status_code == 200  # and the capped address its requests
    held[0].close()
    assert get_state(app).manager.get_client_count() == 2
    again = open_stream(crowd)  # a closed stream frees its place
    assert isinstance(again, TestEventStream)
    for stream in (held[1], other, again):
        stream.close()


def test_a_stream_past_the_worker_cap_answers_429(app: Flask) -> None:
    streams = [open_stream(from_addr(app, f"10.0.1.{n}")) for n in range(5)]
    assert all(isinstance(s, TestEventStream) for s in streams)
    refused = open_stream(from_addr(app, "10.0.1.99"))
    assert refused.status_code == 429 and refused.get_json() == TOO_MANY
    assert get_state(app).manager.get_client_count() == 5
    streams[0].close()
    last = open_stream(from_addr(app, "10.0.1.99"))
    assert isinstance(last, TestEventStream)
    for stream in [*streams[1:], last]:
        stream.close()


def test_no_cap_by_default() -> None:
    app = create_app(TEST_CONFIG)
    try:
        client = from_addr(app, "10.0.2.1")
        streams = [open_stream(client) for _ in range(20)]
        assert all(isinstance(s, TestEventStream) for s in streams)
        for stream in streams:
            stream.close()
    finally:
        get_state(app).shutdown()
