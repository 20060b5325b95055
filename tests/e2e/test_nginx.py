"""The documented deployment, end to end: nginx in front of two gunicorn masters and Redis.

What docs/deployment.md tells a user to run, run here: a private ``redis-server``,
two ``gunicorn -k gevent -w 2 wsgi:app`` masters (the repository's
``gunicorn.conf.py``) sharing it and one data folder, and a real nginx running
``deploy/nginx.conf`` (the very file the docs include, placeholders filled in by
``tests/support/nginx.py``) on loopback ports.  Round robin, no sticky sessions.
Every request of these tests goes through nginx.

Two machines on one host: Linux routes all of 127.0.0.0/8 to loopback, so a
client socket bound to 127.0.0.2 or 127.0.0.3 (``source_address``) reaches nginx
from another ``$remote_addr``, which nginx appends to ``X-Forwarded-For``.

No sleeps: every wait awaits an event or polls a condition with a deadline
(``wait_until``); every load loop is bounded in count and time.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import typing as t
from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

import pytest
import redis

from realtime_flask.core.sse import ServerSentEvent
from realtime_flask.testing import HTTPEventStream
from realtime_flask.testing import post_subscriptions
from realtime_flask.testing import request_json
from tests.support.env import IN_CI
from tests.support.env import REPO_ROOT
from tests.support.js import JS
from tests.support.js import SU_EMAIL
from tests.support.js import SU_PASSWORD
from tests.support.js import node_missing
from tests.support.nginx import NGINX_CONF
from tests.support.nginx import PLACEHOLDERS
from tests.support.nginx import NginxServer
from tests.support.nginx import child_pids
from tests.support.nginx import require_nginx
from tests.support.redis_server import RedisServer
from tests.support.servers import GunicornServer
from tests.support.servers import wait_until

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

SCHEMA: t.Final = JS / "schema.json"
MASTERS: t.Final = 2
WORKERS: t.Final = 2  # per master, as docs/deployment.md runs them
#: Two client machines (any 127.x address is this host's loopback).
HOST_A: t.Final = "127.0.0.2"
HOST_B: t.Final = "127.0.0.3"
#: Upper bound of any single wait for something that should come promptly.
EVENT_WAIT: t.Final = 10.0
PASSWORD: t.Final = "password123"
INVALID_CLIENT: t.Final = {"data": {}, "message": "Invalid realtime client.", "status": 400}
WARNING_TEXT: t.Final = "REALTIME_TRUSTED_PROXIES is 0"
STREAM_KEY: t.Final = "realtime:events"

Json = t.Any


# --- the deployment ---------------------------------------------------------------------------


@dataclass
class Deployment:
    """Redis, the gunicorn masters and nginx in front of them."""

    redis_url: str
    masters: list[GunicornServer]
    nginx: NginxServer
    redis: redis.Redis  # the test's own view of the shared Redis (thread-safe pool)

    @property
    def host(self) -> str:
        return self.nginx.host

    @property
    def port(self) -> int:
        return self.nginx.port

    def logs(self) -> str:
        """Log tails of every process, for failure messages."""
        parts = [self.nginx.log_tail()]
        for number, master in enumerate(self.masters, 1):
            parts.append(f"--- gunicorn master {number} ({master.log_path}) ---")
            parts.append(master.log_tail())
        return "\n".join(parts)

    def request(
        self,
        method: str,
        path: str,
        body: object = None,
        *,
        source: str = "127.0.0.1",
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, Json]:
        return request_json(
            self.host, self.port, method, path, body, headers=headers, source_address=(source, 0)
        )

    def subscribe(
        self,
        client_id: str,
        topics: Sequence[str],
        *,
        source: str,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, Json]:
        return post_subscriptions(
            self.host,
            self.port,
            client_id,
            list(topics),
            headers=headers,
            source_address=(source, 0),
        )

    def open_stream(
        self, *, source: str, headers: Mapping[str, str] | None = None
    ) -> tuple[HTTPEventStream, str]:
        """``GET /api/realtime`` from ``source``; the stream and the client id of its PB_CONNECT."""
        stream = HTTPEventStream(self.host, self.port, headers=headers, source_address=(source, 0))
        assert stream.status == 200, self.logs()
        event = stream.next_event(timeout=EVENT_WAIT)
        assert event.event == "PB_CONNECT", event
        return stream, event.id

    def parked(self, client_id: str) -> bool:
        """Whether the client's resume state is in Redis (``RedisRouter`` parks it there)."""
        return bool(self.redis.exists(f"realtime:parked:{client_id}"))

    def logged_titles(self) -> set[str]:
        """The record titles of every event in the shared Redis log."""
        entries = t.cast("list[tuple[bytes, dict[bytes, bytes]]]", self.redis.xrange(STREAM_KEY))
        titles = set()
        for _, fields in entries:
            if b"e" in fields:
                record = json.loads(fields[b"e"]).get("record") or {}
                titles.add(str(record.get("title")))
        return titles


def live_nodes(redis_url: str) -> int:
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    try:
        return len(t.cast("list[bytes]", client.keys("realtime:node:*")))
    finally:
        client.close()


@contextlib.contextmanager
def deployment(
    data_dir: Path, *, trusted_proxies: int, workers: int = WORKERS
) -> Iterator[Deployment]:
    """Redis, ``MASTERS`` gunicorn masters of ``workers`` workers, nginx: as the docs run them."""
    require_nginx()  # skip (or fail under CI) before starting anything
    with contextlib.ExitStack() as stack:
        redis_server = stack.enter_context(RedisServer())
        env = {
            "REALTIME_REDIS_URL": redis_server.url,
            "REALTIME_SCHEMA": str(SCHEMA),
            "REALTIME_DATA_DIR": str(data_dir),
            "REALTIME_TRUSTED_PROXIES": str(trusted_proxies),
        }
        cli_env = {k: v for k, v in os.environ.items() if not k.startswith("REALTIME_")}
        cli_env.update({k: v for k, v in env.items() if k != "REALTIME_REDIS_URL"})
        subprocess.run(
            [sys.executable, "-m", "realtime_flask", "superuser", "upsert", SU_EMAIL, SU_PASSWORD],
            cwd=REPO_ROOT,
            env=cli_env,
            check=True,
            capture_output=True,
            timeout=60,
        )
        masters = [
            stack.enter_context(GunicornServer(workers=workers, env=env)) for _ in range(MASTERS)
        ]
        wait_until(
            lambda: live_nodes(redis_server.url) == MASTERS * workers,
            timeout=20,
            message=lambda: f"{live_nodes(redis_server.url)} workers registered in Redis",
        )
        nginx = stack.enter_context(NginxServer([(m.host, m.port) for m in masters]))
        view = redis.Redis.from_url(redis_server.url, socket_timeout=5)
        stack.callback(view.close)
        yield Deployment(redis_server.url, masters, nginx, view)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """The documented deployment, with ``REALTIME_TRUSTED_PROXIES=1`` as the docs set it."""
    with deployment(tmp_path_factory.mktemp("nginx-data"), trusted_proxies=1) as running:
        yield running
        for master in running.masters:
            assert master.running, f"a master died during the tests\n{running.logs()}"
            assert "Traceback" not in master.log_text(), running.logs()


def sign_up_and_log_in(d: Deployment, email: str, source: str) -> tuple[str, str]:
    """A new ``users`` record created and logged in from ``source``; (record id, token)."""
    body = {"email": email, "password": PASSWORD, "passwordConfirm": PASSWORD}
    status, created = d.request("POST", "/api/collections/users/records", body, source=source)
    assert status == 200, created
    login = {"identity": email, "password": PASSWORD}
    path = "/api/collections/users/auth-with-password"
    status, auth = d.request("POST", path, login, source=source)
    assert status == 200, auth
    return str(created["id"]), str(auth["token"])


def title_of(event: ServerSentEvent) -> str:
    return str(json.loads(event.data)["record"]["title"])


def resume_headers(last_event_id: str, spoofed: str = "") -> dict[str, str]:
    headers = {"Last-Event-ID": last_event_id}
    if spoofed:
        headers["X-Forwarded-For"] = spoofed
    return headers


# --- the recipe the docs show ---------------------------------------------------------------------


def test_the_docs_show_the_files_this_test_runs() -> None:
    """docs/deployment.md holds deploy/nginx.conf and gunicorn.conf.py verbatim, and its sed
    command, like deploy/run-local.sh's, fills exactly the placeholders the test fills."""
    docs = (REPO_ROOT / "docs" / "deployment.md").read_text(encoding="utf-8")
    nginx_conf = NGINX_CONF.read_text(encoding="utf-8")
    gunicorn_conf = (REPO_ROOT / "gunicorn.conf.py").read_text(encoding="utf-8")
    assert f"```nginx\n{nginx_conf}```" in docs
    assert f"```python\n{gunicorn_conf}```" in docs
    in_file = set(re.findall(r"\{\{(\w+)\}\}", nginx_conf))
    assert in_file == set(PLACEHOLDERS)
    run_local = (REPO_ROOT / "deploy" / "run-local.sh").read_text(encoding="utf-8")
    for text in (docs.replace(nginx_conf, ""), run_local):
        assert set(re.findall(r"s\|\{\{(\w+)\}\}\|", text)) == in_file


# --- the JS SDK through nginx -------------------------------------------------------------------


def run_node(d: Deployment, script: str) -> None:
    """``tests/js/<script>`` under ``node --test`` with BASE_URL = nginx."""
    missing = node_missing()
    if missing:
        if IN_CI:
            pytest.fail(f"CI=true but {missing}")
        pytest.skip(missing)
    env = {
        **os.environ,
        "BASE_URL": d.nginx.url,
        "SU_EMAIL": SU_EMAIL,
        "SU_PASSWORD": SU_PASSWORD,
    }
    proc = subprocess.run(
        ["node", "--test", "--test-reporter=spec", str(JS / script)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:] + d.logs()


@pytest.mark.timeout(300)
def test_js_sdk_records_suite_through_nginx(deployed: Deployment) -> None:
    run_node(deployed, "records.test.mjs")


@pytest.mark.timeout(300)
def test_js_sdk_realtime_suite_through_nginx(deployed: Deployment) -> None:
    run_node(deployed, "realtime.test.mjs")


# --- streaming ----------------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_events_arrive_through_nginx_unbuffered(deployed: Deployment) -> None:
    """Each write's event reaches the stream before anything else is written.

    A buffering proxy holds small frames until its buffer fills (or the
    response ends): this stream would then see PB_CONNECT and each event only
    after more data, i.e. never, since nothing more is written until it arrives.
    """
    d = deployed
    # As browsers do, the client accepts gzip: a proxy compressing the stream would buffer it.
    browser = {"Accept-Encoding": "gzip, deflate"}
    stream, client_id = d.open_stream(source=HOST_A, headers=browser)  # PB_CONNECT came at once
    try:
        assert stream.headers.get("Content-Type", "").startswith("text/event-stream")
        assert stream.headers.get("Content-Encoding") is None
        # nginx consumed the app's X-Accel-Buffering: this stream did pass through nginx.
        assert stream.headers.get("X-Accel-Buffering") is None
        assert d.subscribe(client_id, ["public_posts/*"], source=HOST_A) == (204, None)
        for number in range(6):  # round robin: the writes reach both masters
            title = f"unbuffered-{number}"
            status, body = d.request(
                "POST", "/api/collections/public_posts/records", {"title": title}
            )
            assert status == 200, body
            event = stream.next_event(timeout=EVENT_WAIT)
            assert (event.event, title_of(event)) == ("public_posts/*", title)
            assert event.id.startswith(f"{client_id}.")
    finally:
        stream.close()


# --- the address checks behind nginx -------------------------------------------------------------


@pytest.mark.timeout(120)
def test_another_address_cannot_subscribe_for_or_resume_a_client(deployed: Deployment) -> None:
    """With ``REALTIME_TRUSTED_PROXIES=1`` the app sees each machine's own address again."""
    d = deployed
    _, token = sign_up_and_log_in(d, f"owner-{time.time_ns()}@example.com", HOST_A)
    stream, client_id = d.open_stream(source=HOST_A)
    try:
        # The owner's login goes with its subscription to posts (auth-only: listRule needs auth).
        auth = {"Authorization": token}
        assert d.subscribe(client_id, ["posts/*"], source=HOST_A, headers=auth) == (204, None)
        # Another machine, plainly or claiming the owner's address in X-Forwarded-For, is
        # refused by every worker it reaches (nginx alternates between the masters).
        for _ in range(4):
            for spoofed in ("", HOST_A):
                headers = {"X-Forwarded-For": spoofed} if spoofed else {}
                answer = d.subscribe(client_id, ["public_posts/*"], source=HOST_B, headers=headers)
                assert answer == (400, INVALID_CLIENT), d.logs()
        for _ in range(4):  # the owner's own POSTs reach it on any worker
            assert d.subscribe(client_id, ["posts/*"], source=HOST_A, headers=auth) == (204, None)

        post = {"title": "for the owner's eyes"}
        status, body = d.request(
            "POST", "/api/collections/posts/records", post, source=HOST_A, headers=auth
        )
        assert status == 200, body
        last = stream.next_event(timeout=EVENT_WAIT)
        assert (last.event, title_of(last)) == ("posts/*", post["title"])
    finally:
        stream.abort()  # the owner's connection dies (RST); its client is parked for a resume
    wait_until(lambda: d.parked(client_id), timeout=EVENT_WAIT, message="the client was not parked")
    missed = {"title": "written while the owner was away"}
    status, body = d.request(
        "POST", "/api/collections/posts/records", missed, source=HOST_A, headers=auth
    )
    assert status == 200, body

    # Another machine sending the owner's Last-Event-ID gets a fresh client of its own.
    for spoofed in ("", HOST_A):
        other, other_id = d.open_stream(source=HOST_B, headers=resume_headers(last.id, spoofed))
        other.close()
        assert other_id != client_id, d.logs()
    assert d.parked(client_id)  # still there for its owner

    resumed, resumed_id = d.open_stream(source=HOST_A, headers=resume_headers(last.id))
    try:
        assert resumed_id == client_id
        event = resumed.next_event(timeout=EVENT_WAIT)
        assert (event.event, title_of(event)) == ("posts/*", missed["title"])
    finally:
        resumed.close()


# --- no trusted proxy configured -----------------------------------------------------------------


@pytest.fixture(scope="module")
def untrusted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """The same deployment with ``REALTIME_TRUSTED_PROXIES`` left at 0 (one worker per master)."""
    data_dir = tmp_path_factory.mktemp("nginx-untrusted-data")
    with deployment(data_dir, trusted_proxies=0, workers=1) as running:
        yield running


@pytest.mark.timeout(120)
def test_without_trusted_proxies_one_warning_names_the_setting(untrusted: Deployment) -> None:
    d = untrusted
    # Each nginx worker alternates between the two masters, and one of the two
    # nginx workers takes at least 4 of these 8 connections: both masters are reached.
    for _ in range(8):
        assert d.request("GET", "/api/health")[0] == 200
    for master in d.masters:  # one worker each: exactly one warning each
        assert master.log_text().count(WARNING_TEXT) == 1, d.logs()


@pytest.mark.timeout(120)
def test_without_trusted_proxies_a_resume_never_returns_another_clients_login(
    untrusted: Deployment,
) -> None:
    d = untrusted
    _, token = sign_up_and_log_in(d, f"victim-{time.time_ns()}@example.com", HOST_A)
    auth = {"Authorization": token}
    stream, client_id = d.open_stream(source=HOST_A)
    try:
        assert d.subscribe(client_id, ["posts/*"], source=HOST_A, headers=auth) == (204, None)
        post = {"title": "auth only"}
        status, body = d.request(
            "POST", "/api/collections/posts/records", post, source=HOST_A, headers=auth
        )
        assert status == 200, body
        last = stream.next_event(timeout=EVENT_WAIT)
    finally:
        stream.abort()
    wait_until(lambda: d.parked(client_id), timeout=EVENT_WAIT, message="the client was not parked")
    other, other_id = d.open_stream(source=HOST_B, headers=resume_headers(last.id))
    try:
        assert other_id != client_id, "a guest on another machine got the signed-in client back"
        reset = other.next_event(timeout=EVENT_WAIT)
        assert (reset.event, json.loads(reset.data)) == ("RF_RESET", {"reason": "untrusted_proxy"})
    finally:
        other.close()
    # The owner cannot be told apart either (nginx's address for everyone): it too gets
    # a fresh client and RF_RESET, and refetches; REALTIME_TRUSTED_PROXIES=1 restores resumes.
    own, own_id = d.open_stream(source=HOST_A, headers=resume_headers(last.id))
    try:
        assert own_id != client_id
        assert own.next_event(timeout=EVENT_WAIT).event == "RF_RESET"
    finally:
        own.close()


# --- a master stopped and nginx reloaded in the middle of writes ------------------------------

#: Bounds of the load: writes, seconds of writing, stream (re)connections per reader.
MAX_WRITES: t.Final = 20_000
WRITE_BUDGET: t.Final = 150.0
MAX_CONNECTS: t.Final = 50
#: Acknowledged writes to see after each step before taking the next.
WRITES_PER_STEP: t.Final = 20
#: Seconds between two writes: at most 200 writes a second, so the whole run stays
#: within the Redis log's REALTIME_HISTORY_SIZE (10,000) and the load stays light.
PACE: t.Final = 0.005
#: Seconds a reader waits for its closed client to be parked before reconnecting.
PARK_WAIT: t.Final = 5.0
READERS: t.Final = ("127.0.0.4", "127.0.0.5", "127.0.0.6")
BARRIER: t.Final = "barrier"


@dataclass
class Write:
    number: int
    title: str
    started: float
    status: int
    error: str = ""


class Writer(threading.Thread):
    """Creates ``public_posts`` records through nginx one after another (bounded)."""

    def __init__(self, d: Deployment) -> None:
        super().__init__(name="nginx-writer", daemon=True)
        self.d = d
        self.halt = threading.Event()
        self._lock = threading.Lock()
        self._writes: list[Write] = []

    def run(self) -> None:
        deadline = time.monotonic() + WRITE_BUDGET
        for number in range(MAX_WRITES):
            if self.halt.is_set() or time.monotonic() > deadline:
                return
            title = f"w{number}"
            started = time.monotonic()
            try:
                status, _ = self.d.request(
                    "POST", "/api/collections/public_posts/records", {"title": title}
                )
                write = Write(number, title, started, status)
            except (OSError, ValueError) as exc:  # ValueError: nginx's HTML error page
                write = Write(number, title, started, -1, repr(exc))
            with self._lock:
                self._writes.append(write)
            self.halt.wait(PACE)  # pacing, not synchronisation

    @property
    def writes(self) -> list[Write]:
        with self._lock:
            return list(self._writes)

    def acked_since(self, moment: float) -> int:
        return sum(1 for w in self.writes if w.status == 200 and w.started >= moment)


class StreamError(Exception):
    """A reader's stream or subscription answered unexpectedly (it reconnects)."""


@dataclass
class Connection:
    """One stream a reader opened: the Last-Event-ID it sent and the client it got."""

    sent: str
    client_id: str
    resumed: bool
    node: str  # the worker holding the stream (the router's registry)
    events: int = 0


@dataclass
class Reader:
    """A plain EventSource through nginx from its own address: on every end of the
    stream it reconnects with ``Last-Event-ID``; a fresh client is subscribed again."""

    d: Deployment
    source: str
    titles: list[str] = field(default_factory=list)
    resets: list[str] = field(default_factory=list)
    connections: list[Connection] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    halt: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self.run, name=f"reader-{self.source}", daemon=True)
        self.thread.start()

    def run(self) -> None:
        deadline = time.monotonic() + WRITE_BUDGET + 60
        last_id = ""
        for _ in range(MAX_CONNECTS):
            if self.halt.is_set() or time.monotonic() > deadline:
                return
            try:
                last_id = self._connection(last_id, deadline)
            except (OSError, TimeoutError, ValueError, StreamError) as exc:
                with self.lock:
                    self.errors.append(repr(exc))
                self.halt.wait(0.05)  # a retry backoff, as EventSource has one
            self._await_park(last_id)
        with self.lock:
            self.errors.append(f"gave up after {MAX_CONNECTS} connections")

    def _await_park(self, last_id: str) -> None:
        """Before reconnecting, wait (bounded) until the server has parked the closed
        client: where a real EventSource waits its reconnection time, this waits for
        the state a resume needs.  (A reconnect that overtakes the server noticing
        the closed connection gets a fresh client: not what this test is about.)"""
        client_id = last_id.partition(".")[0]
        if not client_id or self.halt.is_set():
            return
        try:
            wait_until(lambda: self.d.parked(client_id) or self.halt.is_set(), timeout=PARK_WAIT)
        except TimeoutError:
            with self.lock:
                self.errors.append(f"{client_id} not parked within {PARK_WAIT}s")

    def _connection(self, last_id: str, deadline: float) -> str:
        headers = {"Last-Event-ID": last_id} if last_id else {}
        stream = HTTPEventStream(
            self.d.host, self.d.port, headers=headers, source_address=(self.source, 0)
        )
        try:
            if stream.status != 200:
                raise StreamError(f"GET /api/realtime answered {stream.status}")
            first = stream.next_event(timeout=EVENT_WAIT)
            if first.event != "PB_CONNECT":
                raise StreamError(f"first frame {first!r}")
            client_id = first.id
            resumed = bool(self.connections) and client_id == self.connections[-1].client_id
            node = self.d.redis.hget("realtime:clients", client_id)
            label = node.decode() if isinstance(node, bytes) else "?"
            connection = Connection(last_id, client_id, resumed, label)
            if not resumed:  # the first stream, or a fresh client: (re)subscribe
                answer = self.d.subscribe(client_id, ["public_posts/*"], source=self.source)
                if answer != (204, None):
                    raise StreamError(f"subscribe answered {answer}")
            with self.lock:
                self.connections.append(connection)
            last_id = client_id
            while not self.halt.is_set() and time.monotonic() < deadline:
                try:
                    event = stream.next_event(timeout=0.5)
                except TimeoutError:
                    if stream.ended:
                        return last_id
                    continue
                last_id = event.id or last_id
                with self.lock:
                    connection.events += 1
                    if event.event == "RF_RESET":
                        self.resets.append(event.data)
                    elif event.event == "public_posts/*":
                        self.titles.append(title_of(event))
            return last_id
        finally:
            stream.close()

    def seen(self) -> set[str]:
        with self.lock:
            return set(self.titles)

    def subscribed(self) -> bool:
        with self.lock:
            return bool(self.connections)

    def stop(self) -> None:
        self.halt.set()
        if self.thread is not None:
            self.thread.join(timeout=10)

    def report(self) -> str:
        with self.lock:
            conns = ", ".join(
                f"{c.client_id[:6]} {'resumed' if c.resumed else 'fresh'} on {c.node}: "
                f"{c.events} events"
                for c in self.connections
            )
            return (
                f"{self.source}: {len(self.titles)} events, resets {self.resets}, "
                f"connections [{conns}], {len(self.errors)} errors {sorted(set(self.errors))[:5]}"
            )


def write_through_restarts(
    d: Deployment,
    *,
    stop_master: bool = False,
    reload_master: bool = False,
    stop_worker: bool = False,
) -> None:
    """Readers and a writer through nginx while (optionally) master 1 gets SIGTERM or
    SIGHUP and nginx reloads; then every write answered 200 must have reached every
    reader, unless that reader got RF_RESET."""
    steps: dict[str, float] = {}
    readers = [Reader(d, source) for source in READERS]
    workers = {n: sorted(child_pids(m.pid)) for n, m in enumerate(d.masters, 1)}
    print(f"workers of each master: {workers}")
    writer = Writer(d)

    def reports() -> str:
        return "\n".join(r.report() for r in readers) + "\n" + d.logs()

    def acked_after(step: str) -> None:
        steps[step] = time.monotonic()
        wait_until(
            lambda: writer.acked_since(steps[step]) >= WRITES_PER_STEP,
            timeout=30,
            message=lambda: f"no {WRITES_PER_STEP} writes answered after: {step}\n{reports()}",
        )

    try:
        for reader in readers:
            reader.start()
        wait_until(
            lambda: all(r.subscribed() for r in readers), timeout=EVENT_WAIT, message=reports
        )
        writer.start()
        wait_until(
            lambda: all(len(r.seen()) >= WRITES_PER_STEP for r in readers),
            timeout=30,
            message=reports,
        )
        steps["start"] = time.monotonic()
        if stop_master:
            # SIGTERM: gunicorn.conf.py's hook closes the master's streams, its workers
            # exit, nginx finds its port closed and sends everything to master 2.
            steps["sigterm"] = time.monotonic()
            d.masters[0].stop()
            acked_after("master 1 stopped")
        if stop_worker:
            # SIGTERM to one worker of master 1: it drains and exits, the master starts another.
            steps["worker"] = time.monotonic()
            old = set(child_pids(d.masters[0].pid))
            victim = min(old)
            os.kill(victim, signal.SIGTERM)
            wait_until(
                lambda: (
                    victim not in child_pids(d.masters[0].pid)
                    and len(child_pids(d.masters[0].pid)) == WORKERS
                ),
                timeout=40,
                message=lambda: f"master 1 did not replace worker {victim}\n{d.logs()}",
            )
            acked_after("a worker of master 1 replaced")
        if reload_master:
            # SIGHUP: master 1 starts new workers and stops the old ones gracefully
            # (the same drain, finish, flush order as a SIGTERM of each).
            steps["sighup"] = time.monotonic()
            old = set(child_pids(d.masters[0].pid))
            os.kill(d.masters[0].pid, signal.SIGHUP)
            wait_until(
                lambda: (
                    not (old & set(child_pids(d.masters[0].pid)))
                    and len(child_pids(d.masters[0].pid)) == WORKERS
                ),
                timeout=40,
                message=lambda: f"master 1 did not replace its workers {old}\n{d.logs()}",
            )
            acked_after("master 1 reloaded")
        # nginx reloads: new workers take new connections; the old ones close the
        # streams they hold after worker_shutdown_timeout, and exit.
        old_workers = d.nginx.reload()
        acked_after("nginx reload")
        wait_until(
            lambda: not (old_workers & d.nginx.workers()),
            timeout=40,
            message=lambda: f"old nginx workers still hold connections\n{d.nginx.log_tail()}",
        )
        acked_after("old nginx workers gone")
        writer.halt.set()
        writer.join(timeout=30)
        assert not writer.is_alive()
        # A last write, after all the others: once every reader has it, each has
        # everything it will ever get of the writes before.
        status, body = d.request(
            "POST", "/api/collections/public_posts/records", {"title": BARRIER}
        )
        assert status == 200, body
        wait_until(lambda: all(BARRIER in r.seen() for r in readers), timeout=30, message=reports)
    finally:
        writer.halt.set()
        for reader in readers:
            reader.stop()
        writer.join(timeout=30)

    writes = writer.writes
    acked = [w for w in writes if w.status == 200]
    others = sorted({(w.status, w.error[:60]) for w in writes if w.status != 200})
    print(f"{len(writes)} writes, {len(acked)} answered 200, others: {others}")
    zero = steps.get("sigterm", steps.get("sighup", steps.get("worker", steps["start"])))
    first_step = (
        "SIGTERM"
        if stop_master
        else "SIGHUP"
        if reload_master
        else "a worker's SIGTERM"
        if stop_worker
        else "the reload"
    )
    logged = d.logged_titles()
    losses = []
    for reader in readers:
        print(reader.report())
        seen = reader.seen()
        missing = [w for w in acked if w.title not in seen]
        if missing and not reader.resets:
            when = ", ".join(f"{w.title}@{w.started - zero:+.2f}s" for w in missing[:6])
            when += f" ... {missing[-1].title}@{missing[-1].started - zero:+.2f}s"
            fresh = [c for c in reader.connections[1:] if not c.resumed]
            unlogged = [w for w in missing if w.title not in logged]
            losses.append(
                f"{reader.source}: {len(missing)} acknowledged writes never arrived and no "
                f"RF_RESET; {len(unlogged)} of them are not in the Redis log (write start "
                f"relative to {first_step}: {when}); "
                f"reconnects that got a fresh client: {len(fresh)}"
            )
    assert not losses, "\n".join(losses) + "\n" + d.logs()


@pytest.mark.timeout(300)
def test_an_nginx_reload_mid_writes_loses_no_acknowledged_event(tmp_path: Path) -> None:
    """worker_shutdown_timeout ends the old workers' streams; every reader resumes."""
    with deployment(tmp_path / "data", trusted_proxies=1) as d:
        write_through_restarts(d, stop_master=False)


@pytest.mark.timeout(300)
def test_a_master_stopped_and_nginx_reloaded_mid_writes_lose_no_acknowledged_event(
    tmp_path: Path,
) -> None:
    """Every write answered 200 reaches every subscriber, or the subscriber got RF_RESET."""
    with deployment(tmp_path / "data", trusted_proxies=1) as d:
        write_through_restarts(d, stop_master=True)


@pytest.mark.timeout(300)
def test_a_master_reloaded_mid_writes_loses_no_acknowledged_event(tmp_path: Path) -> None:
    """SIGHUP of a master (gunicorn's reload): its old workers drain, finish their
    requests and flush their broker while the new ones take over."""
    with deployment(tmp_path / "data", trusted_proxies=1) as d:
        write_through_restarts(d, reload_master=True)


@pytest.mark.timeout(300)
def test_a_worker_stopped_mid_writes_loses_no_acknowledged_event(tmp_path: Path) -> None:
    """SIGTERM of one worker (not its master): the same drain, finish, flush order."""
    with deployment(tmp_path / "data", trusted_proxies=1) as d:
        write_through_restarts(d, stop_worker=True)
