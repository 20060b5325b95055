"""Exact-bytes tests of the SSE writer and tests of the WHATWG parser used to check it."""

from __future__ import annotations

import itertools
import json
import re

import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from realtime_flask.core import sse
from realtime_flask.core.sse import JSONValue
from realtime_flask.core.sse import ServerSentEvent
from realtime_flask.core.sse import SSEMessage
from realtime_flask.core.sse import SSEParser
from realtime_flask.errors import SSEFormatError

CLIENT_ID = "Iy3JEsxCnthc3Ac9neolKGBnoSMgXi9W68gCbsyY"
RECORD_PAYLOAD = {
    "record": {
        "collectionId": "pbc_1125843985",
        "collectionName": "posts",
        "id": "rqx23rjaqje0ipy",
        "owner": "026j19mo0wmjjpx",
        "title": "hello",
    },
    "action": "create",
}


# --- writer: exact bytes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        pytest.param(
            SSEMessage(data={"clientId": "abc"}, event="PB_CONNECT", id="abc"),
            b'id:abc\nevent:PB_CONNECT\ndata:{"clientId":"abc"}\n\n',
            id="pb-connect",
        ),
        pytest.param(
            SSEMessage(data=RECORD_PAYLOAD, event="posts/*", id=CLIENT_ID),
            b"id:Iy3JEsxCnthc3Ac9neolKGBnoSMgXi9W68gCbsyY\n"
            b"event:posts/*\n"
            b'data:{"record":{"collectionId":"pbc_1125843985","collectionName":"posts",'
            b'"id":"rqx23rjaqje0ipy","owner":"026j19mo0wmjjpx","title":"hello"},'
            b'"action":"create"}\n\n',
            id="record-frame",
        ),
        pytest.param(SSEMessage(data="x"), b"data:x\n\n", id="data-only"),
        pytest.param(SSEMessage(data="x", event="ping"), b"event:ping\ndata:x\n\n", id="event"),
        pytest.param(SSEMessage(data="x", id="7"), b"id:7\ndata:x\n\n", id="id"),
        pytest.param(SSEMessage(data="x", retry=3000), b"retry:3000\ndata:x\n\n", id="retry"),
        pytest.param(SSEMessage(data="x", retry=0), b"retry:0\ndata:x\n\n", id="retry-zero"),
        pytest.param(
            SSEMessage(data=1, event="e", id="i", retry=5),
            b"id:i\nevent:e\nretry:5\ndata:1\n\n",
            id="field-order",
        ),
        pytest.param(SSEMessage(data="x", event=""), b"event:\ndata:x\n\n", id="empty-event"),
        pytest.param(SSEMessage(data="x", id=""), b"id:\ndata:x\n\n", id="empty-id"),
        pytest.param(
            SSEMessage(data="x", event="posts/*?options=%7B%22a%22%7D"),
            b"event:posts/*?options=%7B%22a%22%7D\ndata:x\n\n",
            id="event-kept-verbatim",
        ),
        pytest.param(SSEMessage(data="a\nb"), b"data:a\ndata:b\n\n", id="lf"),
        pytest.param(SSEMessage(data="a\r\nb"), b"data:a\ndata:b\n\n", id="crlf"),
        pytest.param(SSEMessage(data="a\rb"), b"data:a\ndata:b\n\n", id="lone-cr"),
        pytest.param(SSEMessage(data="a\n\rb"), b"data:a\ndata:\ndata:b\n\n", id="lf-then-cr"),
        pytest.param(SSEMessage(data="a\r\r\nb"), b"data:a\ndata:\ndata:b\n\n", id="cr-crlf"),
        pytest.param(SSEMessage(data="a\n"), b"data:a\ndata:\n\n", id="trailing-newline"),
        pytest.param(SSEMessage(data=""), b"data:\n\n", id="empty-string"),
        pytest.param(SSEMessage(data="\n"), b"data:\ndata:\n\n", id="only-newline"),
        pytest.param(
            SSEMessage(data="a\u2028b\x85c"), "data:a\u2028b\x85c\n\n".encode(), id="u2028"
        ),
        pytest.param(SSEMessage(data="a"), b"data:a\n\n", id="str-as-text"),
        pytest.param(SSEMessage(data=["a"]), b'data:["a"]\n\n', id="list-as-json"),
        pytest.param(SSEMessage(data=None), b"data:null\n\n", id="none-as-json"),
        pytest.param(SSEMessage(data=True), b"data:true\n\n", id="bool-as-json"),
        pytest.param(SSEMessage(data={"a": "x\ny"}), b'data:{"a":"x\\ny"}\n\n', id="json-one-line"),
        pytest.param(
            SSEMessage(data="h\xe9\u6f22\U0001f600"),
            "data:h\xe9\u6f22\U0001f600\n\n".encode(),
            id="utf8-text",
        ),
        pytest.param(
            SSEMessage(data={"t": "\xe9\U0001f600"}),
            'data:{"t":"\xe9\U0001f600"}\n\n'.encode(),
            id="utf8-json",
        ),
        pytest.param(
            SSEMessage(data={"t": "\ud800"}), b'data:{"t":"\\ud800"}\n\n', id="lone-surrogate"
        ),
        pytest.param(
            SSEMessage(data={"t": "\xe9\ud800"}),
            b'data:{"t":"\\u00e9\\ud800"}\n\n',
            id="lone-surrogate-ascii-fallback",
        ),
        pytest.param(SSEMessage(data=" x"), b"data:  x\n\n", id="leading-space-data"),
        pytest.param(SSEMessage(data="a\n  b"), b"data:a\ndata:   b\n\n", id="leading-spaces-line"),
        pytest.param(
            SSEMessage(data="x", event=" e"), b"event:  e\ndata:x\n\n", id="leading-space-event"
        ),
        pytest.param(SSEMessage(data="x", id=" 1"), b"id:  1\ndata:x\n\n", id="leading-space-id"),
        pytest.param(SSEMessage(data="a\0b"), b"data:a\0b\n\n", id="nul-in-data"),
        pytest.param(SSEMessage(data="x:y"), b"data:x:y\n\n", id="colon-in-data"),
    ],
)
def test_format_sse_message(message: SSEMessage, expected: bytes) -> None:
    assert sse.format_sse_message(message) == expected


@pytest.mark.parametrize(
    ("comment", "expected"),
    [
        ("ping", b":ping\n\n"),
        ("", b":\n\n"),
        (" ping", b": ping\n\n"),
        ("a\nb", b":a\n:b\n\n"),
        ("a\r\nb\rc", b":a\n:b\n:c\n\n"),
        ("a\n", b":a\n:\n\n"),
    ],
)
def test_format_sse_comment(comment: str, expected: bytes) -> None:
    assert sse.format_sse_comment(comment) == expected


def test_format_sse_comment_default() -> None:
    assert sse.format_sse_comment() == b":\n\n"


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("data", "x", b"data:x\n"),
        ("data", "", b"data:\n"),
        ("data", " x", b"data:  x\n"),
        ("data", "x ", b"data:x \n"),
        ("event", "\xe9", "event:\xe9\n".encode()),
        ("data", "\0", b"data:\0\n"),
    ],
)
def test_format_field(name: str, value: str, expected: bytes) -> None:
    assert sse.format_field(name, value) == expected


@pytest.mark.parametrize("value", ["a\nb", "a\rb", "\r\n", "a\n"])
def test_format_field_rejects_line_breaks(value: str) -> None:
    with pytest.raises(SSEFormatError, match="newline"):
        sse.format_field("data", value)


@pytest.mark.parametrize("name", ["", "a:b", "a\nb", "a\rb"])
def test_format_field_rejects_bad_names(name: str) -> None:
    with pytest.raises(SSEFormatError):
        sse.format_field(name, "x")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("", b"data:\n"),
        ("a\n", b"data:a\ndata:\n"),
        ("a\r\nb", b"data:a\ndata:b\n"),
        ({"b": 1, "a": [1, 2.5, None]}, b'data:{"b":1,"a":[1,2.5,null]}\n'),
        ('"a"', b'data:"a"\n'),
        (["a"], b'data:["a"]\n'),
    ],
)
def test_format_data(data: object, expected: bytes) -> None:
    assert sse.format_data(data) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"clientId": "abc"}, '{"clientId":"abc"}'),
        ([1, {"a": None}], '[1,{"a":null}]'),
        ("h\xe9", '"h\xe9"'),
        ("\ud800", '"\\ud800"'),
        ("\x00\x1f\n\r\u2028", '"\\u0000\\u001f\\n\\r\u2028"'),
        (1.5, "1.5"),
    ],
)
def test_encode_json(value: object, expected: str) -> None:
    assert sse.encode_json(value) == expected


@pytest.mark.parametrize("value", [float("nan"), float("inf"), [float("-inf")]])
def test_encode_json_rejects_non_finite(value: object) -> None:
    with pytest.raises(SSEFormatError):
        sse.encode_json(value)


def test_encode_json_unserialisable_is_type_error() -> None:
    with pytest.raises(TypeError):
        sse.encode_json(object())


def test_format_id_line() -> None:
    assert sse.format_id_line("abc") == b"id:abc\n"
    assert sse.format_id_line(" a") == b"id:  a\n"


def test_format_event_body() -> None:
    body = sse.format_event_body("PB_CONNECT", {"clientId": "abc"})
    assert body == b'event:PB_CONNECT\ndata:{"clientId":"abc"}\n\n'
    assert sse.format_id_line("abc") + body == sse.format_sse_message(
        SSEMessage(data={"clientId": "abc"}, event="PB_CONNECT", id="abc")
    )


# --- writer: rejected values -----------------------------------------------------------------

BAD_NAMES = ["a\nb", "a\rb", "a\r\nb", "a\0b", "\n", "x\r"]


@pytest.mark.parametrize("bad", BAD_NAMES)
def test_message_rejects_bad_event(bad: str) -> None:
    with pytest.raises(SSEFormatError, match="newline or NUL") as info:
        SSEMessage(data="x", event=bad)
    assert repr(bad) in str(info.value)


@pytest.mark.parametrize("bad", BAD_NAMES)
def test_message_rejects_bad_id(bad: str) -> None:
    with pytest.raises(SSEFormatError, match="newline or NUL") as info:
        SSEMessage(data="x", id=bad)
    assert repr(bad) in str(info.value)


@pytest.mark.parametrize("bad", BAD_NAMES)
def test_format_id_line_rejects(bad: str) -> None:
    with pytest.raises(SSEFormatError, match="newline or NUL"):
        sse.format_id_line(bad)


@pytest.mark.parametrize("bad", BAD_NAMES)
def test_format_event_body_rejects(bad: str) -> None:
    with pytest.raises(SSEFormatError, match="newline or NUL"):
        sse.format_event_body(bad, "x")


@pytest.mark.parametrize("bad", [-1, True, False, "5", 1.0])
def test_message_rejects_bad_retry(bad: object) -> None:
    with pytest.raises(SSEFormatError, match="retry"):
        SSEMessage(data="x", retry=bad)  # type: ignore[arg-type]


def test_error_messages_are_lowercase() -> None:
    with pytest.raises(SSEFormatError) as info:
        SSEMessage(data="x", event="A\nB")
    assert str(info.value).startswith("sse event must not contain a newline or NUL")


def test_message_is_frozen() -> None:
    message = SSEMessage(data="x")
    with pytest.raises(AttributeError):
        message.event = "y"  # type: ignore[misc]


# --- parser ----------------------------------------------------------------------------------


def parse(*chunks: bytes) -> list[ServerSentEvent]:
    parser = SSEParser()
    events: list[ServerSentEvent] = []
    for chunk in chunks:
        events.extend(parser.feed(chunk))
    return events


def ev(
    data: str, event: str = "message", id: str = "", retry: int | None = None
) -> ServerSentEvent:
    return ServerSentEvent(event=event, data=data, id=id, retry=retry)


@pytest.mark.parametrize(
    ("stream", "expected"),
    [
        pytest.param(b"data:a\n\n", [ev("a")], id="lf"),
        pytest.param(b"data:a\r\n\r\n", [ev("a")], id="crlf"),
        pytest.param(b"data:a\r\r", [ev("a")], id="cr"),
        pytest.param(b"data:a\r\ndata:b\rdata:c\n\r\n", [ev("a\nb\nc")], id="mixed"),
        pytest.param(b"data: a\n\n", [ev("a")], id="one-space-stripped"),
        pytest.param(b"data:  a\n\n", [ev(" a")], id="only-one-space-stripped"),
        pytest.param(b"data:\ta\n\n", [ev("\ta")], id="tab-kept"),
        pytest.param(b"data\n\n", [ev("")], id="no-colon-empty-value"),
        pytest.param(b"data\ndata\n\n", [ev("\n")], id="no-colon-twice"),
        pytest.param(b"data:\n\n", [ev("")], id="empty-data-dispatched"),
        pytest.param(b"event:e\n\n", [], id="no-data-not-dispatched"),
        pytest.param(b"event:e\n\ndata:x\n\n", [ev("x")], id="type-reset-without-data"),
        pytest.param(b"\n\n\n", [], id="blank-lines"),
        pytest.param(b"event:e\ndata:x\n\ndata:y\n\n", [ev("x", "e"), ev("y")], id="type-reset"),
        pytest.param(b"event:\ndata:x\n\n", [ev("x")], id="empty-event-is-message"),
        pytest.param(
            b"id:1\ndata:x\n\ndata:y\n\n", [ev("x", id="1"), ev("y", id="1")], id="id-kept"
        ),
        pytest.param(
            b"id:1\ndata:x\n\nid\ndata:y\n\n", [ev("x", id="1"), ev("y")], id="id-cleared"
        ),
        pytest.param(
            b"id:1\ndata:x\n\nid:a\0b\ndata:y\n\n",
            [ev("x", id="1"), ev("y", id="1")],
            id="id-nul-ignored",
        ),
        pytest.param(b"data:x\nid:2\n\n", [ev("x", id="2")], id="id-after-data"),
        pytest.param(b"retry:100\ndata:x\n\n", [ev("x", retry=100)], id="retry"),
        pytest.param(b"retry: 100\ndata:x\n\n", [ev("x", retry=100)], id="retry-space"),
        pytest.param(b"retry:1a\ndata:x\n\n", [ev("x")], id="retry-non-digit"),
        pytest.param(b"retry:-1\ndata:x\n\n", [ev("x")], id="retry-negative"),
        pytest.param(b"retry:\ndata:x\n\n", [ev("x")], id="retry-empty"),
        pytest.param("retry:\u0661\ndata:x\n\n".encode(), [ev("x")], id="retry-non-ascii-digit"),
        pytest.param(
            b"retry:5\ndata:x\n\ndata:y\n\n", [ev("x", retry=5), ev("y")], id="retry-per-block"
        ),
        pytest.param(b"foo:bar\ndata:x\n\n", [ev("x")], id="unknown-field"),
        pytest.param(b"Data:x\n\n", [], id="field-names-case-sensitive"),
        pytest.param(b"data :x\n\n", [], id="space-before-colon-is-other-field"),
        pytest.param(b":comment\ndata:x\n\n", [ev("x")], id="comment-ignored"),
        pytest.param(b"data:a:b\n\n", [ev("a:b")], id="colon-in-value"),
        pytest.param(b"data:x\n", [], id="incomplete-block"),
        pytest.param(b"data:x", [], id="incomplete-line"),
        pytest.param(b"\xef\xbb\xbfdata:x\n\n", [ev("x")], id="bom-stripped"),
        pytest.param(b"\xef\xbb\xbf\xef\xbb\xbfdata:x\n\n", [], id="only-one-bom-stripped"),
        pytest.param(b"data:\xef\xbb\xbfx\n\n", [ev("\ufeffx")], id="bom-mid-line-kept"),
        pytest.param(b"data:\xff\n\n", [ev("\ufffd")], id="invalid-utf8-replaced"),
        pytest.param(b"data:a\0b\n\n", [ev("a\0b")], id="nul-in-data"),
    ],
)
def test_parser(stream: bytes, expected: list[ServerSentEvent]) -> None:
    assert parse(stream) == expected
    assert parse(*[bytes([b]) for b in stream]) == expected


def test_parser_cr_split_across_chunks() -> None:
    parser = SSEParser()
    assert parser.feed(b"data:a\r") == []
    # The CR already ended the line; the LF that follows belongs to it.
    assert parser.feed(b"\n") == []
    assert parser.feed(b"\r") == [ev("a")]
    assert parser.feed(b"\ndata:b\r") == []
    assert parser.feed(b"\r") == [ev("b")]


def test_parser_cr_then_empty_chunk_then_lf() -> None:
    parser = SSEParser()
    assert parser.feed(b"data:a\r") == []
    assert parser.feed(b"") == []
    assert parser.feed(b"\n\n") == [ev("a")]


def test_parser_cr_and_multibyte_splits() -> None:
    parser = SSEParser()
    assert parser.feed(b"data:\xc3") == []
    assert parser.feed(b"\xa9\r") == []
    assert parser.feed(b"\ndata:\xe2") == []
    assert parser.feed(b"\x82") == []
    assert parser.feed(b"\xac\r") == []
    assert parser.feed(b"") == []
    assert parser.feed(b"\n\r") == [ev("\xe9\n\u20ac")]
    assert parser.feed(b"\n") == []


def test_parser_bom_only_at_stream_start() -> None:
    parser = SSEParser()
    assert parser.feed(b"data:x\n\n") == [ev("x")]
    assert parser.feed(b"\xef\xbb\xbfdata:y\n\n") == []


def test_parser_bom_split_across_chunks() -> None:
    assert parse(b"\xef", b"\xbb", b"\xbfdata:x\n\n") == [ev("x")]


def test_parser_multibyte_split() -> None:
    text = "data:h\xe9 \u6f22 \U0001f600\n\n".encode()
    for cut in range(len(text) + 1):
        assert parse(text[:cut], text[cut:]) == [ev("h\xe9 \u6f22 \U0001f600")]


def test_parser_comment_count() -> None:
    parser = SSEParser()
    assert parser.feed(b":ping\n\n") == []
    assert parser.comment_count == 1
    assert parser.feed(b":\n: x\ndata:y\n\n") == [ev("y")]
    assert parser.comment_count == 3
    assert parser.feed(sse.format_sse_comment("a\nb")) == []
    assert parser.comment_count == 5


def test_parser_last_event_id_and_retry() -> None:
    parser = SSEParser()
    assert parser.last_event_id == ""
    assert parser.retry is None
    parser.feed(b"id:1\nretry:10\n")
    assert parser.last_event_id == ""  # set only when the block is dispatched
    assert parser.retry == 10  # reconnection time is set at once
    parser.feed(b"\n")
    assert parser.last_event_id == "1"
    parser.feed(b"id:2\nretry:x\n\n")  # no data, but the id still becomes current
    assert parser.last_event_id == "2"
    assert parser.retry == 10
    assert parser.feed(b"data:z\n\n") == [ev("z", id="2")]


def test_parser_pocketbase_stream() -> None:
    stream = b'id:abc\nevent:PB_CONNECT\ndata:{"clientId":"abc"}\n\n' + sse.format_sse_message(
        SSEMessage(data=RECORD_PAYLOAD, event="posts/*", id="abc")
    )
    events = parse(stream)
    assert [(e.event, e.id) for e in events] == [("PB_CONNECT", "abc"), ("posts/*", "abc")]
    assert json.loads(events[0].data) == {"clientId": "abc"}
    assert json.loads(events[1].data) == RECORD_PAYLOAD


def test_parser_byte_at_a_time_matches_whole() -> None:
    stream = (
        b"\xef\xbb\xbf:hi\r\nid:1\r\nevent:e\r\ndata:a\rdata: b\n\r\n"
        + "data:\u20ac\U0001f600\r\r".encode()
        + b"retry:7\ndata\n\n"
    )
    whole = SSEParser()
    expected = whole.feed(stream)
    assert expected == [
        ev("a\nb", "e", "1"),
        ev("\u20ac\U0001f600", id="1"),
        ev("", id="1", retry=7),
    ]
    single = SSEParser()
    got = [event for i in range(len(stream)) for event in single.feed(stream[i : i + 1])]
    assert got == expected
    assert single.comment_count == whole.comment_count == 1
    assert single.retry == whole.retry == 7


# --- properties ------------------------------------------------------------------------------

json_values: st.SearchStrategy[JSONValue] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=12,
)
names = st.text().filter(lambda s: not re.search(r"[\r\n\0]", s))
payloads: st.SearchStrategy[object] = st.one_of(
    st.text(),
    st.text(alphabet=st.sampled_from("ab \r\n:")),
    json_values.filter(lambda v: not isinstance(v, str)),
)
messages = st.builds(
    SSEMessage,
    data=payloads,
    event=st.none() | names,
    id=st.none() | names,
    retry=st.none() | st.integers(min_value=0),
)


def split_randomly(data: st.DataObject, raw: bytes) -> list[bytes]:
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=8)))
    bounds = [0, *cuts, len(raw)]
    return [raw[a:b] for a, b in itertools.pairwise(bounds)]


@settings(deadline=None)
@given(message=messages, data=st.data())
def test_round_trip(message: SSEMessage, data: st.DataObject) -> None:
    raw = sse.format_sse_message(message)
    for chunks in ([raw], split_randomly(data, raw)):
        parser = SSEParser()
        events = [event for chunk in chunks for event in parser.feed(chunk)]
        assert len(events) == 1
        (got,) = events
        assert got.event == (message.event or "message")
        assert got.id == (message.id if message.id is not None else "")
        assert got.retry == message.retry
        if isinstance(message.data, str):
            assert got.data == re.sub(r"\r\n|\r", "\n", message.data)
        else:
            assert "\n" not in got.data
            assert json.loads(got.data) == message.data


@settings(deadline=None)
@given(id=names, event=names, data=payloads)
def test_id_line_plus_body_is_message(id: str, event: str, data: object) -> None:
    assert sse.format_id_line(id) + sse.format_event_body(event, data) == (
        sse.format_sse_message(SSEMessage(data=data, event=event, id=id))
    )
