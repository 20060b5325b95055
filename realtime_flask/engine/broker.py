"""The broker seam: where published events get their id and reach every process.

What is published is an ``Event`` (a record change) or a ``TopicMessage`` (a
custom message, ``Realtime.send``): both take the same path (id, history,
delivery, resume), so "event" below means either.

Rule: ``publish`` never blocks on the network and never raises for a delivery
problem of one subscriber; handlers run outside the broker's lock.  The memory
broker is the default and the test double (it is the real thing for one
process); the Redis broker implements the same protocol.
"""

from __future__ import annotations

import itertools
import logging
import threading
import typing as t
from collections import deque

from realtime_flask.core.events import Event
from realtime_flask.core.events import Published
from realtime_flask.core.events import TopicMessage

__all__ = ["BatchHandler", "Broker", "EventHandler", "MemoryBroker", "P", "one_by_one"]

logger = logging.getLogger(__name__)

EventHandler = t.Callable[[Published], object]
#: Takes consecutive events at once (a backlog), in order.
BatchHandler = t.Callable[[list[Published]], object]
#: What ``publish`` takes and gives back: an Event or a TopicMessage.
P = t.TypeVar("P", Event, TopicMessage)


class Broker(t.Protocol):
    def publish(self, event: P) -> P:
        """Assign the event its id, record it in the history and deliver it."""

    def subscribe(self, handler: EventHandler) -> None:
        """Call ``handler`` for every event published from now on, in order."""

    def subscribe_many(self, handler: BatchHandler) -> None:
        """Like ``subscribe``, but ``handler`` gets every run of events that are
        ready at once (one or more, in order): a backlog is handled in one pass."""

    def close(self) -> None:
        """Stop delivering; idempotent."""

    def start(self) -> None:
        """Start background delivery (listeners), if any."""

    def status(self) -> dict[str, object]:
        """Health: ``{"broker", "connected", "degraded", ...}``; ``published``
        (events handed to ``publish`` in this process) feeds the metrics."""

    def subscribe_reset(self, handler: t.Callable[[str], object]) -> None:
        """Call ``handler(reason)`` when events may have been lost."""

    def history(self, after: str, limit: int) -> list[Published] | None:
        """Events after id ``after``, oldest first; None when history no longer reaches back."""


def one_by_one(handler: EventHandler) -> BatchHandler:
    """A batch handler that calls ``handler`` per event; one failing event does
    not keep the others from it."""

    def each(events: list[Published]) -> None:
        for event in events:
            try:
                handler(event)
            except Exception:
                logger.exception("realtime event handler failed for event %s", event.id)

    return each


class MemoryBroker:
    """In-process broker: ids are a counter, history a bounded ring buffer.

    Two delivery modes, both in id order:

    * synchronous (default): handlers run in the publisher's greenlet, so an
      event reaches every local client's queue before ``publish`` returns;
    * with ``spawn`` (the extension passes one under gevent): ``publish`` only
      stamps and queues the event, and one delivery greenlet runs the
      handlers, so a write's HTTP response does not wait for the fan-out.
    """

    def __init__(
        self,
        *,
        history_size: int = 1024,
        spawn: t.Callable[[t.Callable[[], None]], object] | None = None,
    ) -> None:
        self._lock = threading.Lock()
        # Synchronous mode: held across id assignment *and* delivery so every
        # handler sees events in id order even when several greenlets publish
        # at once.  Re-entrant so a handler may publish.
        self._order = threading.RLock()
        self._counter = itertools.count(1)
        self._history: deque[Published] = deque(maxlen=history_size)
        self._handlers: list[BatchHandler] = []
        self._closed = False
        self._spawn = spawn
        self._pending: deque[Published] = deque()
        self._wake = threading.Condition(self._lock)
        self._started = False
        self._published = 0

    def publish(self, event: P) -> P:
        if self._spawn is not None:
            with self._lock:
                if self._closed:
                    return event
                self._published += 1
                stamped = event.with_id(str(next(self._counter)))
                self._history.append(stamped)
                self._pending.append(stamped)
                self._wake.notify()
            return stamped
        with self._order:
            with self._lock:
                if self._closed:
                    return event
                self._published += 1
                stamped = event.with_id(str(next(self._counter)))
                self._history.append(stamped)
                handlers = tuple(self._handlers)
            self._deliver(handlers, [stamped])
        return stamped

    def _deliver(self, handlers: tuple[BatchHandler, ...], events: list[Published]) -> None:
        for handler in handlers:
            try:
                handler(events)
            except Exception:
                logger.exception(
                    "realtime event handler failed for events %s..%s", events[0].id, events[-1].id
                )

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._pending and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return
                batch = list(self._pending)
                self._pending.clear()
                handlers = tuple(self._handlers)
            self._deliver(handlers, batch)

    def subscribe(self, handler: EventHandler) -> None:
        self.subscribe_many(one_by_one(handler))

    def subscribe_many(self, handler: BatchHandler) -> None:
        with self._lock:
            self._handlers.append(handler)

    def status(self) -> dict[str, object]:
        with self._lock:
            last = self._history[-1].id if self._history else ""
            published = self._published
        return {
            "broker": "memory",
            "connected": True,
            "degraded": False,
            "lastId": last,
            "published": published,
        }

    def subscribe_reset(self, handler: t.Callable[[str], object]) -> None:
        """Resets never happen in one process (nothing is ever lost); kept for the interface."""

    def start(self) -> None:
        """Start the delivery greenlet (only with ``spawn``)."""
        if self._spawn is not None and not self._started:
            self._started = True
            self._spawn(self._run)

    def history(self, after: str | None = None, limit: int = 10000) -> list[Published] | None:
        """Retained events after the id ``after`` (all when None), oldest first, at most
        ``limit``; None when the history no longer reaches back to ``after``.

        ``""`` is the position before the first event (a client that connected
        while the log was empty): everything, if nothing was trimmed since.
        """
        with self._lock:
            events = list(self._history)
        if after is None:
            return events[:limit]
        try:
            position = int(after) if after else 0
        except ValueError:
            return None
        if events and position < int(events[0].id) - 1:
            return None
        return [e for e in events if int(e.id) > position][:limit]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._handlers.clear()
            self._pending.clear()
            self._wake.notify_all()
