"""Where a subscriptions POST is applied: the seam between one process and a cluster.

``LocalRouter`` applies it to this process's manager; ``cluster.router.RedisRouter``
finds the process that holds the client's stream, wherever it is.
"""

from __future__ import annotations

import os
import socket
import threading
import typing as t
from collections import OrderedDict
from dataclasses import replace

from realtime_flask.core.events import AuthUser
from realtime_flask.core.topics import Subscription
from realtime_flask.engine.client import ParkedClient
from realtime_flask.engine.manager import RealtimeManager
from realtime_flask.engine.ops import DELETED_REASON

__all__ = ["ClientListing", "LocalRouter", "Router", "local_worker_name"]


class ClientListing(t.TypedDict):
    """Every connected client (``RealtimeManager.describe_clients`` rows, each with
    its ``worker``), the workers that answered, and those that did not in time."""

    items: list[dict[str, object]]
    workers: list[str]
    unanswered: list[str]


def local_worker_name() -> str:
    """``<host>:<pid>``: the worker of a process that is not in a Redis cluster."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Router(t.Protocol):
    def register(self, client_id: str) -> None: ...

    def take_parked(self, client_id: str, remote_addr: str | None) -> ParkedClient | None: ...

    def subscribe(
        self,
        client_id: str,
        subscriptions: list[Subscription],
        user: AuthUser | None,
        remote_addr: str | None,
    ) -> None: ...

    def status(self) -> dict[str, object]: ...

    def list_clients(self) -> ClientListing: ...

    def close_client(self, client_id: str) -> bool: ...

    def start(self) -> None: ...

    def close(self) -> None: ...


class LocalRouter:
    """One process: every client is local; closed clients are parked here for resume.

    :param grace: seconds a closed client can be resumed (``Last-Event-ID``); 0 = never.
    :param max_parked: most parked clients kept (oldest dropped first).
    """

    def __init__(
        self, manager: RealtimeManager, *, grace: float = 0.0, max_parked: int = 100_000
    ) -> None:
        self.manager = manager
        self.grace = grace
        self.max_parked = max_parked
        self._parked: OrderedDict[str, tuple[float, ParkedClient]] = OrderedDict()
        self._lock = threading.Lock()
        if grace > 0:
            manager.on_remove(self.park)

    def register(self, client_id: str) -> None:
        return None

    def park(self, parked: ParkedClient) -> None:
        """Keep a closed client's state for ``grace`` seconds."""
        if not parked.resumable:
            return
        deadline = self.manager.clock() + self.grace
        with self._lock:
            self._parked[parked.id] = (deadline, parked)
            self._parked.move_to_end(parked.id)
            self._purge_locked()

    def _purge_locked(self) -> None:
        now = self.manager.clock()
        while self._parked:
            deadline, _ = next(iter(self._parked.values()))
            if deadline > now and len(self._parked) <= self.max_parked:
                break
            self._parked.popitem(last=False)

    def take_parked(self, client_id: str, remote_addr: str | None) -> ParkedClient | None:
        """The parked client to resume, if still within grace and from the same address."""
        with self._lock:
            self._purge_locked()
            entry = self._parked.get(client_id)
            if entry is None or entry[1].remote_addr != remote_addr:
                return None
            del self._parked[client_id]
            deadline, parked = entry
        # Time spent parked counts toward the max lifetime too.
        return replace(parked, age=parked.age + self.grace - (deadline - self.manager.clock()))

    def subscribe(
        self,
        client_id: str,
        subscriptions: list[Subscription],
        user: AuthUser | None,
        remote_addr: str | None,
    ) -> None:
        self.manager.subscribe(
            client_id, subscriptions, user, remote_addr=remote_addr, check_addr=True
        )

    def status(self) -> dict[str, object]:
        return {"router": "local"}

    def list_clients(self) -> ClientListing:
        """This process's clients (it is the whole service)."""
        worker = local_worker_name()
        items = self.manager.describe_clients()
        for item in items:
            item["worker"] = worker
        return {"items": items, "workers": [worker], "unanswered": []}

    def close_client(self, client_id: str) -> bool:
        """End ``client_id``'s stream (not resumable); False if it is not connected."""
        return self.manager.remove_client(client_id, reason=DELETED_REASON)

    def start(self) -> None:
        return None

    def close(self) -> None:
        return None
