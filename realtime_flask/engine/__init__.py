"""One process's realtime engine: clients, subscriptions, fan-out, the broker interface.

``manager`` keeps the clients and the topic index and builds every frame;
``broker`` defines the event log interface and its in-process
``MemoryBroker``; ``router`` applies a subscription POST where the client
lives; ``access`` decides per (auth, subscription) what a client may see.
Built on ``core`` and the ``runtime`` seam; knows nothing of Flask, Redis or
SQLite.
"""

from __future__ import annotations
