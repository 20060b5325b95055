"""The broker seam: where published events get their id and reach every process.

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

from .events import Event

__all__ = ["Broker", "EventHandler", "MemoryBroker"]

logger = logging.getLogger(__name__)

EventHandler = t.Callable[[Event], object]


class Broker(t.Protocol):
    def publish(self, event: Event) -> Event:
        """Assign the event its id, record it in the history and deliver it."""

    def subscribe(self, handler: EventHandler) -> None:
        """Call ``handler`` for every event published from now on, in order."""

    def close(self) -> None:
        """Stop delivering; idempotent."""


class MemoryBroker:
    """In-process broker: ids are a counter, history a bounded ring buffer.

    Delivery is synchronous in the publisher's greenlet, so an event reaches
    every local client's queue before ``publish`` returns.
    """

    def __init__(self, *, history_size: int = 1024) -> None:
        self._lock = threading.Lock()
        # Held across id assignment *and* delivery so every handler sees events
        # in id order even when several greenlets publish at once.  Re-entrant
        # so a handler may publish (the nested event is delivered after).
        self._order = threading.RLock()
        self._counter = itertools.count(1)
        self._history: deque[Event] = deque(maxlen=history_size)
        self._handlers: list[EventHandler] = []
        self._closed = False

    def publish(self, event: Event) -> Event:
        with self._order:
            with self._lock:
                if self._closed:
                    return event
                stamped = event.with_id(str(next(self._counter)))
                self._history.append(stamped)
                handlers = tuple(self._handlers)
            for handler in handlers:
                try:
                    handler(stamped)
                except Exception:
                    logger.exception("realtime event handler failed for event %s", stamped.id)
        return stamped

    def subscribe(self, handler: EventHandler) -> None:
        with self._lock:
            self._handlers.append(handler)

    def history(self) -> list[Event]:
        """The retained events, oldest first."""
        with self._lock:
            return list(self._history)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._handlers.clear()
