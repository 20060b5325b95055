"""Scale-out through Redis: the only code that imports ``redis`` (lazily, when used).

``broker.RedisBroker`` is the shared event log (one Redis Stream);
``router.RedisRouter`` is the client registry, heartbeats, parking and the
control channel that routes a subscription POST to the worker holding the
stream.
"""

from __future__ import annotations
