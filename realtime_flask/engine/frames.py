"""Frames of one event: the bodies each subscription gets, and the ``id:`` lines.

The fan-out (``RealtimeManager.dispatch``) and a resume's replay
(``RealtimeManager.render``) both build frames here, so a resumed client gets
the very bytes a live one got.  A frame is ``id:`` line + ``event:`` line +
``data:`` line(s) + blank line, as core/sse.py formats them.
"""

from __future__ import annotations

import logging
import typing as t

from realtime_flask.core import sse
from realtime_flask.core.events import AuthUser
from realtime_flask.core.events import Published
from realtime_flask.core.events import TopicMessage
from realtime_flask.core.topics import Subscription
from realtime_flask.engine.client import RealtimeClient

if t.TYPE_CHECKING:
    from realtime_flask.engine.access import EventView

__all__ = ["EventBodies", "client_frames", "position_suffix"]

logger = logging.getLogger("realtime_flask.engine.manager")  # the fan-out's log name, as before


def position_suffix(event_id: str) -> bytes:
    """What follows the client id on an event's ``id:`` line: ``.<event id>`` and
    the newline, so a plain EventSource can resume with ``Last-Event-ID``."""
    return (b"." + event_id.encode() if event_id else b"") + b"\n"


def client_frames(client: RealtimeClient, position: bytes, bodies: list[bytes]) -> list[bytes]:
    """The frames ``client`` gets for one event's ``bodies``, in order.

    Every frame starts with the client's ``id:`` line; only the last one names
    the log position (``id:<clientId>.<event id>``, see ``position_suffix``),
    so a stream cut between two frames of one event resumes before it.
    """
    if not bodies:
        return []
    if len(bodies) == 1:
        return [client.id_prefix + position + bodies[0]]
    head = [client.id_line + body for body in bodies[:-1]]
    return [*head, client.id_prefix + position + bodies[-1]]


class EventBodies:
    """One event's frame bodies (``event:`` line plus ``data:`` lines).

    For a custom message (``TopicMessage``) a subscription matches when its
    ``path`` is the message's topic; the ``data:`` line is the message's JSON.

    Computed once per (auth, topic) and shared by every subscriber with that
    pair: guests share one, and each auth object is checked once however many
    topics name the same collection.  Keys use the auth object's identity,
    which the caller keeps alive for the whole pass (the view itself caches
    per auth record, so two objects of one user still share rule results).
    """

    __slots__ = ("_cache", "_record_id", "_shared", "_topic", "_view")

    def __init__(self, event: Published, view: EventView | None) -> None:
        self._view = view
        self._shared: bytes | None = None
        if isinstance(event, TopicMessage):
            self._record_id: str | None = None
            self._topic: str | None = event.topic
            if view is None:
                self._shared = sse.format_field("data", event.data_json)
        else:
            self._record_id = event.record_id
            self._topic = None
            if view is None:
                self._shared = sse.format_data(event.payload())
        self._cache: dict[str | tuple[int, str], bytes | None] = {}

    def bodies_for(
        self, client_id: str, user: AuthUser | None, subs: tuple[Subscription, ...]
    ) -> list[bytes]:
        """The bodies ``user``'s ``subs`` get, in subscription order."""
        out: list[bytes] = []
        for sub in subs:
            body = self.body_for(client_id, user, sub)
            if body is not None:
                out.append(body)
        return out

    def body_for(self, client_id: str, user: AuthUser | None, sub: Subscription) -> bytes | None:
        """The body ``user`` gets for ``sub``, or None (no match, or not visible)."""
        if self._topic is not None:
            if sub.path != self._topic:
                return None
        elif sub.record_id is not None and sub.record_id != self._record_id:
            return None
        # Guests share the topic string as key: no tuple per subscriber.
        key: str | tuple[int, str] = sub.raw if user is None else (id(user), sub.raw)
        cache = self._cache
        if key in cache:
            return cache[key]
        body = cache[key] = self._body(client_id, user, sub)
        return body

    def _body(self, client_id: str, user: AuthUser | None, sub: Subscription) -> bytes | None:
        try:
            data = self._shared if self._view is None else self._view.data_for(user, sub)
            if data is None:
                return None
            return sse.format_field("event", sub.raw) + data + b"\n"
        except Exception:  # one subscriber's failing check must not cost the rest
            logger.exception("realtime: access check failed for %s", client_id)
            return None
