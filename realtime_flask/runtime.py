"""The one seam between realtime_flask and its concurrency runtime (gevent or threads).

Everything that needs a concurrency primitive gets it here: the per-client
frame queue, background loops, a cooperative yield, a thread pool for CPU-heavy
calls (``run_blocking``), thread pools of one's own for SQLite (``Executor``)
with locks that work across OS threads (``native_lock``), timers, and the
peer-EOF watch.  Nothing else in the package imports gevent for primitives
(the gevent WSGI server in ``server/serve.py`` is an entry point, not a
primitive).

Rules:

1. This module never monkey-patches.  ``gevent_active()`` is true when gevent
   is imported *and* has patched ``socket`` and ``threading``: that is what
   every entry point does (``wsgi.py``, ``gunicorn -k gevent``).  Each factory
   decides when it is called, so objects built before patching (none are, in
   the entry points) keep the thread flavour.
2. Without gevent the same API is built on the standard library's threads, so
   unit tests run with real threads and no patching.
3. The gevent ``ClientQueue`` never takes a lock: greenlets of one hub never
   preempt each other, and the queue is only used from greenlets of the hub
   that created it (the stream's, the broker's delivery greenlet, request
   greenlets).  The producer side (``put_nowait``, ``close``) never blocks.
"""

from __future__ import annotations

import contextlib
import gc
import heapq
import logging
import os
import queue
import socket
import sys
import threading
import time
import typing as t
from collections import deque
from concurrent.futures import Future

__all__ = [
    "ClientQueue",
    "Executor",
    "QueueClosed",
    "RuntimeUnavailable",
    "cooperative_sleep",
    "tune_gc",
    "gevent_active",
    "native_lock",
    "new_client_queue",
    "call_later",
    "require_patched_sockets",
    "run_blocking",
    "spawn_daemon",
    "watch_peer_eof",
    "abort_socket",
    "set_user_timeout",
]


class QueueClosed(Exception):
    """Raised by ``ClientQueue.get`` once the client has been closed."""


class RuntimeUnavailable(RuntimeError):
    """The process is not set up for what was asked (e.g. gevent without patched sockets)."""


def gevent_active() -> bool:
    """True when gevent has monkey-patched this process (socket and threading)."""
    if "gevent" not in sys.modules:
        return False
    from gevent import monkey

    return bool(monkey.is_module_patched("socket") and monkey.is_module_patched("threading"))


def require_patched_sockets(what: str) -> None:
    """Raise RuntimeUnavailable when gevent is imported but sockets are not patched:
    a blocking socket in ``what`` would then stall every greenlet of the process."""
    if "gevent" in sys.modules:
        from gevent import monkey

        if not monkey.is_module_patched("socket"):
            raise RuntimeUnavailable(
                f"{what} under gevent needs patched sockets: call gevent.monkey.patch_all() "
                "before other imports (gunicorn -k gevent does)"
            )


def spawn_daemon(target: t.Callable[[], None], name: str) -> object:
    """Run ``target`` in the background: a greenlet under gevent's patching (a
    patched ``threading.Thread`` is one), a daemon thread otherwise."""
    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    return thread


def cooperative_sleep(seconds: float = 0.0) -> None:
    """Give other greenlets (or threads) a turn; ``0`` just yields."""
    time.sleep(seconds)  # gevent.sleep under patching


_T = t.TypeVar("_T")


def run_blocking(fn: t.Callable[[], _T]) -> _T:
    """Run ``fn`` off the gevent hub and wait for it; called directly when gevent is not active.

    Under gevent ``fn`` runs on a thread of the hub's thread pool while the
    calling greenlet waits and every other greenlet keeps running: for
    CPU-heavy work and for C calls that release the GIL (an ``sqlite3``
    statement, scrypt).  ``fn`` must not use gevent objects or patched locks
    (it is on another OS thread); exceptions propagate to the caller.
    """
    if not gevent_active():
        return fn()
    import gevent

    return t.cast(_T, gevent.get_hub().threadpool.apply(fn))


class _Failed:
    """An exception raised on a pool thread, carried back to the caller as a value
    (gevent prints every exception a pool thread raises)."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


class _Threads:
    """The thread flavour of ``Executor``: a fixed set of threads on one queue."""

    def __init__(self, threads: int) -> None:
        self._tasks: queue.SimpleQueue[tuple[t.Callable[[], t.Any], Future[t.Any]] | None] = (
            queue.SimpleQueue()
        )
        self._threads = [
            threading.Thread(target=self._work, name=f"realtime-sql-{n}", daemon=True)
            for n in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    def _work(self) -> None:
        while True:
            task = self._tasks.get()
            if task is None:
                return
            fn, future = task
            future.set_result(fn())  # fn never raises: Executor.run wraps it

    def run(self, fn: t.Callable[[], _T]) -> _T:
        future: Future[_T] = Future()
        self._tasks.put((fn, future))
        return future.result()

    def close(self) -> None:
        for _ in self._threads:
            self._tasks.put(None)


class Executor:
    """``threads`` OS threads of its own that run calls off the gevent hub, first come
    first served.

    ``nice`` lowers the threads' CPU priority by that much (see
    ``_lower_priority``).  Under gevent a ``gevent.threadpool.ThreadPool``
    (the calling greenlet waits,
    every other greenlet keeps running); otherwise ``threads`` daemon threads
    named ``realtime-sql-*``, all started at once (the calling thread waits).
    Either way ``fn`` runs on one of these threads, never on the caller's, so
    state owned by the threads (a SQLite connection each) needs no lock
    against callers.  The
    flavour is chosen when the executor is built.  ``fn`` must not touch
    gevent objects or patched locks; ``native_lock`` is the lock to share
    between its threads and the hub.
    """

    def __init__(self, threads: int, *, nice: int = 0) -> None:
        self.threads = max(1, threads)
        self.nice = nice
        self._niced: set[int] = set()  # native ids of the threads already lowered
        self._gevent = gevent_active()
        self._owner = threading.get_native_id()  # the thread whose hub a gevent pool uses
        self._pool: t.Any
        if self._gevent:
            from gevent.threadpool import ThreadPool

            self._pool = ThreadPool(self.threads)
        else:
            self._pool = _Threads(self.threads)

    def run(self, fn: t.Callable[[], _T]) -> _T:
        """Run ``fn`` on one of the threads and return its result (or raise its exception).

        A caller killed while it waits (a greenlet kill, a timeout) leaves
        ``fn`` running to its end; ``fn``'s owner stops it if it must.
        """

        def call() -> _T | _Failed:
            if self.nice:
                self._lower_priority()
            try:
                return fn()
            except BaseException as exc:  # noqa: BLE001 (re-raised in the caller)
                return _Failed(exc)

        # gevent: the greenlet waits; threads: the caller's thread waits.
        outcome = self._pool.apply(call) if self._gevent else self._pool.run(call)
        if isinstance(outcome, _Failed):
            raise outcome.error
        return t.cast(_T, outcome)

    def _lower_priority(self) -> None:
        """Give this thread ``nice`` (Linux: threads have their own niceness), once.

        On a busy machine the hub's thread, at the process's priority, then
        runs before these threads: events and small requests go first, heavy
        statements take the CPU left over.  Where the OS has no per-thread
        priority, nothing changes.
        """
        me = threading.get_native_id()
        if me in self._niced:
            return
        self._niced.add(me)
        if sys.platform.startswith("linux"):
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, me, os.getpriority(os.PRIO_PROCESS, 0) + self.nice)

    def close(self) -> None:
        """Stop the threads once their calls are done; idempotent.  Callable from any
        thread (a finalizer may run it on whichever thread the GC runs on): a
        gevent pool is then stopped from its own hub's loop."""
        if not self._gevent:
            self._pool.close()
            return
        if threading.get_native_id() == self._owner:
            self._pool.kill()
        else:
            self._pool.hub.loop.run_callback_threadsafe(self._pool.kill)


def native_lock() -> t.Any:
    """A lock of the OS, never gevent's, for state shared between an ``Executor``'s
    threads and the hub.  Hold it only for a few instructions: under gevent a
    wait for it blocks the hub."""
    if "gevent" in sys.modules:
        from gevent import monkey

        return monkey.get_original("threading", "Lock")()
    return threading.Lock()


class _Timers:
    """One daemon thread that calls due callbacks, for ``call_later`` without gevent
    (a ``threading.Timer`` per call would start a thread per SQLite statement)."""

    def __init__(self) -> None:
        self._wake = threading.Condition(threading.Lock())
        self._due: list[tuple[float, int, list[t.Callable[[], object] | None]]] = []
        self._seq = 0
        self._thread: threading.Thread | None = None

    def add(self, seconds: float, fn: t.Callable[[], object]) -> t.Callable[[], None]:
        entry: list[t.Callable[[], object] | None] = [fn]
        with self._wake:
            self._seq += 1
            heapq.heappush(self._due, (time.monotonic() + seconds, self._seq, entry))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="realtime-timers", daemon=True
                )
                self._thread.start()
            self._wake.notify()

        def cancel() -> None:
            entry[0] = None  # the thread drops it when it comes due

        return cancel

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._due or self._due[0][0] > time.monotonic():
                    timeout = self._due[0][0] - time.monotonic() if self._due else None
                    self._wake.wait(timeout)
                _, _, entry = heapq.heappop(self._due)
            fn = entry[0]
            if fn is not None:
                try:
                    fn()
                except Exception:  # a callback's failure must not stop the others
                    logging.getLogger(__name__).exception("timer callback failed")


_timers = _Timers()


def call_later(seconds: float, fn: t.Callable[[], object]) -> t.Callable[[], None]:
    """Call ``fn`` once after ``seconds`` unless the returned ``cancel`` is called first.

    Under gevent a libev timer on the hub (no greenlet, no thread); otherwise
    one shared timer thread for the process.  ``fn`` must be quick and must
    not block.
    """
    if gevent_active():
        import gevent

        timer = gevent.get_hub().loop.timer(seconds)
        timer.start(fn)
        return t.cast(t.Callable[[], None], timer.close)
    return _timers.add(seconds, fn)


#: Allocations between two young-generation collections (CPython's default: 700).
GC_YOUNG_THRESHOLD: t.Final[int] = 10_000


def tune_gc() -> None:
    """Tune the cyclic GC for a process that holds many streams; for entry points,
    once the app is built.

    * Everything built so far (modules, the app, its schema and compiled rules)
      is frozen out of the collector's passes (``gc.freeze``): it lives as long
      as the process, and every full collection walked it.
    * The young generation is collected every ``GC_YOUNG_THRESHOLD``
      allocations instead of 700.  A fan-out allocates a few objects per
      client; collected every 700 they were found alive mid-fan-out, promoted,
      and soon forced full collections: 13-57 ms pauses of every stream at
      1,000 subscribers and 20 events/s (``docs/benchmarks.md``).

    Frozen objects are still freed by reference counting; only cycles among
    them would stay, and start-up objects form none that die.
    """
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


# -- the client's controller ---------------------------------------------------------


class ClientQueue(t.Protocol):
    """The client's controller: a bounded frame queue with a close signal.

    One producer side (``put_nowait``, never blocks) and one consumer, the
    client's stream generator (``get``).  ``close`` wakes the consumer even
    when the queue is full, which a sentinel item could not do.
    """

    maxsize: int

    def put_nowait(self, frame: bytes) -> bool:
        """Queue ``frame``; False when the queue is full (frames or bytes) or closed."""

    def get(self, timeout: float | None) -> bytes | None:
        """Every queued frame joined into one chunk, waiting up to ``timeout``
        seconds.  None when nothing arrived in time; raises QueueClosed once
        the client is closed (frames still queued are dropped then)."""

    def put_many(self, frames: list[bytes]) -> bool:
        """Queue all of ``frames`` with one wake-up, or none of them: False when
        they do not fit in ``maxsize`` or the queue is closed."""

    def put_front(self, frames: list[bytes]) -> None:
        """Put ``frames`` before everything queued (a replay); may exceed ``maxsize``."""

    def close(self) -> None:
        """Close the queue and wake the consumer; idempotent."""

    @property
    def closed(self) -> bool: ...

    def qsize(self) -> int: ...

    def qbytes(self) -> int:
        """Bytes queued (metrics, the client listing)."""


def new_client_queue(maxsize: int, maxbytes: int = 0) -> ClientQueue:
    """A ``ClientQueue`` for the running runtime (gevent's when active).

    :param maxsize: most frames queued.
    :param maxbytes: most bytes queued (0: no bound); a frame or batch that
        arrives at an empty queue always fits, so one big event never drops a
        client that keeps up.
    """
    if gevent_active():
        return _GeventClientQueue(maxsize, maxbytes)
    return _ThreadClientQueue(maxsize, maxbytes)


def _join(frames: list[bytes]) -> bytes:
    return frames[0] if len(frames) == 1 else b"".join(frames)


class _ThreadClientQueue:
    """Thread flavour: a deque under a ``threading.Condition``."""

    __slots__ = ("_bytes", "_closed", "_cond", "_frames", "maxbytes", "maxsize")

    def __init__(self, maxsize: int, maxbytes: int = 0) -> None:
        self.maxsize = maxsize
        self.maxbytes = maxbytes
        self._frames: deque[bytes] = deque()
        self._bytes = 0
        self._cond = threading.Condition(threading.Lock())
        self._closed = False

    def put_nowait(self, frame: bytes) -> bool:
        with self._cond:
            size = len(frame)
            if (
                self._closed
                or len(self._frames) >= self.maxsize
                or (self.maxbytes and self._bytes and self._bytes + size > self.maxbytes)
            ):
                return False
            self._frames.append(frame)
            self._bytes += size
            self._cond.notify()
            return True

    def put_many(self, frames: list[bytes]) -> bool:
        with self._cond:
            size = sum(map(len, frames))
            if (
                self._closed
                or len(self._frames) + len(frames) > self.maxsize
                or (self.maxbytes and self._bytes and self._bytes + size > self.maxbytes)
            ):
                return False
            self._frames.extend(frames)
            self._bytes += size
            self._cond.notify()
            return True

    def get(self, timeout: float | None) -> bytes | None:
        with self._cond:
            if not self._frames and not self._closed:
                self._cond.wait(timeout)
            if self._closed:
                raise QueueClosed
            if not self._frames:
                return None
            chunk = _join(list(self._frames))
            self._frames.clear()
            self._bytes = 0
            return chunk

    def put_front(self, frames: list[bytes]) -> None:
        with self._cond:
            if self._closed:
                return
            self._frames.extendleft(reversed(frames))
            self._bytes += sum(map(len, frames))
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._frames.clear()
            self._bytes = 0
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def qsize(self) -> int:
        return len(self._frames)

    def qbytes(self) -> int:
        return self._bytes


class _GeventClientQueue:
    """gevent flavour: a list, a flag and a direct switch into the waiting greenlet.

    The consumer parks itself with ``hub.switch()``; a producer schedules one
    hub callback that switches back into it (at most one pending at a time).
    The keep-alive timeout is one loop timer per queue, created on first use
    and re-armed per wait (``again``, which restarts the full delay), so a
    wait allocates nothing.  A wake-up that arrives
    after the consumer stopped waiting finds ``_waiter`` empty and does
    nothing, so it can never resume the greenlet inside some other wait (a
    socket write, say).
    """

    __slots__ = (
        "_bytes",
        "_closed",
        "_frames",
        "_getcurrent",
        "_hub",
        "_scheduled",
        "_timer",
        "_timer_after",
        "_waiter",
        "maxbytes",
        "maxsize",
    )

    def __init__(self, maxsize: int, maxbytes: int = 0) -> None:
        from gevent import get_hub
        from gevent import getcurrent

        self._getcurrent = getcurrent
        self.maxsize = maxsize
        self.maxbytes = maxbytes
        self._frames: list[bytes] = []
        self._bytes = 0
        self._closed = False
        self._hub = get_hub()
        self._waiter: t.Any = None
        self._scheduled = False
        self._timer: t.Any = None
        self._timer_after = -1.0

    def _wake_soon(self) -> None:
        if self._waiter is not None and not self._scheduled:
            self._scheduled = True
            self._hub.loop.run_callback(self._wake)

    def _wake(self) -> None:  # runs in the hub
        self._scheduled = False
        waiter = self._waiter
        if waiter is not None:
            waiter.switch(True)

    def _expire(self) -> None:  # runs in the hub
        waiter = self._waiter
        if waiter is not None:
            waiter.switch(False)

    def put_nowait(self, frame: bytes) -> bool:
        frames = self._frames
        size = len(frame)
        queued = self._bytes
        if (
            self._closed
            or len(frames) >= self.maxsize
            or (queued and self.maxbytes and queued + size > self.maxbytes)
        ):
            return False
        frames.append(frame)
        self._bytes = queued + size
        # _wake_soon, inlined: this is the fan-out's hot path
        if self._waiter is not None and not self._scheduled:
            self._scheduled = True
            self._hub.loop.run_callback(self._wake)
        return True

    def put_many(self, frames: list[bytes]) -> bool:
        queued = self._frames
        size = sum(map(len, frames))
        if (
            self._closed
            or len(queued) + len(frames) > self.maxsize
            or (self._bytes and self.maxbytes and self._bytes + size > self.maxbytes)
        ):
            return False
        queued.extend(frames)
        self._bytes += size
        self._wake_soon()
        return True

    def get(self, timeout: float | None) -> bytes | None:
        while not self._frames and not self._closed:
            if timeout is not None and timeout <= 0:
                break  # a poll
            timer = None
            if timeout is not None:
                timer = self._timer
                if timer is None or self._timer_after != timeout:
                    if timer is not None:
                        timer.close()
                    # after == repeat, armed with again(): a stopped libev timer
                    # keeps what was left of its delay, so after one expiry a
                    # plain start() would fire at once, every time.
                    timer = self._timer = self._hub.loop.timer(timeout, timeout)
                    self._timer_after = timeout
                timer.again(self._expire)
            self._waiter = self._getcurrent()
            try:
                woken = self._hub.switch()
            finally:
                self._waiter = None
                if timer is not None:
                    timer.stop()
            if not woken:
                break  # the keep-alive timeout
            # else: a wake-up; loop to re-check (it may be stale: nothing queued)
        if self._closed:
            raise QueueClosed
        if not self._frames:
            return None
        frames = self._frames
        self._frames = []
        self._bytes = 0
        return _join(frames)

    def put_front(self, frames: list[bytes]) -> None:
        if self._closed:
            return
        self._frames[:0] = frames
        self._bytes += sum(map(len, frames))
        self._wake_soon()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._frames = []
        self._bytes = 0
        if self._timer is not None:
            self._timer.close()
            self._timer = None
        self._wake_soon()

    @property
    def closed(self) -> bool:
        return self._closed

    def qsize(self) -> int:
        return len(self._frames)

    def qbytes(self) -> int:
        return self._bytes


# -- peer EOF ------------------------------------------------------------------------


def set_user_timeout(sock: object, seconds: float) -> None:
    """Linux's ``TCP_USER_TIMEOUT`` on ``sock``: the kernel fails the connection
    once sent data stays unacknowledged ``seconds`` (a peer that vanished
    without FIN).  Nothing elsewhere, for ``0``, or for a socket without it."""
    option = getattr(socket, "TCP_USER_TIMEOUT", None)
    setsockopt = getattr(sock, "setsockopt", None)
    if option is None or setsockopt is None or seconds <= 0:
        return
    with contextlib.suppress(OSError):  # not a TCP socket (a Unix socket behind a proxy)
        setsockopt(socket.IPPROTO_TCP, option, int(seconds * 1000))


def abort_socket(sock: object) -> None:
    """Shut ``sock`` down both ways: a write blocked on it (a peer that stopped
    reading) fails at once, and its greenlet and buffers are released."""
    shutdown = getattr(sock, "shutdown", None)
    if shutdown is None:
        return
    with contextlib.suppress(OSError):  # already closed
        shutdown(socket.SHUT_RDWR)


def watch_peer_eof(sock: object, on_eof: t.Callable[[], object]) -> t.Callable[[], None] | None:
    """Call ``on_eof()`` (in a greenlet of its own) as soon as the peer closes ``sock``.

    A WSGI app learns of a disconnect only when a write fails (the next
    keep-alive); PocketBase notices within milliseconds.  Under gevent a
    read watcher on the connection's file descriptor (no greenlet, no stack
    while it waits) peeks at the socket when it becomes readable: EOF or a
    reset calls ``on_eof``; any bytes (a pipelined request, a TLS record)
    simply end the watch.  Returns ``stop`` (idempotent),
    or None when there is nothing to watch with (no gevent, no socket).
    """
    if sock is None or not gevent_active():
        return None
    fileno = getattr(sock, "fileno", None)
    if fileno is None:
        return None
    try:
        fd = fileno()
    except OSError:
        return None
    if fd < 0:
        return None
    import _socket

    import gevent

    watcher = gevent.get_hub().loop.io(fd, 1)  # 1 = READ
    stopped = False

    def stop() -> None:
        nonlocal stopped
        if not stopped:
            stopped = True
            watcher.stop()
            watcher.close()

    def readable() -> None:  # runs in the hub: nothing here may block
        stop()
        try:
            # A private duplicate of the descriptor, read without gevent's
            # socket wrapper: a peek that would block must fail, not wait.
            peek = _socket.socket(fileno=os.dup(fd))
        except OSError:
            return
        try:
            data = peek.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return  # spurious readiness: keep-alives will find a dead peer
        except OSError:
            data = b""
        finally:
            peek.close()
        if not data:
            # Switch into the callback's greenlet now, from the hub, rather than
            # spawning it: it runs before any request that is already scheduled
            # (a subscriptions POST racing the disconnect), as a greenlet blocked
            # in recv() would.  If it blocks, it yields to the hub as usual.
            gevent.Greenlet(on_eof).switch()

    watcher.start(readable)
    return stop
