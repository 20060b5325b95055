"""A private ``redis-server`` for tests: its own free port, temp dir, and PID.

``RedisServer`` starts ``redis-server --port <free> --bind 127.0.0.1 --save ""
--appendonly no`` in a private temporary directory and waits (bounded) until it
answers ``PING``.  ``stop()`` sends SIGTERM to exactly the process it started
and waits for it; ``start()`` brings it back **on the same port** (for outage
tests: clients keep their URL).  Nothing persists across a restart.

``require_redis_server()`` is the binary check: without ``redis-server`` on
``PATH`` the test is skipped with the reason, except under ``CI=true`` where a
missing Redis fails the run.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import typing as t
from pathlib import Path
from types import TracebackType

import pytest

from tests.support.env import IN_CI
from tests.support.servers import free_port

__all__ = ["RedisServer", "RedisServerError", "require_redis_server"]

LOOPBACK: t.Final[str] = "127.0.0.1"
#: Attempts with a fresh port when the first start loses a port race.
START_ATTEMPTS: t.Final[int] = 3


class RedisServerError(RuntimeError):
    """The server did not start, answer PING, or stop in time."""


def require_redis_server() -> str:
    """The path of ``redis-server``; skips the test (fails under CI) when it is missing."""
    path = shutil.which("redis-server")
    if path is None:
        reason = "redis-server binary not found on PATH (install redis-server to run redis tests)"
        if IN_CI:
            pytest.fail(f"{reason}; CI=true requires it")
        pytest.skip(reason)
    return path


def _ping(port: int, timeout: float) -> bool:
    """True when a Redis on ``port`` answers ``PING`` with ``+PONG`` within ``timeout``."""
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One ``redis-server`` process on a loopback port; a context manager.

    :param binary: the server executable (``require_redis_server()`` by default).
    :param start_timeout: seconds to wait for PING after launching.
    """

    def __init__(self, binary: str | None = None, *, start_timeout: float = 10.0) -> None:
        self.binary = binary if binary is not None else require_redis_server()
        self.start_timeout = start_timeout
        self.port = 0
        self._dir = Path(tempfile.mkdtemp(prefix="realtime-redis-"))
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if not self.port:
            raise RedisServerError("the server has not been started yet")
        return f"redis://{LOOPBACK}:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start the server: a free port the first time, the same port afterwards."""
        if self.running:
            return
        if self.port:
            self._launch(self.port)
            return
        error: RedisServerError | None = None
        for _ in range(START_ATTEMPTS):
            try:
                self._launch(free_port())
                return
            except RedisServerError as exc:  # most likely a port race: try another port
                error = exc
                self.port = 0
        assert error is not None
        raise error

    def _launch(self, port: int) -> None:
        log_path = self._dir / "redis.log"
        argv = [
            self.binary,
            "--port",
            str(port),
            "--bind",
            LOOPBACK,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self._dir),
            "--logfile",
            str(log_path),
        ]
        self._proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        self.port = port
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                break
            if _ping(port, timeout=0.5):
                return
            time.sleep(0.02)  # the poll interval while the server boots
        self._kill()
        raise RedisServerError(
            f"redis-server on port {port} did not answer PING within {self.start_timeout}s;"
            f" log tail:\n{self._log_tail(log_path)}"
        )

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process this object started and wait for it to exit."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout)
        self._proc = None

    def _kill(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        self._proc = None

    @staticmethod
    def _log_tail(path: Path, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"

    def close(self) -> None:
        """Stop the server and remove its directory."""
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        started = False
        try:
            self.start()
            started = True
        finally:
            if not started:
                self.close()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
