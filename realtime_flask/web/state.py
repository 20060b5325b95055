"""Where a view finds its app's hub: ``app.extensions["realtime"]``.

The extension stores the hub there and the blueprints read it back; this module
imports neither, so the extension may import the blueprints and the blueprints
never import the extension.
"""

from __future__ import annotations

import typing as t

from flask import Flask
from flask import current_app

from realtime_flask.engine.hub import RealtimeState

__all__ = ["EXTENSION_KEY", "get_state"]

#: The key of the hub in ``app.extensions``.
EXTENSION_KEY: t.Final = "realtime"


def get_state(app: Flask | None = None) -> RealtimeState:
    """The realtime hub of ``app`` (default: the current app).

    Raises RuntimeError when ``Realtime``/``init_app`` has not run on the app
    (or outside an app context when ``app`` is None).
    """
    target = app if app is not None else current_app
    try:
        return t.cast(RealtimeState, target.extensions[EXTENSION_KEY])
    except KeyError:
        raise RuntimeError(
            "realtime_flask is not initialised on this app; call Realtime(app) or init_app(app)"
        ) from None
