"""The only Flask-aware code: the ``Realtime`` extension, ``create_app`` and the HTTP API.

Maps the error tree of ``realtime_flask.errors`` to PocketBase's JSON bodies.
"""

from __future__ import annotations
