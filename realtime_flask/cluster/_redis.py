"""What the broker and the router share: the lazy ``redis`` import, clients, loops, codecs.

Rules:

1. ``redis`` is imported only when a broker or router is built (``load``),
   never when a module of cluster/ is imported: an app without the extra still
   imports them, and gets BrokerUnavailable saying what to install only when
   it asks for Redis.
2. Under gevent, sockets must be patched before a Redis client connects
   (``require_patched_sockets``): an unpatched redis socket would block every
   greenlet of the process.
3. Background loops run through ``spawn_daemon``: a greenlet under gevent's
   patching, a daemon thread otherwise.
4. The codecs here are the broker's stream entries (an event or a custom
   message as JSON) and the auth a router sends along with a subscription;
   all are plain JSON text.
"""

from __future__ import annotations

import json
import typing as t
from dataclasses import dataclass

from realtime_flask import runtime
from realtime_flask.core.events import AuthUser
from realtime_flask.core.events import Event
from realtime_flask.core.events import TopicMessage
from realtime_flask.errors import BrokerUnavailable
from realtime_flask.errors import InvalidEvent

if t.TYPE_CHECKING:
    import redis

__all__ = [
    "RedisErrors",
    "Spawn",
    "connect",
    "decode_event",
    "decode_message",
    "encode_event",
    "encode_message",
    "load",
    "parse_id",
    "require_patched_sockets",
    "spawn_daemon",
    "user_from_json",
    "user_to_json",
]

#: Starts a loop in the background (``spawn_daemon`` unless a test passes its own).
Spawn = t.Callable[[t.Callable[[], None]], object]


@dataclass(frozen=True, slots=True)
class RedisErrors:
    """redis-py's exception classes, for ``except`` clauses in code that cannot import redis."""

    #: every error redis-py raises (``redis.RedisError``)
    any: type[Exception]
    #: the connection failed, was lost or timed out (socket errors included)
    network: tuple[type[Exception], ...]
    #: Redis answered the command with an error (``ResponseError``)
    response: type[Exception]
    #: Redis refused the login (``AuthenticationError``, ``AuthorizationError``)
    auth: tuple[type[Exception], ...]


def load() -> RedisErrors:
    """Import redis-py; BrokerUnavailable (with what to install) when it is missing."""
    try:
        import redis
        from redis import exceptions as rex
    except ImportError as exc:
        raise BrokerUnavailable("install realtime_flask[redis] to use Redis") from exc
    return RedisErrors(
        any=redis.RedisError,
        network=(rex.ConnectionError, rex.TimeoutError, OSError),
        response=rex.ResponseError,
        auth=(rex.AuthenticationError, rex.AuthorizationError),
    )


def connect(
    url: str,
    *,
    socket_timeout: float,
    connect_timeout: float,
    name: str | None = None,
    retry: bool = True,
) -> redis.Redis:
    """A client for ``url`` (``redis://``, ``rediss://``, ``unix://``) that connects lazily.

    Replies are decoded to ``str``.  ``socket_timeout`` bounds every reply
    (seconds: a blocking command needs its own block time on top);
    ``name`` is the client name Redis shows in ``CLIENT LIST``.  ``retry=False``
    turns off redis-py's own retries, for loops that own retrying (and order).
    """
    load()
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    options: dict[str, t.Any] = {}
    if name is not None:
        options["client_name"] = name
    if not retry:
        options["retry"] = Retry(NoBackoff(), 0)
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect_timeout,
        **options,
    )


def require_patched_sockets(what: str) -> None:
    """BrokerUnavailable when gevent is imported but sockets are not patched."""
    try:
        runtime.require_patched_sockets(what)
    except runtime.RuntimeUnavailable as exc:
        raise BrokerUnavailable(str(exc)) from None


def spawn_daemon(target: t.Callable[[], None]) -> object:
    """Run the loop ``target`` in the background, named after it (``realtime-redis-<loop>``)."""
    return runtime.spawn_daemon(target, f"realtime-redis{target.__name__.replace('_', '-')}")


# -- stream entries ---------------------------------------------------------------------


def parse_id(value: str) -> tuple[int, int] | None:
    """A stream id ``"<ms>-<seq>"`` as a comparable pair, or None if it is not one."""
    ms, sep, seq = value.partition("-")
    if not sep or not ms.isdigit() or not seq.isdigit():
        return None
    return int(ms), int(seq)


def encode_event(event: Event) -> str:
    """The ``e`` field of a stream entry:
    ``{collection, action, record, collectionId, stored?, unfiltered?}``.

    Raises InvalidEvent when the record is not JSON-serialisable.
    """
    body: dict[str, object] = {
        "collection": event.collection,
        "action": event.action,
        "record": dict(event.record),
        "collectionId": event.collection_id,
    }
    if event.stored is not None:
        body["stored"] = dict(event.stored)
    if event.unfiltered:
        body["unfiltered"] = True
    try:
        # ASCII-only: the entry can always be encoded, even with lone surrogates.
        return json.dumps(body, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidEvent(f"event is not JSON-serialisable: {exc}") from exc


def decode_event(payload: str, entry_id: str) -> Event:
    """The Event of an entry's ``e`` field, with id ``entry_id``; ValueError (or
    InvalidEvent, a ValueError too) when it is malformed."""
    data = json.loads(payload)
    if not isinstance(data, dict):
        raise ValueError("event payload is not a JSON object")
    collection, action, record = data.get("collection"), data.get("action"), data.get("record")
    if not isinstance(collection, str) or not isinstance(action, str):
        raise ValueError("event payload has no collection or action")
    if not isinstance(record, dict):
        raise ValueError("event payload has no record object")
    stored = data.get("stored")
    return Event(
        collection=collection,
        action=action,
        record=record,
        collection_id=str(data.get("collectionId") or ""),
        id=entry_id,
        stored=stored if isinstance(stored, dict) else None,
        unfiltered=data.get("unfiltered") is True,
    )


def encode_message(message: TopicMessage) -> str:
    """The ``m`` field of a stream entry: ``{topic, data}`` (``data`` any JSON value).

    ASCII-only, like ``encode_event``.  ``data`` was checked when the message
    was made, so this does not raise for it.
    """
    return json.dumps({"topic": message.topic, "data": message.data}, separators=(",", ":"))


def decode_message(payload: str, entry_id: str) -> TopicMessage:
    """The TopicMessage of an entry's ``m`` field, with id ``entry_id``; ValueError
    (or InvalidEvent, a ValueError too) when it is malformed."""
    data = json.loads(payload)
    if not isinstance(data, dict) or "data" not in data:
        raise ValueError("message payload is not a JSON object with data")
    topic = data.get("topic")
    if not isinstance(topic, str):
        raise ValueError("message payload has no topic")
    return TopicMessage(topic, data["data"], id=entry_id)


# -- auth --------------------------------------------------------------------------------


def user_to_json(user: AuthUser | None) -> dict[str, object] | None:
    """``{collectionId, id, collectionName, record, superuser}``, or None for a guest."""
    if user is None:
        return None
    return {
        "collectionId": user.collection_id,
        "id": user.id,
        "collectionName": user.collection_name,
        "record": dict(user.record),
        "superuser": user.superuser,
    }


def user_from_json(data: object) -> AuthUser | None:
    """The AuthUser of ``user_to_json``'s output; None (a guest) for anything but an object."""
    if not isinstance(data, dict):
        return None
    record = data.get("record")
    return AuthUser(
        collection_id=str(data.get("collectionId", "")),
        id=str(data.get("id", "")),
        collection_name=str(data.get("collectionName", "")),
        record=record if isinstance(record, dict) else {},
        superuser=bool(data.get("superuser", False)),
    )
