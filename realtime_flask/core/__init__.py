"""Pure logic: no IO, no clock, no Flask, werkzeug, gevent, redis or sqlite3.

SSE framing and parsing (``sse``), topics and subscriptions (``topics``),
record events (``events``), the collections schema as plain data
(``schema``) and PocketBase's filter language (``rules``).  Everything here
is a function of its arguments; ``tests/unit/test_layering.py`` enforces the
import rules.
"""

from __future__ import annotations
