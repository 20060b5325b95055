"""Headless Chromium for the browser tests, and the small servers around it.

``chromium_missing()`` says why the browser tests cannot run here (no Debian
``chromium`` at ``/usr/bin/chromium``, or no Playwright for Python); the tests
skip with that reason, and fail under ``CI=true``.  Playwright drives the
system's Chromium through ``executable_path``: it never downloads a browser
(``PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD`` is set before it is imported).

``StaticSite`` serves fixed files from a thread on its own loopback port, so a
page has another origin than the API it talks to.  ``CutProxy`` forwards TCP
to the API and can cut every connection and hold new ones back: a network
break a browser's EventSource reconnects from.  ``Screenshots`` numbers and
saves one PNG per step into the test's output folder.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import select
import shutil
import socket
import threading
import typing as t
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
from pathlib import Path

from tests.support.servers import LOOPBACK

if t.TYPE_CHECKING:
    from playwright.sync_api import Page

__all__ = ["CHROMIUM", "CutProxy", "Screenshots", "StaticSite", "chromium_missing"]

#: Debian's chromium package puts its launcher here.
CHROMIUM: t.Final = Path("/usr/bin/chromium")
#: Seconds a proxied connection waits for bytes before it checks whether it was cut.
POLL_INTERVAL: t.Final = 0.2
#: The most bytes one read moves.
CHUNK: t.Final = 65536

os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")


def chromium_missing() -> str | None:
    """Why headless Chromium cannot be driven here, or None when it can."""
    if not CHROMIUM.exists() and shutil.which("chromium") is None:
        return f"Debian's chromium is not installed ({CHROMIUM}; apt-get install chromium)"
    if importlib.util.find_spec("playwright") is None:
        return "Playwright for Python is not installed (pip install -e '.[test]')"
    return None


def chromium_path() -> str:
    """The Chromium executable Playwright launches."""
    return str(CHROMIUM) if CHROMIUM.exists() else str(shutil.which("chromium"))


class Screenshots:
    """One numbered PNG per step in ``folder``: ``01-live.png``, ``02-created.png``, ..."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.taken: list[Path] = []
        print(f"screenshots: {self.folder}")

    def take(self, page: Page, step: str) -> Path:
        path = self.folder / f"{len(self.taken) + 1:02d}-{step}.png"
        page.screenshot(path=str(path), full_page=True)
        self.taken.append(path)
        print(f"screenshot: {path}")
        return path


#: One file a StaticSite serves: its bytes and its response headers.
SiteFile = tuple[bytes, Mapping[str, str]]


class StaticSite:
    """Fixed files over HTTP on 127.0.0.1 and a free port, served from a thread.

    ::

        with StaticSite({"/": (b"<p>hi</p>", {"Content-Type": "text/html"})}) as site:
            page.goto(site.url + "/")

    The query string is ignored when a path is looked up; unknown paths get 404.
    """

    def __init__(self, files: Mapping[str, SiteFile]) -> None:
        self.files = dict(files)
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                found = site.files.get(self.path.split("?", 1)[0])
                if found is None:
                    self.send_error(404)
                    return
                body, headers = found
                self.send_response(200)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # quiet: pytest shows failures, not every request

        self._server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://{LOOPBACK}:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> StaticSite:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class CutProxy:
    """A TCP forwarder from its own loopback port to ``target_port``.

    ``cut()`` closes every connection it carries (both sides see the end of
    the stream) and, while ``hold`` is set, closes each new one at once, so a
    reconnecting client keeps failing until ``hold`` is cleared.
    """

    def __init__(self, target_port: int, target_host: str = LOOPBACK) -> None:
        self.target = (target_host, target_port)
        self.hold = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener = socket.create_server((LOOPBACK, 0))
        self._listener.settimeout(POLL_INTERVAL)
        self.port = int(self._listener.getsockname()[1])
        self.url = f"http://{LOOPBACK}:{self.port}"
        self._threads: list[threading.Thread] = []
        self.accepted = 0

    def __enter__(self) -> CutProxy:
        self._spawn(self._accept_loop)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.cut()
        for thread in self._threads:
            thread.join(timeout=5)
        self._listener.close()

    def cut(self) -> int:
        """Close every carried connection; returns how many sockets were closed."""
        with self._lock:
            sockets = list(self._sockets)
            self._sockets.clear()
        for sock in sockets:
            _close(sock)
        return len(sockets)

    def _spawn(self, target: t.Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            if self.hold.is_set():
                _close(client)
                continue
            client.settimeout(None)
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _close(client)
                continue
            with self._lock:
                self._sockets.update((client, upstream))
            self._spawn(self._pump, client, upstream)
            self._spawn(self._pump, upstream, client)

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                readable, _, _ = select.select([source], [], [], POLL_INTERVAL)
                if not readable:
                    continue
                data = source.recv(CHUNK)
            except (OSError, ValueError):  # closed by cut() meanwhile
                break
            if not data:
                break
            try:
                sink.sendall(data)
            except OSError:
                break
        _close(source)
        _close(sink)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
