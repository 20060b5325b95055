"""Events and the identities they are checked against: plain values, no IO.

Two kinds of things are published through the broker (``Published``): an
``Event`` (a record change, ``{"record", "action"}`` on the wire) and a
``TopicMessage`` (a custom message: any JSON value sent to a topic that need
not be a collection, as PocketBase's app code sends ``subscriptions.Message``).

Rule: both are immutable once published; a TopicMessage's JSON is encoded
once, when it is made, and shared by every frame that carries it.
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass
from dataclasses import field
from dataclasses import replace

from realtime_flask.core.sse import encode_json
from realtime_flask.core.topics import MAX_TOPIC_LENGTH
from realtime_flask.errors import InvalidEvent
from realtime_flask.errors import SSEFormatError

__all__ = [
    "ACTIONS",
    "RESERVED_TOPICS",
    "AuthUser",
    "Event",
    "Published",
    "TopicMessage",
    "event_position",
    "same_auth",
]

ACTIONS: t.Final[frozenset[str]] = frozenset({"create", "update", "delete"})


@dataclass(frozen=True, slots=True)
class AuthUser:
    """The auth record a realtime client acts as.

    Two identities are the same auth when both the record id and the collection
    id match (PocketBase's ``isSameAuth``); ``record`` is the data rules see and
    does not take part in the comparison.
    """

    collection_id: str
    id: str
    collection_name: str = ""
    record: t.Mapping[str, object] = field(default_factory=dict, compare=False, hash=False)
    superuser: bool = False


def event_position(event_id: str) -> tuple[int, int]:
    """Order of event ids: the memory broker's counters (``"12"``) and Redis
    stream ids (``"1700000000000-3"``); an empty or odd id sorts first."""
    head, _, tail = event_id.partition("-")
    try:
        return (int(head), int(tail or 0))
    except ValueError:
        return (-1, -1)


def same_auth(a: AuthUser | None, b: AuthUser | None) -> bool:
    """True when ``a`` and ``b`` are both guests or the same auth record."""
    if a is None or b is None:
        return a is b
    return a.collection_id == b.collection_id and a.id == b.id


@dataclass(frozen=True, slots=True)
class Event:
    """A record change to fan out: ``{"record": ..., "action": ...}`` on the wire.

    ``collection`` is the collection name and ``collection_id`` its id (topics
    may use either); ``id`` is the broker's position for this event, assigned
    on publish.
    """

    collection: str
    action: str
    record: t.Mapping[str, object]
    collection_id: str = ""
    id: str = ""
    #: The full stored record (hidden fields included) when the event comes
    #: from the record store: what rules are evaluated on.  Never sent as is.
    stored: t.Mapping[str, object] | None = field(default=None, compare=False, repr=False)
    #: Trusted code asked for this event to go out as published, even for a
    #: collection of the record store (whose rules otherwise decide who sees
    #: it, as for a write through the API).
    unfiltered: bool = field(default=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.collection, str) or not self.collection:
            raise InvalidEvent(f"collection must be a non-empty string, got {self.collection!r}")
        if "/" in self.collection or "?" in self.collection:
            raise InvalidEvent(f"collection must not contain '/' or '?', got {self.collection!r}")
        if self.action not in ACTIONS:
            raise InvalidEvent(f"action must be one of {sorted(ACTIONS)}, got {self.action!r}")
        if not isinstance(self.record, t.Mapping):
            raise InvalidEvent(f"record must be a mapping, got {type(self.record).__name__}")
        record_id = self.record.get("id")
        if record_id is not None and not isinstance(record_id, str):
            raise InvalidEvent(f"record id must be a string, got {record_id!r}")

    @property
    def record_id(self) -> str | None:
        """The changed record's id, or None for a record without one."""
        value = self.record.get("id")
        return value if isinstance(value, str) else None

    @property
    def names(self) -> tuple[str, ...]:
        """Every name a topic may use for this event's collection (name, then id)."""
        if self.collection_id and self.collection_id != self.collection:
            return (self.collection, self.collection_id)
        return (self.collection,)

    def payload(self) -> dict[str, object]:
        """The frame's data object; PocketBase writes ``record`` before ``action``."""
        return {"record": dict(self.record), "action": self.action}

    def with_id(self, event_id: str) -> Event:
        return replace(self, id=event_id)


#: Event names the protocol itself uses: never a custom message's topic.
RESERVED_TOPICS: t.Final[frozenset[str]] = frozenset({"PB_CONNECT", "RF_RESET"})

_CONTROL_CHARS: t.Final = frozenset(chr(c) for c in (*range(0x20), 0x7F))


@dataclass(frozen=True, slots=True)
class TopicMessage:
    """A custom message: ``data`` for every client subscribed to ``topic``.

    PocketBase's app code sends ``subscriptions.Message{Name, Data}`` to the
    clients whose subscriptions include a topic (``client.HasSubscription``);
    the SDK's ``pb.realtime.subscribe("chat-room-1", cb)`` gets it as
    ``cb(JSON.parse(data) || {})``.  Here ``topic`` is any text a client may
    subscribe to (a collection name or not); it reaches every subscription
    whose topic, without its ``?options=`` part, equals ``topic``, and each
    frame is named by the subscription exactly as the client sent it (so the
    SDK's listener for a topic with options gets it too).

    ``data`` is any JSON value (object, array, string, number, boolean,
    null); it is encoded once, here, as compact JSON (``data_json``): later
    changes to the caller's object do not change what is sent.  ``id`` is the
    broker's position, assigned on publish.

    Raises InvalidEvent for a topic that is empty, not text, holds ``"?"``
    (it starts a subscription's options) or a control character, is longer
    than 2500 UTF-8 bytes (no subscription can be longer), is ``PB_CONNECT``
    or ``RF_RESET``, or cannot be encoded as UTF-8; and for ``data`` that is
    not JSON-serialisable (NaN and infinities included).
    """

    topic: str
    data: object
    id: str = ""
    data_json: str = field(default="", init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        topic = self.topic
        if not isinstance(topic, str) or not topic:
            raise InvalidEvent(f"topic must be a non-empty string, got {topic!r}")
        if "?" in topic:
            raise InvalidEvent(f"topic must not contain '?' (it starts the options), got {topic!r}")
        if not _CONTROL_CHARS.isdisjoint(topic):
            raise InvalidEvent(f"topic must not contain control characters, got {topic!r}")
        if topic in RESERVED_TOPICS:
            raise InvalidEvent(f"topic {topic!r} is reserved for the protocol")
        try:
            size = len(topic.encode("utf-8"))
        except UnicodeEncodeError:
            raise InvalidEvent(f"topic must be valid Unicode text, got {topic!r}") from None
        if size > MAX_TOPIC_LENGTH:
            raise InvalidEvent(f"topic must be at most {MAX_TOPIC_LENGTH} UTF-8 bytes, got {size}")
        try:
            text = encode_json(self.data)
        except (SSEFormatError, TypeError, ValueError, RecursionError) as exc:
            raise InvalidEvent(f"data must be JSON-serialisable: {exc}") from None
        object.__setattr__(self, "data_json", text)

    @property
    def names(self) -> tuple[str, ...]:
        """The topic index key this message is looked up under: the topic up to
        its first ``"/"`` (as ``Subscription.collection`` is for a topic)."""
        return (self.topic.partition("/")[0],)

    def with_id(self, event_id: str) -> TopicMessage:
        """This message with the broker's id (``data`` is not encoded again)."""
        clone = object.__new__(TopicMessage)
        for name in ("topic", "data", "data_json"):
            object.__setattr__(clone, name, getattr(self, name))
        object.__setattr__(clone, "id", event_id)
        return clone


#: What the broker carries: a record change or a custom message.
Published: t.TypeAlias = Event | TopicMessage
