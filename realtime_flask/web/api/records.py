"""PocketBase's records and auth REST subset over the embedded RecordStore.

Routes (``{c}`` is a collection name or id)::

    GET    /api/collections/{c}/records              list (page, perPage, sort, filter, skipTotal)
    POST   /api/collections/{c}/records              create (sign-up on auth collections)
    GET    /api/collections/{c}/records/{id}         view
    PATCH  /api/collections/{c}/records/{id}         update
    DELETE /api/collections/{c}/records/{id}         delete
    POST   /api/collections/{c}/auth-with-password   {identity, password} -> {token, record}
    POST   /api/collections/{c}/auth-refresh         Authorization -> {token, record}

Create and update take JSON, a urlencoded form or a multipart form; a multipart
form's files go to the collection's file fields (``f``, ``+f``, ``f+``; ``f-``
names files to remove), see docs/files.md.

``fields`` and ``expand`` work on every route that returns records.  Statuses
and bodies follow PROTOCOL-REST.md §6; the mapping of store errors to HTTP
happens only here.  Every response carries PocketBase's security headers and,
for a request with an ``Origin``, CORS (``REALTIME_CORS_ORIGIN``; preflight 204).
"""

from __future__ import annotations

import functools
import re
import typing as t

from flask import Blueprint
from flask import Response
from flask import current_app
from flask import g
from flask import jsonify
from flask import request
from werkzeug.exceptions import HTTPException

from realtime_flask.core.rules import RequestContext
from realtime_flask.core.schema import SUPERUSERS
from realtime_flask.core.schema import Collection
from realtime_flask.engine.access import pick_fields
from realtime_flask.errors import AuthContextMissing
from realtime_flask.errors import BadRequest
from realtime_flask.errors import BrokerUnavailable
from realtime_flask.errors import Forbidden
from realtime_flask.errors import RealtimeError
from realtime_flask.errors import Unauthorized
from realtime_flask.errors import UnsupportedContentType
from realtime_flask.store.auth import token_from_header
from realtime_flask.store.files import Upload
from realtime_flask.store.policy import INT64_MAX
from realtime_flask.store.records import RecordStore
from realtime_flask.web.api import error_response
from realtime_flask.web.api import http_error_response
from realtime_flask.web.api import json_object
from realtime_flask.web.api import limit_body
from realtime_flask.web.api.cors import cors
from realtime_flask.web.state import get_state

__all__ = ["bp", "get_store", "request_context", "snake_header"]

bp = Blueprint("realtime_records", __name__)
bp.register_error_handler(RealtimeError, error_response)
bp.register_error_handler(HTTPException, http_error_response)
bp.after_request(cors)

STORE_KEY = "realtime_store"
_SNAKE = re.compile(r"[^a-z0-9]+")


#: PocketBase's security headers, on every API response (PROTOCOL-REST.md §1).
SECURITY_HEADERS: t.Final[dict[str, str]] = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "SAMEORIGIN",
    "X-Xss-Protection": "1; mode=block",
    "Cross-Origin-Opener-Policy": "same-origin",
}


@bp.after_request
def _security_headers(response: Response) -> Response:
    """PocketBase's security headers (CORS: ``web/api/cors.py``)."""
    response.headers.update(SECURITY_HEADERS)
    return response


def get_store() -> RecordStore:
    return t.cast(RecordStore, current_app.extensions[STORE_KEY])


@functools.lru_cache(maxsize=1024)
def snake_header(name: str) -> str:
    """``X-Flag`` -> ``x_flag``: how ``@request.headers.*`` names headers."""
    return _SNAKE.sub("_", name.lower()).strip("_")


def resolve_auth(
    store: RecordStore, header: str | None
) -> tuple[Collection, dict[str, t.Any]] | None:
    """The auth (collection, stored record) of an ``Authorization`` header, or None."""
    return store.auth_from_token(token_from_header(header))


def query_args() -> dict[str, str]:
    """The query string's first values as a plain dict, read once per request
    (a missing key in werkzeug's MultiDict costs an exception per lookup)."""
    if "realtime_args" not in g:
        g.realtime_args = request.args.to_dict()
    return t.cast(dict[str, str], g.realtime_args)


def request_context(body: t.Mapping[str, object] | None = None) -> RequestContext:
    """The rules' view of the current request (auth resolved once per request)."""
    store = get_store()
    if "realtime_auth" not in g:
        g.realtime_auth = resolve_auth(store, request.headers.get("Authorization"))
    found = g.realtime_auth
    return RequestContext(
        auth=None if found is None else found[1],
        superuser=found is not None and found[0].name == SUPERUSERS,
        body=body or {},
        headers={snake_header(k): v for k, v in request.headers.items()},
        query=dict(query_args()),
        method=request.method,
    )


#: Form/multipart key whose values are JSON objects merged into the body
#: (the JS SDK sends non-file object values of a FormData body this way).
JSON_PAYLOAD_KEY = "@jsonPayload"


def _file_limit(coll: Collection | None) -> int:
    """Extra body bytes a multipart write to ``coll`` may carry: every file field's
    ``maxSize`` x ``maxSelect`` (PocketBase sizes its body limit the same way)."""
    if coll is None:
        return 0
    return sum(f.file_max_size * f.max_select for f in coll.fields if f.type == "file")


def _uploads(coll: Collection | None) -> dict[str, list[Upload]]:
    """The multipart files of ``coll``'s file fields, under ``f``, ``+f`` or ``f+``, as
    ``Upload`` lists; files under other keys are ignored, as PocketBase does."""
    out: dict[str, list[Upload]] = {}
    if coll is None or not request.files:
        return out
    for f in coll.fields:
        if f.type != "file":
            continue
        for key in (f.name, "+" + f.name, f.name + "+"):
            # A part without a file name is a plain value to Go's form reader (an
            # empty <input type=file>): not an upload.
            parts = [p for p in request.files.getlist(key) if p.filename]
            if parts:
                out[key] = [Upload.from_stream(p.filename or "", p.stream) for p in parts]
    return out


def _close_abandoned_parts() -> None:
    """Parse the multipart form now, closing the temporary file of a part the parser
    dropped (a body cut inside a file part): werkzeug leaves those to the garbage
    collector; the parts it kept are closed by Flask when the request ends."""
    opened: list[t.IO[bytes]] = []
    factory = request._get_file_stream  # werkzeug's documented override point

    def tracked(*args: t.Any, **kwargs: t.Any) -> t.IO[bytes]:
        stream = factory(*args, **kwargs)
        opened.append(stream)
        return stream

    request._get_file_stream = tracked  # type: ignore[method-assign]
    try:
        kept = {id(part.stream) for _key, part in request.files.items(multi=True)}
    finally:
        request._get_file_stream = factory  # type: ignore[method-assign]
    for stream in opened:
        if id(stream) not in kept:
            stream.close()


def _read_body(coll: Collection | None = None) -> dict[str, object]:
    """The request body as PocketBase binds it: JSON, a urlencoded form or a multipart
    form (its files, for ``coll``'s file fields, as ``store.files.Upload`` lists;
    plain values under the same key come first, as PocketBase merges them)."""
    limit_body()
    mimetype = request.mimetype
    if mimetype == "multipart/form-data":
        extra = _file_limit(coll)
        if extra and request.max_content_length is not None:
            request.max_content_length += extra
        _close_abandoned_parts()
    if not request.content_length and "Transfer-Encoding" not in request.headers:
        return {}  # PocketBase binds nothing from an empty body, whatever its type
    if request.is_json:
        raw = request.get_data(cache=True)
        return json_object(raw) if raw.strip() else {}
    if mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        out: dict[str, object] = {}
        for key in request.form:
            if key == JSON_PAYLOAD_KEY:
                continue
            values = request.form.getlist(key)
            out[key] = values[0] if len(values) == 1 else values
        for payload in request.form.getlist(JSON_PAYLOAD_KEY):
            out.update(json_object(payload))
        for key, uploads in _uploads(coll).items():
            plain = out.get(key)
            if key == key.strip("+") and plain not in (None, ""):
                out[key] = [*(plain if isinstance(plain, list) else [plain]), *uploads]
            else:
                out[key] = uploads
        return out
    if not mimetype:
        return {}  # PocketBase ignores a body without a content type
    raise UnsupportedContentType()


def _rule_body(body: dict[str, object]) -> dict[str, object]:
    """``body`` as the rules see it (``@request.body.*``): an upload by its stored name."""

    def plain(value: object) -> object:
        if isinstance(value, Upload):
            return value.name
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value

    return {k: plain(v) for k, v in body.items()}


def _int_param(name: str, default: int) -> int:
    raw = query_args().get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest() from None
    if not -INT64_MAX - 1 <= value <= INT64_MAX:  # out of range for Go's strconv.Atoi: 400
        raise BadRequest()
    return value


def present(
    store: RecordStore,
    coll: Collection,
    record: dict[str, t.Any],
    ctx: RequestContext,
    *,
    pick: bool = True,
) -> dict[str, t.Any]:
    """The record as the API returns it to ``ctx``, with ``expand`` and ``fields``."""
    return store.present(
        coll,
        record,
        ctx,
        fields=query_args().get("fields", "") if pick else "",
        expand=query_args().get("expand", ""),
    )


def writable_store() -> RecordStore:
    """The store, for a write: once the realtime hub is closed (the last step of
    a graceful stop) a write's event could not be published, so the write is
    refused with 503 and changes nothing, rather than succeeding silently.

    :raises BrokerUnavailable: the hub is closed.
    """
    if not get_state().accepting_writes:
        raise BrokerUnavailable()
    return get_store()


def _collection(store: RecordStore, name: str) -> Collection:
    return store.collection(name)


@bp.get("/api/collections/<collection>/records")
def list_records(collection: str) -> Response:
    store = get_store()
    coll = _collection(store, collection)
    ctx = request_context()
    args = query_args()
    skip = args.get("skipTotal", "").lower() in ("1", "true", "t")
    result = store.list_records(
        coll.name,
        ctx,
        page=_int_param("page", 1),
        per_page=_int_param("perPage", 30),
        sort=args.get("sort", ""),
        filter=args.get("filter", ""),  # "" = none; only spaces is a syntax error
        skip_total=skip,
        client=request.remote_addr,
    )
    return jsonify(
        {
            "items": [present(store, coll, item, ctx) for item in result.items],
            "page": result.page,
            "perPage": result.per_page,
            "totalItems": result.total_items,
            "totalPages": result.total_pages,
        }
    )


@bp.post("/api/collections/<collection>/records")
def create_record(collection: str) -> Response:
    store = writable_store()
    coll = _collection(store, collection)
    body = _read_body(coll)
    ctx = request_context(_rule_body(body))
    record = store.create(coll.name, body, ctx)
    return jsonify(present(store, coll, record, ctx))


@bp.get("/api/collections/<collection>/records/<record_id>")
def view_record(collection: str, record_id: str) -> Response:
    store = get_store()
    coll = _collection(store, collection)
    ctx = request_context()
    return jsonify(present(store, coll, store.view(coll.name, record_id, ctx), ctx))


@bp.patch("/api/collections/<collection>/records/<record_id>")
def update_record(collection: str, record_id: str) -> Response:
    store = writable_store()
    coll = _collection(store, collection)
    body = _read_body(coll)
    ctx = request_context(_rule_body(body))
    record = store.update(coll.name, record_id, body, ctx)
    return jsonify(present(store, coll, record, ctx))


@bp.delete("/api/collections/<collection>/records/<record_id>")
def delete_record(collection: str, record_id: str) -> Response:
    store = writable_store()
    coll = _collection(store, collection)
    store.delete(coll.name, record_id, request_context())
    response = Response(status=204)
    del response.headers["Content-Type"]  # PocketBase: empty body, no Content-Type
    return response


def _auth_response(store: RecordStore, coll: Collection, record: dict[str, t.Any]) -> Response:
    ctx = RequestContext(auth=record, superuser=coll.name == SUPERUSERS, query=dict(query_args()))
    body = {
        "record": present(store, coll, record, ctx, pick=False),
        "token": store.token_for(coll, record),
    }
    fields = query_args().get("fields", "")
    return jsonify(pick_fields(body, fields) if fields else body)


@bp.post("/api/collections/<collection>/auth-with-password")
def auth_with_password(collection: str) -> Response:
    store = get_store()
    coll = store.schema.get(collection)
    if coll is None:
        raise AuthContextMissing()
    if not coll.is_auth:
        raise AuthContextMissing("Missing or invalid auth collection context.")
    body = _read_body()
    identity, password = body.get("identity"), body.get("password")
    errors: dict[str, object] = {}
    blank = {"code": "validation_required", "message": "Cannot be blank."}
    if not isinstance(identity, str) or not identity:
        errors["identity"] = blank
    if not isinstance(password, str) or not password:
        errors["password"] = blank
    if errors:
        raise BadRequest("An error occurred while validating the submitted data.", errors)
    record = store.auth_with_password(coll.name, t.cast(str, identity), t.cast(str, password))
    if record is None:
        raise BadRequest("Failed to authenticate.")
    return _auth_response(store, coll, record)


@bp.post("/api/collections/<collection>/auth-refresh")
def auth_refresh(collection: str) -> Response:
    store = get_store()
    coll = store.schema.get(collection)
    if coll is None:
        raise AuthContextMissing()
    found = resolve_auth(store, request.headers.get("Authorization"))
    if found is None:
        raise Unauthorized()
    token_coll, record = found
    if token_coll.id != coll.id:
        raise Forbidden(f"The request requires auth record from {token_coll.name} collection.")
    return _auth_response(store, coll, record)
