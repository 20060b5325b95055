"""A graceful stop (issue #10): drain the streams, finish the requests, then close.

``RealtimeState.drain`` closes every stream with a ``retry:`` drawn from
``REALTIME_DRAIN_WINDOW`` and turns new streams away with only a ``retry:``;
the broker stays open, so a write served meanwhile still reaches the log.
``close`` comes last; a write after it answers 503 and changes nothing.
"""

from __future__ import annotations

import random
import typing as t

from flask import Flask

from realtime_flask.core import sse
from realtime_flask.core.events import Event
from realtime_flask.engine.broker import MemoryBroker
from realtime_flask.engine.hub import MIN_DRAIN_RETRY_MS
from realtime_flask.engine.hub import drain_retry_ms
from realtime_flask.testing import TestEventStream
from realtime_flask.web.app import create_app
from realtime_flask.web.extension import get_state
from tests.support.env import TEST_CONFIG

WINDOW = 2.0
STREAMS = 40


def make_app() -> Flask:
    return create_app({**TEST_CONFIG, "REALTIME_DRAIN_WINDOW": WINDOW})


def open_stream(app: Flask) -> TestEventStream:
    stream = TestEventStream(app.test_client().get("/api/realtime", buffered=False))
    assert stream.next_event().event == "PB_CONNECT"
    return stream


def test_a_drain_closes_every_stream_with_a_retry_spread_over_the_window() -> None:
    app = make_app()
    state = get_state(app)
    streams = [open_stream(app) for _ in range(STREAMS)]
    assert state.drain() == STREAMS
    retries = []
    for stream in streams:
        assert stream.wait_closed() == []  # a retry hint is not an event
        retries.append(stream.retry)
    assert all(r is not None and MIN_DRAIN_RETRY_MS <= r <= WINDOW * 1000 for r in retries)
    assert len(set(retries)) > STREAMS // 2  # spread, not one value for all
    assert state.manager.client_ids() == []
    state.close()


def test_a_stream_request_during_a_drain_gets_only_a_retry_and_takes_nothing() -> None:
    app = make_app()
    state = get_state(app)
    state.drain()
    response = app.test_client().get("/api/realtime", buffered=False)
    assert response.status_code == 200
    stream = TestEventStream(response)
    assert stream.wait_closed() == []
    assert stream.retry is not None and MIN_DRAIN_RETRY_MS <= stream.retry <= WINDOW * 1000
    assert state.manager.client_ids() == []
    state.close()


def test_writes_during_a_drain_still_publish_and_after_close_answer_503() -> None:
    app = make_app()
    state = get_state(app)
    client = app.test_client()
    state.drain()
    during = client.post("/api/collections/posts/records", json={"title": "while draining"})
    assert during.status_code == 200
    assert isinstance(state.broker, MemoryBroker)
    logged = state.broker.history(None, 100)  # the log the streams are fed from
    assert [t.cast(Event, e).record["title"] for e in logged or []] == ["while draining"]
    state.close()
    after = client.post("/api/collections/posts/records", json={"title": "after close"})
    assert after.status_code == 503
    assert after.get_json() == {
        "status": 503,
        "message": "The realtime broker is unavailable.",
        "data": {},
    }
    listed = client.get("/api/collections/posts/records").get_json()
    assert [item["title"] for item in listed["items"]] == ["while draining"]
    first = listed["items"][0]["id"]
    assert (
        client.patch(f"/api/collections/posts/records/{first}", json={"title": "x"}).status_code
        == 503
    )
    assert client.delete(f"/api/collections/posts/records/{first}").status_code == 503
    assert (
        client.get(f"/api/collections/posts/records/{first}").get_json()["title"]
        == "while draining"
    )


def test_drain_retries_are_uniform_over_the_window() -> None:
    rng = random.Random(7)
    values = [drain_retry_ms(5.0, rng) for _ in range(2000)]
    assert min(values) >= MIN_DRAIN_RETRY_MS and max(values) <= 5000
    assert sum(v < 2625 for v in values) in range(900, 1101)  # about half below the middle
    assert drain_retry_ms(0.0, rng) == MIN_DRAIN_RETRY_MS  # a zero window still waits a little


def test_format_retry_is_one_field_and_no_event() -> None:
    assert sse.format_retry(1500) == b"retry:1500\n\n"
    parser = sse.SSEParser()
    assert parser.feed(sse.format_retry(1500)) == []
    assert parser.retry == 1500
