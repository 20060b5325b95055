"""The ``slowquery`` scenario: does a slow list query stall realtime and light requests?

    .venv/bin/python bench/run.py slowquery                 # 300,000 rows, 8 s phases
    .venv/bin/python bench/run.py slowquery --quick         # 20,000 rows, 3 s phases
    .venv/bin/python bench/run.py slowquery --rows 100000 --seconds 5 --servers rf-wsgi

For each server (PocketBase, realtime_flask as ``python wsgi.py`` and as
``gunicorn -k gevent -w 1``):

1. ``public_posts`` gets ``rows`` records written straight into the server's SQLite file
   before it starts (``bench.servers.start_server(prepare=...)``: the tables exist, no
   server process has the file open), one transaction, the columns the server created
   (``id``: 15 characters of ``[a-z0-9]``; ``created``/``updated`` when the table has them,
   in PocketBase's datetime text).  ``body`` is words of a fixed vocabulary, about two in
   three bodies hold a ``q``; the same seed gives every server the same rows.
2. ``bench/sseload.c`` holds ``subscribers`` streams on ``public_posts/*``.
3. Phases K = 0, 1, 2, 8, each ``seconds`` long: K looping clients (one kept-alive
   ``http.client`` connection each) run the unindexed list query ``SLOW_QUERY`` back to
   back and time it; meanwhile ``bench/writer.py`` creates records at ``rate`` (each
   title stamped with its send time: create to event latency at every subscriber), and a
   light client sends ``GET /api/health`` and ``getOne`` of a bulk record, alternately, at
   ``light_rate``, timed.  The slow clients start first (their first query is under way
   when the writer starts) and finish their last query after it stops; only queries
   started in the phase count.  Before the phases one untimed query warms the server.
   A server that answers creates slower than ``rate`` makes the phase longer: the writer
   waits for every create (``bench/writer.py``: 30 s per request, then 60 s after the last
   was due at most), and the event latency then grows with the backlog.

One JSON line per server and K (``emit``): create to event p50/p90/p99/max, light
requests p50/p99/max (and per kind), the slow queries' count and durations, ``query_vs_alone``
(their mean over K=1's mean: two identical queries that run in parallel give about 1x,
one after the other about 2x) and ``p99_vs_k0`` (create to event p99 over K=0's, same
server and run).  Traffic goes to 127.0.0.1 only; every loop is bounded in count and time.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import http.client
import json
import math
import random
import sqlite3
import threading
import time
import typing as t
import urllib.parse
from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

from bench.loadgen import Loadgen
from bench.servers import HOST
from bench.servers import Server
from bench.servers import start_server
from bench.writer import write_at_rate

__all__ = [
    "DEFAULT_KS",
    "SLOW_FILTER",
    "SLOW_QUERY",
    "SlowSettings",
    "fill_table",
    "make_rows",
    "session",
]

Json = dict[str, t.Any]
Emit = Callable[[Json], None]

COLLECTION: t.Final[str] = "public_posts"
SLOW_FILTER: t.Final[str] = "title ~ 'zzzq' || body ~ 'q'"
#: The user's unindexed list query: a LIKE over every row, sorted on two unindexed columns.
SLOW_QUERY: t.Final[str] = (
    f"/api/collections/{COLLECTION}/records?perPage=50&sort=-body,title"
    f"&filter={urllib.parse.quote(SLOW_FILTER)}"
)
DEFAULT_KS: t.Final[tuple[int, ...]] = (0, 1, 2, 8)
#: Seconds one request may take before it counts as failed.
REQUEST_TIMEOUT: t.Final[float] = 120.0
#: Most queries one slow client runs in a phase (the phase's time ends it long before).
MAX_QUERIES: t.Final[int] = 10_000
#: Drain: stop waiting for deliveries when none arrived for this long.
STALL_S: t.Final[float] = 3.0
STATUS_POLL_S: t.Final[float] = 0.1
#: Seconds of creates before the phases (unmeasured), to open the writer's connections.
WARM_S: t.Final[float] = 1.0
ID_ALPHABET: t.Final[str] = "abcdefghijklmnopqrstuvwxyz0123456789"
WORDS: t.Final[tuple[str, ...]] = (
    "realtime", "stream", "record", "gevent", "worker", "socket", "event", "filter",
    "server", "client", "table", "index", "order", "page", "title", "body", "post",
    "update", "create", "delete", "health", "latency", "python", "flask", "sqlite",
    "wal", "commit", "reader", "writer", "lane", "thread", "hub", "timer", "budget",
)  # fmt: skip
Q_WORDS: t.Final[tuple[str, ...]] = ("query", "queue", "quick", "request", "unique", "square")
#: One body word in this many is from ``Q_WORDS`` (about two bodies in three hold a ``q``).
Q_EVERY: t.Final[int] = 20
INSERT_BATCH: t.Final[int] = 10_000


@dataclass(frozen=True)
class SlowSettings:
    rows: int = 300_000
    seconds: float = 8.0
    rate: float = 25.0
    subscribers: int = 2
    ks: tuple[int, ...] = DEFAULT_KS
    light_rate: float = 4.0
    drain: float = 20.0
    seed: int = 20261201
    pocketbase: str | None = None


# --------------------------------------------------------------------------- helpers


def pct(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100), None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(p / 100 * len(ordered))) - 1]


def rnd(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def summary(values: Sequence[float]) -> Json:
    return {
        "n": len(values),
        "p50": rnd(pct(values, 50)),
        "p99": rnd(pct(values, 99)),
        "max": rnd(max(values) if values else None),
        "mean": rnd(sum(values) / len(values) if values else None),
    }


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or not b else round(a / b, 3)


# --------------------------------------------------------------------------- the big table


def make_rows(count: int, seed: int) -> list[tuple[str, str, str]]:
    """``count`` rows (id, title, body), the same for the same seed; ids are unique."""
    rng = random.Random(seed)
    rows: list[tuple[str, str, str]] = []
    seen: set[str] = set()
    for i in range(count * 2 + 10):  # a repeated id (about never) is drawn again
        if len(rows) >= count:
            break
        rid = "".join(rng.choices(ID_ALPHABET, k=15))
        if rid in seen:
            continue
        seen.add(rid)
        words = [
            rng.choice(Q_WORDS) if rng.randrange(Q_EVERY) == 0 else rng.choice(WORDS)
            for _ in range(rng.randint(12, 28))
        ]
        title = f"bulk {i} {rng.choice(WORDS)} {rng.choice(WORDS)}"
        rows.append((rid, title, " ".join(words)))
    return rows


def fill_table(db_path: Path, rows: Sequence[tuple[str, str, str]]) -> int:
    """Insert ``rows`` into ``public_posts`` of a database no server has open, in one
    transaction, with the columns the server created; returns the table's row count."""
    if not db_path.exists():
        raise FileNotFoundError(db_path)
    db = sqlite3.connect(str(db_path), isolation_level=None, timeout=30)
    try:
        columns = [str(r[1]) for r in db.execute(f'PRAGMA table_info("{COLLECTION}")')]
        missing = {"id", "title", "body"} - set(columns)
        if missing:
            raise RuntimeError(f"{db_path}: {COLLECTION} has no {sorted(missing)} columns")
        stamp = dt.datetime.now(dt.UTC)
        now = stamp.strftime("%Y-%m-%d %H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"
        dates = [c for c in ("created", "updated") if c in columns]
        names = ["id", "title", "body", *dates]
        sql = (
            f'INSERT INTO "{COLLECTION}" ({", ".join(chr(34) + n + chr(34) for n in names)}) '
            f"VALUES ({', '.join('?' * len(names))})"
        )
        extra = (now,) * len(dates)
        db.execute("BEGIN IMMEDIATE")
        try:
            for start in range(0, len(rows), INSERT_BATCH):
                db.executemany(sql, (r + extra for r in rows[start : start + INSERT_BATCH]))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return int(db.execute(f'SELECT COUNT(*) FROM "{COLLECTION}"').fetchone()[0])
    finally:
        db.close()


# --------------------------------------------------------------------------- clients


@dataclass
class Timed:
    """Durations (ms) of one client's requests, and its failures."""

    ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    started: int = 0


def timed_get(
    conn: http.client.HTTPConnection, path: str, check: Callable[[t.Any], bool] | None = None
) -> tuple[float, str]:
    """One GET on a kept-alive connection: (ms, error text or "")."""
    t0 = time.perf_counter()
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        data = response.read()
    except (OSError, http.client.HTTPException) as exc:
        conn.close()  # http.client reconnects on the next request
        return (time.perf_counter() - t0) * 1000, f"{path[:60]}: {exc!r}"
    ms = (time.perf_counter() - t0) * 1000
    if response.status != 200:
        return ms, f"{path[:60]}: {response.status} {data[:200]!r}"
    if check is not None:
        try:
            ok = check(json.loads(data))
        except ValueError:
            ok = False
        if not ok:
            return ms, f"{path[:60]}: unexpected body {data[:200]!r}"
    return ms, ""


def list_ok(body: t.Any) -> bool:
    return isinstance(body, dict) and isinstance(body.get("items"), list)


def slow_client(port: int, stop: threading.Event, out: Timed, running: threading.Event) -> None:
    """Run ``SLOW_QUERY`` back to back until ``stop`` (or ``MAX_QUERIES``)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT)
    try:
        for _ in range(MAX_QUERIES):
            if stop.is_set():
                return
            out.started += 1
            running.set()
            ms, error = timed_get(conn, SLOW_QUERY, list_ok)
            if error:
                out.errors.append(error)
            else:
                out.ms.append(ms)
    finally:
        conn.close()


def light_client(
    port: int, record_id: str, rate: float, seconds: float, health: Timed, get_one: Timed
) -> None:
    """``GET /api/health`` and ``getOne`` alternately, at ``rate`` per second for
    ``seconds`` (a late request is sent at once; none is skipped)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT)
    one = f"/api/collections/{COLLECTION}/records/{record_id}"
    began = time.monotonic()
    try:
        for k in range(max(1, round(rate * seconds))):
            delay = began + k / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # the schedule of the light client
            out, path = (health, "/api/health") if k % 2 == 0 else (get_one, one)
            check = (
                None
                if out is health
                else (lambda b: isinstance(b, dict) and b.get("id") == record_id)
            )
            ms, error = timed_get(conn, path, check)
            out.started += 1
            if error:
                out.errors.append(error)
            else:
                out.ms.append(ms)
    finally:
        conn.close()


def drain(lg: Loadgen, expected: int, timeout: float) -> None:
    """Wait until the window's deliveries reach ``expected``, none arrived for
    ``STALL_S``, or ``timeout`` passed."""
    deadline = time.monotonic() + timeout
    last, last_change = -1, time.monotonic()
    for _ in range(int(timeout / STATUS_POLL_S) + 2):
        measured = int(lg.status().get("measured", 0))
        now = time.monotonic()
        if measured >= expected or now >= deadline:
            return
        if measured != last:
            last, last_change = measured, now
        elif now - last_change >= STALL_S:
            return
        time.sleep(STATUS_POLL_S)  # poll interval of the drain


# --------------------------------------------------------------------------- one server


def run_phase(
    server: Server, lg: Loadgen, settings: SlowSettings, k: int, seq: int, record_id: str
) -> tuple[Json, int]:
    """One phase with ``k`` slow clients; (its metrics, the next seq)."""
    stop = threading.Event()
    slow = [Timed() for _ in range(k)]
    running = [threading.Event() for _ in range(k)]
    threads = [
        threading.Thread(target=slow_client, args=(server.port, stop, s, r), daemon=True)
        for s, r in zip(slow, running, strict=True)
    ]
    for th in threads:
        th.start()
    for r in running:
        r.wait(timeout=10)
    time.sleep(0.05 if k else 0)  # the slow queries' requests reach the server first
    health, get_one = Timed(), Timed()
    light = threading.Thread(
        target=light_client,
        args=(server.port, record_id, settings.light_rate, settings.seconds, health, get_one),
        daemon=True,
    )
    count = max(1, round(settings.rate * settings.seconds))
    lg.mark(seq)
    cpu0, t0 = server.cpu(), time.monotonic()
    light.start()
    written = write_at_rate(server.port, COLLECTION, seq, count, settings.rate)
    lg.skip(written.failed)
    light.join(timeout=REQUEST_TIMEOUT + settings.seconds)
    stop.set()  # the slow clients finish the query under way
    expected = settings.subscribers * (count - len(written.failed))
    drain(lg, expected, settings.drain)
    for th in threads:
        th.join(timeout=REQUEST_TIMEOUT + 1)
    cpu1, t1 = server.cpu(), time.monotonic()
    last = seq + count - 1
    result = lg.report(last)
    queries = [ms for s in slow for ms in s.ms]
    query_errors = [e for s in slow for e in s.errors]
    light_ms = health.ms + get_one.ms
    line: Json = {
        "k": k,
        "events": written.created,
        "events_failed": len(written.failed),
        "create_errors": written.errors[:3],
        "rate_achieved": rnd(written.created / written.elapsed_s if written.elapsed_s else 0, 2),
        "create_ms": summary(written.create_ms),
        "subscribed": result["subscribed"],
        "expected": result["expected"],
        "deliveries": result["deliveries"],
        "missed": result["missed"],
        "duplicates": result["duplicates"],
        "disconnects": result["disconnects"],
        "latency_ms": {
            key: (result.get("latency_ms") or {}).get(key)
            for key in ("p50", "p90", "p99", "max", "mean")
        },
        "light_ms": summary(light_ms),
        "health_ms": summary(health.ms),
        "get_one_ms": summary(get_one.ms),
        "light_errors": len(health.errors) + len(get_one.errors),
        "light_error_samples": (health.errors + get_one.errors)[:3],
        "queries": len(queries),
        "query_errors": len(query_errors),
        "query_error_samples": query_errors[:3],
        "query_ms": {**summary(queries), "min": rnd(min(queries) if queries else None)},
        "queries_per_client": [len(s.ms) for s in slow],
        "phase_s": rnd(t1 - t0),
        "server_cpu_s": rnd(cpu1[0] - cpu0[0]),
    }
    if any(th.is_alive() for th in threads) or light.is_alive():
        line["stuck_clients"] = sum(th.is_alive() for th in [*threads, light])
    return line, last + 1


def session(
    kind: str, settings: SlowSettings, emit: Emit, rows: Sequence[tuple[str, str, str]]
) -> None:
    """One fresh server of ``kind`` with the big table; one line per phase."""
    began = time.monotonic()
    filled: list[float] = []

    def prepare(db_path: Path) -> None:
        t0 = time.monotonic()
        count = fill_table(db_path, rows)
        if count != len(rows):
            raise RuntimeError(f"{kind}: {count} rows in {COLLECTION}, expected {len(rows)}")
        filled.append(time.monotonic() - t0)

    record_id = rows[len(rows) // 2][0]
    warm_count = max(1, round(settings.rate * WARM_S))
    per_phase = max(1, round(settings.rate * settings.seconds))
    max_seq = warm_count + per_phase * len(settings.ks) + 10
    with start_server(
        kind, clients=settings.subscribers, pocketbase=settings.pocketbase, prepare=prepare
    ) as server:
        conn = http.client.HTTPConnection(HOST, server.port, timeout=REQUEST_TIMEOUT)
        cold_ms, cold_error = timed_get(conn, SLOW_QUERY, list_ok)  # also warms the server
        warm_ms, warm_error = timed_get(conn, SLOW_QUERY, list_ok)
        total: int | None = None
        with contextlib.suppress(OSError, http.client.HTTPException, ValueError):
            conn.request("GET", SLOW_QUERY)
            total = int(json.loads(conn.getresponse().read()).get("totalItems", -1))
        conn.close()
        if cold_error or warm_error:
            raise RuntimeError(f"{kind}: the slow query failed: {cold_error or warm_error}")
        common: Json = {
            "scenario": "slowquery",
            "server": kind,
            "version": server.version or None,
            "n": settings.subscribers,
            "rows": len(rows),
            "rate": settings.rate,
            "light_rate": settings.light_rate,
            "seconds": settings.seconds,
            "fill_s": rnd(filled[0] if filled else None),
            "matching_rows": total,
            "cold_query_ms": rnd(cold_ms),
            "warm_query_ms": rnd(warm_ms),
        }
        with Loadgen(
            server.port,
            settings.subscribers,
            f"{COLLECTION}/*",
            max_seq=max_seq,
            setup_timeout=30,
            duration=3600,
            batch_us=0,
        ) as lg:
            ready = lg.wait_ready()
            if ready.get("subscribed") != settings.subscribers:
                raise RuntimeError(f"{kind}: subscribers not ready: {ready}")
            seq = 1
            lg.mark(seq)  # the writer's connections open, the first events flow
            warm = write_at_rate(server.port, COLLECTION, seq, warm_count, settings.rate)
            lg.skip(warm.failed)
            drain(lg, settings.subscribers * warm.created, settings.drain)
            seq += warm_count
            by_k: dict[int, Json] = {}
            for k in settings.ks:
                line, seq = run_phase(server, lg, settings, k, seq, record_id)
                by_k[k] = line
                base, alone = by_k.get(0), by_k.get(1)
                line["p99_vs_k0"] = ratio(
                    line["latency_ms"]["p99"], base["latency_ms"]["p99"] if base else None
                )
                line["light_p99_vs_k0"] = ratio(
                    line["light_ms"]["p99"], base["light_ms"]["p99"] if base else None
                )
                line["query_vs_alone"] = ratio(
                    line["query_ms"]["mean"], alone["query_ms"]["mean"] if alone and k else None
                )
                emit({**common, **line, "session_s": rnd(time.monotonic() - began, 1)})
            lg.stop(seq - 1)
