"""The Redis broker: one ordered event log (a Redis Stream) shared by every process.

Rules:

1. ``publish`` never touches the network and never raises for Redis trouble.
   It encodes the event, appends it to a bounded local *outbox* and returns the
   event with ``id=""``: the id is the stream entry id, assigned by the log.
2. One *drainer* loop per process owns the publishing connection.  It XADDs
   the outbox in order, in pipelined batches, and removes an entry only once
   Redis accepted it.  On failure it keeps the entries (in order) and retries
   with capped exponential backoff.
3. One *listener* loop per process owns the listening connection: ``XREAD
   BLOCK block_ms`` from its last id, so a reconnect continues without a gap
   and ``close()`` is never more than ``block_ms`` away.  Every process, the
   publisher included, delivers events only from the log, so all processes
   see the same events in the same order, each with its stream id.
4. Loss is never silent.  A full outbox drops the event and queues a
   ``reset`` control entry at the point of loss (``outbox_overflow``).  Each
   read is checked, in the same pipeline, against the stream's counters: if
   the entry after the listener's last id was trimmed away, or Redis lost the
   stream (restart without persistence, key deleted: the ``<stream>:epoch`` key
   changed or the counters went backwards), the reset handlers get
   ``history_lost`` before delivery continues.
5. ``redis`` is imported lazily, through ``cluster/_redis.py`` (with the
   codecs of the wire format below).  Under gevent, sockets must be patched
   before ``start()``: an unpatched redis socket would block every greenlet.
6. Handlers run in the listener loop, outside every lock; a failing handler is
   logged and the others still run.

Wire format.  Every entry's ``v`` is the lowest wire version that can read
it; this process reads versions ``"1"`` and ``"2"`` (``READ_VERSIONS``), and
an entry with another ``v`` is logged once per version and skipped, so mixed
versions during a rolling upgrade degrade, never crash::

    {"v": "1", "e": <JSON {collection, action, record, collectionId, stored?,
     unfiltered?}>, "o": <origin: the publishing broker>, "s": <origin's sequence number>}
    {"v": "1", "reset": "outbox_overflow", "o": ..., "s": ...}
    {"v": "2", "m": <JSON {topic, data}>, "o": ..., "s": ...}     (a custom message)

Record events and resets are still written as version 1, so a process of
the previous release (which reads only ``"1"``) keeps getting them during a
rolling upgrade; it skips custom messages, which it could not deliver anyway.

``o``/``s`` are optional for other producers.  When present, the listener
skips an entry whose ``s`` is not above the last one seen from that origin: a
batch that Redis applied but whose reply was lost is sent again, and the copy
is not delivered twice.

Assumptions: Redis >= 7.0 (``XINFO STREAM`` reports ``entries-added``); the
stream is append-only (trimmed by ``MAXLEN``, never ``XDEL``); ids are compared
as Redis orders them.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import typing as t
import uuid
from collections import OrderedDict
from collections import deque
from dataclasses import dataclass

from realtime_flask.cluster import _redis
from realtime_flask.cluster._redis import Spawn
from realtime_flask.core.events import Published
from realtime_flask.core.events import TopicMessage
from realtime_flask.engine.broker import BatchHandler
from realtime_flask.engine.broker import EventHandler
from realtime_flask.engine.broker import P
from realtime_flask.engine.broker import one_by_one
from realtime_flask.errors import BrokerUnavailable

if t.TYPE_CHECKING:
    import redis

__all__ = [
    "EVENT_VERSION",
    "HISTORY_LOST",
    "MESSAGE_VERSION",
    "OUTBOX_OVERFLOW",
    "READ_VERSIONS",
    "WIRE_VERSION",
    "RedisBroker",
    "ResetHandler",
]

logger = logging.getLogger(__name__)

#: Called with the reason (``"outbox_overflow"`` or ``"history_lost"``) when
#: events may have been lost: local state derived from the stream must resync.
ResetHandler = t.Callable[[str], object]

#: The newest wire version this process reads and writes.
WIRE_VERSION: t.Final[str] = "2"
#: The wire versions this process reads.
READ_VERSIONS: t.Final[frozenset[str]] = frozenset({"1", "2"})
#: The version of record events and resets (readable since the first release).
EVENT_VERSION: t.Final[str] = "1"
#: The version of custom messages (``m`` entries).
MESSAGE_VERSION: t.Final[str] = "2"
OUTBOX_OVERFLOW: t.Final[str] = "outbox_overflow"
HISTORY_LOST: t.Final[str] = "history_lost"
#: Entries per XREAD, and outbox entries per pipelined XADD batch.
READ_COUNT: t.Final[int] = 500
WRITE_BATCH: t.Final[int] = 500
#: Origins remembered for duplicate suppression (a few per worker lifetime).
MAX_ORIGINS: t.Final[int] = 4096
#: Longest idle wait of the drainer between wake-ups (publish wakes it at once).
IDLE_WAIT: t.Final[float] = 1.0


@dataclass(frozen=True, slots=True)
class _Pending:
    """One outbox entry: the stream fields to XADD, and when it was queued."""

    fields: dict[str, str]
    queued_at: float
    is_reset: bool = False
    #: set once Redis accepted the entry (publish waits on it, briefly)
    sent: threading.Event | None = None


@dataclass(frozen=True, slots=True)
class _StreamInfo:
    entries_added: int
    length: int
    last_generated: tuple[int, int]


class _Dedupe:
    """Remembers the highest sequence number seen per origin (bounded, LRU)."""

    def __init__(self, max_origins: int = MAX_ORIGINS) -> None:
        self._seen: OrderedDict[str, int] = OrderedDict()
        self._max = max_origins

    def is_duplicate(self, fields: t.Mapping[str, str]) -> bool:
        origin = fields.get("o")
        seq_text = fields.get("s", "")
        if origin is None or not seq_text.isdigit():
            return False
        seq = int(seq_text)
        last = self._seen.get(origin)
        if last is not None and seq <= last:
            return True
        self._seen[origin] = seq
        self._seen.move_to_end(origin)
        if len(self._seen) > self._max:
            self._seen.popitem(last=False)
        return False


class RedisBroker:
    """The Broker protocol over a Redis Stream, for several processes and hosts.

    ::

        broker = RedisBroker("redis://127.0.0.1:6379/0")
        Realtime(app, broker=broker)   # subscribes its handler
        broker.start()                 # in the worker, after gevent patched sockets

    :param url: the Redis URL (``redis://``, ``rediss://``, ``unix://``).
    :param stream: the stream key; ``<stream>:epoch`` is used alongside it.
    :param history_size: entries the stream keeps (``XADD MAXLEN ~``): how far
        back ``history()`` and a reconnecting listener can reach.
    :param outbox_size: events held locally while Redis is slow or away;
        beyond it events are dropped and ``outbox_overflow`` is signalled.
    :param block_ms: the listener's ``XREAD BLOCK``: bounds how long
        ``close()`` waits for it.  Must be positive (0 would block forever).
    :param spawn: starts a loop; a daemon ``threading.Thread`` by default,
        which is a greenlet under gevent's monkey-patching.
    :param clock: monotonic seconds, for the outbox age in ``status()``.
    :param backoff_initial: first retry delay after a Redis error (seconds);
        it doubles on every further failure up to ``backoff_cap``.
    :param socket_timeout: connect and read timeout of every Redis call
        (the listener adds ``block_ms`` to it).
    :param publish_wait: seconds ``publish`` waits for its event to be in the
        log while Redis is healthy (commit order across workers); never longer,
        and not at all while publishing is failing.
    :param degraded_after: seconds the oldest outbox entry may wait before
        ``status()`` reports the broker degraded.
    :param approximate_trim: ``MAXLEN ~`` (the default: cheap, keeps at least
        ``history_size``); False trims exactly, for tests.
    """

    def __init__(
        self,
        url: str,
        *,
        stream: str = "realtime:events",
        history_size: int = 10000,
        outbox_size: int = 10000,
        block_ms: int = 1000,
        spawn: Spawn | None = None,
        clock: t.Callable[[], float] = time.monotonic,
        backoff_initial: float = 0.05,
        backoff_cap: float = 2.0,
        socket_timeout: float = 5.0,
        degraded_after: float = 1.0,
        approximate_trim: bool = True,
        publish_wait: float = 0.03,
    ) -> None:
        for name, value in (
            ("history_size", history_size),
            ("outbox_size", outbox_size),
            ("block_ms", block_ms),
        ):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not 0 < backoff_initial <= backoff_cap:
            raise ValueError(
                f"need 0 < backoff_initial <= backoff_cap, got {backoff_initial!r}, {backoff_cap!r}"
            )
        if socket_timeout <= 0:
            raise ValueError(f"socket_timeout must be positive, got {socket_timeout!r}")
        if not stream:
            raise ValueError("stream must be a non-empty key name")
        errors = _redis.load()
        self.stream = stream
        self.epoch_key = f"{stream}:epoch"
        self.history_size = history_size
        self.outbox_size = outbox_size
        self.block_ms = block_ms
        self._spawn = spawn or _redis.spawn_daemon
        self._clock = clock
        self._backoff_initial = backoff_initial
        self._backoff_cap = backoff_cap
        self._socket_timeout = socket_timeout
        self.publish_wait = publish_wait
        self._degraded_after = degraded_after
        self._approximate = approximate_trim
        #: This broker's id in the wire format's ``o`` field and its client names.
        self.origin = uuid.uuid4().hex[:16]

        self._net_errors = errors.network
        self._response_error = errors.response
        self._auth_errors = errors.auth

        def client(role: str, read_timeout: float) -> redis.Redis:
            # No retries inside redis-py: the loops own retrying (and ordering).
            return _redis.connect(
                url,
                socket_timeout=read_timeout,
                connect_timeout=socket_timeout,
                name=f"realtime-{role}-{self.origin}",
                retry=False,
            )

        # Three pools, each connecting lazily: the drainer's (the one publishing
        # connection), the listener's, and one for history() reads.
        self._pub = client("publish", socket_timeout)
        self._sub = client("listen", socket_timeout + block_ms / 1000)
        self._reads = client("history", socket_timeout)

        self._lock = threading.Lock()
        self._outbox: deque[_Pending] = deque()
        self._queued_resets = 0
        self._seq = itertools.count(1)
        self._dropped = 0
        self._published = 0
        self._handlers: list[BatchHandler] = []
        self._reset_handlers: list[ResetHandler] = []
        self._started = False
        self._running = False
        self._closed = False

        self._stop = threading.Event()
        self._wake = threading.Event()
        self._baseline_ready = threading.Event()
        self._drainer_done = threading.Event()
        self._listener_done = threading.Event()
        self._publish_failing = False
        self._listen_failing = False

        # Listener state: written only by start() (before the loops run) and the listener.
        self._last_id = "0-0"
        self._offset = 0
        self._epoch: str | None = None
        self._dedupe = _Dedupe()
        self._warned_versions: set[str] = set()

    # -- the Broker protocol -------------------------------------------------

    def publish(self, event: P) -> P:
        """Queue ``event`` (a record Event or a TopicMessage) for the log and
        return it (with ``id=""``).

        Waits at most ``publish_wait`` for the log to take it, and never raises
        for Redis trouble; raises
        InvalidEvent for a record that is not JSON-serialisable.  When the
        outbox is full the event is dropped, counted in ``status()["dropped"]``
        and an ``outbox_overflow`` reset is queued at that point of the log.
        """
        if isinstance(event, TopicMessage):
            fields = {"v": MESSAGE_VERSION, "m": _redis.encode_message(event)}
        else:
            fields = {"e": _redis.encode_event(event)}
        now = self._clock()
        overflow_started = False
        pending: _Pending | None = None
        with self._lock:
            if self._closed:
                return event.with_id("") if event.id else event
            self._published += 1
            if len(self._outbox) - self._queued_resets >= self.outbox_size:
                self._dropped += 1
                if not (self._outbox and self._outbox[-1].is_reset):
                    self._outbox.append(
                        _Pending(self._fields_locked(reset=OUTBOX_OVERFLOW), now, is_reset=True)
                    )
                    self._queued_resets += 1
                    overflow_started = True
            else:
                # Wait for the log only when nothing else is queued: behind a
                # backlog (Redis just came back) the wait would not help order.
                wait = not self._outbox
                pending = _Pending(
                    self._fields_locked(**fields), now, sent=threading.Event() if wait else None
                )
                self._outbox.append(pending)
        self._wake.set()
        if (
            pending is not None
            and pending.sent is not None
            and not self._publish_failing
            and self.publish_wait > 0
        ):
            # Normally the entry is in the log within a millisecond: waiting for
            # it keeps the log in commit order across workers (a client's next
            # write, on any worker, lands after this one).  When Redis is slow
            # or down, the write goes on after ``publish_wait`` regardless.
            pending.sent.wait(self.publish_wait)
        if overflow_started:
            logger.error(
                "realtime outbox full (%d events): dropping events until Redis catches up;"
                " every process will get an %s reset",
                self.outbox_size,
                OUTBOX_OVERFLOW,
            )
        return event.with_id("") if event.id else event

    def _fields_locked(self, **fields: str) -> dict[str, str]:
        return {"v": EVENT_VERSION, **fields, "o": self.origin, "s": str(next(self._seq))}

    def subscribe(self, handler: EventHandler) -> None:
        """Call ``handler(event)`` for every event read from the log from now on, in log order."""
        self.subscribe_many(one_by_one(handler))

    def subscribe_many(self, handler: BatchHandler) -> None:
        """Call ``handler(events)`` with each run of events read from the log at once
        (up to one XREAD page, cut at resets), in log order."""
        with self._lock:
            self._handlers.append(handler)

    def subscribe_reset(self, handler: ResetHandler) -> None:
        """Call ``handler(reason)`` (in the listener loop) whenever events may have been lost."""
        with self._lock:
            self._reset_handlers.append(handler)

    def start(self) -> None:
        """Resolve the listener's start position and launch the drainer and the listener.

        The start position is the stream's current last entry (``$``, made
        concrete).  If Redis is unreachable now, the listener resolves it when
        it connects; the drainer holds the outbox until then, so this
        process's own events are never published before its listener's start.
        Raises BrokerUnavailable under gevent with unpatched sockets, for a
        Redis older than 7.0, a refused login, or a stream key of another type.
        """
        _redis.require_patched_sockets("RedisBroker")
        with self._lock:
            if self._started or self._closed:
                return
            self._started = True
        resolved = False
        try:
            self._resolve_baseline()
            resolved = True
        except self._auth_errors as exc:
            raise BrokerUnavailable(f"redis refused the connection: {exc}") from exc
        except self._net_errors as exc:
            resolved = True  # not fatal: the listener resolves it once Redis answers
            self._listen_failing = True
            logger.warning(
                "redis unreachable at start (%s); the listener will resolve its start "
                "position when it connects",
                exc,
            )
        finally:
            if not resolved:
                self._abort_start()
        with self._lock:
            self._running = True
        self._spawn(self._drain_loop)
        self._spawn(self._listen_loop)

    def _abort_start(self) -> None:
        with self._lock:
            self._started = False

    def close(self, timeout: float | None = None) -> None:
        """Stop both loops and close the connections; idempotent.

        The drainer makes one last attempt to send what is still in the outbox
        (if Redis was reachable); events it cannot send are logged as lost.
        Waits at most ``timeout`` seconds (default: ``block_ms`` plus the
        socket timeout) for the loops to finish.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            running = self._running
            self._handlers.clear()
            self._reset_handlers.clear()
        self._stop.set()
        self._wake.set()
        if running:
            limit = timeout if timeout is not None else self.block_ms / 1000 + self._socket_timeout
            deadline = time.monotonic() + limit
            for done in (self._drainer_done, self._listener_done):
                done.wait(max(0.0, deadline - time.monotonic()))
            if not (self._drainer_done.is_set() and self._listener_done.is_set()):
                logger.warning("redis broker loops did not stop within %.1fs", limit)
        else:
            with self._lock:
                left = len(self._outbox) - self._queued_resets
            if left:
                logger.warning("redis broker closed before start with %d unsent events", left)
        for client in (self._pub, self._sub, self._reads):
            try:
                client.close()
            except Exception:  # closing must not fail shutdown
                logger.debug("closing a redis client failed", exc_info=True)

    # -- introspection -------------------------------------------------------

    def status(self) -> dict[str, object]:
        """A snapshot for health checks.

        ``connected``: started, and neither publishing nor listening is
        failing.  ``degraded``: publishing or listening is failing, the
        listener has no start position yet, or the oldest outbox event has
        waited longer than ``degraded_after`` seconds.  ``outbox`` counts
        events waiting (not control entries); ``dropped`` counts events lost to
        a full outbox since start; ``published`` counts ``publish`` calls (the
        dropped ones too); ``lastId`` is the listener's position.
        """
        now = self._clock()
        with self._lock:
            started = self._started and not self._closed
            waiting = len(self._outbox) - self._queued_resets
            oldest = self._outbox[0].queued_at if self._outbox else None
            dropped = self._dropped
            published = self._published
        failing = self._publish_failing or self._listen_failing
        stale = oldest is not None and now - oldest > self._degraded_after
        return {
            "broker": "redis",
            "connected": started and not failing,
            "degraded": failing or stale or (started and not self._baseline_ready.is_set()),
            "outbox": waiting,
            "dropped": dropped,
            "published": published,
            "lastId": self._last_id,
        }

    def history(self, after: str, limit: int) -> list[Published] | None:
        """The events after stream id ``after`` (exclusive), oldest first, at most ``limit``.

        None when the log can no longer vouch for everything after ``after``:
        ``after`` is not an entry of the stream (trimmed, never existed, or
        Redis lost its data), or an ``outbox_overflow`` reset lies in the
        range.  Synchronous (one or more XRANGE round trips); raises
        BrokerUnavailable if Redis cannot be reached.  Duplicates are skipped
        within the range read.
        """
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit!r}")
        if _redis.parse_id(after) is None:
            return None
        events: list[Published] = []
        dedupe = _Dedupe()
        anchor = after
        try:
            while True:
                want = min(limit - len(events), READ_COUNT)
                # Inclusive of the anchor: its presence proves nothing after it was trimmed.
                page = t.cast(
                    "list[tuple[str, dict[str, str]]]",
                    self._reads.xrange(self.stream, min=anchor, max="+", count=want + 1),
                )
                if not page or page[0][0] != anchor:
                    return None
                for entry_id, fields in page[1:]:
                    anchor = entry_id
                    if not self._understands(entry_id, fields) or dedupe.is_duplicate(fields):
                        continue
                    if "reset" in fields:
                        return None
                    event = self._event_of(entry_id, fields)
                    if event is not None:
                        events.append(event)
                        if len(events) >= limit:
                            return events
                if len(events) >= limit or len(page) < want + 1:
                    return events
        except self._net_errors as exc:
            raise BrokerUnavailable(f"redis is unreachable: {exc}") from exc

    # -- drainer -------------------------------------------------------------

    def _drain_loop(self) -> None:
        delay = self._backoff_initial
        try:
            while not self._stop.is_set():
                self._wake.clear()
                batch = self._peek()
                if not batch:
                    self._wake.wait(IDLE_WAIT)
                    continue
                if self._baseline_ready.is_set() and self._send(batch):
                    delay = self._backoff_initial
                    continue
                self._stop.wait(delay)
                delay = min(delay * 2, self._backoff_cap)
            self._final_flush()
        finally:
            self._drainer_done.set()

    def _peek(self) -> list[_Pending]:
        with self._lock:
            return list(itertools.islice(self._outbox, WRITE_BATCH))

    def _send(self, batch: list[_Pending]) -> bool:
        """XADD ``batch`` in one pipeline; drop what Redis accepted; True if all of it."""
        pipe = self._pub.pipeline(transaction=False)
        pipe.set(self.epoch_key, uuid.uuid4().hex, nx=True)
        for item in batch:
            pipe.xadd(
                self.stream,
                t.cast("dict[t.Any, t.Any]", item.fields),
                maxlen=self.history_size,
                approximate=self._approximate,
            )
        try:
            results = pipe.execute(raise_on_error=False)
        except self._net_errors as exc:
            if not self._publish_failing:
                logger.warning(
                    "redis publish failed (%s); holding %d events and retrying", exc, len(batch)
                )
            self._publish_failing = True
            return False
        accepted = 0
        for result in results[1:]:
            if isinstance(result, Exception):
                break
            accepted += 1
        with self._lock:
            for _ in range(accepted):
                done = self._outbox.popleft()
                if done.is_reset:
                    self._queued_resets -= 1
                if done.sent is not None:
                    done.sent.set()
        if accepted < len(batch):
            if not self._publish_failing:
                logger.error(
                    "redis refused XADD to %r (%s); holding events and retrying",
                    self.stream,
                    results[1 + accepted],
                )
            self._publish_failing = True
            return False
        if self._publish_failing:
            logger.info("redis publishing recovered")
        self._publish_failing = False
        return True

    def _final_flush(self) -> None:
        if self._baseline_ready.is_set() and not self._publish_failing:
            while batch := self._peek():
                if not self._send(batch):
                    break
        with self._lock:
            left = len(self._outbox) - self._queued_resets
        if left:
            logger.warning("redis broker closed with %d unsent events", left)

    # -- listener ------------------------------------------------------------

    def _listen_loop(self) -> None:
        delay = self._backoff_initial
        try:
            while not self._stop.is_set():
                try:
                    if not self._baseline_ready.is_set():
                        self._resolve_baseline()
                    self._read_once()
                except self._net_errors as exc:
                    if self._stop.is_set():
                        break
                    if not self._listen_failing:
                        logger.warning(
                            "redis listener lost its connection (%s); reconnecting from %s",
                            exc,
                            self._last_id,
                        )
                    self._listen_failing = True
                except Exception:  # the only listener of the process must survive
                    if self._stop.is_set():
                        break
                    logger.exception("redis listener failed at %s; retrying", self._last_id)
                    self._listen_failing = True
                else:
                    if self._listen_failing:
                        logger.info("redis listener reconnected at %s", self._last_id)
                    self._listen_failing = False
                    delay = self._backoff_initial
                    continue
                self._stop.wait(delay)
                delay = min(delay * 2, self._backoff_cap)
        finally:
            self._listener_done.set()

    def _resolve_baseline(self) -> None:
        """Start from the stream's last entry (``$``), recorded as a concrete id and offset."""
        pipe = self._sub.pipeline(transaction=False)
        pipe.set(self.epoch_key, uuid.uuid4().hex, nx=True)
        pipe.get(self.epoch_key)
        pipe.xinfo_stream(self.stream)
        _, epoch, raw_info = pipe.execute(raise_on_error=False)
        info = self._stream_info(raw_info)
        self._epoch = epoch if isinstance(epoch, str) else None
        self._last_id = "{}-{}".format(*info.last_generated)
        self._offset = info.entries_added
        self._baseline_ready.set()
        self._wake.set()
        logger.info("redis listener starts after %s on %r", self._last_id, self.stream)

    def _stream_info(self, raw: object) -> _StreamInfo:
        if isinstance(raw, self._response_error):
            if "no such key" in str(raw).lower():
                return _StreamInfo(entries_added=0, length=0, last_generated=(0, 0))
            raise BrokerUnavailable(f"redis key {self.stream!r} is not usable as a stream: {raw}")
        if not isinstance(raw, dict) or "entries-added" not in raw:
            raise BrokerUnavailable("RedisBroker needs Redis >= 7.0 (XINFO STREAM entries-added)")
        last = _redis.parse_id(str(raw.get("last-generated-id", "")))
        if last is None:
            raise BrokerUnavailable(f"unexpected XINFO STREAM reply for {self.stream!r}")
        return _StreamInfo(int(raw["entries-added"]), int(raw["length"]), last)

    def _read_once(self) -> None:
        """One XREAD BLOCK, checked against the stream counters taken just before it."""
        pipe = self._sub.pipeline(transaction=False)
        pipe.get(self.epoch_key)
        pipe.xinfo_stream(self.stream)
        pipe.xread({self.stream: self._last_id}, count=READ_COUNT, block=self.block_ms)
        epoch, raw_info, reply = pipe.execute(raise_on_error=False)
        if isinstance(reply, Exception):
            raise reply
        info = self._stream_info(raw_info)
        last = _redis.parse_id(self._last_id) or (0, 0)
        if epoch != self._epoch or info.entries_added < self._offset or info.last_generated < last:
            # Redis lost the stream (restart without persistence, key deleted):
            # read the new stream from its start, after telling everyone.
            logger.warning("redis stream %r was lost and recreated; resetting", self.stream)
            self._reset(HISTORY_LOST)
            self._last_id = "0-0"
            self._offset = info.entries_added - info.length
            self._epoch = self._ensure_epoch()
            return
        if info.entries_added - info.length > self._offset:
            # The entry after our last id was trimmed before we read it.
            logger.warning(
                "redis stream %r trimmed %d entries this process had not read; resetting",
                self.stream,
                info.entries_added - info.length - self._offset,
            )
            self._reset(HISTORY_LOST)
            self._offset = info.entries_added - info.length
        batch: list[Published] = []
        for _stream, entries in reply or ():
            for entry_id, fields in entries:
                if self._stop.is_set():
                    return
                self._last_id = entry_id
                self._offset += 1
                try:
                    self._handle(entry_id, fields, batch)
                except Exception:  # a malformed entry costs only itself
                    logger.exception("realtime: skipping unreadable stream entry %s", entry_id)
        self._deliver(batch)

    def _ensure_epoch(self) -> str | None:
        pipe = self._sub.pipeline(transaction=False)
        pipe.set(self.epoch_key, uuid.uuid4().hex, nx=True)
        pipe.get(self.epoch_key)
        _, epoch = pipe.execute()
        return epoch if isinstance(epoch, str) else None

    def _handle(self, entry_id: str, fields: dict[str, str], batch: list[Published]) -> None:
        """Add the entry's event to ``batch``; a reset entry delivers the batch first."""
        if not self._understands(entry_id, fields) or self._dedupe.is_duplicate(fields):
            return
        reason = fields.get("reset")
        if reason is not None:
            self._deliver(batch[:])  # handlers may keep the list they are given
            batch.clear()
            self._reset(reason)
            return
        event = self._event_of(entry_id, fields)
        if event is not None:
            batch.append(event)

    def _deliver(self, events: list[Published]) -> None:
        if not events:
            return
        with self._lock:
            handlers = tuple(self._handlers)
        for handler in handlers:
            try:
                handler(events)
            except Exception:  # one failing handler must not starve the others
                logger.exception(
                    "realtime event handler failed for events %s..%s", events[0].id, events[-1].id
                )

    def _understands(self, entry_id: str, fields: t.Mapping[str, str]) -> bool:
        version = fields.get("v")
        if version in READ_VERSIONS:
            return True
        key = str(version)
        if key not in self._warned_versions:
            self._warned_versions.add(key)
            logger.warning(
                "skipping stream entry %s with wire version %r (this process reads %s)",
                entry_id,
                version,
                sorted(READ_VERSIONS),
            )
        return False

    def _event_of(self, entry_id: str, fields: t.Mapping[str, str]) -> Published | None:
        try:
            if "m" in fields:
                return _redis.decode_message(fields["m"], entry_id)
            return _redis.decode_event(fields["e"], entry_id)
        except (KeyError, ValueError) as exc:  # InvalidEvent and JSONDecodeError are ValueErrors
            logger.warning("skipping malformed stream entry %s: %s", entry_id, exc)
            return None

    def _reset(self, reason: str) -> None:
        logger.warning("realtime reset on %r: %s", self.stream, reason)
        with self._lock:
            handlers = tuple(self._reset_handlers)
        for handler in handlers:
            try:
                handler(reason)
            except Exception:  # one failing handler must not starve the others
                logger.exception("realtime reset handler failed (%s)", reason)
