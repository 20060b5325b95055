"""The record writer: creates at a fixed rate on kept-alive HTTP connections.

Record ``seq`` (1, 2, ...) has the title ``seq:<k>:ts:<time.monotonic_ns()>``, stamped
just before its request is sent (``time.monotonic_ns`` is CLOCK_MONOTONIC, the clock the
load generator stamps arrivals with).  A scheduler hands seq k to a pool of worker threads
at ``start + (k - first) / rate``; each worker owns one kept-alive connection, so a slow
create delays only its own worker (independent users write concurrently, too).  Create
latency (send to full response) is recorded.
"""

from __future__ import annotations

import http.client
import json
import math
import queue
import threading
import time
import typing as t
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field

__all__ = ["WriteResult", "write_at_rate"]

HOST: t.Final[str] = "127.0.0.1"
REQUEST_TIMEOUT: t.Final[float] = 30.0
MAX_WORKERS: t.Final[int] = 128


@dataclass
class WriteResult:
    first_seq: int
    last_seq: int
    first_send_ns: int = 0
    create_ms: list[float] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    answered: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def created(self) -> int:
        return len(self.create_ms)


def write_at_rate(
    port: int,
    collection: str,
    first_seq: int,
    count: int,
    rate: float,
    *,
    extra: Callable[[int], dict[str, object]] | None = None,
    workers: int = 0,
    give_up: float = 60.0,
) -> WriteResult:
    """Create ``count`` records (seqs ``first_seq..``) at ``rate`` per second.

    Returns when every create answered or ``give_up`` seconds after the last was due.
    ``workers`` (connections; default: twice the rate, 8..128) bounds the creates in
    flight: the rate holds while a create takes less than ``workers / rate`` seconds.
    """
    workers = workers or min(MAX_WORKERS, max(8, math.ceil(2 * rate)))
    result = WriteResult(first_seq, first_seq + count - 1)
    jobs: queue.Queue[int | None] = queue.Queue()
    lock = threading.Lock()
    stop = threading.Event()
    path = f"/api/collections/{collection}/records"

    def worker() -> None:
        conn = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT)
        try:
            for _ in range(count + 1):
                seq = jobs.get()
                if seq is None:
                    return
                if stop.is_set():
                    continue
                body: dict[str, object] = dict(extra(seq)) if extra else {}
                ts = time.monotonic_ns()
                body["title"] = f"seq:{seq}:ts:{ts}"
                payload = json.dumps(body)
                error = ""
                for attempt in range(2):  # a kept-alive connection the server closed: reopen once
                    error = ""  # only the last attempt's outcome counts
                    try:
                        conn.request("POST", path, payload, {"Content-Type": "application/json"})
                        response = conn.getresponse()
                        data = response.read()
                        if response.status != 200:
                            error = f"seq {seq}: {response.status} {data[:200]!r}"
                        break
                    except (OSError, http.client.HTTPException) as exc:
                        conn.close()
                        error = f"seq {seq}: {exc!r}"
                        if attempt:
                            break
                done_ns = time.monotonic_ns()
                with lock:
                    if seq == first_seq:
                        result.first_send_ns = ts
                    result.answered.append(seq)
                    if error:
                        result.failed.append(seq)
                        result.errors.append(error)
                    else:
                        result.create_ms.append((done_ns - ts) / 1e6)
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(max(1, workers))]
    for th in threads:
        th.start()
    began = time.monotonic()
    for k in range(count):
        due = began + k / rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)  # the schedule of a fixed-rate writer
        jobs.put(first_seq + k)
    for _ in threads:
        jobs.put(None)
    deadline = time.monotonic() + give_up
    for th in threads:
        th.join(timeout=max(0.0, deadline - time.monotonic()))
    result.elapsed_s = time.monotonic() - began
    if any(th.is_alive() for th in threads):
        stop.set()  # queued creates are dropped (counted failed); one in flight may still land
        for th in threads:
            th.join(timeout=REQUEST_TIMEOUT + 1)
        result.errors.append(f"creates still pending {give_up:.0f}s after the last was due")
    with lock:
        answered = set(result.failed) | set(result.answered)
        result.failed.extend(s for s in range(first_seq, first_seq + count) if s not in answered)
    return result
