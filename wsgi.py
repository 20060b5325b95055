"""Entry point: ``gunicorn -k gevent wsgi:app`` or ``python wsgi.py``.

Monkey-patching happens here, first, and nowhere in the library.
"""

from gevent import monkey

if not monkey.is_module_patched("socket"):  # gunicorn's gevent worker patched already
    monkey.patch_all()

import logging

from realtime_flask.app import create_app
from realtime_flask.runtime import tune_gc

app = create_app()
tune_gc()  # no full GC passes over start-up objects, fewer promotions

if __name__ == "__main__":
    from realtime_flask.extension import get_state
    from realtime_flask.serve import serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = get_state(app).settings
    serve(app, settings.host, settings.port)
