"""PocketBase's files API: serving record files and the protected-file token.

Routes::

    GET  /api/files/{collectionIdOrName}/{recordId}/{filename}   the stored file
    POST /api/files/token                                        Authorization -> {"token"}

As PocketBase 0.40 (``apis/file.go``):

* A file is found through the record that names it in one of its file fields;
  a missing collection, record or name is the 404 body.  A file of an
  unprotected field is served to anyone who knows its name (the random part
  of the name is the guard), without any rule.
* A protected field's file needs ``?token=`` (a file token from
  ``POST /api/files/token``, 3 minutes by default, ``fileToken.duration``) and
  that token's auth record must pass the collection's viewRule; otherwise 404.
* The type is sniffed from the content (``store.files.sniff``; ``.svg``,
  ``.css``, ``.js``, ``.mjs`` by extension as PocketBase); images, audio,
  video and PDF are ``inline``, the rest ``attachment``; ``?download=1`` (any
  true value of Go's ParseBool) forces ``attachment``.  Headers as
  PocketBase: ``Content-Security-Policy`` sandbox, ``Cache-Control`` 30 days,
  no ``X-Frame-Options``.
* ``?thumb=`` is accepted and answered with the original file (no thumbnails
  are made here); Range requests get the whole file (200).
* The file is read off the gevent hub in chunks (``store.files.iter_file``).
"""

from __future__ import annotations

import os
import typing as t

from flask import Blueprint
from flask import Response
from flask import jsonify
from flask import request
from werkzeug.exceptions import HTTPException

from realtime_flask.core.rules import RequestContext
from realtime_flask.core.schema import SUPERUSERS
from realtime_flask.errors import NotFound
from realtime_flask.errors import RealtimeError
from realtime_flask.errors import Unauthorized
from realtime_flask.store.files import iter_file
from realtime_flask.web.api import error_response
from realtime_flask.web.api import http_error_response
from realtime_flask.web.api.cors import cors
from realtime_flask.web.api.records import SECURITY_HEADERS
from realtime_flask.web.api.records import get_store
from realtime_flask.web.api.records import resolve_auth
from realtime_flask.web.api.records import snake_header

__all__ = ["bp"]

bp = Blueprint("realtime_files", __name__)
bp.register_error_handler(RealtimeError, error_response)
bp.register_error_handler(HTTPException, http_error_response)
bp.after_request(cors)

#: Types PocketBase serves ``inline`` (everything else is an attachment).
INLINE_TYPES: t.Final[frozenset[str]] = frozenset(
    {
        "image/png",
        "image/jpg",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "image/x-icon",
        "image/bmp",
        "video/webm",
        "video/mp4",
        "video/3gpp",
        "video/quicktime",
        "video/x-ms-wmv",
        "audio/basic",
        "audio/aiff",
        "audio/mpeg",
        "audio/midi",
        "audio/mp3",
        "audio/wave",
        "audio/wav",
        "audio/x-wav",
        "audio/x-mpeg",
        "audio/x-m4a",
        "audio/aac",
        "application/pdf",
        "application/x-pdf",
    }
)
#: Types PocketBase sets by extension whatever the content (its ``manualExtensionContentTypes``).
EXTENSION_TYPES: t.Final[dict[str, str]] = {
    ".svg": "image/svg+xml",
    ".css": "text/css",
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ".pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
}
FILE_CSP: t.Final = "default-src 'none'; media-src 'self'; style-src 'unsafe-inline'; sandbox"
FILE_CACHE_CONTROL: t.Final = "max-age=2592000, stale-while-revalidate=86400"
_GO_TRUE: t.Final = frozenset({"1", "t", "T", "TRUE", "true", "True"})


@bp.after_request
def _security_headers(response: Response) -> Response:
    """PocketBase's security headers, except ``X-Frame-Options`` (files may be embedded)."""
    response.headers.update({k: v for k, v in SECURITY_HEADERS.items() if k != "X-Frame-Options"})
    return response


@bp.post("/api/files/token")
def file_token() -> Response:
    """A file token for the request's auth record (401 without a valid auth token)."""
    store = get_store()
    found = resolve_auth(store, request.headers.get("Authorization"))
    if found is None:
        raise Unauthorized()
    coll, record = found
    return jsonify({"token": store.file_token_for(coll, record)})


@bp.get("/api/files/<collection>/<record_id>/<filename>")
def download(collection: str, record_id: str, filename: str) -> Response:
    """The stored file (see the module docstring for who may read it and the headers).

    :raises NotFound: no such collection, record or file name; a protected file
        without a valid file token whose record passes the viewRule; the file
        missing on disk.
    """
    store = get_store()
    found = store.find_file(collection, record_id, filename)
    if found is None:
        raise NotFound()
    coll, _record, field = found
    if field.protected:
        auth = store.auth_from_token(request.args.get("token", ""), "file")
        ctx = RequestContext(
            auth=None if auth is None else auth[1],
            superuser=auth is not None and auth[0].name == SUPERUSERS,
            headers={snake_header(k): v for k, v in request.headers.items()},
            query=request.args.to_dict(),
            method=request.method,
        )
        if not store.can_access(coll, "view", record_id, ctx):
            raise NotFound()
    stored = store.files.open(coll.id, record_id, filename)
    if stored is None:
        raise NotFound()
    mime = stored.mime
    content_type = EXTENSION_TYPES.get(os.path.splitext(filename)[1].lower(), mime)
    # Inline only for the type actually sent (PocketBase decides on the final type too).
    inline = (
        content_type.split(";")[0] in INLINE_TYPES
        and request.args.get("download", "") not in _GO_TRUE
    )
    response = Response(iter_file(stored), content_type=content_type, direct_passthrough=True)
    response.call_on_close(stored.handle.close)  # also when the body is never read
    response.content_length = stored.size
    response.last_modified = stored.mtime  # type: ignore[assignment]
    response.headers["Content-Disposition"] = (
        f"{'inline' if inline else 'attachment'}; filename={filename}"
    )
    response.headers["Content-Security-Policy"] = FILE_CSP
    response.headers["Cache-Control"] = FILE_CACHE_CONTROL
    return response
