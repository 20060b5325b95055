"""PocketBase-compatible realtime (Server-Sent Events) for Flask and WSGI under gevent.

The public names below are imported lazily, so ``import realtime_flask.core.sse``
(or any other pure module) does not pull in Flask or gevent.
"""

from __future__ import annotations

import importlib
import typing as t

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "Realtime": "realtime_flask.web.extension",
    "RealtimeState": "realtime_flask.engine.hub",
    "get_state": "realtime_flask.web.extension",
    "create_app": "realtime_flask.web.app",
    "RealtimeManager": "realtime_flask.engine.manager",
    "RealtimeClient": "realtime_flask.engine.client",
    "MemoryBroker": "realtime_flask.engine.broker",
    "Broker": "realtime_flask.engine.broker",
    "Event": "realtime_flask.core.events",
    "AuthUser": "realtime_flask.core.events",
    "TopicMessage": "realtime_flask.core.events",
    "Subscription": "realtime_flask.core.topics",
    "parse_topic": "realtime_flask.core.topics",
    "SSEMessage": "realtime_flask.core.sse",
    "format_sse_message": "realtime_flask.core.sse",
    "format_sse_comment": "realtime_flask.core.sse",
    "RealtimeError": "realtime_flask.errors",
}

__all__ = ["__version__", *sorted(_EXPORTS)]

if t.TYPE_CHECKING:
    from realtime_flask.core.events import AuthUser as AuthUser
    from realtime_flask.core.events import Event as Event
    from realtime_flask.core.events import TopicMessage as TopicMessage
    from realtime_flask.core.sse import SSEMessage as SSEMessage
    from realtime_flask.core.sse import format_sse_comment as format_sse_comment
    from realtime_flask.core.sse import format_sse_message as format_sse_message
    from realtime_flask.core.topics import Subscription as Subscription
    from realtime_flask.core.topics import parse_topic as parse_topic
    from realtime_flask.engine.broker import Broker as Broker
    from realtime_flask.engine.broker import MemoryBroker as MemoryBroker
    from realtime_flask.engine.client import RealtimeClient as RealtimeClient
    from realtime_flask.engine.hub import RealtimeState as RealtimeState
    from realtime_flask.engine.manager import RealtimeManager as RealtimeManager
    from realtime_flask.errors import RealtimeError as RealtimeError
    from realtime_flask.web.app import create_app as create_app
    from realtime_flask.web.extension import Realtime as Realtime
    from realtime_flask.web.extension import get_state as get_state


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'realtime_flask' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
