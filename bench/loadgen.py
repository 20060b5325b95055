"""Build and drive ``bench/sseload.c``, the C load generator.

``build()`` compiles it with the machine's ``cc -O2`` into ``bench/.build/`` the first
time (and again when the source changes).  ``Loadgen`` runs one instance: it waits for the
``READY`` line, then takes commands (``mark``, ``skip``, ``status``, ``report``, ``stop``)
and returns the JSON each prints.  Every wait has a deadline.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import queue
import shutil
import signal
import subprocess
import threading
import time
import typing as t
from collections.abc import Sequence
from pathlib import Path

__all__ = ["BUILD_DIR", "Loadgen", "LoadgenError", "build", "find_cc"]

BENCH_DIR: t.Final[Path] = Path(__file__).resolve().parent
SOURCE: t.Final[Path] = BENCH_DIR / "sseload.c"
BUILD_DIR: t.Final[Path] = BENCH_DIR / ".build"
#: Most lines read from the generator's stdout (a run prints a few per second).
MAX_LINES: t.Final[int] = 1_000_000

Json = dict[str, t.Any]


class LoadgenError(RuntimeError):
    """The load generator could not be built, did not answer, or failed."""


def find_cc() -> str | None:
    """The C compiler: ``cc`` on PATH (``gcc``/``clang`` as fallbacks), or None."""
    for name in ("cc", "gcc", "clang"):
        found = shutil.which(name)
        if found:
            return found
    return None


def build() -> Path:
    """The compiled ``sseload`` binary, built now if missing or out of date."""
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:12]
    binary = BUILD_DIR / f"sseload-{digest}"
    if binary.exists():
        return binary
    cc = find_cc()
    if cc is None:
        raise LoadgenError(
            "no C compiler (cc) on PATH: the load generator is compiled at first use"
        )
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    partial = binary.with_suffix(".tmp")
    done = subprocess.run(
        [cc, "-O2", "-Wall", "-o", str(partial), str(SOURCE)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise LoadgenError(f"cc failed ({done.returncode}):\n{done.stderr}")
    partial.rename(binary)
    for old in BUILD_DIR.glob("sseload-*"):  # earlier builds of other sources
        if old != binary:
            old.unlink(missing_ok=True)
    return binary


class Loadgen:
    """One running ``sseload`` process (a context manager)."""

    def __init__(
        self,
        port: int,
        clients: int,
        topic: str,
        *,
        max_seq: int,
        tokens_file: Path | None = None,
        owner_mod: int = 0,
        concurrency: int = 200,
        posters: int = 32,
        setup_timeout: float = 120.0,
        duration: float = 600.0,
        batch_us: int = 200,
    ) -> None:
        argv: list[str] = [
            str(build()),
            "--port",
            str(port),
            "--clients",
            str(clients),
            "--topic",
            topic,
            "--max-seq",
            str(max_seq),
            "--concurrency",
            str(concurrency),
            "--posters",
            str(posters),
            "--setup-timeout",
            str(setup_timeout),
            "--duration",
            str(duration),
            "--batch-us",
            str(batch_us),
        ]
        if tokens_file is not None:
            argv += ["--tokens", str(tokens_file)]
        if owner_mod:
            argv += ["--owner-mod", str(owner_mod)]
        self.setup_timeout = setup_timeout
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.ready: Json = {}

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> None:
        out = self.proc.stdout
        assert out is not None
        for _ in range(MAX_LINES):
            line = out.readline()
            if not line:
                break
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def _expect(self, prefix: str, timeout: float) -> Json:
        deadline = time.monotonic() + timeout
        for _ in range(MAX_LINES):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                break
            if line is None:
                raise LoadgenError(f"sseload exited ({self.proc.poll()}): {self._stderr()}")
            if line.startswith(prefix):
                rest = line[len(prefix) :].strip()
                return t.cast(Json, json.loads(rest)) if rest.startswith("{") else {}
        raise LoadgenError(f"no {prefix!r} line from sseload within {timeout:.0f}s")

    def _stderr(self) -> str:
        if self.proc.poll() is None or self.proc.stderr is None:
            return ""
        with contextlib.suppress(OSError, ValueError):
            return self.proc.stderr.read()[-2000:]
        return ""

    def _send(self, line: str) -> None:
        stdin = self.proc.stdin
        assert stdin is not None
        try:
            stdin.write(line + "\n")
            stdin.flush()
        except (BrokenPipeError, ValueError) as exc:
            raise LoadgenError(f"sseload is gone ({self.proc.poll()}): {self._stderr()}") from exc

    def wait_ready(self) -> Json:
        """Wait until every client is subscribed (or failed); the READY summary."""
        self.ready = self._expect("READY", self.setup_timeout + 30)
        return self.ready

    def mark(self, first_seq: int) -> None:
        """The measured window starts: seqs >= ``first_seq`` are measured."""
        self._send(f"mark {first_seq}")
        self._expect("OK mark", 10)

    def skip(self, seqs: Sequence[int]) -> None:
        """These seqs were never created: not expected by anyone."""
        for seq in seqs:
            self._send(f"skip {seq}")

    def status(self) -> Json:
        self._send("status")
        return self._expect("STATUS", 10)

    def report(self, last_seq: int, timeout: float = 60) -> Json:
        """The summary of the window ``mark..last_seq``; the generator keeps running."""
        self._send(f"report {last_seq}")
        return self._expect("RESULT", timeout)

    def stop(self, last_seq: int, timeout: float = 60) -> Json:
        """The summary of the window ``mark..last_seq``; the generator exits."""
        self._send(f"stop {last_seq}")
        result = self._expect("RESULT", timeout)
        self.close()
        return result

    def close(self) -> None:
        proc = self.proc
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                if proc.stdin is not None:
                    proc.stdin.close()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGTERM)  # the PID this object started
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
        self._reader.join(timeout=5)
        for stream in (proc.stdout, proc.stderr, proc.stdin):
            if stream is not None:
                with contextlib.suppress(OSError, ValueError):
                    stream.close()

    def __enter__(self) -> Loadgen:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
