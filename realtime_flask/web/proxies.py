"""Trusted proxies: the client's own address behind nginx (``REALTIME_TRUSTED_PROXIES``).

Behind a reverse proxy every request reaches the app from the proxy's address,
so ``request.remote_addr`` names the proxy, not the client, and the checks
bound to it (a ``POST /api/realtime`` must come from the stream's address, a
resume with ``Last-Event-ID`` too) cannot tell two clients apart.

``trust_proxies(app, trusted)`` wraps ``app.wsgi_app``:

* ``trusted`` = N > 0 (N proxies in front, each appending the address it got
  the request from to ``X-Forwarded-For``): Werkzeug's
  ``ProxyFix(x_for=N, x_proto=N, x_host=N)``.  It takes the N-th address from
  the right of ``X-Forwarded-For`` (the one the outermost trusted proxy saw),
  the scheme from ``X-Forwarded-Proto`` and the host from ``X-Forwarded-Host``.
  Entries a client wrote itself sit further left and are ignored, so a spoofed
  ``X-Forwarded-For`` changes nothing; a request with fewer than N entries
  (one that bypassed the proxy) keeps its peer address.
* ``trusted`` = 0 (the default: no proxy): forwarding headers are ignored,
  and the first request that carries one logs ONE warning naming the
  setting, since it most likely came through a proxy nobody told the app about
  (not when a ProxyFix of the app's own, wrapped outside, has handled it).

Calling it again for the same app does nothing: ``create_app`` and the
extension's ``init_app`` may both apply it.
"""

from __future__ import annotations

import logging
import threading
import typing as t
from collections.abc import Iterable

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

if t.TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse
    from _typeshed.wsgi import WSGIApplication
    from _typeshed.wsgi import WSGIEnvironment

__all__ = [
    "APPLIED_KEY",
    "FORWARDING_HEADERS",
    "addresses_unreliable",
    "PROXY_FIX_KEY",
    "SETTING",
    "ForwardingWarning",
    "trust_proxies",
    "wrap_wsgi_app",
]

logger = logging.getLogger(__name__)

#: The setting the warning names.
SETTING: t.Final = "REALTIME_TRUSTED_PROXIES"
#: ``app.extensions`` key recording that (and with which count) the app was wrapped.
APPLIED_KEY: t.Final = "realtime_flask.trusted_proxies"
#: What Werkzeug's ProxyFix leaves in the environ once it has rewritten a request.
PROXY_FIX_KEY: t.Final = "werkzeug.proxy_fix.orig"
#: WSGI keys of the request headers that show a proxy forwarded the request.
FORWARDING_HEADERS: t.Final[tuple[str, ...]] = (
    "HTTP_X_FORWARDED_FOR",
    "HTTP_X_FORWARDED_PROTO",
    "HTTP_X_FORWARDED_HOST",
    "HTTP_X_REAL_IP",
    "HTTP_FORWARDED",
)


class ForwardingWarning:
    """WSGI middleware for ``REALTIME_TRUSTED_PROXIES = 0``: passes every request
    through unchanged, and logs one warning the first time one carries a
    forwarding header (``FORWARDING_HEADERS``)."""

    def __init__(self, app: WSGIApplication) -> None:
        self.app = app
        self.warned = False
        self._lock = threading.Lock()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        # PROXY_FIX_KEY: a ProxyFix of the app's own, wrapped around this one, has applied
        # the headers already; nothing to warn about.
        if not self.warned and PROXY_FIX_KEY not in environ:
            found = [key for key in FORWARDING_HEADERS if key in environ]
            if found:
                self._warn(environ, found)
        return self.app(environ, start_response)

    def _warn(self, environ: WSGIEnvironment, found: list[str]) -> None:
        with self._lock:
            if self.warned:
                return
            self.warned = True
        names = ", ".join(key[5:].replace("_", "-").title() for key in found)
        logger.warning(
            "realtime_flask: a request from %s carries %s but %s is 0, so every client "
            "behind that proxy has the proxy's address and the address checks of "
            "POST /api/realtime and of Last-Event-ID resumes cannot tell them apart; set %s "
            "to the number of proxies in front of this service (1 for one nginx) "
            "(logged once)",
            environ.get("REMOTE_ADDR", "?"),
            names,
            SETTING,
            SETTING,
        )


def addresses_unreliable(environ: WSGIEnvironment) -> bool:
    """Whether this request came through a proxy whose headers nobody applied:
    it carries a forwarding header and no ProxyFix rewrote it, so its
    ``REMOTE_ADDR`` is the proxy's, shared by every client behind it.  The
    realtime route then refuses address-bound resumes (a fresh client and
    ``RF_RESET``, never another client's login)."""
    return PROXY_FIX_KEY not in environ and any(key in environ for key in FORWARDING_HEADERS)


def wrap_wsgi_app(wsgi_app: WSGIApplication, trusted: int) -> WSGIApplication:
    """``wsgi_app`` behind ``trusted`` proxies: ProxyFix for N > 0, else ForwardingWarning.

    Raises ValueError for a negative count.
    """
    if trusted < 0:
        raise ValueError(f"{SETTING} must be >= 0, got {trusted!r}")
    if trusted == 0:
        return ForwardingWarning(wsgi_app)
    return t.cast(
        "WSGIApplication", ProxyFix(wsgi_app, x_for=trusted, x_proto=trusted, x_host=trusted)
    )


def trust_proxies(app: Flask, trusted: int) -> None:
    """Wrap ``app.wsgi_app`` for ``trusted`` proxies (``Settings.trusted_proxies``), once.

    A second call for the same app is a no-op when the count is the same, and a
    ValueError when it differs (the app would trust two different chains).
    """
    applied = app.extensions.get(APPLIED_KEY)
    if applied is not None:
        if applied != trusted:
            raise ValueError(f"{SETTING} already applied to this app as {applied}, not {trusted}")
        return
    app.wsgi_app = wrap_wsgi_app(app.wsgi_app, trusted)  # type: ignore[method-assign, assignment]
    app.extensions[APPLIED_KEY] = trusted
