"""Where a subscriptions POST is applied: the seam between one process and a cluster.

``LocalRouter`` applies it to this process's manager; ``redis_cluster.RedisRouter``
finds the process that holds the client's stream, wherever it is.
"""

from __future__ import annotations

import typing as t

from .events import AuthUser
from .manager import RealtimeManager
from .topics import Subscription

__all__ = ["LocalRouter", "Router"]


class Router(t.Protocol):
    def register(self, client_id: str) -> None: ...

    def subscribe(
        self,
        client_id: str,
        subscriptions: list[Subscription],
        user: AuthUser | None,
        remote_addr: str | None,
    ) -> None: ...

    def status(self) -> dict[str, object]: ...

    def start(self) -> None: ...

    def close(self) -> None: ...


class LocalRouter:
    """One process: every client is local."""

    def __init__(self, manager: RealtimeManager) -> None:
        self.manager = manager

    def register(self, client_id: str) -> None:
        return None

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

    def start(self) -> None:
        return None

    def close(self) -> None:
        return None
