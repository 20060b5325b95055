"""Entry point: ``gunicorn -k gevent wsgi:app`` or ``python wsgi.py``.

Monkey-patching happens here, first, and nowhere in the library.
"""

from gevent import monkey

if not monkey.is_module_patched("socket"):  # gunicorn's gevent worker patched already
    monkey.patch_all()

import sys

from realtime_flask.errors import RealtimeError
from realtime_flask.runtime import tune_gc
from realtime_flask.server.logs import default_logging
from realtime_flask.web.app import create_app

default_logging()  # unless configured: warnings, and one INFO line per connect/subscribe/disconnect

try:
    app = create_app()
except RealtimeError as exc:  # a bad setting or schema, or a missing extra: one line
    print(f"error: {exc.message}", file=sys.stderr)
    sys.exit(2)
tune_gc()  # no full GC passes over start-up objects, fewer promotions

if __name__ == "__main__":
    from realtime_flask.server.serve import serve
    from realtime_flask.web.extension import get_state

    settings = get_state(app).settings
    serve(app, settings.host, settings.port)
