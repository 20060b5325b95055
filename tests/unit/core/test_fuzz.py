"""Fuzzing the pure parsers: anything a client can send gives a 4xx error or a value, never a crash.

Each property runs ``FUZZ_EXAMPLES`` examples (10,000 by default; the
``RF_FUZZ_EXAMPLES`` environment variable changes it for a quick local run).
The only exceptions allowed are the library's own 4xx errors, which the API
turns into PocketBase's JSON body.
"""

from __future__ import annotations

import os
import typing as t

import pytest
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from realtime_flask.core import sse
from realtime_flask.core.rules import RuleError
from realtime_flask.core.rules import compile_rule
from realtime_flask.core.rules import parse
from realtime_flask.core.schema import load_schema_file
from realtime_flask.core.topics import parse_topic
from realtime_flask.core.topics import validate_subscribe_request
from realtime_flask.errors import RealtimeError
from realtime_flask.errors import SSEFormatError
from tests.support.env import SCHEMA_FIXTURE

FUZZ_EXAMPLES: t.Final = int(os.environ.get("RF_FUZZ_EXAMPLES", "10000"))
#: 10,000 examples of nested JSON take about a minute on a slow machine.
pytestmark = pytest.mark.timeout(600)
FUZZ = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

SCHEMA: t.Final = load_schema_file(SCHEMA_FIXTURE)

#: JSON values as a client can send them, nesting included.
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64)
    | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=12,
)

#: Text built from the filter language's own pieces, so the parser gets past its first token.
filter_text = st.lists(
    st.sampled_from(
        [
            "title",
            "owner",
            "owner.name",
            "@request.auth.id",
            "@request.query.x",
            "@collection.posts.title",
            "id",
            "created",
            "n",
            "tags",
            "tags:each",
            "title:lower",
            "=",
            "!=",
            "~",
            "!~",
            ">",
            ">=",
            "<",
            "<=",
            "?=",
            "?~",
            "&&",
            "||",
            "(",
            ")",
            "'x'",
            '"y"',
            "1",
            "-2.5",
            "true",
            "false",
            "null",
            "''",
            " ",
            "@now",
            "@todayStart",
            "strftime('%Y', created)",
            ",",
            "geoDistance(1,2,3,4)",
            "\\",
            "'",
            ":",
        ]
    ),
    max_size=14,
).map("".join)


@FUZZ
@given(st.text(max_size=200))
def test_topics_of_any_text_parse(raw: str) -> None:
    assert parse_topic(raw).raw == raw


@FUZZ
@given(
    st.dictionaries(
        st.sampled_from(["clientId", "subscriptions", "clientid", "SUBSCRIPTIONS", "x"]),
        json_values,
        max_size=3,
    )
)
def test_subscribe_bodies_of_any_shape_bind_or_answer_4xx(body: dict[str, object]) -> None:
    try:
        validate_subscribe_request(body)
    except RealtimeError as exc:
        assert 400 <= exc.status_hint < 500, exc


@FUZZ
@given(st.one_of(filter_text, st.text(max_size=120)))
def test_filters_of_any_text_compile_or_answer_400(source: str) -> None:
    posts = SCHEMA.get("posts")
    assert posts is not None
    try:
        parse(source)
        compile_rule(source, posts, SCHEMA, client_filter=True)
    except RuleError as exc:
        assert exc.status_hint == 400


@FUZZ
@given(
    data=st.one_of(st.text(), json_values),
    event=st.none() | st.text(max_size=20),
    event_id=st.none() | st.text(max_size=20),
    cut=st.integers(0, 10_000),
)
def test_a_frame_is_one_event_to_a_whatwg_parser_or_refused(
    data: object, event: str | None, event_id: str | None, cut: int
) -> None:
    try:
        frame = sse.format_sse_message(sse.SSEMessage(data=data, event=event, id=event_id))
    except SSEFormatError:
        return  # refused at construction: nothing reaches the stream
    parser = sse.SSEParser()
    cut %= len(frame) + 1
    events = parser.feed(frame[:cut]) + parser.feed(frame[cut:])
    assert len(events) == 1, (frame, events)
    if isinstance(data, str):
        assert events[0].data == data.replace("\r\n", "\n").replace("\r", "\n")
    if event:
        assert events[0].event == event


@FUZZ
@given(st.binary(max_size=300), st.integers(0, 300))
def test_the_sse_parser_takes_any_bytes(stream: bytes, cut: int) -> None:
    parser = sse.SSEParser()
    parser.feed(stream[:cut])
    parser.feed(stream[cut:])
