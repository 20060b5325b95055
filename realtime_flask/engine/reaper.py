"""The idle reaper: which clients to close for inactivity or age, and the loop that does it.

Rules:

1. Idle is measured on ``RealtimeClient.last_activity`` (a delivered chunk, an
   accepted POST), age on ``connected_at`` (a resumed client keeps its age);
   both are seconds of the manager's clock, so tests drive time.
2. ``expired`` only selects; ``RealtimeManager.reap`` closes through the
   manager's single close path, with the reason the resume rule reads
   (``MAX_LIFETIME_REASON`` is not resumable, ``IDLE_TIMEOUT_REASON`` is).
3. The loop survives a failed pass (logged) and ``stop`` interrupts its wait
   at once instead of sleeping out a period.
"""

from __future__ import annotations

import logging
import threading
import typing as t
from collections.abc import Iterable

from realtime_flask import runtime
from realtime_flask.engine.client import RealtimeClient

__all__ = [
    "IDLE_TIMEOUT_REASON",
    "SLOW_CONSUMER_REASON",
    "WRITE_TIMEOUT_REASON",
    "Reapable",
    "Reaper",
    "expired",
]

logger = logging.getLogger(__name__)

#: The close reason of a client idle for ``idle_timeout``.
IDLE_TIMEOUT_REASON: t.Final = "idle timeout"
#: A client whose queue overflowed (it reads slower than events come).
SLOW_CONSUMER_REASON: t.Final = "slow consumer: queue full"
#: A client whose stream could not write one chunk within REALTIME_WRITE_TIMEOUT.
WRITE_TIMEOUT_REASON: t.Final = "write timeout"


def expired(
    clients: Iterable[RealtimeClient], now: float, *, idle_timeout: float, max_lifetime: float
) -> tuple[list[str], list[str]]:
    """The ids of ``clients`` to close at ``now``: ``(too old, idle)``, each in iteration order.

    Too old: connected ``max_lifetime`` seconds or more ago, active or not.
    Idle: not too old, and inactive for ``idle_timeout`` seconds or more
    (PocketBase closes a client idle for 5 minutes).
    """
    old: list[str] = []
    idle: list[str] = []
    for client in clients:
        if now - client.connected_at >= max_lifetime:
            old.append(client.id)
        elif now - client.last_activity >= idle_timeout:
            idle.append(client.id)
    return old, idle


class Reapable(t.Protocol):
    def reap(self) -> list[str]:
        """Close the clients that expired; their ids."""


class Reaper:
    """The idle-reaper loop: ``manager.reap()`` every ``interval`` seconds until stopped.

    ``start`` runs it through ``spawn`` (a daemon thread by default, which is a
    greenlet under gevent's monkey-patching); ``stop`` interrupts the wait at
    once instead of sleeping out a period.
    """

    def __init__(
        self,
        manager: Reapable,
        interval: float,
        *,
        spawn: t.Callable[[t.Callable[[], None]], object] | None = None,
    ) -> None:
        self.manager = manager
        self.interval = interval
        self._spawn = spawn or (lambda target: runtime.spawn_daemon(target, "realtime-reaper"))
        self._stop = threading.Event()
        self._started = False

    def start(self) -> None:
        if not self._started:
            self._started = True
            self._spawn(self.run)

    def run(self) -> None:
        while not self._stop.wait(self.interval):
            self.tick()

    def tick(self) -> list[str]:
        """One pass: the ids closed; a failing pass is logged and closes none."""
        try:
            return self.manager.reap()
        except Exception:
            logger.exception("realtime idle reaper pass failed")
            return []

    def stop(self) -> None:
        self._stop.set()
