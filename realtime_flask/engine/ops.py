"""What operators see of the clients: log lines, metrics snapshots, the client listing.

Plain data and formatting only (no IO but the ``realtime_flask.clients`` log
line); the manager calls these outside its lock.

Log lines are logfmt, one per connect, disconnect (with its reason) and
subscription change, at INFO on the ``realtime_flask.clients`` logger::

    event=connect client=<id> auth=- addr=127.0.0.1
    event=subscribe client=<id> auth=<record id> collection=users addr=... topics=2
        collections=posts   (one line)
    event=disconnect client=<id> auth=- addr=... reason="idle timeout" seconds=300.0

They carry ids, counts and collection names only: never a token, a password
or a topic's ``options`` (which may carry headers).
"""

from __future__ import annotations

import datetime
import logging
import typing as t
from dataclasses import dataclass

from realtime_flask.core.events import AuthUser
from realtime_flask.core.topics import Subscription
from realtime_flask.engine.client import DELETED_REASON
from realtime_flask.engine.client import RealtimeClient

__all__ = [
    "DELETED_REASON",
    "ManagerStats",
    "client_log",
    "collections_of",
    "describe",
    "iso_time",
    "log_client",
]

#: The lifecycle logger (see the module doc).
client_log = logging.getLogger("realtime_flask.clients")


@dataclass(frozen=True, slots=True)
class ManagerStats:
    """A snapshot for metrics (``RealtimeManager.stats``): open streams, subscriptions
    per collection or topic, closes and dropped frames per reason (since start),
    and the frames and bytes queued over all clients."""

    open: int
    subscriptions: dict[str, int]
    closed: dict[str, int]
    frames_dropped: dict[str, int]
    queued_frames: int
    queued_bytes: int


def describe(
    client: RealtimeClient,
    user: AuthUser | None,
    subs: tuple[Subscription, ...],
    offset: float,
) -> dict[str, object]:
    """One row of the client listing: ``{"id", "authRecordId", "authCollectionId",
    "authCollectionName", "subscriptions": [<topic without ?options=>, ...],
    "connectedAt": <ISO 8601 UTC>, "queuedFrames", "queuedBytes", "remoteAddr"}``;
    the auth keys are ``""`` for a guest.  ``offset`` turns the manager's clock into
    Unix seconds."""
    return {
        "id": client.id,
        "authRecordId": user.id if user is not None else "",
        "authCollectionId": user.collection_id if user is not None else "",
        "authCollectionName": user.collection_name if user is not None else "",
        "subscriptions": [sub.path for sub in subs],  # options may carry headers: never shown
        "connectedAt": iso_time(client.connected_at + offset),
        "queuedFrames": client.controller.qsize(),
        "queuedBytes": client.controller.qbytes(),
        "remoteAddr": client.remote_addr or "",
    }


def iso_time(seconds: float) -> str:
    """Unix seconds as ISO 8601 UTC with milliseconds: ``2026-12-01T07:25:35.123Z``."""
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


#: Most collections named in one subscription log line, and most characters of each.
_LOG_COLLECTIONS: t.Final = 10
_LOG_TEXT: t.Final = 64


def _logfmt(value: str) -> str:
    """``value`` as one logfmt value: bare when safe, else quoted with escapes
    (a client-given name cannot forge a key or a line)."""
    value = value[:_LOG_TEXT]
    if value and all(c.isalnum() or c in "_-.:/@" for c in value):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + "".join(c if c.isprintable() else "?" for c in escaped) + '"'


def collections_of(subs: tuple[Subscription, ...]) -> str:
    """The collections (or custom topics) ``subs`` name, without their options."""
    names = list(dict.fromkeys(sub.collection for sub in subs))
    shown = ",".join(names[:_LOG_COLLECTIONS])
    return shown + (",..." if len(names) > _LOG_COLLECTIONS else "")


def log_client(event: str, client: RealtimeClient, **fields: str) -> None:
    """One logfmt line on ``realtime_flask.clients`` at INFO, e.g.
    ``event=subscribe client=<id> auth=<record id> collection=users topics=2 collections=posts``.

    Carries ids, counts and collection names only: never a token, a password
    or a topic's options.  Never called under the manager's lock.
    """
    if not client_log.isEnabledFor(logging.INFO):
        return
    user = client.user
    parts = [f"event={event}", f"client={client.id}"]
    parts.append(f"auth={_logfmt(user.id) if user is not None else '-'}")
    if user is not None:
        parts.append(f"collection={_logfmt(user.collection_name)}")
    parts.append(f"addr={_logfmt(client.remote_addr or '-')}")
    parts.extend(f"{key}={_logfmt(value)}" for key, value in fields.items())
    client_log.info(" ".join(parts))
