# gunicorn reads this file from the working directory: `gunicorn wsgi:app`.
# Command-line flags win over these values.
# child_exit, on_exit and on_starting keep the workers' metrics in one folder
# (prometheus_client's multi-process mode): see realtime_flask/server/gunicorn_hooks.py.
from realtime_flask.server.gunicorn_hooks import child_exit  # noqa: F401
from realtime_flask.server.gunicorn_hooks import on_exit  # noqa: F401
from realtime_flask.server.gunicorn_hooks import on_starting  # noqa: F401
from realtime_flask.server.gunicorn_hooks import post_worker_init  # noqa: F401
from realtime_flask.server.gunicorn_hooks import worker_exit  # noqa: F401

# The gevent worker needs gunicorn's [gevent] extra (install_requires asks for it).
worker_class = "gevent"
# Each open realtime stream holds one connection of its worker.
worker_connections = 1000
# gevent workers heartbeat the arbiter while streams are open, so this is not a
# request timeout; long-lived streams are fine.
timeout = 30
# On SIGTERM post_worker_init closes the streams (each told to come back within
# REALTIME_DRAIN_WINDOW, 5 s), the requests in flight finish, then worker_exit
# flushes the broker; this bounds those requests.
graceful_timeout = 10
# gunicorn 23+ opens a control socket at one fixed path per user; several
# services (or test servers) on one machine would fight over it.
control_socket_disable = True
# No TCP_NODELAY setting is needed: gunicorn sets it on its listening socket and
# accepted connections inherit it (tests/e2e/test_tcp_nodelay.py checks a served one).
