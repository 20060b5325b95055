"""``create_app``: the standalone realtime service.

Order as in the Flask tutorial: defaults, then ``REALTIME_*`` environment
variables, then the ``config`` passed in, then extensions, then blueprints.
"""

from __future__ import annotations

import typing as t
from collections.abc import Mapping

from flask import Flask
from werkzeug.exceptions import HTTPException

from .api import http_error_response
from .api.publish import bp as publish_bp
from .config import env_overrides
from .extension import Realtime
from .extension import get_state

__all__ = ["create_app"]


def create_app(config: Mapping[str, t.Any] | None = None) -> Flask:
    """Build the standalone service: realtime routes plus the publish route.

    :param config: Flask config overrides (``REALTIME_*`` keys and others);
        they win over ``REALTIME_*`` environment variables.
    """
    app = Flask("realtime_flask")
    app.config.update(env_overrides())
    if config:
        app.config.update(config)
    Realtime(app)
    app.register_blueprint(publish_bp)
    app.register_error_handler(HTTPException, http_error_response)

    @app.get("/api/health")
    def health() -> dict[str, object]:
        manager = get_state(app).manager
        return {
            "code": 200,
            "message": "API is healthy.",
            "data": {
                "realtime": {
                    "clients": manager.get_client_count(),
                    "droppedSlow": manager.dropped_slow,
                    "reapedIdle": manager.reaped_idle,
                    "reapedLifetime": manager.reaped_lifetime,
                }
            },
        }

    return app
