"""Scale-out through one plain Redis server: the only code that imports ``redis`` (lazily).

``broker.RedisBroker`` is the shared event log (one Redis Stream);
``router.RedisRouter`` is the client registry, heartbeats, parking and the
control channel that routes a subscription POST to the worker holding the
stream; ``_redis`` is what both share (the lazy import, clients, the spawn
helper, the patched-sockets check, wire codecs).  Redis Cluster is not
supported: the keys are not hash-tagged and no cluster client is used.
"""

from __future__ import annotations
