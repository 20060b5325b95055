"""Realtime topics: parsing, matching and ``POST /api/realtime`` validation.

A pure module: standard library and :mod:`realtime_flask.errors` only (no
Flask, Werkzeug, gevent or Redis), so everything here is plain functions over
plain values.  Source of truth: PocketBase's ``apis/realtime.go``
(``realtimeSubscribeForm``, ``realtimeBroadcastRecord``) and
``tools/subscriptions/client.go`` (``Subscribe``, ``Subscriptions``).

Rules:

1. ``Subscription.raw`` is the topic exactly as the client sent it.  It is the
   SSE event name of every frame for that subscription, so it is never
   normalised (no percent-decoding, no trimming, no case folding); it is also
   what de-duplicates topics, like the map PocketBase keys them by.
2. Matching is PocketBase's prefix test, done structurally.  PocketBase appends
   ``"?"`` to the stored topic and checks ``startswith`` against ``C/R?``,
   ``C/*?`` and ``C?`` for ``C`` in {collection name, collection id}.  Here the
   topic is split once at the first ``"?"`` (path / query) and the path once at
   the first ``"/"`` (collection / record part): no ``"/"`` or a record part of
   ``*`` is a wildcard (list rule), anything else is a record id (view rule),
   which may itself contain ``"/"`` or be empty and then simply never matches a
   real id.  This is exactly equivalent to the prefix test as long as
   collection names and ids contain neither ``"/"`` nor ``"?"`` (PocketBase
   enforces ``^\\w+$``) and record ids contain no ``"?"`` (forbidden in
   PocketBase primary keys); ``tests/unit/core/test_topics.py`` checks it with Hypothesis.
3. Options (``?options=<url-encoded JSON>``) are read the way PocketBase reads
   them (``url.Parse(topic).Query().Get("options")`` then ``json.Unmarshal``
   into ``{"query": map[string]any, "headers": map[string]any}``), including
   Go's quirks: a topic ``url.Parse`` rejects has no options; in the query
   string a pair containing ``";"`` or a bad ``%`` escape is dropped and the
   first ``options`` pair wins; a ``#fragment`` is not part of the query; the
   top-level keys match case-insensitively and a repeated ``query`` object
   merges into the previous one (``null`` resets it).  Invalid JSON (also
   ``NaN``/``Infinity``), a non-object, or a non-object ``query``/``headers``
   leaves that part empty and is never an error.  Values become strings like
   ``cast.ToString``: a string as is, ``true``/``false``, a number in Go's
   ``strconv.FormatFloat(f, 'f', -1, 64)`` form (``5`` -> ``"5"``, ``1e21`` ->
   ``"1000000000000000000000"``, out of range -> ``""``), and ``null``, arrays
   and objects ``""``.  Header names go through PocketBase's
   ``inflector.Snakecase`` (``X-Flag`` -> ``x_flag``, ``xToken`` -> ``x_token``),
   as for ``@request.headers.*``.  :func:`parse_topic` never raises.
4. :func:`validate_subscribe_request` reproduces PocketBase's bind-then-validate
   order and its exact error ``data``: a wrong type is a bind error (generic
   400, empty ``data``); then all field errors are collected into one
   ``data`` dict, and within ``subscriptions`` the first failing rule wins (the
   count check, else the per-topic checks keyed by the index as a string).
   Lengths are UTF-8 byte lengths, as PocketBase's ``validation.Length`` counts
   them (it is ``len()`` of a Go string; only ``RuneLength`` counts
   characters), so a topic of 2500 ASCII characters passes and one of 1251
   ``"é"`` does not.  A ``null`` list element is an empty topic (Go leaves the
   string zero); empty topics count towards the limits and are then skipped;
   duplicates collapse to their first occurrence.
5. Lone surrogates (only a JSON ``\\udXXX`` escape can produce them) become
   U+FFFD in the client id and topics, which is what Go's JSON decoder gives
   PocketBase; a lone surrogate could not be UTF-8 encoded into the stream.

6. A topic that is not a collection's is a custom topic (``chat-room-1``):
   accepted like any other; a ``TopicMessage`` whose topic equals the
   subscription's ``path`` (the topic without ``?options=``) reaches it.  The
   options are parsed as for every topic and change nothing about a custom
   message (PocketBase's own code never reads them for one either).

Deliberate divergence from PocketBase: a topic with a control character
(below U+0020, or U+007F) is rejected with a 400 (``validation_invalid_topic``,
"Must not contain control characters.").  Why: the topic is echoed verbatim as
the ``event:`` line of every frame, and PocketBase writes it unchecked, so a CR
or LF in a topic lets a client forge extra SSE fields and whole frames in its
own stream (NUL and the other C0 controls confuse real-world parsers too).
Non-ASCII text, U+2028/U+2029 and emoji are not line breaks in SSE and stay
allowed.

Not reproduced (no effect on any topic a PocketBase SDK sends): Go's host and
port checks for topics that start with ``//`` or ``scheme://``; which of two
header names that snake-case to the same name wins (random in Go, the later
one in the JSON text here); ``options`` JSON nested deeper than Python's
recursion limit (ignored here, accepted by Go when the deep part is a value
that becomes ``""`` anyway).
"""

from __future__ import annotations

import json
import math
import re
import typing as t
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Context
from decimal import Decimal
from urllib.parse import unquote_to_bytes

from realtime_flask.errors import BadRequest
from realtime_flask.errors import ErrorData
from realtime_flask.errors import ValidationFailed

__all__ = [
    "EMPTY_OPTIONS",
    "MAX_CLIENT_ID_LENGTH",
    "MAX_SUBSCRIPTIONS",
    "MAX_TOPIC_LENGTH",
    "FrozenStrMap",
    "Subscription",
    "SubscriptionOptions",
    "parse_topic",
    "validate_subscribe_request",
]

#: ``validation.Length(1, 255)`` on ``clientId`` (UTF-8 bytes).
MAX_CLIENT_ID_LENGTH: t.Final = 255
#: ``validation.Length(0, 1000)`` on ``subscriptions`` (list items).
MAX_SUBSCRIPTIONS: t.Final = 1000
#: ``validation.Each(validation.Length(0, 2500))`` on each topic (UTF-8 bytes).
MAX_TOPIC_LENGTH: t.Final = 2500

_OPTIONS_PARAM = "options"
_CONTROL_CHARS = re.compile("[\\x00-\\x1f\\x7f]")
_SURROGATES = re.compile("[\\ud800-\\udfff]")
_BAD_ESCAPE = re.compile("%(?![0-9A-Fa-f]{2})")
_SNAKECASE_SPLIT = re.compile(r"[\W_]+", re.ASCII)  # Go's RE2 \W is ASCII-only
_DECIMAL = Context(prec=40)  # a float's repr has at most 17 digits; never the caller's context
_SCHEME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.")


class FrozenStrMap(Mapping[str, str]):
    """An immutable, hashable ``str -> str`` mapping (iterates in sorted key order).

    It compares equal to any mapping with the same items, ``dict`` included.
    """

    __slots__ = ("_items", "_map")

    def __init__(self, items: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> None:
        pairs = tuple(sorted(dict(items).items()))
        self._items: tuple[tuple[str, str], ...] = pairs
        self._map: dict[str, str] = dict(pairs)

    def __getitem__(self, key: str) -> str:
        return self._map[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._map)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FrozenStrMap):
            return self._items == other._items
        return super().__eq__(other)

    def __repr__(self) -> str:
        return f"FrozenStrMap({self._map!r})"


_EMPTY_MAP: t.Final = FrozenStrMap()


@dataclass(frozen=True, slots=True)
class SubscriptionOptions:
    """The ``options`` of one topic: ``query`` and ``headers``, string to string.

    Both are stored as :class:`FrozenStrMap` (any mapping given is converted),
    so the options, and the :class:`Subscription` holding them, are hashable;
    read them like dicts (``options.query.get("fields")``) or take a mutable
    copy with :meth:`query_dict` / :meth:`headers_dict`.  Header names are
    already snake_cased (``x_flag``).
    """

    query: Mapping[str, str] = _EMPTY_MAP
    headers: Mapping[str, str] = _EMPTY_MAP

    def __post_init__(self) -> None:
        if not isinstance(self.query, FrozenStrMap):
            object.__setattr__(self, "query", FrozenStrMap(self.query))
        if not isinstance(self.headers, FrozenStrMap):
            object.__setattr__(self, "headers", FrozenStrMap(self.headers))

    def query_dict(self) -> dict[str, str]:
        """A new ``dict`` of ``query`` (the ``@request.query.*`` values)."""
        return dict(self.query)

    def headers_dict(self) -> dict[str, str]:
        """A new ``dict`` of ``headers`` (the ``@request.headers.*`` values)."""
        return dict(self.headers)


#: Options of a topic without (usable) ``?options=``.
EMPTY_OPTIONS: t.Final = SubscriptionOptions()


@dataclass(frozen=True, slots=True)
class Subscription:
    """One subscribed topic.

    ``raw`` is the topic byte for byte as sent (the SSE event name, still
    percent-encoded).  ``collection`` is the part before the first ``"/"`` of
    the part before the first ``"?"``; ``record_id`` is the rest after that
    ``"/"``, or ``None`` for ``C/*`` and the bare (deprecated) ``C``.
    """

    collection: str
    record_id: str | None
    options: SubscriptionOptions
    raw: str

    @property
    def path(self) -> str:
        """The topic without its ``?options=`` part: what a custom message's topic
        (``TopicMessage.topic``) is compared with."""
        return self.raw.partition("?")[0]

    @property
    def is_wildcard(self) -> bool:
        """True for ``C/*`` and bare ``C``: checked against the list rule (else view rule)."""
        return self.record_id is None

    @property
    def key(self) -> tuple[str, str | None]:
        """``(collection, record_id)``: all that matching looks at.

        Subscriptions with the same key match the same records; they differ
        only in options and so in the frames' event names and content.
        """
        return (self.collection, self.record_id)

    def matches(self, names: tuple[str, ...], record_id: str) -> bool:
        """Whether a change of record ``record_id`` concerns this topic.

        ``names`` are the collection's name and id.  Equivalent to PocketBase's
        ``strings.HasPrefix(topic+"?", prefix)`` over its six prefixes.
        """
        return self.collection in names and (self.record_id is None or self.record_id == record_id)


def parse_topic(raw: str) -> Subscription:
    """Parse one topic (never raises; ``raw`` is kept unchanged)."""
    path = raw.partition("?")[0]
    collection, slash, record = path.partition("/")
    record_id = None if not slash or record == "*" else record
    return Subscription(
        collection=collection, record_id=record_id, options=_parse_options(raw), raw=raw
    )


def validate_subscribe_request(
    body: Mapping[str, object],
    *,
    max_subscriptions: int = MAX_SUBSCRIPTIONS,
    max_topic_length: int = MAX_TOPIC_LENGTH,
) -> tuple[str, list[Subscription]]:
    """Bind and validate a ``POST /api/realtime`` body like PocketBase.

    ``body`` is the decoded JSON object, or the form with ``subscriptions`` as
    a list of ``str``.  Returns the client id and the parsed topics (empty ones
    skipped, duplicates collapsed in first-occurrence order; no
    ``subscriptions`` means none, which clears the client's topics).
    ``max_subscriptions`` and ``max_topic_length`` (UTF-8 bytes) default to
    PocketBase's limits; the client id limit is fixed at 255 bytes.

    Raises :class:`~realtime_flask.errors.BadRequest` (generic, empty
    ``data``) for a value of the wrong type and
    :class:`~realtime_flask.errors.ValidationFailed` with PocketBase's
    per-field ``data`` for a field that breaks a rule.
    """
    # bind: the types Go's decoder accepts into {ClientId string; Subscriptions []string}
    if not isinstance(body, Mapping):
        raise BadRequest()
    raw_id = body.get("clientId")
    raw_subs = body.get("subscriptions")
    if raw_id is not None and not isinstance(raw_id, str):
        raise BadRequest()
    if raw_subs is not None and not isinstance(raw_subs, list):
        raise BadRequest()
    topics: list[str] = []
    for item in raw_subs or ():
        if item is None:
            topics.append("")  # JSON null leaves a Go string ""
        elif isinstance(item, str):
            topics.append(_scrub_surrogates(item))
        else:
            raise BadRequest()
    client_id = _scrub_surrogates(raw_id or "")

    # validate: every field, first failing rule per field
    data: ErrorData = {}
    if not client_id:
        data["clientId"] = _field_error("validation_required", "Cannot be blank.")
    elif _length(client_id) > MAX_CLIENT_ID_LENGTH:
        data["clientId"] = _length_error(1, MAX_CLIENT_ID_LENGTH)
    if len(topics) > max_subscriptions:
        data["subscriptions"] = _length_error(0, max_subscriptions)
    else:
        per_topic: dict[str, ErrorData] = {}
        for index, topic in enumerate(topics):
            if _length(topic) > max_topic_length:
                per_topic[str(index)] = _length_error(0, max_topic_length)
            elif _CONTROL_CHARS.search(topic):
                per_topic[str(index)] = _field_error(
                    "validation_invalid_topic", "Must not contain control characters."
                )
        if per_topic:
            data["subscriptions"] = dict(sorted(per_topic.items()))  # Go's JSON key order
    if data:
        raise ValidationFailed(data=data)

    unique = dict.fromkeys(topic for topic in topics if topic)
    return client_id, [parse_topic(topic) for topic in unique]


# --- validation helpers ---------------------------------------------------------------------


def _length(value: str) -> int:
    """``validation.Length``'s measure: bytes of the (surrogate-free) UTF-8 text."""
    return len(value.encode("utf-8"))


def _field_error(code: str, message: str, params: ErrorData | None = None) -> ErrorData:
    error: ErrorData = {"code": code, "message": message}
    if params:
        error["params"] = params
    return error


def _length_error(minimum: int, maximum: int) -> ErrorData:
    """ozzo-validation's ``Length(min, max)`` error as PocketBase renders it."""
    params: ErrorData = {"max": maximum, "min": minimum}
    if minimum == 0 and maximum > 0:
        return _field_error(
            "validation_length_too_long", f"The length must be no more than {maximum}.", params
        )
    if minimum > 0 and maximum > 0:
        return _field_error(
            "validation_length_out_of_range",
            f"The length must be between {minimum} and {maximum}.",
            params,
        )
    return _field_error("validation_length_empty_required", "The value must be empty.", params)


def _scrub_surrogates(value: str) -> str:
    return _SURROGATES.sub("\ufffd", value)


# --- options: Go's url.Parse + url.Values.Get + json.Unmarshal + cast.ToString ---------------


def _parse_options(raw: str) -> SubscriptionOptions:
    query = _go_raw_query(_scrub_surrogates(raw))
    if query is None:
        return EMPTY_OPTIONS
    text = _go_query_get(query, _OPTIONS_PARAM)
    if not text:
        return EMPTY_OPTIONS
    return _decode_options(text)


def _go_raw_query(raw: str) -> str | None:
    """``url.Parse(raw).RawQuery``, or ``None`` where ``url.Parse`` fails."""
    rest, _, fragment = raw.partition("#")
    if _BAD_ESCAPE.search(fragment) or _CONTROL_CHARS.search(rest):
        return None
    has_scheme = False
    for index, char in enumerate(rest):
        if char == ":":
            if index == 0:
                return None  # "missing protocol scheme"
            rest, has_scheme = rest[index + 1 :], True
            break
        if char not in _SCHEME_CHARS or (index == 0 and not char.isalpha()):
            break
    path, _, query = rest.partition("?")
    if not path.startswith("/"):
        if has_scheme:
            return query  # opaque URL: the path is not unescaped
        if ":" in path.partition("/")[0]:
            return None  # "first path segment in URL cannot contain colon"
    if _BAD_ESCAPE.search(path):
        return None  # invalid URL escape in the path
    return query


def _go_query_get(query: str, name: str) -> str | None:
    """``url.ParseQuery(query).Get(name)``: the first valid pair's value."""
    for pair in query.split("&"):
        if not pair or ";" in pair:
            continue
        key, _, value = pair.partition("=")
        if _BAD_ESCAPE.search(key) or _BAD_ESCAPE.search(value):
            continue
        if _go_unescape(key) == name:
            return _go_unescape(value)
    return None


def _go_unescape(value: str) -> str:
    """``url.QueryUnescape`` of a valid component; bytes that are not UTF-8 stay
    as lone surrogates until JSON decoding turns them into U+FFFD, one per byte
    like Go."""
    return unquote_to_bytes(value.replace("+", " ")).decode("utf-8", "surrogateescape")


class _JSONObject:
    """A decoded JSON object as its ordered ``(key, value)`` pairs, duplicates kept."""

    __slots__ = ("pairs",)

    def __init__(self, pairs: list[tuple[str, t.Any]]) -> None:
        self.pairs = pairs


def _reject_constant(name: str) -> t.NoReturn:
    raise ValueError(f"{name} is not JSON")


def _go_number(text: str) -> str:
    """A JSON number as Go's ``cast.ToString(float64)`` writes it."""
    number = float(text)
    if math.isinf(number):
        return ""  # strconv.ParseFloat range error: the map value stays nil
    if number == 0:
        return "-0" if math.copysign(1.0, number) < 0 else "0"
    return format(Decimal(repr(number)).normalize(_DECIMAL), "f")


def _go_string(value: object) -> str:
    """``cast.ToString`` of a decoded JSON value (numbers are already strings)."""
    if isinstance(value, str):
        return _scrub_surrogates(value)
    if value is True:
        return "true"
    if value is False:
        return "false"
    return ""  # null, arrays and objects


def _go_field_fold(key: str) -> str:
    """The case folding encoding/json uses to match a key to a struct field."""
    out = []
    for char in key:
        lower = char.lower()
        lower = lower if len(lower) == 1 else char
        upper = lower.upper()
        out.append(upper if len(upper) == 1 else lower)
    return "".join(out)


def _decode_options(text: str) -> SubscriptionOptions:
    try:
        document = json.loads(
            text,
            object_pairs_hook=_JSONObject,
            parse_float=_go_number,
            parse_int=_go_number,
            parse_constant=_reject_constant,
        )
    except (ValueError, RecursionError):
        return EMPTY_OPTIONS
    if not isinstance(document, _JSONObject):
        return EMPTY_OPTIONS
    parts: dict[str, dict[str, str] | None] = {"QUERY": None, "HEADERS": None}
    for key, value in document.pairs:
        field = _go_field_fold(key)
        if field not in parts:
            continue
        if value is None:
            parts[field] = None
        elif isinstance(value, _JSONObject):
            target = parts[field]
            if target is None:
                target = parts[field] = {}
            for name, item in value.pairs:
                name = _scrub_surrogates(name)
                target[_snakecase(name) if field == "HEADERS" else name] = _go_string(item)
    query, headers = parts["QUERY"], parts["HEADERS"]
    if not query and not headers:
        return EMPTY_OPTIONS
    return SubscriptionOptions(query=query or _EMPTY_MAP, headers=headers or _EMPTY_MAP)


def _snakecase(name: str) -> str:
    """PocketBase's ``inflector.Snakecase``: ``X-Flag`` -> ``x_flag``, ``aDB`` -> ``a_db``."""
    words = []
    for word in _SNAKECASE_SPLIT.split(name):
        if not word:
            continue
        chars = []
        for index, char in enumerate(word):
            if index > 0 and char.isupper() and not word[index - 1].isupper():
                chars.append("_")
            chars.append(char)
        words.append("".join(chars))
    return "_".join(words).lower()
