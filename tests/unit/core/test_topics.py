"""realtime_flask.core.topics: topic parsing, matching and ``POST /api/realtime`` validation."""

from __future__ import annotations

import json
import typing as t
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from realtime_flask.core.topics import EMPTY_OPTIONS
from realtime_flask.core.topics import MAX_CLIENT_ID_LENGTH
from realtime_flask.core.topics import MAX_SUBSCRIPTIONS
from realtime_flask.core.topics import MAX_TOPIC_LENGTH
from realtime_flask.core.topics import FrozenStrMap
from realtime_flask.core.topics import Subscription
from realtime_flask.core.topics import SubscriptionOptions
from realtime_flask.core.topics import parse_topic
from realtime_flask.core.topics import validate_subscribe_request
from realtime_flask.errors import GENERIC_400
from realtime_flask.errors import BadRequest
from realtime_flask.errors import ValidationFailed

CLIENT_ID = "Iy3JEsxCnthc3Ac9neolKGBnoSMgXi9W68gCbsyY"


def encode_uri_component(text: str) -> str:
    """JavaScript's ``encodeURIComponent`` (what the JS SDK uses for ``options``)."""
    return quote(text, safe="-_.!~*'()")


def sdk_topic(topic: str, options: dict[str, object]) -> str:
    """The topic string js-sdk ``RealtimeService.subscribe`` sends."""
    sep = "&" if "?" in topic else "?"
    return f"{topic}{sep}options={encode_uri_component(json.dumps(options))}"


def options_of(raw: str) -> tuple[dict[str, str], dict[str, str]]:
    options = parse_topic(raw).options
    return options.query_dict(), options.headers_dict()


# --- constants ---------------------------------------------------------------------------------


def test_limits_are_pocketbase_values() -> None:
    assert (MAX_CLIENT_ID_LENGTH, MAX_SUBSCRIPTIONS, MAX_TOPIC_LENGTH) == (255, 1000, 2500)


# --- parsing: collection / record part ---------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "collection", "record_id"),
    [
        pytest.param("posts/*", "posts", None, id="wildcard"),
        pytest.param("posts/abc", "posts", "abc", id="record"),
        pytest.param("posts", "posts", None, id="bare-collection"),
        pytest.param("pbc_1125843985/*", "pbc_1125843985", None, id="collection-id-wildcard"),
        pytest.param(
            "pbc_1125843985/rqx23rjaqje0ipy", "pbc_1125843985", "rqx23rjaqje0ipy", id="id"
        ),
        pytest.param("pbc_1125843985", "pbc_1125843985", None, id="bare-collection-id"),
        pytest.param("posts/a/b", "posts", "a/b", id="slash-in-record-part"),
        pytest.param("posts/*/x", "posts", "*/x", id="star-then-more"),
        pytest.param("posts/**", "posts", "**", id="double-star"),
        pytest.param("posts/", "posts", "", id="trailing-slash"),
        pytest.param("/abc", "", "abc", id="empty-collection"),
        pytest.param("posts/abc?x=1", "posts", "abc", id="query-ignored"),
        pytest.param("posts?options=%7B%7D", "posts", None, id="bare-with-options"),
        pytest.param("posts/*?a/b", "posts", None, id="slash-after-question-mark"),
        pytest.param("posts/ab%2Fc", "posts", "ab%2Fc", id="not-percent-decoded"),
        pytest.param("posts/abc#x", "posts", "abc#x", id="hash-is-part-of-the-id"),
        pytest.param("POSTS/ABC", "POSTS", "ABC", id="case-kept"),
        pytest.param("chat:room1", "chat:room1", None, id="custom-topic"),
        pytest.param("", "", None, id="empty"),
    ],
)
def test_parse_topic_path(raw: str, collection: str, record_id: str | None) -> None:
    sub = parse_topic(raw)
    assert sub.raw == raw
    assert sub.collection == collection
    assert sub.record_id == record_id
    assert sub.is_wildcard is (record_id is None)
    assert sub.key == (collection, record_id)


def test_parse_topic_without_options_has_empty_options() -> None:
    assert parse_topic("posts/*").options is EMPTY_OPTIONS
    assert parse_topic("posts/abc?foo=1").options == EMPTY_OPTIONS


# --- parsing: options --------------------------------------------------------------------------


def test_options_as_the_sdk_encodes_them() -> None:
    raw = "posts/*?options=%7B%22query%22%3A%7B%22fields%22%3A%22id%2Ctitle%22%7D%7D"
    sub = parse_topic(raw)
    assert sub.raw == raw  # echoed as the event name: never decoded
    assert (sub.collection, sub.record_id) == ("posts", None)
    assert sub.options.query == {"fields": "id,title"}
    assert sub.options.query_dict() == {"fields": "id,title"}
    assert sub.options.headers_dict() == {}


def test_options_built_like_the_js_sdk() -> None:
    options: dict[str, object] = {
        "query": {"expand": "owner", "fields": "id,title,expand.owner.name", "filter": "a = 'b&c'"},
        "headers": {"X-Flag": "on"},
    }
    raw = sdk_topic("posts/abc", options)
    assert options_of(raw) == (
        {"expand": "owner", "fields": "id,title,expand.owner.name", "filter": "a = 'b&c'"},
        {"x_flag": "on"},
    )


def test_options_appended_with_ampersand_when_topic_has_a_query() -> None:
    raw = sdk_topic("posts/*?foo=1", {"query": {"fields": "id"}})
    assert raw.startswith("posts/*?foo=1&options=")
    sub = parse_topic(raw)
    assert (sub.collection, sub.record_id) == ("posts", None)
    assert sub.options.query_dict() == {"fields": "id"}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("X-Flag", "x_flag"),
        ("x-flag", "x_flag"),
        ("x_flag", "x_flag"),
        ("Content-Type", "content_type"),
        ("X-API-Key", "x_api_key"),
        ("xToken", "x_token"),
        ("myTestDB", "my_test_db"),
        ("XFlag", "xflag"),
        ("a1B", "a1_b"),
        ("--x..y__", "x_y"),
        ("héader", "h_ader"),  # non-ASCII letters are separators, as Go's ASCII-only \W
        ("", ""),
    ],
)
def test_header_names_are_snake_cased_like_pocketbase(name: str, expected: str) -> None:
    raw = sdk_topic("posts/*", {"headers": {name: "v"}})
    assert options_of(raw) == ({}, {expected: "v"})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('"text"', "text"),
        ('""', ""),
        ("5", "5"),
        ("-5", "-5"),
        ("1.0", "1"),
        ("1.5", "1.5"),
        ("0.1", "0.1"),
        ("-0", "-0"),
        ("0", "0"),
        ("1e21", "1000000000000000000000"),
        ("1E-7", "0.0000001"),
        ("12345678901234567890", "12345678901234567000"),
        ("1e400", ""),  # out of float64 range: Go leaves the value nil
        ("true", "true"),
        ("false", "false"),
        ("null", ""),
        ("[1, 2]", ""),
        ('{"a": 1}', ""),
        ('"\\u00e9\\ud83d\\ude00"', "é😀"),
        ('"\\ud800x"', "\ufffdx"),  # lone surrogate escape -> U+FFFD, as Go
    ],
)
def test_option_values_become_strings_like_cast_to_string(value: str, expected: str) -> None:
    raw = "posts/*?options=" + encode_uri_component(
        '{"query":{"v":' + value + '},"headers":{"v":' + value + "}}"
    )
    assert options_of(raw) == ({"v": expected}, {"v": expected})


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("{", id="invalid-json"),
        pytest.param('{"query":{"a":"b"}', id="truncated"),
        pytest.param('{"query":{"a":"b"}} x', id="trailing-garbage"),
        pytest.param('{"query":{"a":NaN}}', id="nan-is-not-json"),
        pytest.param('{"query":{"a":Infinity}}', id="infinity-is-not-json"),
        pytest.param("[]", id="array"),
        pytest.param('"query"', id="string"),
        pytest.param("5", id="number"),
        pytest.param("null", id="null"),
        pytest.param("{}", id="empty-object"),
        pytest.param('{"query":5,"headers":"x"}', id="non-object-parts"),
        pytest.param('{"other":{"a":"b"}}', id="unknown-key"),
        pytest.param("[" * 5000 + "]" * 5000, id="deeply-nested"),
        # Go would keep {"a": ""} here; too deep for Python's json (a documented divergence)
        pytest.param('{"query":{"a":' + "[" * 5000 + "]" * 5000 + "}}", id="deep-value"),
    ],
)
def test_unusable_options_are_ignored(text: str) -> None:
    raw = "posts/abc?options=" + encode_uri_component(text)
    sub = parse_topic(raw)
    assert sub.raw == raw
    assert (sub.collection, sub.record_id) == ("posts", "abc")
    assert sub.options == EMPTY_OPTIONS


def test_non_object_part_does_not_drop_the_other_part() -> None:
    raw = "posts/*?options=" + encode_uri_component('{"query":[1],"headers":{"X-A":"1"}}')
    assert options_of(raw) == ({}, {"x_a": "1"})


def test_options_keys_match_case_insensitively_merge_and_reset_like_go() -> None:
    text = '{"Query":{"a":"1"},"QUERY":{"b":"2"},"headers":{"x":"1"},"HEADERS":null,"qUery":7}'
    assert options_of("posts/*?options=" + encode_uri_component(text)) == (
        {"a": "1", "b": "2"},
        {},
    )


def test_duplicate_option_keys_last_one_wins() -> None:
    text = '{"query":{"a":"1","a":"2"},"headers":{"X-A":"1","x_a":"2"}}'
    assert options_of("posts/*?options=" + encode_uri_component(text)) == (
        {"a": "2"},
        {"x_a": "2"},
    )


@pytest.mark.parametrize(
    ("raw", "query"),
    [
        pytest.param('posts/*?options={"query":{"a":"b"}}', {"a": "b"}, id="unencoded-json"),
        pytest.param(
            'posts/*?options={"query":{"a":"1"}}&options={"query":{"a":"2"}}',
            {"a": "1"},
            id="first-value-wins",
        ),
        pytest.param(
            'posts/*?options=%zz&options={"query":{"a":"2"}}',
            {"a": "2"},
            id="pair-with-bad-escape-dropped",
        ),
        pytest.param(
            'posts/*?options={"query":{"a":";"}}&options={"query":{"a":"2"}}',
            {"a": "2"},
            id="pair-with-semicolon-dropped",
        ),
        pytest.param('posts/*?option%73={"query":{"a":"b"}}', {"a": "b"}, id="encoded-key"),
        pytest.param('posts/*?options={"query":{"a":"b+c"}}', {"a": "b c"}, id="plus-is-space"),
        pytest.param('posts/*?options={"query":{"a":"%FF"}}', {"a": "\ufffd"}, id="bad-utf8"),
        pytest.param('posts/*?options={"query":{"a":"b"}}#frag', {"a": "b"}, id="fragment-cut"),
        pytest.param('posts/*#x?options={"query":{"a":"b"}}', {}, id="hash-before-query"),
        pytest.param('posts/*?options={"query":{"a":"b"}}#%zz', {}, id="bad-fragment"),
        pytest.param('posts/%zz?options={"query":{"a":"b"}}', {}, id="bad-path-escape"),
        pytest.param('po:sts/*?options={"query":{"a":"b"}}', {"a": "b"}, id="scheme-opaque"),
        pytest.param('chat:%zz?options={"query":{"a":"b"}}', {"a": "b"}, id="opaque-not-checked"),
        pytest.param('x:/%zz?options={"query":{"a":"b"}}', {}, id="scheme-bad-path"),
        pytest.param('1x:y?options={"query":{"a":"b"}}', {}, id="colon-in-first-segment"),
        pytest.param(':x?options={"query":{"a":"b"}}', {}, id="missing-scheme"),
        pytest.param('posts/a:b?options={"query":{"a":"b"}}', {"a": "b"}, id="colon-later"),
        pytest.param('posts/*?options={"query":{"a":"b"}}&x=%zz', {"a": "b"}, id="bad-later-pair"),
        pytest.param("posts/*?options=", {}, id="empty-value"),
        pytest.param("posts/*?options", {}, id="no-value"),
    ],
)
def test_options_are_read_like_go_url_parse(raw: str, query: dict[str, str]) -> None:
    sub = parse_topic(raw)
    assert sub.raw == raw
    assert sub.options.query_dict() == query


def test_same_topic_with_different_options_are_different_subscriptions() -> None:
    a = parse_topic(sdk_topic("posts/*", {"query": {"fields": "id"}}))
    b = parse_topic(sdk_topic("posts/*", {"query": {"fields": "title"}}))
    assert a.key == b.key
    assert a != b
    assert len({a, b, parse_topic(a.raw)}) == 2


@settings(max_examples=300, deadline=None, database=None)
@given(st.text())
def test_parse_topic_never_raises_and_keeps_raw(raw: str) -> None:
    sub = parse_topic(raw)
    assert sub.raw == raw
    assert hash(sub) == hash(parse_topic(raw))
    for key, value in (*sub.options.query.items(), *sub.options.headers.items()):
        key.encode("utf-8")  # no lone surrogates reach the options
        value.encode("utf-8")


@settings(max_examples=300, deadline=None, database=None)
@given(
    st.dictionaries(
        st.text(),
        st.one_of(st.text(), st.integers(-(2**53), 2**53), st.booleans(), st.none()),
    ),
    st.text(alphabet="posts/*?&=ab", max_size=10),
)
def test_sdk_encoded_query_round_trips(query: dict[str, object], topic: str) -> None:
    raw = sdk_topic(topic, {"query": query})
    expected = {
        key: "" if value is None else value if isinstance(value, str) else json.dumps(value)
        for key, value in query.items()
    }
    assert parse_topic(raw).options.query_dict() == expected


# --- SubscriptionOptions / Subscription values -------------------------------------------------


def test_subscription_options_are_hashable_and_compare_like_dicts() -> None:
    options = SubscriptionOptions(query={"b": "2", "a": "1"}, headers={"x_a": "1"})
    assert isinstance(options.query, FrozenStrMap)
    assert options.query == {"a": "1", "b": "2"}
    assert list(options.query) == ["a", "b"]
    assert options.query.get("a") == "1"
    assert options == SubscriptionOptions(
        query=FrozenStrMap([("a", "1"), ("b", "2")]), headers={"x_a": "1"}
    )
    assert hash(options) == hash(
        SubscriptionOptions(query={"a": "1", "b": "2"}, headers={"x_a": "1"})
    )
    copy = options.query_dict()
    copy["c"] = "3"
    assert "c" not in options.query
    assert SubscriptionOptions() == EMPTY_OPTIONS
    assert EMPTY_OPTIONS.query_dict() == {} and EMPTY_OPTIONS.headers_dict() == {}
    assert repr(FrozenStrMap({"a": "1"})) == "FrozenStrMap({'a': '1'})"
    assert FrozenStrMap({"a": "1"}) != FrozenStrMap({"a": "2"})
    assert FrozenStrMap({"a": "1"}) != 5


def test_subscription_is_frozen_and_hashable() -> None:
    sub = parse_topic("posts/abc")
    with pytest.raises(AttributeError):
        sub.raw = "x"  # type: ignore[misc]
    assert {sub: 1}[parse_topic("posts/abc")] == 1


# --- matching ----------------------------------------------------------------------------------

NAMES = ("posts", "pbc_1125843985")


@pytest.mark.parametrize(
    ("raw", "record_id", "expected"),
    [
        ("posts/*", "abc", True),
        ("posts", "abc", True),
        ("posts/abc", "abc", True),
        ("posts/abc", "abd", False),
        ("posts/ab", "abc", False),
        ("pbc_1125843985/*", "abc", True),
        ("pbc_1125843985/abc?options=%7B%7D", "abc", True),
        ("pbc_1125843985", "abc", True),
        ("posts/*?options=x", "abc", True),
        ("posts/abc?x", "abc", True),
        ("posts/", "abc", False),
        ("posts/a/b", "a", False),
        ("posts/abc/", "abc", False),
        ("post/*", "abc", False),
        ("postsx/*", "abc", False),
        ("Posts/*", "abc", False),
        ("posts/ABC", "abc", False),
        ("users/*", "abc", False),
        ("posts/%61bc", "abc", False),
    ],
)
def test_matches(raw: str, record_id: str, expected: bool) -> None:
    assert parse_topic(raw).matches(NAMES, record_id) is expected


def pocketbase_rule(topic: str, name: str, collection_id: str, record_id: str) -> set[str]:
    """The rules PocketBase's ``realtimeBroadcastRecord`` checks for ``topic`` (empty: no frame)."""
    prefixes = {  # a Go map literal: a repeated key keeps the later value, as a dict literal does
        name + "/" + record_id + "?": "view",
        collection_id + "/" + record_id + "?": "view",
        name + "/*?": "list",
        collection_id + "/*?": "list",
        name + "?": "list",
        collection_id + "?": "list",
    }
    return {rule for prefix, rule in prefixes.items() if (topic + "?").startswith(prefix)}


IDENT = st.text(alphabet="abcp_01", min_size=1, max_size=3)  # collection names/ids: ^\w+$


@st.composite
def topic_case(draw: st.DrawFn) -> tuple[str, str, str, str]:
    """A (topic, collection name, collection id, record id) to compare both matchers on."""
    name = draw(IDENT)
    collection_id = draw(IDENT)
    # record ids never contain "?" in PocketBase; "/", "*", "" and "%" are allowed here anyway
    record_id = draw(st.text(alphabet="ab1/*%#", max_size=3))
    junk = st.text(alphabet="abcp_01/*?#%&=", max_size=3)
    if draw(st.booleans()):  # shaped like a topic: collection[/record][?...]
        collection = draw(st.one_of(st.sampled_from([name, collection_id]), IDENT, junk))
        record = draw(
            st.one_of(
                st.none(),
                st.sampled_from([record_id, "*", "", record_id + "/", "*" + record_id]),
                st.text(alphabet="ab1/*%#?", max_size=3),
            )
        )
        tail = draw(st.one_of(st.just(""), junk.map(lambda text: "?" + text), junk))
        topic = collection + ("" if record is None else "/" + record) + tail
    else:  # anything made of the interesting pieces
        pieces = st.one_of(
            st.sampled_from(
                [name, collection_id, record_id, "/", "*", "?", "/*", "options=%7B%7D"]
            ),
            junk,
        )
        topic = "".join(draw(st.lists(pieces, max_size=6)))
    return topic, name, collection_id, record_id


@settings(max_examples=1500, deadline=None, database=None)
@given(topic_case())
def test_matches_is_pocketbase_prefix_rule(case: tuple[str, str, str, str]) -> None:
    topic, name, collection_id, record_id = case
    sub = parse_topic(topic)
    rules = pocketbase_rule(topic, name, collection_id, record_id)
    assert sub.matches((name, collection_id), record_id) is bool(rules)
    if rules:
        assert rules == {"list" if sub.is_wildcard else "view"}


# --- POST /api/realtime validation -------------------------------------------------------------


def raises_validation(body: t.Mapping[str, object], **kwargs: int) -> dict[str, object]:
    with pytest.raises(ValidationFailed) as exc_info:
        validate_subscribe_request(body, **kwargs)
    error = exc_info.value
    assert error.message == GENERIC_400
    assert error.status_hint == 400
    return error.data


def too_long(maximum: int) -> dict[str, object]:
    return {
        "code": "validation_length_too_long",
        "message": f"The length must be no more than {maximum}.",
        "params": {"max": maximum, "min": 0},
    }


BLANK = {"clientId": {"code": "validation_required", "message": "Cannot be blank."}}
CONTROL = {"code": "validation_invalid_topic", "message": "Must not contain control characters."}


def wire(data: dict[str, object]) -> str:
    body = {"data": data, "message": GENERIC_400, "status": 400}
    return json.dumps(body, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def test_valid_request() -> None:
    client_id, subs = validate_subscribe_request(
        {"clientId": CLIENT_ID, "subscriptions": ["posts/*", "posts/abc?options=%7B%7D"]}
    )
    assert client_id == CLIENT_ID
    assert [s.raw for s in subs] == ["posts/*", "posts/abc?options=%7B%7D"]
    assert all(isinstance(s, Subscription) for s in subs)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"clientId": CLIENT_ID}, id="missing"),
        pytest.param({"clientId": CLIENT_ID, "subscriptions": None}, id="null"),
        pytest.param({"clientId": CLIENT_ID, "subscriptions": []}, id="empty-list"),
        pytest.param({"clientId": CLIENT_ID, "subscriptions": ["", ""]}, id="only-empty"),
        pytest.param({"clientId": CLIENT_ID, "subscriptions": [None, ""]}, id="json-null-items"),
    ],
)
def test_no_subscriptions_clears(body: dict[str, object]) -> None:
    assert validate_subscribe_request(body) == (CLIENT_ID, [])


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({}, id="empty-body"),
        pytest.param({"clientId": None}, id="null"),
        pytest.param({"clientId": ""}, id="empty"),
        pytest.param({"subscriptions": ["posts/*"]}, id="only-subscriptions"),
        pytest.param({"clientid": CLIENT_ID}, id="other-key"),
    ],
)
def test_client_id_required(body: dict[str, object]) -> None:
    data = raises_validation(body)
    assert data == BLANK
    assert wire(data) == (
        '{"data":{"clientId":{"code":"validation_required","message":"Cannot be blank."}},'
        '"message":"Something went wrong while processing your request.","status":400}'
    )


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"clientId": 123}, id="client-id-int"),
        pytest.param({"clientId": 1.5}, id="client-id-float"),
        pytest.param({"clientId": True}, id="client-id-bool"),
        pytest.param({"clientId": [CLIENT_ID]}, id="client-id-list"),
        pytest.param({"clientId": {"a": 1}}, id="client-id-object"),
        pytest.param({"clientId": CLIENT_ID, "subscriptions": "posts/*"}, id="subs-string"),
        pytest.param({"clientId": CLIENT_ID, "subscriptions": {"0": "posts"}}, id="subs-object"),
        pytest.param({"clientId": CLIENT_ID, "subscriptions": 5}, id="subs-number"),
        pytest.param({"clientId": CLIENT_ID, "subscriptions": True}, id="subs-bool"),
        pytest.param({"clientId": CLIENT_ID, "subscriptions": ("posts",)}, id="subs-tuple"),
        pytest.param({"clientId": CLIENT_ID, "subscriptions": ["posts", 5]}, id="item-number"),
        pytest.param({"clientId": CLIENT_ID, "subscriptions": [["posts"]]}, id="item-list"),
        pytest.param({"clientId": CLIENT_ID, "subscriptions": [{"a": 1}]}, id="item-object"),
        pytest.param({"clientId": CLIENT_ID, "subscriptions": [False]}, id="item-bool"),
        pytest.param({"subscriptions": "posts"}, id="bind-error-before-blank-client-id"),
        pytest.param({"clientId": 5, "subscriptions": ["x" * 3000]}, id="bind-error-first"),
    ],
)
def test_wrong_types_are_generic_bad_request(body: dict[str, object]) -> None:
    with pytest.raises(BadRequest) as exc_info:
        validate_subscribe_request(body)
    error = exc_info.value
    assert type(error) is BadRequest
    assert error.data == {}
    assert error.message == GENERIC_400
    assert json.dumps(error.to_body(), separators=(",", ":"), sort_keys=True) == (
        '{"data":{},"message":"Something went wrong while processing your request.","status":400}'
    )


def test_non_mapping_body_is_bad_request() -> None:
    with pytest.raises(BadRequest) as exc_info:
        validate_subscribe_request(["posts"])  # type: ignore[arg-type]
    assert type(exc_info.value) is BadRequest


def test_client_id_length() -> None:
    assert validate_subscribe_request({"clientId": "a" * 255})[0] == "a" * 255
    assert validate_subscribe_request({"clientId": "a"})[0] == "a"
    data = raises_validation({"clientId": "a" * 256})
    assert wire(data) == (
        '{"data":{"clientId":{"code":"validation_length_out_of_range",'
        '"message":"The length must be between 1 and 255.","params":{"max":255,"min":1}}},'
        '"message":"Something went wrong while processing your request.","status":400}'
    )


def test_client_id_length_counts_utf8_bytes_like_pocketbase() -> None:
    ok = "é" * 127 + "a"  # 255 bytes
    assert validate_subscribe_request({"clientId": ok})[0] == ok
    assert "clientId" in raises_validation({"clientId": "é" * 128})  # 128 chars, 256 bytes


def test_exactly_1000_subscriptions_is_fine() -> None:
    topics = [f"t{i}" for i in range(1000)]
    _, subs = validate_subscribe_request({"clientId": CLIENT_ID, "subscriptions": topics})
    assert [s.raw for s in subs] == topics


def test_more_than_1000_subscriptions() -> None:
    data = raises_validation(
        {"clientId": CLIENT_ID, "subscriptions": [f"t{i}" for i in range(1001)]}
    )
    assert wire(data) == (
        '{"data":{"subscriptions":{"code":"validation_length_too_long",'
        '"message":"The length must be no more than 1000.","params":{"max":1000,"min":0}}},'
        '"message":"Something went wrong while processing your request.","status":400}'
    )


def test_subscription_count_includes_empty_and_null_items() -> None:
    data = raises_validation({"clientId": CLIENT_ID, "subscriptions": [""] * 1000 + [None]})
    assert data == {"subscriptions": too_long(1000)}


def test_count_error_hides_topic_errors() -> None:
    topics = ["x" * 3000, "a\nb"] + ["t"] * 999
    data = raises_validation({"clientId": CLIENT_ID, "subscriptions": topics})
    assert data == {"subscriptions": too_long(1000)}


def test_topic_of_exactly_2500_is_fine() -> None:
    topic = "posts/" + "a" * 2494
    assert len(topic) == 2500
    _, subs = validate_subscribe_request({"clientId": CLIENT_ID, "subscriptions": [topic]})
    assert subs[0].raw == topic


def test_topic_longer_than_2500() -> None:
    data = raises_validation({"clientId": CLIENT_ID, "subscriptions": ["a" * 2501]})
    assert wire(data) == (
        '{"data":{"subscriptions":{"0":{"code":"validation_length_too_long",'
        '"message":"The length must be no more than 2500.","params":{"max":2500,"min":0}}}},'
        '"message":"Something went wrong while processing your request.","status":400}'
    )


def test_topic_length_counts_utf8_bytes_like_pocketbase() -> None:
    fits = ["é" * 1250, "😀" * 625, "€" * 833 + "a"]  # 2500 bytes each
    _, subs = validate_subscribe_request({"clientId": CLIENT_ID, "subscriptions": fits})
    assert [s.raw for s in subs] == fits
    over = ["é" * 1251, "😀" * 626, "€" * 834]  # 2502, 2504, 2502 bytes; <= 1251 characters
    data = raises_validation({"clientId": CLIENT_ID, "subscriptions": over})
    assert data == {
        "subscriptions": {"0": too_long(2500), "1": too_long(2500), "2": too_long(2500)}
    }


def test_every_offending_topic_index_is_listed_as_a_string() -> None:
    topics = ["ok"] * 12
    for index in (1, 2, 10):
        topics[index] = "a" * 2501
    topics[5] = "a\rb"
    data = raises_validation({"clientId": CLIENT_ID, "subscriptions": topics})
    assert data == {
        "subscriptions": {
            "1": too_long(2500),
            "10": too_long(2500),
            "2": too_long(2500),
            "5": CONTROL,
        }
    }
    assert list(t.cast(dict[str, object], data["subscriptions"])) == ["1", "10", "2", "5"]


def test_client_id_and_subscription_errors_are_collected_together() -> None:
    data = raises_validation({"subscriptions": ["a" * 2501, "b\n"]})
    assert data == {**BLANK, "subscriptions": {"0": too_long(2500), "1": CONTROL}}
    assert list(data) == ["clientId", "subscriptions"]
    data = raises_validation({"clientId": "x" * 300, "subscriptions": ["t"] * 1001})
    assert list(data) == ["clientId", "subscriptions"]
    assert t.cast(dict[str, object], data["clientId"])["code"] == "validation_length_out_of_range"


@pytest.mark.parametrize("char", ["\r", "\n", "\r\n", "\x00", "\x01", "\t", "\x1b", "\x1f", "\x7f"])
def test_control_characters_are_rejected(char: str) -> None:
    topics = ["posts/*", f"posts/a{char}b"]
    data = raises_validation({"clientId": CLIENT_ID, "subscriptions": topics})
    assert data == {"subscriptions": {"1": CONTROL}}
    assert wire(data) == (
        '{"data":{"subscriptions":{"1":{"code":"validation_invalid_topic",'
        '"message":"Must not contain control characters."}}},'
        '"message":"Something went wrong while processing your request.","status":400}'
    )


def test_forged_frame_topic_is_rejected() -> None:
    forged = 'posts/*\n\nevent: posts/*\ndata: {"action":"delete"}\n'
    data = raises_validation({"clientId": CLIENT_ID, "subscriptions": [forged]})
    assert data == {"subscriptions": {"0": CONTROL}}


def test_length_error_wins_over_control_character_error() -> None:
    data = raises_validation({"clientId": CLIENT_ID, "subscriptions": ["\n" * 2501]})
    assert data == {"subscriptions": {"0": too_long(2500)}}


@pytest.mark.parametrize(
    "topic",
    [
        "posts/é",
        "posts/\u2028x",
        "posts/\u2029x",
        "posts/😀",
        "posts/\x80\x85\x9f",  # C1 controls are not SSE line breaks
        "posts/ a b ",
        "日本語/*",
    ],
)
def test_non_ascii_text_is_accepted(topic: str) -> None:
    _, subs = validate_subscribe_request({"clientId": CLIENT_ID, "subscriptions": [topic]})
    assert [s.raw for s in subs] == [topic]


def test_empty_strings_skipped_and_duplicates_collapsed_in_first_order() -> None:
    topics = [
        "posts/*",
        "",
        "posts/a",
        "posts/*",
        None,
        "posts/a?options=%7B%7D",
        "posts/a",
        "posts",
    ]
    _, subs = validate_subscribe_request({"clientId": CLIENT_ID, "subscriptions": topics})
    assert [s.raw for s in subs] == ["posts/*", "posts/a", "posts/a?options=%7B%7D", "posts"]


def test_form_like_body() -> None:
    form: dict[str, object] = {"clientId": CLIENT_ID, "subscriptions": ["posts/*", "", "posts/r1"]}
    client_id, subs = validate_subscribe_request(form)
    assert client_id == CLIENT_ID
    assert [(s.collection, s.record_id) for s in subs] == [("posts", None), ("posts", "r1")]
    assert validate_subscribe_request({"clientId": CLIENT_ID, "subscriptions": [""]}) == (
        CLIENT_ID,
        [],
    )


def test_extra_keys_are_ignored() -> None:
    body = {"clientId": CLIENT_ID, "subscriptions": ["posts"], "other": object()}
    assert [s.raw for s in validate_subscribe_request(body)[1]] == ["posts"]


def test_lone_surrogates_become_replacement_characters_like_go() -> None:
    client_id, subs = validate_subscribe_request(
        {"clientId": "ab\udc00", "subscriptions": ["posts/\ud800", "posts/\ufffd"]}
    )
    assert client_id == "ab\ufffd"
    assert [s.raw for s in subs] == ["posts/\ufffd"]  # the two topics are now the same
    subs[0].raw.encode("utf-8")


def test_configured_limits() -> None:
    body: dict[str, object] = {"clientId": CLIENT_ID, "subscriptions": ["abcd", "abc", "ab"]}
    data = raises_validation(body, max_subscriptions=2)
    assert data == {"subscriptions": too_long(2)}
    data = raises_validation(body, max_topic_length=3)
    assert data == {"subscriptions": {"0": too_long(3)}}
    assert len(validate_subscribe_request(body, max_subscriptions=3, max_topic_length=4)[1]) == 3
    data = raises_validation(body, max_subscriptions=0)
    assert data == {
        "subscriptions": {
            "code": "validation_length_empty_required",
            "message": "The value must be empty.",
            "params": {"max": 0, "min": 0},
        }
    }
    assert validate_subscribe_request({"clientId": CLIENT_ID}, max_subscriptions=0) == (
        CLIENT_ID,
        [],
    )


def test_returned_subscriptions_are_parsed() -> None:
    raw = sdk_topic("posts/r1", {"query": {"fields": "id"}, "headers": {"X-Flag": 1}})
    _, subs = validate_subscribe_request({"clientId": CLIENT_ID, "subscriptions": [raw]})
    assert subs == [parse_topic(raw)]
    assert subs[0].options.query_dict() == {"fields": "id"}
    assert subs[0].options.headers_dict() == {"x_flag": "1"}
