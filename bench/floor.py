"""The platform's floor: a bare gevent pywsgi broadcast, one gevent Queue per client.

    python bench/floor.py PORT

Only what the load generator needs: ``GET /api/realtime`` streams a PB_CONNECT frame then
every broadcast frame; ``POST /api/realtime`` answers 204; ``POST
/api/collections/<c>/records`` puts one ``<c>/*`` frame with the record on every queue.
Configured like a careful deployment: TCP_NODELAY on accepted sockets, a listen backlog
of 2048, and whatever is queued for a client leaves in one write.
"""

from gevent import monkey

if not monkey.is_module_patched("socket"):  # an entry point: patch before any other import
    monkey.patch_all()

import json
import secrets
import socket
import sys
import typing as t

from gevent.pywsgi import WSGIHandler
from gevent.pywsgi import WSGIServer
from gevent.queue import Queue

Environ = dict[str, t.Any]
StartResponse = t.Callable[[str, list[tuple[str, str]]], object]
queues: set[Queue] = set()


def stream(queue: Queue, client_id: str) -> t.Iterator[bytes]:
    try:
        yield f'id:{client_id}\nevent:PB_CONNECT\ndata:{{"clientId":"{client_id}"}}\n\n'.encode()
        while True:
            frames = [queue.get()]  # then everything else already queued: one write
            frames.extend(queue.get_nowait() for _ in range(queue.qsize()))
            yield b"".join(frames)
    finally:
        queues.discard(queue)


def app(environ: Environ, start_response: StartResponse) -> t.Iterable[bytes]:
    method, path = environ["REQUEST_METHOD"], environ["PATH_INFO"]
    if method == "GET" and path == "/api/realtime":
        queue: Queue = Queue()
        queues.add(queue)
        start_response("200 OK", [("Content-Type", "text/event-stream")])
        return stream(queue, secrets.token_hex(20))
    body = environ["wsgi.input"].read()
    if method == "POST" and path == "/api/realtime":
        start_response("204 No Content", [])
        return []
    parts = path.split("/")  # /api/collections/<c>/records
    if method == "POST" and len(parts) == 5 and parts[4] == "records":
        record = {"id": secrets.token_hex(8), "collectionName": parts[3], **json.loads(body)}
        frame = f"event:{parts[3]}/*\ndata:" + json.dumps({"record": record, "action": "create"})
        data = frame.encode() + b"\n\n"
        for q in list(queues):
            q.put(data)
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(record).encode()]
    start_response("200 OK" if path == "/api/health" else "404 Not Found", [])
    return [b"{}"]


class Handler(WSGIHandler):  # type: ignore[misc]
    def handle(self) -> None:
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().handle()


if __name__ == "__main__":  # backlog as gunicorn's default (gevent's is 128)
    address = ("127.0.0.1", int(sys.argv[1]))
    WSGIServer(address, app, handler_class=Handler, log=None, backlog=2048).serve_forever()
