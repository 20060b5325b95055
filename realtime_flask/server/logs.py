"""The entry points' default logging (``python wsgi.py``, ``gunicorn wsgi:app``,
``python -m realtime_flask serve``).

Only when nobody configured logging (gunicorn sets up its own loggers, not the
root one): warnings go to stderr, and the service's INFO lines, one per
connect, subscription change and disconnect (docs/operations.md), are shown.
A ``--log-config`` or an app's own ``logging`` setup wins.  The library itself
never configures logging.
"""

from __future__ import annotations

import logging

__all__ = ["default_logging"]

FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def default_logging() -> bool:
    """Configure the root logger and ``realtime_flask`` at INFO unless the
    root logger has handlers already; returns whether it did."""
    if logging.getLogger().handlers:
        return False
    logging.basicConfig(level=logging.WARNING, format=FORMAT)
    logging.getLogger("realtime_flask").setLevel(logging.INFO)
    return True
