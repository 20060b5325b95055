"""Events and the identities they are checked against: plain values, no IO.

Rule: an Event is immutable once published; its JSON payload is encoded at most
once (``payload_json``) and shared by every frame that carries it.
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass
from dataclasses import field
from dataclasses import replace

from realtime_flask.errors import InvalidEvent

__all__ = ["ACTIONS", "AuthUser", "Event", "event_position", "same_auth"]

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
