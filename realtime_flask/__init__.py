"""PocketBase-compatible realtime (Server-Sent Events) for Flask and WSGI under gevent."""

from __future__ import annotations

__version__ = "0.1.0"
