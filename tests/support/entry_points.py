"""Start a documented entry point as a real process and use it as a user would.

``EntryPoint`` runs one command (``python wsgi.py``, ``gunicorn -k gevent
wsgi:app``, ``python -m realtime_flask serve``, ...) on a free 127.0.0.1 port,
waits (bounded, and failing early if the process dies) until
``GET /api/health`` answers 200, and stops exactly the process it started.
Its output goes to a temporary log file whose tail is part of every failure
message.

``check_realtime_round_trip`` is what each entry point must do: answer the
health check, stream PB_CONNECT, deliver a created record to a subscribed
stream, and on SIGTERM end the stream cleanly and exit with status 0.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import subprocess
import tempfile
import time
import typing as t
from collections.abc import Mapping
from collections.abc import Sequence
from pathlib import Path

import pytest

from realtime_flask.testing import HTTPEventStream
from realtime_flask.testing import post_subscriptions
from realtime_flask.testing import request_json
from tests.support.servers import LOOPBACK
from tests.support.servers import free_port

__all__ = [
    "EntryPoint",
    "EntryPointError",
    "check_demo_page",
    "check_realtime_round_trip",
    "clean_env",
    "install_failed",
]

#: Attempts to start when the chosen port was taken meanwhile (a port race).
START_ATTEMPTS: t.Final[int] = 3
LOG_TAIL_LINES: t.Final[int] = 40
#: pip's words for "the package index cannot be reached".
NO_INDEX_MARKERS: t.Final[tuple[str, ...]] = (
    "NewConnectionError",
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Name or service not known",
    "Network is unreachable",
    "ConnectTimeoutError",
    "ProxyError",
    "(from versions: none)",
)


class EntryPointError(RuntimeError):
    """The process did not start, answer or stop as expected."""


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """``os.environ`` without the variables that would change what the process
    imports or how it is configured (``REALTIME_*``, ``PYTHON*``, the active
    venv), plus ``extra``."""
    drop = ("REALTIME_", "PYTHON", "VIRTUAL_ENV")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(extra or {})
    return env


def install_failed(what: str, output: str) -> t.NoReturn:
    """Skip the test when ``output`` (pip's) says the package index is out of
    reach, unless ``CI=true``; fail it otherwise."""
    in_ci = os.environ.get("CI", "").lower() == "true"
    if not in_ci and any(marker in output for marker in NO_INDEX_MARKERS):
        tail = "\n".join(output.splitlines()[-5:])
        pytest.skip(f"{what} not built: no access to the package index\n{tail}")
    pytest.fail(f"{what} not built:\n{output}")


class EntryPoint:
    """One server process started from ``command(port)`` in ``cwd``.

    ::

        with EntryPoint("wsgi.py", lambda port: [python, "wsgi.py"], cwd=REPO_ROOT,
                        env=lambda port: clean_env({"REALTIME_PORT": str(port)})) as server:
            check_realtime_round_trip(server)
    """

    def __init__(
        self,
        name: str,
        command: t.Callable[[int], Sequence[str]],
        *,
        cwd: Path,
        env: t.Callable[[int], Mapping[str, str]],
        startup_timeout: float = 20.0,
    ) -> None:
        self.name = name
        self.host = LOOPBACK
        self.port = 0
        self._command = command
        self._env = env
        self.cwd = cwd
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: t.BinaryIO | None = None
        fd, path = tempfile.mkstemp(prefix="realtime-entry-point-", suffix=".log")
        os.close(fd)
        self.log_path = Path(path)

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> EntryPoint:
        for attempt in range(1, START_ATTEMPTS + 1):
            self.port = free_port(self.host)
            self._spawn()
            try:
                self._wait_healthy()
                return self
            except EntryPointError:
                exited = self.proc is not None and self.proc.poll() is not None
                if (
                    not (exited and "already in use" in self.log_tail())
                    or attempt == START_ATTEMPTS
                ):
                    self.kill()
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _spawn(self) -> None:
        self._close_log()
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            list(self._command(self.port)),
            cwd=self.cwd,
            env=dict(self._env(self.port)),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def _wait_healthy(self) -> None:
        proc = self.proc
        assert proc is not None
        deadline = time.monotonic() + self.startup_timeout
        last = "no answer yet"
        for _ in range(int(self.startup_timeout / 0.05) + 2):
            if proc.poll() is not None:
                raise self.error(f"exited with {proc.returncode} before /api/health answered")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                status, _ = self.request("GET", "/api/health", timeout=min(0.5, remaining))
            except (OSError, ValueError) as exc:
                last = repr(exc)
            else:
                if status == 200:
                    return
                last = f"status {status}"
            # Wait on the process itself: returns at once if it dies, else after the interval.
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=min(0.05, max(deadline - time.monotonic(), 0.001)))
        raise self.error(f"/api/health did not answer 200 within {self.startup_timeout}s ({last})")

    def send_sigterm(self) -> None:
        """SIGTERM the process we started (only ever that PID)."""
        if self.proc is None:
            raise EntryPointError(f"{self.name}: not started")
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def wait_exit(self, timeout: float = 15.0) -> int:
        """Wait for the process to exit by itself; its exit code."""
        if self.proc is None:
            raise EntryPointError(f"{self.name}: not started")
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise self.error(f"still running after {timeout}s") from None

    def kill(self) -> None:
        """SIGKILL the process we started if it still runs, and reap it."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)

    def close(self) -> None:
        self.kill()
        self._close_log()
        self.log_path.unlink(missing_ok=True)

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> EntryPoint:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- output and requests ----------------------------------------------------

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        if self._log is not None:
            self._log.flush()
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def error(self, message: str) -> EntryPointError:
        pid = None if self.proc is None else self.proc.pid
        return EntryPointError(
            f"{self.name} (pid {pid}, {self.host}:{self.port}): {message}\n"
            f"--- last lines of its output ---\n{self.log_tail()}"
        )

    def request(
        self,
        method: str,
        path: str,
        body: object = None,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
    ) -> tuple[int, t.Any]:
        return request_json(
            self.host, self.port, method, path, body, headers=headers, timeout=timeout
        )


def check_realtime_round_trip(server: EntryPoint, collection: str = "posts") -> None:
    """Health, PB_CONNECT, subscribe, create a record and receive it, then SIGTERM.

    Leaves ``server`` stopped; raises AssertionError (with the server's output)
    on the first step that does not happen.
    """
    status, health = server.request("GET", "/api/health")
    assert status == 200, server.error(f"/api/health answered {status}: {health!r}")
    with HTTPEventStream(server.host, server.port) as stream:
        assert stream.status == 200, server.error(f"GET /api/realtime answered {stream.status}")
        connect = stream.next_event(timeout=10)
        assert connect.event == "PB_CONNECT", server.error(f"first event {connect!r}")
        assert json.loads(connect.data) == {"clientId": connect.id}

        status, body = post_subscriptions(server.host, server.port, connect.id, [f"{collection}/*"])
        assert status == 204, server.error(f"subscription POST answered {status}: {body!r}")

        title = f"hello from {server.name}"
        status, record = server.request(
            "POST", f"/api/collections/{collection}/records", {"title": title}
        )
        assert status == 200, server.error(f"create answered {status}: {record!r}")

        event = stream.next_event(timeout=10)
        assert event.event == f"{collection}/*", server.error(f"got {event!r}")
        message = json.loads(event.data)
        assert message["action"] == "create"
        assert message["record"]["id"] == record["id"]
        assert message["record"]["title"] == title

        server.send_sigterm()
        stream.wait_closed(timeout=10)
        assert stream.ended_cleanly, server.error("the stream was cut, not ended, on SIGTERM")
    code = server.wait_exit(timeout=15)
    assert code == 0, server.error(f"exited with {code} after SIGTERM")


#: The demo page and its files, with the content type each is served with.
DEMO_FILES: t.Final[dict[str, str]] = {
    "/": "text/html",
    "/demo/static/demo.js": "text/javascript",
    "/demo/static/demo.css": "text/css",
}


def check_demo_page(server: EntryPoint) -> None:
    """The live demo page and its script and style are served (package data shipped)."""
    for path, mimetype in DEMO_FILES.items():
        conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read()
        finally:
            conn.close()
        served = resp.getheader("Content-Type", "")
        assert resp.status == 200 and body, server.error(f"GET {path} answered {resp.status}")
        assert served.startswith(mimetype), server.error(f"GET {path} served {served!r}")
