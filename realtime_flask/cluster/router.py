"""The Redis router: subscription POSTs that land on any worker, over one plain Redis.

This is a router over plain Redis: one server at one URL, through a plain
``redis.Redis`` client.  It is not Redis Cluster support (its keys are not
hash-tagged to one slot, and no cluster client is used).

A realtime client's stream lives in one process (its *node*); its
``POST /api/realtime`` may reach any worker of any host.  The worker that gets
the POST validates it, then routes it to the owner and answers only once the
owner applied it, so after a 204 every later event reaches the client.

Rules:

1. Registry: ``<prefix>:clients`` maps client id -> node id, written when the
   stream opens (before PB_CONNECT is sent) and removed lazily after it closes;
   ``<prefix>:node:<node>`` is the node's heartbeat key with a TTL.  A client
   whose node has no heartbeat (the worker died) does not exist: 404, also for
   a POST already waiting on the dead owner (its wait re-checks the heartbeat).
   A heartbeat that finds its own key gone (Redis lost its data, or the key
   expired while Redis was unreachable) registers the node's clients again.
2. Control: the POST's worker pushes a command on ``<prefix>:ctl:<node>`` and
   waits (bounded) on ``<prefix>:reply:<req>``; the owner's control loop
   applies it with ``RealtimeManager.subscribe`` (same checks, same errors as
   one process) and pushes the outcome back.
3. A local client never leaves the process: no Redis round trip.
4. ``redis`` is imported lazily, through ``cluster/_redis.py``.
5. Every message between workers carries the version ``v``.  One of another
   version (a rolling upgrade) is logged once per version and ignored: a
   command is not applied and gets no reply (its POST answers 404 after the
   reply timeout), a reply counts as no reply (404), a parked state is not
   resumed (the client starts afresh).

Messages, version ``"1"`` (JSON text)::

    RPUSH <prefix>:ctl:<node>
        {"v": "1", "req": <request id>, "until": <unix seconds>, "client": <client id>,
         "subs": [<topic>, ...], "auth": <auth> | null, "addr": <remote address> | null}
    RPUSH <prefix>:reply:<req>
        {"v": "1", "status": 204} | {"v": "1", "status": 400 | 403 | 404, "message": <text>}
    SET <prefix>:parked:<client id> PX <grace ms>
        {"v": "1", "subs": [<topic>, ...], "auth": <auth> | null, "addr": ..., "reason": <text>,
         "age": <seconds connected>, "since": <log position its stream started from>,
         "parkedAt": <unix seconds>}

    <auth> = {"collectionId", "id", "collectionName", "record", "superuser"}

Operators' commands (``GET``/``DELETE /api/realtime/clients``) travel the same
control lists; ``op`` absent means the subscription command above.  A worker
of an older build logs such a command as failed and does not answer: the
listing names it in ``unanswered``, a delete answers 404 after the timeout::

    RPUSH <prefix>:ctl:<node>   {"v": "1", "op": "clients", "req": <id>, "until": ...}
    RPUSH <prefix>:reply:<req>  {"v": "1", "status": 200, "node": <node id>, "items": [...]}
    RPUSH <prefix>:ctl:<node>   {"v": "1", "op": "close", "req": <id>, "until": ..., "client": <id>}
    RPUSH <prefix>:reply:<req>  {"v": "1", "status": 204 | 404}
    ZADD  <prefix>:nodes <unix seconds> <node>    (each heartbeat: the nodes to ask;
                                                   entries older than 10 TTLs dropped)

A listing sends one ``clients`` command to every live node and gathers
their replies from one reply list for at most ``reply_timeout`` seconds.

The owner drops a command it reads after ``until``: its POST has answered 404
by then and must not change anything later.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import typing as t

from nanoid import generate as _nanoid

from realtime_flask.cluster import _redis
from realtime_flask.cluster._redis import Spawn
from realtime_flask.cluster._redis import user_from_json
from realtime_flask.cluster._redis import user_to_json
from realtime_flask.core.events import AuthUser
from realtime_flask.core.topics import Subscription
from realtime_flask.core.topics import parse_topic
from realtime_flask.engine.client import DELETED_REASON
from realtime_flask.engine.client import ParkedClient
from realtime_flask.engine.manager import RealtimeManager
from realtime_flask.engine.router import ClientListing
from realtime_flask.engine.router import LocalRouter
from realtime_flask.errors import AccessDenied
from realtime_flask.errors import BadRequest
from realtime_flask.errors import BrokerUnavailable
from realtime_flask.errors import ClientNotFound
from realtime_flask.errors import RealtimeError

__all__ = ["CONTROL_VERSION", "RedisRouter"]

logger = logging.getLogger(__name__)

#: The ``v`` of every message this router writes, and the only one it reads.
CONTROL_VERSION: t.Final[str] = "1"
#: A node whose heartbeat is older than this many TTLs leaves the nodes set at the next beat.
NODES_FORGET_AFTER: t.Final[int] = 10
#: Closed client ids kept for the lazy registry cleanup, at most.
MAX_GONE = 100_000


class RedisRouter:
    """Routes subscription POSTs to the node that holds the client's stream.

    ::

        router = RedisRouter("redis://127.0.0.1:6379/0", manager, grace=30)
        router.start()      # in the worker, after gevent patched sockets

    :param url: Redis URL (``redis://``, ``rediss://``, ``unix://``) of one
        plain Redis server (not Redis Cluster).
    :param manager: this node's clients.
    :param prefix: the first part of every key this router uses.
    :param ttl: seconds a node stays alive without a heartbeat; its clients
        answer 404 that long after it died.  The heartbeat runs every
        ``ttl / 3`` seconds.
    :param reply_timeout: seconds a POST waits for the owner's answer.
    :param grace: seconds a closed client stays resumable (``Last-Event-ID``)
        on any worker; 0 parks nothing.
    :param spawn: starts a loop; a daemon ``threading.Thread`` by default,
        which is a greenlet under gevent's monkey-patching.

    Raises BrokerUnavailable when the redis package is missing, or under
    gevent with unpatched sockets.  Clients connect lazily: an unreachable
    Redis is not an error here.
    """

    def __init__(
        self,
        url: str,
        manager: RealtimeManager,
        *,
        prefix: str = "realtime",
        ttl: float = 10.0,
        reply_timeout: float = 5.0,
        grace: float = 0.0,
        spawn: Spawn | None = None,
    ) -> None:
        self._errors = _redis.load()
        _redis.require_patched_sockets("RedisRouter")
        self.url = url
        self.manager = manager
        self._local = LocalRouter(manager)
        self.prefix = prefix
        self.ttl = ttl
        self.reply_timeout = reply_timeout
        self.node_id = f"{socket.gethostname()}-{os.getpid()}-{_nanoid(size=8)}"
        self._spawn = spawn or _redis.spawn_daemon
        self._stop = threading.Event()
        self._started = False
        self._gone: list[str] = []
        #: Set when the registry may lack this node's clients (a failed HSET,
        #: or Redis lost its data): the next heartbeat writes them again.
        self._reregister = False
        self.grace = grace
        self._to_park: dict[str, ParkedClient] = {}
        self._park_wake = threading.Event()
        self._warned_versions: set[str] = set()
        self._r = _redis.connect(url, socket_timeout=5, connect_timeout=2)
        # Waits for the owner's reply: its socket must outlast the BLPOP timeout.
        self._wait = _redis.connect(url, socket_timeout=reply_timeout + 5, connect_timeout=2)
        # HDEL only if the entry still names this node: a client resumed on
        # another worker meanwhile keeps its registry entry.
        self._forget_script = self._r.register_script(
            "local n = 0 "
            "for i, id in ipairs(ARGV) do "
            "  if i > 1 and redis.call('HGET', KEYS[1], id) == ARGV[1] then "
            "    n = n + redis.call('HDEL', KEYS[1], id) end end "
            "return n"
        )
        self._ctl = _redis.connect(url, socket_timeout=5, connect_timeout=2)
        self.connected = False
        manager.on_remove(self._on_removed)

    # -- keys ---------------------------------------------------------------------------

    @property
    def _clients_key(self) -> str:
        return f"{self.prefix}:clients"

    def _node_key(self, node: str) -> str:
        return f"{self.prefix}:node:{node}"

    def _ctl_key(self, node: str) -> str:
        return f"{self.prefix}:ctl:{node}"

    @property
    def _nodes_key(self) -> str:
        return f"{self.prefix}:nodes"

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Beat once, then start the heartbeat, control (and, with ``grace``, parking) loops.

        An unreachable Redis is logged, not raised: the heartbeat keeps trying.
        """
        if self._started:
            return
        self._started = True
        try:
            self._beat()
        except self._errors.any as exc:
            logger.warning("realtime router: Redis unreachable at start (%s); retrying", exc)
        self._spawn(self._heartbeat_loop)
        self._spawn(self._control_loop)
        if self.grace > 0:
            self._spawn(self._park_loop)

    def close(self) -> None:
        """Stop the loops (each within about a second), park the clients closed
        meanwhile, forget closed clients and remove this node's heartbeat."""
        self._stop.set()
        self._park_wake.set()
        self._flush_parked()  # clients closed by the shutdown stay resumable elsewhere
        with contextlib.suppress(self._errors.any):
            self._flush_gone()
            self._r.delete(self._node_key(self.node_id))
            self._r.zrem(self._nodes_key, self.node_id)

    def status(self) -> dict[str, object]:
        """``{"router": "redis", "node": <node id>, "connected": <last heartbeat succeeded>}``."""
        return {"router": "redis", "node": self.node_id, "connected": self.connected}

    def _beat(self) -> None:
        # GET: a missing previous value means Redis lost the key (a restart
        # without persistence, a flush) or it expired while the heartbeat
        # failed, and other workers may have swept this node's registry
        # entries meanwhile: register the local clients again.
        previous = self._r.set(self._node_key(self.node_id), "1", px=int(self.ttl * 1000), get=True)
        now = time.time()
        pipe = self._r.pipeline(transaction=False)
        pipe.zadd(self._nodes_key, {self.node_id: now})  # for the client listing
        # Nodes whose heartbeats stopped long ago (a SIGKILLed worker): the set stays bounded
        # even when nobody lists the clients.
        pipe.zremrangebyscore(self._nodes_key, "-inf", f"({now - NODES_FORGET_AFTER * self.ttl}")
        pipe.execute()
        self.connected = True
        if previous is None or self._reregister:
            self._register_local()
        self._flush_gone()

    def _register_local(self) -> None:
        # HSETNX: an entry written meanwhile by another worker (a client that
        # closed here and resumed there) is never overwritten.
        self._reregister = False
        client_ids = self.manager.client_ids()
        try:
            for start in range(0, len(client_ids), 500):
                pipe = self._r.pipeline(transaction=False)
                for client_id in client_ids[start : start + 500]:
                    pipe.hsetnx(self._clients_key, client_id, self.node_id)
                pipe.execute()
        except self._errors.any:
            self._reregister = True
            self.connected = False
            raise

    def _flush_gone(self) -> None:
        gone, self._gone = self._gone, []
        live = [cid for cid in gone if self.manager.get_client(cid) is None]
        try:
            for start in range(0, len(live), 500):
                self._forget_script(
                    keys=[self._clients_key], args=[self.node_id, *live[start : start + 500]]
                )
        except self._errors.any:
            self.connected = False
            self._gone[:0] = gone[-MAX_GONE:]
            raise

    def _heartbeat_loop(self) -> None:
        interval = max(self.ttl / 3, 0.05)
        while not self._stop.wait(interval):
            try:
                self._beat()
            except self._errors.any as exc:
                self.connected = False  # /api/health: degraded until a beat succeeds
                logger.warning("realtime router heartbeat failed: %s", exc)

    # -- registry -----------------------------------------------------------------------

    def register(self, client_id: str) -> None:
        """Record that ``client_id``'s stream lives here (before PB_CONNECT goes out)."""
        try:
            self._r.hset(self._clients_key, client_id, self.node_id)
        except self._errors.any as exc:
            # The stream still works locally; POSTs to other workers answer 404
            # until the next successful heartbeat registers it.
            self._reregister = True
            logger.warning("realtime client %s not registered in Redis: %s", client_id, exc)

    def _on_removed(self, parked: ParkedClient) -> None:
        # Called from the manager's close path, possibly inside a fan-out: no IO
        # here.  The owner answers 404 for it meanwhile, so a lazy HDEL is exact;
        # the parked state is written by the park greenlet at once.
        if len(self._gone) < MAX_GONE:
            self._gone.append(parked.id)
        if self.grace > 0 and parked.resumable:
            self._to_park[parked.id] = parked
            self._park_wake.set()

    def _parked_key(self, client_id: str) -> str:
        return f"{self.prefix}:parked:{client_id}"

    def _park_loop(self) -> None:
        while not self._stop.is_set():
            self._park_wake.wait(1.0)
            self._park_wake.clear()
            self._flush_parked()

    def _flush_parked(self) -> None:
        batch, self._to_park = self._to_park, {}
        if not batch:
            return
        pipe = self._r.pipeline(transaction=False)
        for parked in batch.values():
            state = {
                "v": CONTROL_VERSION,
                "subs": [s.raw for s in parked.subscriptions],
                "auth": user_to_json(parked.user),
                "addr": parked.remote_addr,
                "reason": parked.reason,
                "age": parked.age,
                "since": parked.since,
                "parkedAt": time.time(),
            }
            pipe.set(self._parked_key(parked.id), json.dumps(state), px=int(self.grace * 1000))
        try:
            pipe.execute()
        except self._errors.any as exc:
            logger.warning("realtime: %d closed clients not parked: %s", len(batch), exc)

    def take_parked(self, client_id: str, remote_addr: str | None) -> ParkedClient | None:
        """A client parked by any worker, if within grace and from the same address."""
        local = self._to_park.get(client_id)
        if local is not None:
            if local.remote_addr != remote_addr:
                return None
            self._to_park.pop(client_id, None)
            return local
        try:
            raw = self._r.get(self._parked_key(client_id))
            if raw is None:
                return None
            data = json.loads(raw)
            if not self._understands("parked client", data):
                return None
            if data.get("addr") != remote_addr or not self._r.delete(self._parked_key(client_id)):
                return None
        except (self._errors.any, ValueError):
            return None
        parked_for = max(time.time() - float(data.get("parkedAt", time.time())), 0.0)
        return ParkedClient(
            client_id,
            tuple(parse_topic(r) for r in data.get("subs", []) if isinstance(r, str)),
            user_from_json(data.get("auth")),
            data.get("addr"),
            str(data.get("reason", "")),
            age=float(data.get("age", 0.0)) + parked_for,
            since=str(data.get("since", "")),
        )

    # -- routing ------------------------------------------------------------------------

    def subscribe(
        self,
        client_id: str,
        subscriptions: list[Subscription],
        user: AuthUser | None,
        remote_addr: str | None,
    ) -> None:
        """Apply a validated ``POST /api/realtime`` on the node holding ``client_id``.

        Returns once the owner applied it.  Raises what the owner's
        ``RealtimeManager.subscribe`` raises, as PocketBase answers: BadRequest
        (400: the POST does not come from the stream's address), AccessDenied
        (403: an auth transition other than guest->guest, guest->X, X->X),
        ClientNotFound (404: no such client, its node died, Redis is
        unreachable, or no reply of this version within ``reply_timeout``).
        """
        if self.manager.get_client(client_id) is not None:
            self._local.subscribe(client_id, subscriptions, user, remote_addr)
            return
        try:
            node = self._r.hget(self._clients_key, client_id)
            if node is None:
                raise ClientNotFound()
            node_id = str(node)
            if node_id == self.node_id:
                raise ClientNotFound()
            if not self._r.exists(self._node_key(node_id)):
                # Its worker died: sweep the entry (if it still names that worker).
                self._forget_script(keys=[self._clients_key], args=[node_id, client_id])
                raise ClientNotFound()
            request_id = _nanoid(size=21)
            command = {
                "v": CONTROL_VERSION,
                "req": request_id,
                # The owner drops a command it reads after this: the POST has
                # answered 404 by then and must not change anything later.
                "until": time.time() + self.reply_timeout,
                "client": client_id,
                "subs": [s.raw for s in subscriptions],
                "auth": user_to_json(user),
                "addr": remote_addr,
            }
            reply_key = f"{self.prefix}:reply:{request_id}"
            pipe = self._r.pipeline(transaction=False)
            pipe.rpush(self._ctl_key(node_id), json.dumps(command))
            pipe.expire(self._ctl_key(node_id), int(max(self.ttl * 3, 30)))
            pipe.execute()
            reply = self._await_reply(reply_key, node_id, client_id)
        except self._errors.any as exc:
            logger.warning("realtime POST for %s could not be routed: %s", client_id, exc)
            raise ClientNotFound() from None
        if reply is None:
            raise ClientNotFound()
        outcome = json.loads(reply[1])
        if not self._understands("control reply", outcome):
            raise ClientNotFound()
        _raise_for(outcome)

    def _await_reply(self, reply_key: str, node_id: str, client_id: str) -> t.Any:
        """The owner's reply, or None after ``reply_timeout`` or once the owner is dead.

        The wait is sliced so that a worker that dies holding the client is
        noticed when its heartbeat key expires: the POST then answers 404
        within the TTL instead of after the whole reply timeout.
        """
        deadline = time.monotonic() + self.reply_timeout
        slice_seconds = min(max(self.ttl / 3, 0.05), 1.0)
        for _ in range(int(self.reply_timeout / slice_seconds) + 2):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            reply = self._wait.blpop([reply_key], timeout=min(remaining, slice_seconds))
            if reply is not None:
                return reply
            if not self._r.exists(self._node_key(node_id)):
                self._forget_script(keys=[self._clients_key], args=[node_id, client_id])
                return None
        return None

    def _control_loop(self) -> None:
        backoff = 0.05
        key = self._ctl_key(self.node_id)
        while not self._stop.is_set():
            try:
                item = self._ctl.blpop([key], timeout=1)
                backoff = 0.05
            except self._errors.any as exc:
                logger.warning("realtime control channel: %s", exc)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            if item is None:
                continue
            try:
                self._apply(json.loads(item[1]))
            except Exception:  # one bad command must not stop the loop
                logger.exception("realtime control command failed")

    def _apply(self, message: object) -> None:
        if not self._understands("control command", message):
            return
        command = t.cast("dict[str, t.Any]", message)
        if float(command.get("until", 0)) < time.time():
            logger.warning(
                "realtime: dropped a late %s command for %s",
                command.get("op", "subscribe"),
                command.get("client"),
            )
            return
        op = command.get("op", "subscribe")
        if op != "subscribe":
            self._apply_ops(op, command)
            return
        outcome: dict[str, object] = {"v": CONTROL_VERSION, "status": 204}
        try:
            subs = [parse_topic(raw) for raw in command.get("subs", [])]
            self.manager.subscribe(
                str(command["client"]),
                subs,
                user_from_json(command.get("auth")),
                remote_addr=command.get("addr"),
                check_addr=True,
            )
        except RealtimeError as exc:
            outcome = {"v": CONTROL_VERSION, "status": exc.status_hint, "message": exc.message}
        reply_key = f"{self.prefix}:reply:{command['req']}"
        pipe = self._ctl.pipeline(transaction=False)
        pipe.rpush(reply_key, json.dumps(outcome))
        pipe.expire(reply_key, 30)
        pipe.execute()

    # -- the client listing -------------------------------------------------------------

    def list_clients(self) -> ClientListing:
        """Every client of every live worker (of every host) sharing this Redis.

        Scatter/gather: one ``clients`` command on each live node's control
        list, all answering on one reply list, gathered for at most
        ``reply_timeout`` seconds.  A worker that did not answer in time is
        named in ``unanswered``; with Redis unreachable that is ``["*"]`` (the
        other workers are unknown) and the items are this worker's only.
        """
        items = self._own_clients()
        workers = [self.node_id]
        unanswered: list[str] = []
        try:
            members = [str(n) for n in self._r.zrange(self._nodes_key, 0, -1)]
            pipe = self._r.pipeline(transaction=False)
            for node in members:
                pipe.exists(self._node_key(node))
            alive = pipe.execute()
            dead = [n for n, up in zip(members, alive, strict=True) if not up]
            if dead:  # heartbeats gone: a worker that beats again adds itself back
                self._r.zrem(self._nodes_key, *dead)
            others = [n for n, up in zip(members, alive, strict=True) if up and n != self.node_id]
            request_id = _nanoid(size=21)
            command = {"v": CONTROL_VERSION, "op": "clients", "req": request_id}
            for reply in self._scatter(others, command, f"{self.prefix}:reply:{request_id}"):
                answered = str(reply.get("node"))
                rows = reply.get("items")
                if answered in others and answered not in workers and isinstance(rows, list):
                    workers.append(answered)
                    items.extend(row for row in rows if isinstance(row, dict))
            unanswered = [n for n in others if n not in workers]
        except self._errors.any as exc:
            logger.warning("realtime client listing: Redis unreachable (%s)", exc)
            unanswered = ["*"]
        return {"items": items, "workers": workers, "unanswered": unanswered}

    def close_client(self, client_id: str) -> bool:
        """End ``client_id``'s stream on whichever worker holds it (not resumable).

        False when no live worker holds it (404).  Raises BrokerUnavailable
        (503) when Redis is unreachable, and ClientNotFound when the owner did
        not answer within ``reply_timeout``.
        """
        if self.manager.get_client(client_id) is not None:
            return self.manager.remove_client(client_id, reason=DELETED_REASON)
        try:
            node = self._r.hget(self._clients_key, client_id)
            if node is None or str(node) == self.node_id:
                return False
            node_id = str(node)
            if not self._r.exists(self._node_key(node_id)):
                self._forget_script(keys=[self._clients_key], args=[node_id, client_id])
                return False
            request_id = _nanoid(size=21)
            command = {"v": CONTROL_VERSION, "op": "close", "req": request_id, "client": client_id}
            reply_key = f"{self.prefix}:reply:{request_id}"
            self._send(node_id, command)
            reply = self._await_reply(reply_key, node_id, client_id)
        except self._errors.any as exc:
            raise BrokerUnavailable(f"Redis is unreachable: {exc}") from None
        if reply is None:
            raise ClientNotFound()
        outcome = json.loads(reply[1])
        return self._understands("control reply", outcome) and outcome.get("status") == 204

    def _own_clients(self) -> list[dict[str, object]]:
        items = self.manager.describe_clients()
        for item in items:
            item["worker"] = self.node_id
        return items

    def _send(self, node_id: str, command: dict[str, object]) -> None:
        """Push ``command`` on ``node_id``'s control list (with a deadline ``until``)."""
        command["until"] = time.time() + self.reply_timeout
        pipe = self._r.pipeline(transaction=False)
        pipe.rpush(self._ctl_key(node_id), json.dumps(command))
        pipe.expire(self._ctl_key(node_id), int(max(self.ttl * 3, 30)))
        pipe.execute()

    def _scatter(
        self, nodes: list[str], command: dict[str, object], reply_key: str
    ) -> list[dict[str, t.Any]]:
        """Send ``command`` to every node of ``nodes``; their replies to
        ``reply_key``, as many as arrive within ``reply_timeout``."""
        if not nodes:
            return []
        command["until"] = time.time() + self.reply_timeout
        pipe = self._r.pipeline(transaction=False)
        for node in nodes:
            pipe.rpush(self._ctl_key(node), json.dumps(command))
            pipe.expire(self._ctl_key(node), int(max(self.ttl * 3, 30)))
        pipe.execute()
        deadline = time.monotonic() + self.reply_timeout
        replies: list[dict[str, t.Any]] = []
        for _ in nodes:  # one reply per node at most
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            item = self._wait.blpop([reply_key], timeout=remaining)
            if item is None:
                break
            try:
                reply = json.loads(item[1])
            except ValueError:
                continue
            if self._understands("control reply", reply):
                replies.append(reply)
        self._r.delete(reply_key)
        return replies

    def _apply_ops(self, op: object, command: dict[str, t.Any]) -> None:
        """The operators' commands: ``clients`` (list this node's) and ``close``."""
        outcome: dict[str, object]
        if op == "clients":
            outcome = {"v": CONTROL_VERSION, "status": 200, "node": self.node_id}
            outcome["items"] = self._own_clients()
        elif op == "close":
            closed = self.manager.remove_client(str(command["client"]), reason=DELETED_REASON)
            outcome = {"v": CONTROL_VERSION, "status": 204 if closed else 404}
        else:
            logger.warning("realtime router: ignoring an unknown control command %r", op)
            return
        reply_key = f"{self.prefix}:reply:{command['req']}"
        pipe = self._ctl.pipeline(transaction=False)
        pipe.rpush(reply_key, json.dumps(outcome))
        pipe.expire(reply_key, 30)
        pipe.execute()

    def _understands(self, kind: str, message: object) -> bool:
        """True for a JSON object of ``CONTROL_VERSION``; otherwise log (once per version)."""
        version = message.get("v") if isinstance(message, dict) else None
        if version == CONTROL_VERSION:
            return True
        key = repr(version)
        if key not in self._warned_versions:
            self._warned_versions.add(key)
            logger.warning(
                "realtime router: ignoring a %s of version %s (this worker speaks %r)",
                kind,
                key,
                CONTROL_VERSION,
            )
        return False


def _raise_for(outcome: dict[str, t.Any]) -> None:
    status = outcome.get("status")
    message = outcome.get("message")
    if status == 204:
        return
    if status == 403:
        raise AccessDenied()
    if status == 400:
        raise BadRequest(message if isinstance(message, str) else None)
    raise ClientNotFound()
