"""PocketBase-compatible realtime (Server-Sent Events) for Flask and WSGI under gevent.

The public names below are imported lazily, so ``import realtime_flask.sse``
(or any other pure module) does not pull in Flask or gevent.
"""

from __future__ import annotations

import importlib
import typing as t

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "Realtime": "realtime_flask.extension",
    "RealtimeState": "realtime_flask.extension",
    "get_state": "realtime_flask.extension",
    "create_app": "realtime_flask.app",
    "RealtimeManager": "realtime_flask.manager",
    "RealtimeClient": "realtime_flask.manager",
    "MemoryBroker": "realtime_flask.broker",
    "Broker": "realtime_flask.broker",
    "Event": "realtime_flask.events",
    "AuthUser": "realtime_flask.events",
    "Subscription": "realtime_flask.topics",
    "parse_topic": "realtime_flask.topics",
    "SSEMessage": "realtime_flask.sse",
    "format_sse_message": "realtime_flask.sse",
    "format_sse_comment": "realtime_flask.sse",
    "RealtimeError": "realtime_flask.errors",
}

__all__ = ["__version__", *sorted(_EXPORTS)]

if t.TYPE_CHECKING:
    from .app import create_app as create_app
    from .broker import Broker as Broker
    from .broker import MemoryBroker as MemoryBroker
    from .errors import RealtimeError as RealtimeError
    from .events import AuthUser as AuthUser
    from .events import Event as Event
    from .extension import Realtime as Realtime
    from .extension import RealtimeState as RealtimeState
    from .extension import get_state as get_state
    from .manager import RealtimeClient as RealtimeClient
    from .manager import RealtimeManager as RealtimeManager
    from .sse import SSEMessage as SSEMessage
    from .sse import format_sse_comment as format_sse_comment
    from .sse import format_sse_message as format_sse_message
    from .topics import Subscription as Subscription
    from .topics import parse_topic as parse_topic


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'realtime_flask' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
