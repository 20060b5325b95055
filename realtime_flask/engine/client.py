"""One realtime client's own state: its id, queue, topics, auth and times.

Rules:

1. The registry fields of a live client (``subscriptions``, ``user``) change
   only under the manager's lock (engine/manager.py); everything else here is
   set once, at connect, except the two below.
2. ``last_activity`` is a plain attribute store, atomic under the GIL and
   under gevent, never a lock per frame: the manager writes it for each chunk
   the stream delivers and each accepted POST; the reaper only compares it.
3. ``close_reason`` is written once, by the manager's single close path.
4. The ``id:`` line is encoded once, here: it is the only per-client part of a
   frame.
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass

from nanoid import generate as _nanoid

from realtime_flask.core import sse
from realtime_flask.core.events import AuthUser
from realtime_flask.core.topics import Subscription
from realtime_flask.runtime import ClientQueue

__all__ = [
    "CLIENT_ID_ALPHABET",
    "CLIENT_ID_LENGTH",
    "DELETED_REASON",
    "MAX_LIFETIME_REASON",
    "ParkedClient",
    "RealtimeClient",
    "new_client_id",
]

#: 40 characters from a 62-symbol alphabet: ~238 random bits, the shape of
#: PocketBase's ``security.RandomString(40)`` client ids.
CLIENT_ID_ALPHABET: t.Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
CLIENT_ID_LENGTH: t.Final = 40
#: The close reason of a client that reached ``max_lifetime``: it is not resumable.
MAX_LIFETIME_REASON: t.Final = "max lifetime reached"
#: The close reason of a client ended by ``DELETE /api/realtime/clients/{id}``:
#: not resumable either (its EventSource comes back as a new client).
DELETED_REASON: t.Final = "deleted by a superuser"


def new_client_id() -> str:
    """A fresh unguessable client id (nanoid, 40 alphanumerics)."""
    return str(_nanoid(CLIENT_ID_ALPHABET, CLIENT_ID_LENGTH))


class RealtimeClient:
    """One connected stream.  Registry fields change only under the manager's lock.

    ``controller`` is the stream's frame queue; ``connected_at`` and
    ``last_activity`` are seconds of the manager's clock; ``remote_addr`` is
    the address the stream came from (a POST must come from it too);
    ``close_reason`` is None while the client is registered.
    """

    __slots__ = (
        "abort",
        "close_reason",
        "connected_at",
        "controller",
        "id",
        "id_line",
        "id_prefix",
        "last_activity",
        "remote_addr",
        "since",
        "subscriptions",
        "user",
        "writing_since",
    )

    def __init__(
        self, client_id: str, controller: ClientQueue, now: float, remote_addr: str | None
    ) -> None:
        self.id = client_id
        self.controller = controller
        self.subscriptions: tuple[Subscription, ...] = ()
        self.user: AuthUser | None = None
        self.last_activity = now
        self.connected_at = now
        self.remote_addr = remote_addr
        self.close_reason: str | None = None
        #: The log position this client's stream started from (its connect, or
        #: the end of its replay): a resume with the bare client id, which is
        #: all a client that has had no event knows, replays from here.
        self.since = ""
        #: When the server started writing the chunk it is writing now (clock
        #: seconds), None between writes; a write stuck past the write timeout
        #: ends the client (``RealtimeManager.reap``).
        self.writing_since: float | None = None
        #: Cuts the connection under a write that cannot progress (set by the
        #: web layer: shuts the socket down), or None.
        self.abort: t.Callable[[], None] | None = None
        # PocketBase sends ``id:<clientId>`` on every frame; it is the only
        # per-client part of a frame, so it is encoded once here.
        self.id_line = sse.format_id_line(client_id)
        self.id_prefix = self.id_line[:-1]  # without the newline

    def connect_frame(self) -> bytes:
        """The PB_CONNECT frame: ``id`` and ``data.clientId`` are the same id."""
        return self.id_line + sse.format_event_body("PB_CONNECT", {"clientId": self.id})

    def __repr__(self) -> str:
        return f"<RealtimeClient {self.id!r} topics={len(self.subscriptions)}>"


@dataclass(frozen=True, slots=True)
class ParkedClient:
    """What a closed client leaves behind for a resume with ``Last-Event-ID``."""

    id: str
    subscriptions: tuple[Subscription, ...]
    user: AuthUser | None
    remote_addr: str | None
    reason: str
    #: seconds the client had been connected when it closed (max lifetime
    #: keeps counting across a resume)
    age: float = 0.0
    #: the log position its stream started from (``RealtimeClient.since``)
    since: str = ""

    @property
    def resumable(self) -> bool:
        """A client ended for its max lifetime, or by a superuser, must reconnect afresh."""
        return self.reason not in (MAX_LIFETIME_REASON, DELETED_REASON)
