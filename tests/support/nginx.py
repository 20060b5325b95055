"""A real nginx for tests, running ``deploy/nginx.conf``: the file docs/deployment.md includes.

``render_config`` fills the file's ``{{LISTEN}}``, ``{{UPSTREAM_1}}``,
``{{UPSTREAM_2}}`` and ``{{LOG_DIR}}`` placeholders (and nothing else: the
rendered text differs from the file in those spots only).  ``NginxServer``
writes the result into a private prefix folder and runs, in the foreground::

    nginx -p <prefix> -c <prefix>/nginx.conf -e <prefix>/logs/error.log \\
          -g "daemon off; pid <prefix>/nginx.pid;"

on a free loopback port, waits (bounded) until the port accepts connections,
and stops exactly the master it started (SIGTERM, a bounded wait, then SIGKILL
for it and its own workers).  ``reload()`` is ``nginx ... -s reload`` against
that master's pid file, then waits for the new workers.

``require_nginx()`` is the binary check: without nginx the test is skipped
with the reason, except under ``CI=true`` where it fails (``.ci/run``
installs Debian's ``nginx``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import typing as t
from collections.abc import Mapping
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import pytest

from tests.support.env import IN_CI
from tests.support.env import REPO_ROOT
from tests.support.servers import free_port
from tests.support.servers import wait_until

__all__ = [
    "NGINX_CONF",
    "PLACEHOLDERS",
    "NginxError",
    "NginxServer",
    "child_pids",
    "render_config",
    "require_nginx",
]

#: The deployment recipe: docs/deployment.md includes this file verbatim.
NGINX_CONF: t.Final[Path] = REPO_ROOT / "deploy" / "nginx.conf"
PLACEHOLDERS: t.Final[tuple[str, ...]] = ("LISTEN", "UPSTREAM_1", "UPSTREAM_2", "LOG_DIR")
LOOPBACK: t.Final[str] = "127.0.0.1"
#: Where Debian puts the binary (``/usr/sbin`` may be missing from a user's PATH).
DEBIAN_BINARY: t.Final[str] = "/usr/sbin/nginx"
START_ATTEMPTS: t.Final[int] = 3
LOG_TAIL_LINES: t.Final[int] = 30


class NginxError(RuntimeError):
    """nginx did not start, reload or stop as expected."""


def require_nginx() -> str:
    """The nginx binary; skips the test (fails under ``CI=true``) when there is none."""
    path = shutil.which("nginx") or (DEBIAN_BINARY if os.access(DEBIAN_BINARY, os.X_OK) else None)
    if path is None:
        reason = "nginx is not installed (Debian: apt-get install nginx)"
        if IN_CI:
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(reason)
    return path


def render_config(values: Mapping[str, str], template: str | None = None) -> str:
    """``deploy/nginx.conf`` (or ``template``) with every ``{{NAME}}`` of
    ``PLACEHOLDERS`` replaced by ``values[NAME]``; ValueError when a value is
    missing, unknown, or a placeholder is left over."""
    text = NGINX_CONF.read_text(encoding="utf-8") if template is None else template
    if set(values) != set(PLACEHOLDERS):
        raise ValueError(f"values for exactly {PLACEHOLDERS} are needed, got {sorted(values)}")
    for name in PLACEHOLDERS:
        marker = "{{" + name + "}}"
        if marker not in text:
            raise ValueError(f"{marker} is not in the template")
        text = text.replace(marker, values[name])
    if "{{" in text:
        raise ValueError("a placeholder is left over: " + text[text.index("{{") :][:40])
    return text


def child_pids(parent: int) -> set[int]:
    """PIDs whose parent is ``parent``, read from ``/proc/<pid>/stat``."""
    children: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # the process exited meanwhile
            continue
        # "pid (comm) state ppid ...": comm may contain anything, so split after its ")".
        fields = stat.rpartition(")")[2].split()
        if len(fields) > 1 and int(fields[1]) == parent:
            children.add(int(entry.name))
    return children


def _accepts(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout):
            return True
    except OSError:
        return False


class NginxServer:
    """One nginx master (and its workers) running ``deploy/nginx.conf`` on 127.0.0.1.

    ::

        with NginxServer([("127.0.0.1", 8001), ("127.0.0.1", 8002)]) as nginx:
            request_json(nginx.host, nginx.port, "GET", "/api/health")

    :param upstreams: the two gunicorn masters (``{{UPSTREAM_1}}``, ``{{UPSTREAM_2}}``).
    :param binary: the nginx executable (``require_nginx()`` by default).
    :param start_timeout: seconds to wait for the port to accept connections.
    """

    def __init__(
        self,
        upstreams: Sequence[tuple[str, int]],
        *,
        binary: str | None = None,
        start_timeout: float = 15.0,
    ) -> None:
        if len(upstreams) != 2:
            raise ValueError("deploy/nginx.conf names two upstream servers")
        self.binary = binary if binary is not None else require_nginx()
        self.upstreams = [f"{host}:{port}" for host, port in upstreams]
        self.start_timeout = start_timeout
        self.host = LOOPBACK
        self.port = 0
        self.prefix = Path(tempfile.mkdtemp(prefix="realtime-nginx-"))
        self.logs = self.prefix / "logs"
        self.logs.mkdir()
        self.conf_path = self.prefix / "nginx.conf"
        self.pid_path = self.prefix / "nginx.pid"
        self.error_log = self.logs / "error.log"
        self.out_path = self.prefix / "nginx.out"
        self._proc: subprocess.Popen[bytes] | None = None
        self._out: t.BinaryIO | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise NginxError("nginx has not been started")
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def argv(self, *extra: str) -> list[str]:
        """The command line, as deploy/run-local.sh has it (plus ``extra``, e.g. ``-s reload``)."""
        return [
            self.binary,
            "-p",
            str(self.prefix),
            "-c",
            str(self.conf_path),
            "-e",
            str(self.error_log),
            "-g",
            f"daemon off; pid {self.pid_path};",
            *extra,
        ]

    def workers(self) -> set[int]:
        return child_pids(self.pid) if self.running else set()

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> NginxServer:
        if self._proc is not None:
            raise NginxError("nginx was already started")
        for attempt in range(1, START_ATTEMPTS + 1):
            self.port = free_port(self.host)
            values = {
                "LISTEN": f"{self.host}:{self.port}",
                "UPSTREAM_1": self.upstreams[0],
                "UPSTREAM_2": self.upstreams[1],
                "LOG_DIR": str(self.logs),
            }
            self.conf_path.write_text(render_config(values), encoding="utf-8")
            self._out = self.out_path.open("ab")
            self._proc = subprocess.Popen(
                self.argv(),
                cwd=self.prefix,
                stdin=subprocess.DEVNULL,
                stdout=self._out,
                stderr=subprocess.STDOUT,
            )
            try:
                self._wait_ready()
                return self
            except NginxError:
                port_race = not self.running and "Address already in use" in self.log_tail()
                self.stop()
                if not port_race or attempt == START_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        for _ in range(int(self.start_timeout / 0.05) + 2):
            proc = self._proc
            if proc is None or proc.poll() is not None:
                raise NginxError(f"nginx exited before it listened\n{self.log_tail()}")
            if self._own_pid_file() and _accepts(self.port) and self.workers():
                return
            if time.monotonic() > deadline:
                break
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.05)  # returns early if nginx dies
        raise NginxError(f"nginx did not listen on {self.port} in time\n{self.log_tail()}")

    def _own_pid_file(self) -> bool:
        try:
            return int(self.pid_path.read_text().strip()) == self.pid
        except (OSError, ValueError):
            return False

    def reload(self, timeout: float = 15.0) -> set[int]:
        """``nginx -s reload`` (SIGHUP to this master, by its pid file); waits until as
        many new workers run as before.  Returns the old workers' pids (they finish
        their connections, at most ``worker_shutdown_timeout``, then exit)."""
        if not self._own_pid_file():
            raise NginxError(f"{self.pid_path} does not hold this master's pid {self.pid}")
        before = self.workers()
        done = subprocess.run(
            self.argv("-s", "reload"), capture_output=True, text=True, timeout=30, check=False
        )
        if done.returncode != 0:
            raise NginxError(f"nginx -s reload failed: {done.stderr}\n{self.log_tail()}")
        wait_until(
            lambda: len(self.workers() - before) >= len(before),
            timeout=timeout,
            message=lambda: f"no new nginx workers after reload\n{self.log_tail()}",
        )
        return before

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the master this object started (a fast shutdown), then SIGKILL it
        and its workers if it has not exited within ``timeout``."""
        proc = self._proc
        if proc is not None:
            if proc.poll() is None:
                workers = child_pids(proc.pid)
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    for pid in workers | child_pids(proc.pid):
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
                    proc.kill()
                    proc.wait(timeout=5)
            self._proc = None
        if self._out is not None:
            self._out.close()
            self._out = None

    def close(self) -> None:
        """Stop nginx and remove its prefix folder."""
        self.stop()
        shutil.rmtree(self.prefix, ignore_errors=True)

    def __enter__(self) -> NginxServer:
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

    # -- logs -------------------------------------------------------------------

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The tails of nginx's error log and its own output, for failure messages."""
        parts = []
        for path in (self.error_log, self.out_path):
            with contextlib.suppress(OSError):
                text = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {path} ---\n" + "\n".join(text))
        return "\n".join(parts)

    def error_log_text(self) -> str:
        with contextlib.suppress(OSError):
            return self.error_log.read_text(errors="replace")
        return ""
