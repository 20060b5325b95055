"""Real server processes for end-to-end tests, and a deadline-bound poller.

``GunicornServer`` starts ``python -m gunicorn -k gevent wsgi:app`` from the
repository root on a free loopback port, waits (bounded) until
``GET /api/health`` answers 200, and stops exactly the process it started:
SIGTERM, a bounded wait, then SIGKILL.  The server's output goes to a
temporary log file whose tail is part of every failure message.

``wait_until`` polls a condition until it holds or a deadline passes; use it
for "the count drops to 0 within a few seconds" assertions instead of a sleep.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import typing as t
from collections.abc import Mapping
from collections.abc import Sequence
from pathlib import Path

from realtime_flask.testing import request_json

__all__ = ["REPO_ROOT", "GunicornServer", "ServerError", "free_port", "wait_until"]

#: The repository root: gunicorn runs there so it finds ``wsgi.py`` and ``gunicorn.conf.py``.
REPO_ROOT: t.Final[Path] = Path(__file__).resolve().parents[2]
LOOPBACK: t.Final[str] = "127.0.0.1"
DEFAULT_SECRET: t.Final[str] = "e2e-publish-secret"
#: Log lines shown in failure messages.
LOG_TAIL_LINES: t.Final[int] = 40
#: Attempts to start when the chosen port was taken meanwhile (a port race).
START_ATTEMPTS: t.Final[int] = 3


class ServerError(RuntimeError):
    """The server failed to start, answered unexpectedly or did not stop."""


def wait_until(
    predicate: t.Callable[[], object],
    timeout: float,
    interval: float = 0.05,
    *,
    message: str | t.Callable[[], str] = "condition",
) -> None:
    """Poll ``predicate`` until it returns something truthy; TimeoutError after ``timeout``.

    The predicate is always tried once more at the deadline, so a condition
    that became true during the last interval is not reported as a timeout.
    """
    deadline = time.monotonic() + timeout
    max_polls = int(timeout / interval) + 2
    for _ in range(max_polls):
        if predicate():
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        time.sleep(min(interval, remaining))  # the poll interval, not a synchronisation
    if predicate():
        return
    text = message() if callable(message) else message
    raise TimeoutError(f"not true within {timeout}s: {text}")


def free_port(host: str = LOOPBACK) -> int:
    """A port the kernel just reported free on ``host`` (a race remains; start() retries)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class GunicornServer:
    """One ``gunicorn -k gevent -w <workers> wsgi:app`` process on 127.0.0.1.

    ::

        with GunicornServer(env={"REALTIME_KEEPALIVE_INTERVAL": "1"}) as server:
            server.publish("posts", "create", {"id": "r1"})

    :param workers: gunicorn ``-w``.
    :param env: extra environment variables (on top of ``os.environ``, whose
        ``REALTIME_*`` variables are dropped so the test alone decides them).
    :param secret: ``REALTIME_PUBLISH_SECRET`` (unless ``env`` sets it).
    :param startup_timeout: seconds to wait for ``/api/health`` to answer 200.
    :param extra_args: more gunicorn command-line arguments.
    """

    def __init__(
        self,
        *,
        workers: int = 1,
        env: Mapping[str, str] | None = None,
        secret: str = DEFAULT_SECRET,
        startup_timeout: float = 15.0,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.host = LOOPBACK
        self.port = 0
        self.workers = workers
        self.startup_timeout = startup_timeout
        self.extra_args = tuple(extra_args)
        self.env: dict[str, str] = {
            k: v for k, v in os.environ.items() if not k.startswith("REALTIME_")
        }
        self.env["REALTIME_PUBLISH_SECRET"] = secret
        # Records live in memory unless a test gives a data dir: never in the repo.
        self.env["REALTIME_DATA_DIR"] = ":memory:"
        self.env.update(env or {})
        self.secret = self.env["REALTIME_PUBLISH_SECRET"]
        self.returncode: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: t.BinaryIO | None = None
        fd, name = tempfile.mkstemp(prefix="realtime-e2e-gunicorn-", suffix=".log")
        os.close(fd)
        self.log_path = Path(name)

    # -- lifecycle ------------------------------------------------------------

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise ServerError("the server has not been started")
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "gunicorn",
            "-k",
            "gevent",
            "-w",
            str(self.workers),
            "-b",
            f"{self.host}:{self.port}",
            "--no-control-socket",
            *self.extra_args,
            "wsgi:app",
        ]

    def start(self) -> GunicornServer:
        """Start the process and wait until it serves ``/api/health``."""
        if self._proc is not None:
            raise ServerError("the server was already started")
        for attempt in range(1, START_ATTEMPTS + 1):
            self.port = free_port(self.host)
            self._spawn()
            try:
                self._wait_healthy()
                return self
            except ServerError:
                port_race = (
                    not self.running
                    and "Address already in use" in self.log_tail()
                    and attempt < START_ATTEMPTS
                )
                if not port_race:
                    self.stop()
                    raise
                self._reap()
        raise AssertionError("unreachable")  # pragma: no cover

    def _spawn(self) -> None:
        self._close_log()
        self._log = self.log_path.open("wb")
        self._proc = subprocess.Popen(
            self.command(),
            cwd=REPO_ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def _reap(self) -> None:
        """Forget a process that has already exited (after a failed start)."""
        if self._proc is not None:
            self.returncode = self._proc.wait(timeout=5)
            self._proc = None

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        last_error = "no answer yet"
        max_attempts = int(self.startup_timeout / 0.05) + 2
        for _ in range(max_attempts):
            proc = self._proc
            if proc is None or proc.poll() is not None:
                code = None if proc is None else proc.returncode
                raise ServerError(
                    f"gunicorn exited with {code} before it served /api/health\n{self._tail_text()}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                status, _ = request_json(
                    self.host, self.port, "GET", "/api/health", timeout=min(0.5, remaining)
                )
            except (OSError, ValueError) as exc:
                last_error = repr(exc)
            else:
                if status == 200:
                    return
                last_error = f"status {status}"
            # Wait on the process itself: returns early if it dies, else after the interval.
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=min(0.05, max(deadline - time.monotonic(), 0.001)))
        raise ServerError(
            f"gunicorn (pid {self.pid}, {self.host}:{self.port}) did not serve /api/health "
            f"within {self.startup_timeout}s (last: {last_error})\n{self._tail_text()}"
        )

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM the process this object started, wait up to ``timeout``, then SIGKILL.

        Returns the exit code (negative for a signal, as ``subprocess`` reports it).
        Idempotent: a stopped server returns its exit code again.
        """
        proc = self._proc
        if proc is None:
            if self.returncode is None:
                raise ServerError("the server has not been started")
            return self.returncode
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # only ever the PID we started
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        self.returncode = proc.returncode
        self._proc = None
        self._close_log()
        return self.returncode

    def close(self) -> None:
        """Stop the server (if running) and delete its log file."""
        if self._proc is not None:
            self.stop()
        self._close_log()
        self.log_path.unlink(missing_ok=True)

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> GunicornServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- logs -------------------------------------------------------------------

    def log_text(self) -> str:
        if self._log is not None:
            self._log.flush()
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def _tail_text(self) -> str:
        return f"--- last lines of {self.log_path} ---\n{self.log_tail()}"

    # -- requests ---------------------------------------------------------------

    def publish(
        self,
        collection: str,
        action: str,
        record: Mapping[str, object],
        *,
        collection_id: str | None = None,
    ) -> int:
        """``POST /api/realtime/publish`` with the bearer secret; returns the status."""
        body: dict[str, object] = {"collection": collection, "action": action, "record": record}
        body["unfiltered"] = True  # transport tests: as published, whatever the rules
        if collection_id is not None:
            body["collectionId"] = collection_id
        status, _ = request_json(
            self.host,
            self.port,
            "POST",
            "/api/realtime/publish",
            body,
            headers={"Authorization": f"Bearer {self.secret}"},
        )
        return status

    def health(self) -> dict[str, t.Any]:
        """The ``GET /api/health`` body (ServerError unless it answers 200 with an object)."""
        status, body = request_json(self.host, self.port, "GET", "/api/health")
        if status != 200 or not isinstance(body, dict):
            raise ServerError(f"/api/health answered {status}: {body!r}\n{self._tail_text()}")
        return body

    def client_count(self) -> int:
        """``data.realtime.clients`` of ``/api/health``."""
        return int(self.health()["data"]["realtime"]["clients"])
