"""The standalone service (``wsgi.py``'s app) plus one route that reports the
socket options of the connection it was asked on; ``test_tcp_nodelay`` serves
it the ways users do::

    python -m tests.support.nodelay_app PORT  # realtime_flask.server.serve, as ``python wsgi.py``
    gunicorn -k gevent tests.support.nodelay_app:app  # from the repository root

``GET /_test/connection`` answers ``{"nodelay": <TCP_NODELAY>, "peer": [host, port]}``
read from the server's side of the accepted connection (the socket the server
puts in the environ), so a test can tell it is the connection it opened.
"""

from gevent import monkey

if not monkey.is_module_patched("socket"):  # gunicorn's gevent worker patched already
    monkey.patch_all()

import socket
import sys

from flask import request

from wsgi import app

__all__ = ["app"]

SOCKET_KEYS = ("gunicorn.socket", "realtime_flask.socket")


@app.get("/_test/connection")
def connection_options() -> dict[str, object]:
    sock = next(request.environ[key] for key in SOCKET_KEYS if key in request.environ)
    nodelay = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    return {"nodelay": nodelay, "peer": list(sock.getpeername())}


if __name__ == "__main__":
    from realtime_flask.server.serve import serve

    serve(app, "127.0.0.1", int(sys.argv[1]))
