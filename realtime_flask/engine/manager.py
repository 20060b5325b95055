"""RealtimeManager: the registry of connected realtime clients, their topic index and fan-out.

The manager holds the registry (client id -> client), the topic index
(collection -> subscribed clients, with their auth and topics), dispatch and
the one frame builder (engine/frames.py: ``position_suffix``, ``client_frames``
and the per-event bodies) that the fan-out and a replay (``render``) share, so a
resumed client gets the very bytes a live one got.  A client's own state is
engine/client.py; the reaper loop, and which clients it closes, engine/reaper.py.

Rules (break one and a slow or dead client can stall everybody):

1. All registry state (``_clients``, ``_index``, each client's ``subscriptions``
   and ``user``) is mutated only while holding ``_lock``.
2. Nothing blocks while ``_lock`` is held: no IO, no logging, no encoding, no
   queue puts.  Take a snapshot under the lock, act on it after.  Helpers that
   expect the lock to be held are named ``_*_locked``.
3. A client is closed through exactly one path, ``remove_client``: it leaves
   the registry and every index entry, then its controller is closed so its
   stream generator wakes up and ends.  It is idempotent.
4. A publisher never waits for a client: frames go in with ``put_nowait``; a
   full queue disconnects that client (it reconnects and resubscribes).
5. Time comes from the injected ``clock``; the manager never sleeps.

Concurrency primitives come from ``realtime_flask.runtime``, the one seam that
knows gevent: the client queue is gevent's cheap flavour once the process is
patched (every entry point patches) and a ``threading.Condition`` queue
otherwise, which is what the unit tests use.  ``last_activity`` is a plain
attribute store (atomic under the GIL and under gevent), never a lock per frame.

``ClientQueue``, ``QueueClosed``, ``RealtimeClient``, ``ParkedClient``,
``new_client_id`` and ``Reaper`` are importable from here too; their homes are
``runtime``, engine/client.py and engine/reaper.py.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
import typing as t
from collections.abc import Iterable
from collections.abc import Sequence
from dataclasses import dataclass

from realtime_flask import runtime
from realtime_flask.core import sse
from realtime_flask.core.events import AuthUser
from realtime_flask.core.events import Published
from realtime_flask.core.events import TopicMessage
from realtime_flask.core.events import same_auth
from realtime_flask.core.topics import Subscription
from realtime_flask.engine.client import MAX_LIFETIME_REASON
from realtime_flask.engine.client import ParkedClient
from realtime_flask.engine.client import RealtimeClient
from realtime_flask.engine.client import new_client_id
from realtime_flask.engine.frames import EventBodies
from realtime_flask.engine.frames import client_frames
from realtime_flask.engine.frames import position_suffix
from realtime_flask.engine.ops import ManagerStats
from realtime_flask.engine.ops import collections_of
from realtime_flask.engine.ops import describe
from realtime_flask.engine.ops import log_client
from realtime_flask.engine.reaper import IDLE_TIMEOUT_REASON
from realtime_flask.engine.reaper import SLOW_CONSUMER_REASON
from realtime_flask.engine.reaper import WRITE_TIMEOUT_REASON
from realtime_flask.engine.reaper import Reaper
from realtime_flask.engine.reaper import expired
from realtime_flask.errors import AccessDenied
from realtime_flask.errors import BadRequest
from realtime_flask.errors import ClientNotFound
from realtime_flask.errors import TooManyClients
from realtime_flask.runtime import ClientQueue
from realtime_flask.runtime import QueueClosed

if t.TYPE_CHECKING:
    from realtime_flask.engine.access import EventView

__all__ = [
    "ClientQueue",
    "DispatchResult",
    "ManagerStats",
    "ParkedClient",
    "QueueClosed",
    "Reaper",
    "RealtimeClient",
    "RealtimeManager",
    "client_frames",
    "new_client_id",
    "position_suffix",
]

logger = logging.getLogger(__name__)

Clock = t.Callable[[], float]


#: A fan-out looks at the time once per this many clients.
_CLOCK_EVERY: t.Final[int] = 64

#: One index entry: the client, its auth and its subscriptions on one collection.
_IndexEntry: t.TypeAlias = "tuple[RealtimeClient, AuthUser | None, tuple[Subscription, ...]]"


@dataclass(frozen=True, slots=True)
class DispatchResult:
    """What one ``dispatch`` did: frames queued, clients reached, clients dropped."""

    frames: int
    clients: int
    dropped: int

    def __add__(self, other: DispatchResult) -> DispatchResult:
        return DispatchResult(
            self.frames + other.frames, self.clients + other.clients, self.dropped + other.dropped
        )


class RealtimeManager:
    """Lock-protected registry of realtime clients, their queues and topics.

    :param queue_size: frames a client may have queued before it is dropped.
    :param idle_timeout: seconds without activity before ``reap`` closes a client.
    :param max_lifetime: seconds after which ``reap`` closes any client.
    :param clock: monotonic seconds; injected so tests drive time.
    :param id_factory: makes client ids (tests may pin them).
    :param slice_seconds: a fan-out calls ``pause`` once it has run this long
        (seconds of ``timer``) since its last pause.  The slice runs across
        events while fan-outs follow each other without a break, so a backlog
        of many small events (a listener catching up after a Redis outage)
        yields as often as one big event.  Cheap fan-outs run in one slice,
        which lets the streams' wake-ups pile up and leave in fewer writes
        under load; costly ones (rule checks for thousands of users) are cut.
    :param yield_every: also pause after this many subscriptions were looked at.
    :param pause: gives other greenlets a turn (``runtime.cooperative_sleep``).
    :param timer: seconds for ``slice_seconds`` (real time, not ``clock``).
    """

    def __init__(
        self,
        *,
        queue_size: int = 512,
        idle_timeout: float = 300.0,
        max_lifetime: float = 1800.0,
        clock: Clock = time.monotonic,
        id_factory: t.Callable[[], str] = new_client_id,
        slice_seconds: float = 0.005,
        yield_every: int = 1_000_000,
        pause: t.Callable[[], None] = runtime.cooperative_sleep,
        timer: Clock = time.perf_counter,
        max_clients: int = 0,
        max_clients_per_addr: int = 0,
        write_timeout: float = 30.0,
        queue_bytes: int = 0,
    ) -> None:
        self.queue_size = queue_size
        #: Most clients at once, and per remote address (0: no limit).
        self.max_clients = max_clients
        self.max_clients_per_addr = max_clients_per_addr
        self._per_addr: dict[str | None, int] = {}
        #: Most bytes a client may have queued (0: frames only bound it).
        self.queue_bytes = queue_bytes
        #: Seconds one chunk's write may take before the client is ended (0: never).
        self.write_timeout = write_timeout
        #: Clients closed so far, by reason (idle timeout, slow consumer, ...): metrics.
        self.closed_by_reason: collections.Counter[str] = collections.Counter()
        #: Frames that never reached their client, by the client's close reason:
        #: still queued when it closed, or refused by its full queue (metrics).
        self.frames_dropped_by_reason: collections.Counter[str] = collections.Counter()
        self.idle_timeout = idle_timeout
        self.max_lifetime = max_lifetime
        self.clock = clock
        self._id_factory = id_factory
        self.slice_seconds = slice_seconds
        self.yield_every = yield_every
        self._pause = pause
        self._timer = timer
        self._since_pause = 0
        self._slice_started = 0.0
        self._slice_steps = 0
        self._last_fanout_end = -1e9
        self._lock = threading.Lock()
        self._clients: dict[str, RealtimeClient] = {}
        # collection name or id as written in a topic -> client id -> the client,
        # its auth and its subscriptions on that collection.  A client's auth is
        # only ever changed through _set_user_locked, which keeps this in step.
        self._index: dict[str, dict[str, _IndexEntry]] = {}
        # collection -> list(bucket.values()), rebuilt after the bucket changes:
        # a fan-out to an unchanged audience copies nothing under the lock.
        self._snapshots: dict[str, list[_IndexEntry]] = {}
        self._on_remove: list[t.Callable[[ParkedClient], object]] = []
        self.dropped_slow = 0
        self.reaped_idle = 0
        self.reaped_lifetime = 0

    # -- registry ---------------------------------------------------------------

    def pause(self) -> None:
        """Give other greenlets a turn during long work (a fan-out, a replay)."""
        self._pause()

    def register_client(
        self, *, remote_addr: str | None = None, resume: ParkedClient | None = None
    ) -> RealtimeClient:
        """Create and register a new client with an empty queue and no topics.

        With ``resume``, the client gets back the parked client's id, topics and
        auth (never more than it had); ClientNotFound if that id is live.
        """
        now = self.clock()
        controller = runtime.new_client_queue(self.queue_size, self.queue_bytes)
        if resume is not None:
            client = RealtimeClient(resume.id, controller, now, remote_addr)
            client.connected_at = now - resume.age
            with self._lock:
                if client.id in self._clients:
                    raise ClientNotFound("client id already connected")
                self._admit_locked(remote_addr)
                self._clients[client.id] = client
                client.user = resume.user  # not indexed yet
                client.subscriptions = _dedupe(resume.subscriptions)
                self._index_locked(client)
            log_client("connect", client, resumed="true")
            return client
        while True:
            client = RealtimeClient(self._id_factory(), controller, now, remote_addr)
            with self._lock:
                if client.id not in self._clients:
                    self._admit_locked(remote_addr)
                    self._clients[client.id] = client
                    break
        log_client("connect", client)
        return client

    def _admit_locked(self, remote_addr: str | None) -> None:
        """Count one more client of ``remote_addr``, or TooManyClients (429) past a cap."""
        if self.max_clients and len(self._clients) >= self.max_clients:
            raise TooManyClients()
        held = self._per_addr.get(remote_addr, 0)
        if self.max_clients_per_addr and held >= self.max_clients_per_addr:
            raise TooManyClients()
        self._per_addr[remote_addr] = held + 1

    def remove_client(
        self, client_id: str, reason: str = "removed", *, expected: RealtimeClient | None = None
    ) -> bool:
        """Close a client: the single close path.  False if it was already gone.

        ``expected``: remove only that very client object; a stale reference must
        not close a newer client resumed under the same id.
        """
        with self._lock:
            client = self._clients.get(client_id)
            if client is None or (expected is not None and client is not expected):
                return False
            del self._clients[client_id]
            left = self._per_addr.get(client.remote_addr, 1) - 1
            if left > 0:
                self._per_addr[client.remote_addr] = left
            else:
                self._per_addr.pop(client.remote_addr, None)
            self._unindex_locked(client)
            parked = ParkedClient(
                client.id,
                client.subscriptions,
                client.user,
                client.remote_addr,
                reason,
                age=self.clock() - client.connected_at,
                since=client.since,
            )
            client.subscriptions = ()
            client.close_reason = reason
            self.closed_by_reason[reason] += 1
            pending = client.controller.qsize()
            if pending:
                self.frames_dropped_by_reason[reason] += pending
        client.controller.close()
        log_client("disconnect", client, reason=reason, seconds=f"{parked.age:.1f}")
        for callback in self._on_remove:
            try:
                callback(parked)
            except Exception:  # a listener must not break the close path
                logger.exception("realtime on_remove callback failed for %s", client_id)
        return True

    def on_remove(self, callback: t.Callable[[ParkedClient], object]) -> None:
        """Call ``callback(parked)`` after every client removal (outside the lock)."""
        self._on_remove.append(callback)

    def get_client(self, client_id: str) -> RealtimeClient | None:
        with self._lock:
            return self._clients.get(client_id)

    def get_client_count(self) -> int:
        with self._lock:
            return len(self._clients)

    def client_ids(self) -> list[str]:
        with self._lock:
            return list(self._clients)

    def stats(self) -> ManagerStats:
        """Counts for metrics (see ``ManagerStats``), read in one pass under the lock."""
        with self._lock:
            clients = list(self._clients.values())
            subscriptions = {
                name: sum(len(entry[2]) for entry in bucket.values())
                for name, bucket in self._index.items()
            }
            closed = dict(self.closed_by_reason)
            frames_dropped = dict(self.frames_dropped_by_reason)
        return ManagerStats(
            open=len(clients),
            subscriptions=subscriptions,
            closed=closed,
            frames_dropped=frames_dropped,
            queued_frames=sum(c.controller.qsize() for c in clients),
            queued_bytes=sum(c.controller.qbytes() for c in clients),
        )

    def describe_clients(self, *, wall_clock: Clock = time.time) -> list[dict[str, object]]:
        """Every connected client as JSON-ready rows (``engine.ops.describe``), for
        ``GET /api/realtime/clients``; ``wall_clock`` dates ``connectedAt``."""
        with self._lock:
            rows = [(c, c.user, c.subscriptions) for c in self._clients.values()]
        offset = wall_clock() - self.clock()
        return [describe(client, user, subs, offset) for client, user, subs in rows]

    def index_size(self) -> int:
        """Number of (collection, client) index entries; 0 once every client is gone."""
        with self._lock:
            return sum(len(bucket) for bucket in self._index.values())

    def set_client_auth(self, client_id: str, user: AuthUser | None) -> None:
        with self._lock:
            self._set_user_locked(self._require_locked(client_id), user)

    def _set_user_locked(self, client: RealtimeClient, user: AuthUser | None) -> None:
        self._unindex_locked(client)
        client.user = user
        self._index_locked(client)

    def set_subscriptions(self, client_id: str, subscriptions: Iterable[Subscription]) -> None:
        """Replace the client's whole topic set (PocketBase's replace semantics)."""
        subs = _dedupe(subscriptions)
        with self._lock:
            client = self._require_locked(client_id)
            self._unindex_locked(client)
            client.subscriptions = subs
            self._index_locked(client)

    def update_activity(self, client_id: str) -> None:
        """Mark the client active now (a delivered frame or an accepted POST).

        No lock: one attribute store is atomic, and the reaper only compares it.
        The stream itself calls ``touch`` on its client object.
        """
        client = self._clients.get(client_id)
        if client is not None:
            client.last_activity = self.clock()

    def touch(self, client: RealtimeClient) -> None:
        """Mark ``client`` active now (the stream delivered a chunk to it)."""
        client.last_activity = self.clock()

    def subscribe(
        self,
        client_id: str,
        subscriptions: Iterable[Subscription],
        user: AuthUser | None,
        *,
        remote_addr: str | None = None,
        check_addr: bool = False,
    ) -> RealtimeClient:
        """Apply one accepted ``POST /api/realtime`` atomically.

        Checks in PocketBase's order: the client exists (ClientNotFound), the
        POST comes from the stream's address when ``check_addr`` (BadRequest),
        the auth transition is allowed (AccessDenied: guest->guest, guest->X and
        X->X only).  On any failure nothing changes.  On success the auth is
        stored (refreshed even when unchanged), the topics replaced and the
        client marked active.
        """
        subs = _dedupe(subscriptions)
        now = self.clock()
        with self._lock:
            client = self._require_locked(client_id)
            if check_addr and client.remote_addr != remote_addr:
                raise BadRequest("Invalid realtime client.")
            if client.user is not None and not same_auth(client.user, user):
                raise AccessDenied()
            self._unindex_locked(client)
            client.user = user
            client.subscriptions = subs
            self._index_locked(client)
            client.last_activity = now
        log_client("subscribe", client, topics=str(len(subs)), collections=collections_of(subs))
        return client

    def _require_locked(self, client_id: str) -> RealtimeClient:
        client = self._clients.get(client_id)
        if client is None:
            raise ClientNotFound()
        return client

    def _index_locked(self, client: RealtimeClient) -> None:
        by_collection: dict[str, list[Subscription]] = {}
        for sub in client.subscriptions:
            by_collection.setdefault(sub.collection, []).append(sub)
        for collection, subs in by_collection.items():
            self._index.setdefault(collection, {})[client.id] = (client, client.user, tuple(subs))
            self._snapshots.pop(collection, None)

    def _unindex_locked(self, client: RealtimeClient) -> None:
        for collection in {sub.collection for sub in client.subscriptions}:
            bucket = self._index.get(collection)
            if bucket is None:
                continue
            bucket.pop(client.id, None)
            self._snapshots.pop(collection, None)
            if not bucket:
                del self._index[collection]

    # -- fan-out ----------------------------------------------------------------

    def dispatch(self, event: Published, view: EventView | None = None) -> DispatchResult:
        """Queue one frame per visible matching subscription of every subscribed client.

        Only clients in the topic index for the event's collection (name or id)
        are looked at; for a custom message (``TopicMessage``), those under its
        topic's first segment, of which only subscriptions whose ``path`` is
        the message's topic match.  ``view`` (see
        ``realtime_flask.engine.access``) decides per (auth, subscription)
        whether a frame goes out and with which ``data:`` bytes; without one
        every subscriber gets the event as published.  One pass per event:
        subscribers that share an auth and a topic share one check and one
        encoded frame body; only the client's ``id:`` line is per client.  A
        check that raises costs only that subscriber its frame.
        """
        return self.dispatch_many([(event, view)])

    def dispatch_many(self, items: Sequence[tuple[Published, EventView | None]]) -> DispatchResult:
        """``dispatch`` for consecutive events, in order, with one queue put per client.

        A backlog (events published while the last fan-out ran, a page read
        from the Redis log) reaches each client as one chunk, so a busy
        process writes once per client per batch instead of once per event:
        throughput grows with load instead of collapsing.  Every event's
        audience is read before any frame is queued, so a client that resumes
        during the fan-out replays these events or gets them live, never both.
        """
        self._since_pause += len(items)  # each event counts, even one nobody sees
        with self._lock:
            audiences = [self._audience_locked(event) for event, _view in items]
        slicer = _Slicer(self)
        total = DispatchResult(0, 0, 0)
        # A run is cut into passes small enough for a queue to take one pass's
        # frames, with a pause between them so streams drain: a burst bigger
        # than ``queue_size`` does not drop a client that keeps up.
        step = self.batch_events
        for start in range(0, len(items), step):
            if start:
                slicer.pause()
            total += self._fan_out(
                items[start : start + step], audiences[start : start + step], slicer
            )
        slicer.done()
        return total

    @property
    def batch_events(self) -> int:
        """Most events fanned out in one pass (one queue put per client per pass)."""
        return max(1, self.queue_size // 8)

    def _fan_out(
        self,
        items: Sequence[tuple[Published, EventView | None]],
        audiences: list[list[_IndexEntry]],
        slicer: _Slicer,
    ) -> DispatchResult:
        # client -> its frame (bytes) or, from a second frame on, its frames (list):
        # the common case allocates no container per client, which keeps the
        # cyclic GC (and its pauses) out of large fan-outs.
        queued: dict[RealtimeClient, bytes | list[bytes]] = {}
        for (event, view), candidates in zip(items, audiences, strict=True):
            if not candidates:
                continue
            bodies = EventBodies(event, view)
            body_for = bodies.body_for
            position = position_suffix(event.id)  # encoded once, shared by every client
            for client, user, subs in candidates:
                slicer.step(len(subs))
                if len(subs) == 1:
                    # client_frames for one body, inlined: no list per client.
                    body = body_for(client.id, user, subs[0])
                    if body is None:
                        continue
                    frame = client.id_prefix + position + body
                    held = queued.get(client)
                    if held is None:
                        queued[client] = frame
                    elif type(held) is bytes:
                        queued[client] = [held, frame]
                    else:
                        t.cast(list[bytes], held).append(frame)
                    continue
                frames = client_frames(client, position, bodies.bodies_for(client.id, user, subs))
                if not frames:
                    continue
                held = queued.get(client)
                if held is None:
                    queued[client] = frames
                elif type(held) is bytes:
                    queued[client] = [held, *frames]
                else:
                    t.cast(list[bytes], held).extend(frames)
        sent = reached = dropped = 0
        for client, held in queued.items():
            slicer.step(1)
            if type(held) is bytes:
                ok, count = client.controller.put_nowait(held), 1
            else:
                many = t.cast(list[bytes], held)
                ok, count = client.controller.put_many(many), len(many)
            if ok:
                sent += count
                reached += 1
            elif self._drop_slow(client, count):
                dropped += 1
        return DispatchResult(frames=sent, clients=reached, dropped=dropped)

    def _audience_locked(self, event: Published) -> list[_IndexEntry]:
        """Index entries of every client subscribed to ``event``'s collection.

        A client subscribed under both the collection's name and its id gets
        one entry with its matching topics in subscription order (as a replay
        builds them), so only the last frame of the event names its position.
        """
        found: list[list[_IndexEntry]] = []
        for name in event.names:
            snapshot = self._snapshots.get(name)
            if snapshot is None:
                bucket = self._index.get(name)
                if not bucket:
                    continue
                snapshot = self._snapshots[name] = list(bucket.values())
            found.append(snapshot)  # shared and never mutated
        if len(found) < 2:
            return found[0] if found else []
        names = event.names
        merged: dict[RealtimeClient, _IndexEntry] = {}
        for snapshot in found:
            for entry in snapshot:
                client = entry[0]
                if client in merged:
                    subs = tuple(s for s in client.subscriptions if s.collection in names)
                    merged[client] = (client, client.user, subs)
                else:
                    merged[client] = entry
        return list(merged.values())

    def _drop_slow(self, client: RealtimeClient, frames: int = 1) -> bool:
        """A put of ``frames`` failed: disconnect ``client`` unless it was closed meanwhile."""
        if client.controller.closed:
            return False  # closed meanwhile: not a slow consumer
        if not self.remove_client(client.id, reason=SLOW_CONSUMER_REASON, expected=client):
            return False
        self._abort_write(client)  # a write blocked behind a full window would stay forever
        with self._lock:
            self.dropped_slow += 1
            self.frames_dropped_by_reason[SLOW_CONSUMER_REASON] += frames
        logger.warning(
            "realtime client %s dropped: queue of %d frames is full", client.id, self.queue_size
        )
        return True

    def render(
        self, client: RealtimeClient, event: Published, view: EventView | None
    ) -> list[bytes]:
        """The frames ``client`` gets for ``event`` (a replay after a resume), built
        exactly as ``dispatch`` builds them."""
        names = event.names
        subs = tuple(sub for sub in client.subscriptions if sub.collection in names)
        bodies = EventBodies(event, view).bodies_for(client.id, client.user, subs)
        return client_frames(client, position_suffix(event.id), bodies)

    def send_to_all(self, event_name: str, data: object) -> int:
        """Queue one frame named ``event_name`` to every client (e.g. ``RF_RESET``)."""
        body = sse.format_event_body(event_name, data)
        with self._lock:
            clients = list(self._clients.values())
        sent = 0
        for client in clients:
            if client.controller.put_nowait(client.id_line + body):
                sent += 1
            else:
                self._drop_slow(client)
        return sent

    def apply_auth_change(self, event: Published) -> int:
        """Keep the auth of connected clients in step with their auth record.

        An update refreshes the record rules see; an update that rotated the
        ``tokenKey`` (a password change, "log out everywhere") or a delete drops
        the auth: those clients carry on as guests.  Returns clients changed.
        """
        if isinstance(event, TopicMessage):
            return 0
        stored = event.stored
        if stored is None or event.action == "create" or "tokenKey" not in stored:
            return 0
        record_id = event.record_id
        collection_id = event.collection_id
        changed = 0
        with self._lock:
            for client in self._clients.values():
                user = client.user
                if user is None or user.id != record_id or user.collection_id != collection_id:
                    continue
                if event.action == "delete" or user.record.get("tokenKey") != stored["tokenKey"]:
                    self._set_user_locked(client, None)
                else:
                    fresh = AuthUser(
                        user.collection_id, user.id, user.collection_name, stored, user.superuser
                    )
                    self._set_user_locked(client, fresh)
                changed += 1
        return changed

    # -- lifetime ---------------------------------------------------------------

    def reap(self, now: float | None = None) -> list[str]:
        """Close clients idle longer than ``idle_timeout`` or older than ``max_lifetime``."""
        now = self.clock() if now is None else now
        with self._lock:
            old, idle = expired(
                self._clients.values(),
                now,
                idle_timeout=self.idle_timeout,
                max_lifetime=self.max_lifetime,
            )
            stuck = (
                [
                    c
                    for c in self._clients.values()
                    if c.writing_since is not None and now - c.writing_since >= self.write_timeout
                ]
                if self.write_timeout
                else []
            )
        closed = [cid for cid in old if self.remove_client(cid, reason=MAX_LIFETIME_REASON)]
        closed_idle = [cid for cid in idle if self.remove_client(cid, reason=IDLE_TIMEOUT_REASON)]
        closed_stuck = []
        for client in stuck:  # a peer that stopped reading: its write never ends
            if self.remove_client(client.id, reason=WRITE_TIMEOUT_REASON, expected=client):
                self._abort_write(client)
                closed_stuck.append(client.id)
        with self._lock:
            self.reaped_lifetime += len(closed)
            self.reaped_idle += len(closed_idle)
        return closed + closed_idle + closed_stuck

    @staticmethod
    def _abort_write(client: RealtimeClient) -> None:
        """Cut the connection of a removed client whose stream is blocked in a write."""
        if client.writing_since is not None and client.abort is not None:
            try:
                client.abort()
            except Exception:  # the connection may be gone already
                logger.debug("aborting %s's connection failed", client.id, exc_info=True)

    def close_all(self, reason: str = "server shutdown") -> int:
        """Close every client (graceful shutdown); returns how many were open."""
        return sum(1 for cid in self.client_ids() if self.remove_client(cid, reason=reason))


class _Slicer:
    """Cuts a fan-out into time slices with ``pause`` between them (see ``slice_seconds``)."""

    __slots__ = ("_checked", "_end", "_manager", "_n", "_timer")

    def __init__(self, manager: RealtimeManager) -> None:
        self._manager = manager
        self._timer = timer = manager._timer
        now = timer()
        if now - manager._last_fanout_end > manager.slice_seconds:
            manager._slice_started = now  # the fan-out greenlet was idle: a new slice
        self._end = manager._slice_started + manager.slice_seconds
        self._checked = manager._since_pause
        # The step count runs across fan-outs too: a backlog of small ones
        # (fewer clients each than _CLOCK_EVERY) still looks at the clock.
        self._n = manager._slice_steps
        if now >= self._end:
            self.pause()

    def step(self, subscriptions: int) -> None:
        """Account for one client with ``subscriptions`` topics; pause when the slice is used."""
        self._checked += subscriptions
        self._n += 1
        if self._checked >= self._manager.yield_every or (
            not self._n % _CLOCK_EVERY and self._timer() >= self._end
        ):
            self.pause()

    def pause(self) -> None:
        """A long fan-out (thousands of clients, rule checks) must not hold the
        gevent hub: let the streams write, then start a new slice."""
        self._checked = 0
        self._manager._pause()
        self._manager._slice_started = start = self._timer()
        self._end = start + self._manager.slice_seconds

    def done(self) -> None:
        self._manager._since_pause = self._checked
        self._manager._slice_steps = self._n
        self._manager._last_fanout_end = self._timer()


def _dedupe(subscriptions: Iterable[Subscription]) -> tuple[Subscription, ...]:
    seen: set[str] = set()
    out: list[Subscription] = []
    for sub in subscriptions:
        if sub.raw and sub.raw not in seen:
            seen.add(sub.raw)
            out.append(sub)
    return tuple(out)
