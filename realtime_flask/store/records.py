"""The embedded record store: PocketBase's records on SQLite.

Rules:

1. One table per collection, named after it; one column per field.  Stored
   values are typed on the way out (``_decode``): text ``str``, number
   ``int``/``float``, bool ``bool``, json any JSON value, multi-valued
   relation/select ``list[str]``.
2. Access rules are the compiled rules of the Schema: list queries use their
   SQL form, single-record checks the same SQL against the stored row, and the
   realtime fan-out their in-memory form (tests prove both agree).
3. An event is emitted only after its transaction commits, exactly one per
   successful create, update and delete; a delete event carries the record as
   it was before the delete.  ``on_event`` runs outside the store's lock.
4. The store never imports Flask.  sqlite3 calls are short and local; they
   run under one lock (a connection is not shared between greenlets mid-call).
   Password hashing, the only CPU-heavy step, happens before the lock is taken
   and goes through ``Passwords.run_blocking``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import re
import secrets
import sqlite3
import threading
import time
import typing as t
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from realtime_flask.core.events import Event
from realtime_flask.core.rules import CompiledRule
from realtime_flask.core.rules import RequestContext
from realtime_flask.core.rules import RuleError
from realtime_flask.core.rules import compile_rule
from realtime_flask.core.schema import SUPERUSERS
from realtime_flask.core.schema import Collection
from realtime_flask.core.schema import Field
from realtime_flask.core.schema import Schema
from realtime_flask.engine.access import pick_fields
from realtime_flask.errors import BadRequest
from realtime_flask.errors import ErrorData
from realtime_flask.errors import Forbidden
from realtime_flask.errors import MissingCollection
from realtime_flask.errors import NotFound
from realtime_flask.errors import StoreBusy
from realtime_flask.errors import Unauthorized
from realtime_flask.errors import ValidationFailed
from realtime_flask.store.auth import Passwords
from realtime_flask.store.auth import make_token
from realtime_flask.store.auth import new_token_key
from realtime_flask.store.auth import read_token_claims
from realtime_flask.store.auth import verify_token

__all__ = [
    "Forbidden",
    "ListResult",
    "MissingCollection",
    "NotFound",
    "RecordStore",
    "StoreBusy",
    "Unauthorized",
    "format_datetime",
    "new_record_id",
    "pick_fields",
    "without_password",
]

logger = logging.getLogger(__name__)

Record = dict[str, t.Any]
EventSink = t.Callable[[Event], object]

BUSY_SLICE_MS = 100
ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
ID_LENGTH = 15
DEFAULT_PER_PAGE = 30
MAX_PER_PAGE = 1000
_ID_PATTERN = re.compile(r"^[a-z0-9]+$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_URL = re.compile(r"^https?://[^\s/$.?#].[^\s]*$", re.IGNORECASE)
_SORT_FIELD = re.compile(r"^[A-Za-z0-9_]+$")


def without_password(record: Record) -> Record:
    """The stored record minus its password hash: what may travel in events, realtime
    auth state and Redis.  (``tokenKey`` stays: auth side effects compare it.)"""
    return {k: v for k, v in record.items() if k != "password"}


def new_record_id() -> str:
    """15 random characters of ``[a-z0-9]``, PocketBase's record id shape.

    Uniform: bytes past the largest multiple of the alphabet's size are skipped.
    """
    size = len(ID_ALPHABET)
    limit = 256 - 256 % size
    out: list[str] = []
    while len(out) < ID_LENGTH:
        out.extend(ID_ALPHABET[b % size] for b in secrets.token_bytes(2 * ID_LENGTH) if b < limit)
    return "".join(out[:ID_LENGTH])


def format_datetime(moment: dt.datetime) -> str:
    """PocketBase's datetime text: UTC, milliseconds, a space, ``Z``."""
    moment = moment.astimezone(dt.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _now_text() -> str:
    return format_datetime(dt.datetime.now(dt.UTC))


def _err(code: str, message: str, **params: object) -> ErrorData:
    out: ErrorData = {"code": code, "message": message}
    if params:
        out["params"] = params
    return out


REQUIRED = _err("validation_required", "Cannot be blank.")
MISMATCH = _err("validation_values_mismatch", "Values don't match.")


def _not_unique(message: str, coll: Collection, exc: sqlite3.IntegrityError) -> ValidationFailed:
    """A unique-index violation (two writers raced past validation) as a field error."""
    field = "email" if coll.is_auth and f"{coll.name}.email" in str(exc) else "id"
    return ValidationFailed(
        message, {field: _err("validation_not_unique", "Value must be unique.")}
    )


@dataclass(frozen=True, slots=True)
class ListResult:
    items: list[Record]
    page: int
    per_page: int
    total_items: int
    total_pages: int


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _column_type(f: Field) -> str:
    if f.type == "number":
        return "REAL NOT NULL DEFAULT 0"
    if f.type == "bool":
        return "INTEGER NOT NULL DEFAULT 0"
    if f.type == "json":
        return "TEXT DEFAULT NULL"
    if f.multiple:
        return "TEXT NOT NULL DEFAULT '[]'"
    return "TEXT NOT NULL DEFAULT ''"


def _empty(f: Field) -> object:
    if f.type == "number":
        return 0
    if f.type == "bool":
        return False
    if f.type == "json":
        return None
    if f.multiple:
        return []
    return ""


def _encode(f: Field, value: object) -> object:
    if f.type == "bool":
        return 1 if value else 0
    if f.type == "json":
        return None if value is None else json.dumps(value, separators=(",", ":"))
    if f.multiple:
        return json.dumps(list(t.cast(Sequence[str], value or [])), separators=(",", ":"))
    return value


def _decode(f: Field, value: object) -> object:
    if f.type == "number":
        number = float(t.cast(float, value or 0))
        return int(number) if number.is_integer() and abs(number) < 2**53 else number
    if f.type == "bool":
        return bool(value)
    if f.type == "json":
        return None if value is None else json.loads(t.cast(str, value))
    if f.multiple:
        try:
            items = json.loads(t.cast(str, value or "[]"))
        except ValueError:
            return []
        return [str(i) for i in items] if isinstance(items, list) else []
    return "" if value is None else value


class RecordStore:
    """Records of every collection of a Schema, in one SQLite database.

    :param schema: the collections (rules already compiled).
    :param path: a database file, or ``":memory:"``.
    :param on_event: called with each committed change, after the commit.
    :param passwords: the password hasher (its ``run_blocking`` decides where
        scrypt runs).
    :param write_timeout: seconds a write waits for another process's write lock
        (cooperatively) before StoreBusy (503).
    """

    def __init__(
        self,
        schema: Schema,
        path: str | Path = ":memory:",
        *,
        on_event: EventSink | None = None,
        passwords: Passwords | None = None,
        write_timeout: float = 5.0,
    ) -> None:
        self.schema = schema
        self.write_timeout = write_timeout
        self.on_event: EventSink = on_event or (lambda event: None)
        self.passwords = passwords or Passwords()
        self._lock = threading.RLock()
        self._dummy: str | None = None
        self._secrets: dict[str, str] = {}
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # PocketBase's setting: in WAL mode NORMAL syncs at checkpoints, not at
        # every commit.  A commit survives a crash of the process; a power loss
        # may take the last commits (FULL would fsync every write, ~0.2 ms each).
        self._db.execute("PRAGMA synchronous=NORMAL")
        # SQLite's own busy wait sleeps in C, where gevent cannot switch: bound it
        # (rare reader waits in WAL mode still get it) and wait for another
        # process's write lock cooperatively (``_write``) past that, so a
        # worker's streams keep flowing while it waits.
        self._db.execute(f"PRAGMA busy_timeout={BUSY_SLICE_MS}")
        self._db.execute("PRAGMA case_sensitive_like=OFF")
        self._migrate()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _write(self, sql: str, params: tuple[object, ...] = ()) -> sqlite3.Cursor:
        """Run a write, waiting (cooperatively, up to ``write_timeout``) while another
        process holds the database's write lock; StoreBusy after that."""
        deadline = time.monotonic() + self.write_timeout
        delay = 0.002
        while True:
            try:
                return self._db.execute(sql, params)
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                if time.monotonic() >= deadline:
                    raise StoreBusy() from None
            time.sleep(delay)  # gevent.sleep under monkey-patching
            delay = min(delay * 2, 0.05)

    # -- schema -------------------------------------------------------------------

    def _meta_secret(self, collection_id: str) -> str:
        """A random token secret for the collection, kept in the database."""
        key = f"token_secret:{collection_id}"
        row = self._db.execute("SELECT value FROM _realtime_meta WHERE key = ?", (key,)).fetchone()
        if row is not None:
            return t.cast(str, row[0])
        value = secrets.token_urlsafe(32)
        self._db.execute("INSERT INTO _realtime_meta (key, value) VALUES (?, ?)", (key, value))
        return value

    def _migrate(self) -> None:
        with self._lock:
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS _realtime_meta (key TEXT PRIMARY KEY, value TEXT)"
            )
            for coll in self.schema:
                table = _quote(coll.name)
                columns = ", ".join(
                    f"{_quote(f.name)} {'TEXT PRIMARY KEY' if f.name == 'id' else _column_type(f)}"
                    for f in coll.fields
                )
                self._db.execute(f"CREATE TABLE IF NOT EXISTS {table} ({columns})")
                have = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
                for f in coll.fields:
                    if f.name not in have:
                        self._db.execute(
                            f"ALTER TABLE {table} ADD COLUMN {_quote(f.name)} {_column_type(f)}"
                        )
                if coll.is_auth:
                    self._secrets[coll.id] = coll.token_secret or self._meta_secret(coll.id)
                    self._db.execute(
                        f"CREATE UNIQUE INDEX IF NOT EXISTS {_quote('idx_email_' + coll.id)} "
                        f"ON {table} (email) WHERE email != ''"
                    )

    def collection(self, name_or_id: str) -> Collection:
        coll = self.schema.get(name_or_id)
        if coll is None:
            raise MissingCollection()
        return coll

    # -- reading --------------------------------------------------------------------

    def _row_to_record(self, coll: Collection, row: sqlite3.Row | tuple[t.Any, ...]) -> Record:
        record: Record = {"collectionId": coll.id, "collectionName": coll.name}
        for f, value in zip(coll.fields, row, strict=True):
            record[f.name] = _decode(f, value)
        return record

    def _select(self, coll: Collection) -> str:
        return ", ".join(_quote(f.name) for f in coll.fields)

    def get_record(self, collection: str, record_id: str) -> Record | None:
        """The stored record (hidden fields included), without any rule check."""
        coll = self.collection(collection)
        with self._lock:
            row = self._db.execute(
                f"SELECT {self._select(coll)} FROM {_quote(coll.name)} WHERE id = ?", (record_id,)
            ).fetchone()
        return None if row is None else self._row_to_record(coll, row)

    def lookup(self, collection_id: str, ids: Sequence[str]) -> list[Record]:
        """Stored records by id (the rules' RelationLookup); unknown ids are skipped."""
        coll = self.schema.get(collection_id)
        if coll is None or not ids:
            return []
        marks = ", ".join("?" for _ in ids)
        with self._lock:
            rows = self._db.execute(
                f"SELECT {self._select(coll)} FROM {_quote(coll.name)} WHERE id IN ({marks})",
                tuple(ids),
            ).fetchall()
        by_id = {r["id"]: r for r in (self._row_to_record(coll, row) for row in rows)}
        return [by_id[i] for i in ids if i in by_id]

    def _passes(
        self, coll: Collection, rule: CompiledRule, record_id: str, ctx: RequestContext
    ) -> bool:
        if ctx.superuser or rule.always:
            return True
        sql, params = rule.to_sql(coll.name, ctx)
        with self._lock:
            row = self._db.execute(
                f"SELECT 1 FROM {_quote(coll.name)} WHERE id = ? AND ({sql})",
                (record_id, *params),
            ).fetchone()
        return row is not None

    def can_access(
        self, coll: Collection, action: str, record_id: str, ctx: RequestContext
    ) -> bool:
        """Whether ``ctx`` passes ``coll``'s rule for ``action`` on the stored record."""
        rule = self.schema.compiled_rule(coll, action)
        if rule is None:
            return ctx.superuser
        return self._passes(coll, rule, record_id, ctx)

    def view(self, collection: str, record_id: str, ctx: RequestContext) -> Record:
        coll = self.collection(collection)
        rule = self.schema.compiled_rule(coll, "view")
        if rule is None and not ctx.superuser:
            raise Forbidden()
        record = self.get_record(coll.name, record_id)
        if record is None or (rule is not None and not self._passes(coll, rule, record_id, ctx)):
            raise NotFound()
        return record

    def list_records(
        self,
        collection: str,
        ctx: RequestContext,
        *,
        page: int = 1,
        per_page: int = DEFAULT_PER_PAGE,
        sort: str = "",
        filter: str = "",
        skip_total: bool = False,
    ) -> ListResult:
        coll = self.collection(collection)
        rule = self.schema.compiled_rule(coll, "list")
        if rule is None and not ctx.superuser:
            raise Forbidden()
        if not ctx.superuser and any(
            marker in text for text in (filter, sort) for marker in ("@request.", "@collection.")
        ):
            raise Forbidden("Only superusers can filter by @request.")
        page = max(page, 1)
        per_page = DEFAULT_PER_PAGE if per_page <= 0 else min(per_page, MAX_PER_PAGE)
        where: list[str] = []
        params: list[object] = []
        if rule is not None and not ctx.superuser and not rule.always:
            sql, ps = rule.to_sql(coll.name, ctx)
            where.append(f"({sql})")
            params.extend(ps)
        if filter:
            try:
                compiled = compile_rule(filter, coll, self.schema, client_filter=True)
            except RuleError:
                raise BadRequest() from None
            if not compiled.always:
                sql, ps = compiled.to_sql(coll.name, ctx)
                where.append(f"({sql})")
                params.extend(ps)
        order = self._order_by(coll, sort)
        table = _quote(coll.name)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {self._select(coll)} FROM {table}{clause} ORDER BY {order} "
                "LIMIT ? OFFSET ?",
                (*params, per_page, (page - 1) * per_page),
            ).fetchall()
            if skip_total:
                total = pages = -1
            else:
                total = self._db.execute(
                    f"SELECT COUNT(*) FROM {table}{clause}", tuple(params)
                ).fetchone()[0]
                pages = math.ceil(total / per_page)
        items = [self._row_to_record(coll, row) for row in rows]
        return ListResult(items, page, per_page, total, pages)

    def _order_by(self, coll: Collection, sort: str) -> str:
        parts: list[str] = []
        for raw in (p.strip() for p in sort.split(",")):
            if not raw:
                continue
            if raw == "@random":
                parts.append("RANDOM()")
                continue
            direction = "ASC"
            if raw[0] in "+-":
                direction = "DESC" if raw[0] == "-" else "ASC"
                raw = raw[1:]
            f = coll.field(raw)
            if not _SORT_FIELD.match(raw) or f is None or f.hidden:
                raise BadRequest()
            parts.append(f"{_quote(raw)} {direction}")
        parts.append("rowid ASC")
        return ", ".join(parts)

    # -- writing --------------------------------------------------------------------

    def create(self, collection: str, body: Mapping[str, object], ctx: RequestContext) -> Record:
        coll = self.collection(collection)
        rule = self.schema.compiled_rule(coll, "create")
        if rule is None and not ctx.superuser:
            raise Forbidden()
        values = self._validate(coll, body, ctx, existing=None)
        names = list(values)
        sql = (
            f"INSERT INTO {_quote(coll.name)} ({', '.join(_quote(n) for n in names)}) "
            f"VALUES ({', '.join('?' for _ in names)})"
        )
        with self._lock:
            self._write("BEGIN IMMEDIATE")
            committed = False
            try:
                self._db.execute(sql, tuple(_encode(coll.field(n), values[n]) for n in names))  # type: ignore[arg-type]
                if rule is not None and not self._passes(coll, rule, values["id"], ctx):
                    raise ValidationFailed("Failed to create record.")
                self._db.execute("COMMIT")
                committed = True
            except sqlite3.IntegrityError as exc:
                raise _not_unique("Failed to create record.", coll, exc) from None
            finally:
                if not committed:  # any failure, greenlet kills included, rolls back
                    self._db.execute("ROLLBACK")
            # Read back under the same lock: a delete cannot slip in between.
            record = t.cast(Record, self.get_record(coll.name, values["id"]))
        self._emit(coll, "create", record)
        return record

    def update(
        self, collection: str, record_id: str, body: Mapping[str, object], ctx: RequestContext
    ) -> Record:
        coll = self.collection(collection)
        rule = self.schema.compiled_rule(coll, "update")
        if rule is None and not ctx.superuser:
            raise Forbidden()
        existing = self.get_record(coll.name, record_id)
        if existing is None or (rule is not None and not self._passes(coll, rule, record_id, ctx)):
            raise NotFound()
        values = self._validate(coll, body, ctx, existing=existing)
        values.pop("id", None)
        if values:
            assignments = ", ".join(f"{_quote(n)} = ?" for n in values)
            params = tuple(_encode(coll.field(n), v) for n, v in values.items())  # type: ignore[arg-type]
            with self._lock:
                try:
                    self._write(
                        f"UPDATE {_quote(coll.name)} SET {assignments} WHERE id = ?",
                        (*params, record_id),
                    )
                except sqlite3.IntegrityError as exc:  # an email taken since _validate
                    raise _not_unique("Failed to update record.", coll, exc) from None
        record = self.get_record(coll.name, record_id)
        if record is None:  # deleted meanwhile
            raise NotFound()
        self._emit(coll, "update", record)
        return record

    def delete(self, collection: str, record_id: str, ctx: RequestContext) -> Record:
        coll = self.collection(collection)
        rule = self.schema.compiled_rule(coll, "delete")
        if rule is None and not ctx.superuser:
            raise Forbidden()
        with self._lock:
            existing = self.get_record(coll.name, record_id)
            if existing is None or (
                rule is not None and not self._passes(coll, rule, record_id, ctx)
            ):
                raise NotFound()
            cursor = self._write(f"DELETE FROM {_quote(coll.name)} WHERE id = ?", (record_id,))
        if cursor.rowcount != 1:
            raise NotFound()
        self._emit(coll, "delete", existing)
        return existing

    def _emit(self, coll: Collection, action: str, record: Record) -> None:
        event = Event(
            coll.name,
            action,
            self.public_record(coll, record),
            collection_id=coll.id,
            stored=without_password(record),
        )
        try:
            self.on_event(event)
        except Exception:
            logger.exception("record event sink failed for %s %s", coll.name, record.get("id"))

    # -- validation -----------------------------------------------------------------

    def _validate(
        self,
        coll: Collection,
        body: Mapping[str, object],
        ctx: RequestContext,
        *,
        existing: Record | None,
    ) -> Record:
        """The column values to write, or ValidationFailed naming every bad field."""
        creating = existing is None
        message = "Failed to create record." if creating else "Failed to update record."
        errors: ErrorData = {}
        values: Record = {}
        now = _now_text()

        if coll.is_auth:
            self._validate_auth(coll, body, ctx, existing, values, errors, message)

        for f in coll.fields:
            if f.name in ("password", "tokenKey") and coll.is_auth:
                continue
            if f.type == "autodate":
                if (creating and f.on_create) or (not creating and f.on_update):
                    values[f.name] = now
                continue
            if f.name == "id":
                if not creating:
                    continue
                raw_id = body.get("id")
                if raw_id in (None, ""):
                    values["id"] = new_record_id()
                    continue
                problem = self._check_text(f, raw_id)
                if problem:
                    errors["id"] = problem
                else:
                    values["id"] = raw_id
                continue
            if f.name in body:
                if coll.is_auth and f.name in ("email", "verified"):
                    if not creating and not ctx.superuser and body[f.name] != existing[f.name]:  # type: ignore[index]
                        errors[f.name] = MISMATCH
                        continue
                    if creating and f.name == "verified" and not ctx.superuser and body[f.name]:
                        errors[f.name] = MISMATCH
                        continue
                value, problem = self._coerce(f, body[f.name])
                if problem:
                    errors[f.name] = problem
                    continue
                values[f.name] = value
            elif creating:
                values[f.name] = _empty(f)
            if f.name in values or creating:
                final = values.get(f.name, existing.get(f.name) if existing else None)
                problem = self._check_constraints(f, final)
                if problem and f.name not in errors:
                    errors[f.name] = problem

        for f in coll.fields:
            if f.type == "relation" and f.name in values and f.name not in errors:
                ids = values[f.name] if f.multiple else ([values[f.name]] if values[f.name] else [])
                if ids and len(self.lookup(f.collection_id, ids)) != len(set(ids)):
                    errors[f.name] = _err(
                        "validation_missing_rel_records",
                        "Failed to find all relation records with the provided ids.",
                    )
        if coll.is_auth and "email" in values and "email" not in errors and values["email"]:
            with self._lock:
                clash = self._db.execute(
                    f"SELECT id FROM {_quote(coll.name)} WHERE email = ? AND id != ?",
                    (values["email"], (existing or {}).get("id", "")),
                ).fetchone()
            if clash is not None:
                errors["email"] = _err("validation_not_unique", "Value must be unique.")
        if errors:
            raise ValidationFailed(message, errors)
        return values

    def _validate_auth(
        self,
        coll: Collection,
        body: Mapping[str, object],
        ctx: RequestContext,
        existing: Record | None,
        values: Record,
        errors: ErrorData,
        message: str,
    ) -> None:
        creating = existing is None
        password = body.get("password")
        confirm = body.get("passwordConfirm")
        if creating or password not in (None, ""):
            if password in (None, ""):
                errors["password"] = REQUIRED
            elif not isinstance(password, str):
                errors["password"] = _err("validation_invalid_value", "Invalid value.")
            # PocketBase's password field: no "params", and its own max wording.
            elif len(password) < 8:
                errors["password"] = _err(
                    "validation_min_text_constraint", "Must be at least 8 character(s)."
                )
            elif len(password) > 71:
                errors["password"] = _err(
                    "validation_max_text_constraint", "Must be less than 71 character(s)."
                )
            if confirm in (None, ""):
                errors["passwordConfirm"] = REQUIRED
            elif confirm != password:
                errors["passwordConfirm"] = MISMATCH
            if not creating and not ctx.superuser:
                old = body.get("oldPassword")
                if old in (None, ""):
                    errors["oldPassword"] = REQUIRED
                elif not isinstance(old, str) or not self.passwords.verify(
                    old,
                    t.cast(str, existing["password"]),  # type: ignore[index]
                ):
                    errors["oldPassword"] = _err(
                        "validation_invalid_old_password", "Missing or invalid old password."
                    )
            if errors:
                # PocketBase checks the password pair first and stops there.
                raise ValidationFailed(message, errors)
            values["password"] = self.passwords.hash(t.cast(str, password))
            values["tokenKey"] = new_token_key()

    def _coerce(self, f: Field, value: object) -> tuple[object, ErrorData | None]:
        invalid = _err("validation_invalid_value", "Invalid value.")
        if f.type in ("text", "email", "url", "date", "autodate", "password"):
            if value is None:
                return "", None
            if isinstance(value, bool):
                return ("true" if value else "false"), None
            if isinstance(value, int | float):
                return json.dumps(value), None
            if not isinstance(value, str):
                return None, invalid
            if f.type == "date" and value:
                try:
                    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
                except ValueError:
                    return None, _err("validation_invalid_date", "Must be a valid date.")
                if parsed.tzinfo is None:
                    parsed = parsed.replace(tzinfo=dt.UTC)
                return format_datetime(parsed), None
            return value, None
        if f.type == "number":
            if value in (None, ""):
                return 0, None
            if isinstance(value, bool):
                return None, invalid
            try:
                number = float(t.cast(str, value))
            except (TypeError, ValueError):
                return None, invalid
            if not math.isfinite(number):
                return None, invalid
            return number, None
        if f.type == "bool":
            if isinstance(value, bool):
                return value, None
            if value in (None, "", 0, "0", "false", "False"):
                return False, None
            if value in (1, "1", "true", "True", "on"):
                return True, None
            return None, invalid
        if f.type == "json":
            if isinstance(value, str):
                try:
                    return json.loads(value), None
                except ValueError:
                    return value, None
            return value, None
        if f.type in ("relation", "select"):
            items: list[object]
            if value is None or value == "":
                items = []
            elif isinstance(value, list):
                items = value
            else:
                items = [value]
            if not all(isinstance(i, str) for i in items):
                return None, invalid
            clean = list(dict.fromkeys(t.cast(list[str], [i for i in items if i])))
            if f.type == "select" and any(i not in f.values for i in clean):
                return None, _err("validation_invalid_value", "Invalid value.")
            if len(clean) > f.max_select:
                return None, _err(
                    "validation_too_many_values",
                    f"Select no more than {f.max_select}.",
                    maxSelect=f.max_select,
                )
            if f.multiple:
                return clean, None
            return (clean[0] if clean else ""), None
        return None, invalid

    def _check_text(self, f: Field, value: object) -> ErrorData | None:
        if not isinstance(value, str):
            return _err("validation_invalid_value", "Invalid value.")
        if f.min is not None and len(value) < f.min:
            return _err(
                "validation_min_text_constraint",
                f"Must be at least {int(f.min)} character(s).",
                min=int(f.min),
            )
        if f.max is not None and len(value) > f.max:
            return _err(
                "validation_max_text_constraint",
                f"Must be no more than {int(f.max)} character(s).",
                max=int(f.max),
            )
        if f.pattern and value and not re.search(f.pattern, value):
            return _err("validation_invalid_format", "Invalid value format.")
        return None

    def _check_constraints(self, f: Field, value: object) -> ErrorData | None:
        blank = value in (None, "", 0, False, []) or value == {}
        if f.required and blank:
            return REQUIRED
        if blank:
            return None
        if f.type == "text":
            return self._check_text(f, value)
        if f.type == "email" and not _EMAIL.match(t.cast(str, value)):
            return _err("validation_is_email", "Must be a valid email address.")
        if f.type == "url" and not _URL.match(t.cast(str, value)):
            return _err("validation_is_url", "Must be a valid url.")
        if f.type == "number":
            number = t.cast(float, value)
            if f.only_int and not float(number).is_integer():
                return _err("validation_only_int_constraint", "Decimal numbers are not allowed.")
            if f.min is not None and number < f.min:
                return _err(
                    "validation_min_number_constraint", f"Must be larger than {f.min:g}.", min=f.min
                )
            if f.max is not None and number > f.max:
                return _err(
                    "validation_max_number_constraint", f"Must be less than {f.max:g}.", max=f.max
                )
        return None

    # -- auth -----------------------------------------------------------------------

    def auth_with_password(self, collection: str, identity: str, password: str) -> Record | None:
        """The auth record for these credentials, or None (no enumeration)."""
        coll = self.collection(collection)
        with self._lock:
            row = self._db.execute(
                f"SELECT {self._select(coll)} FROM {_quote(coll.name)} WHERE email = ?",
                (identity,),
            ).fetchone()
        stored = None if row is None else self._row_to_record(coll, row)
        # Always hash once so a missing identity costs what a wrong password does.
        encoded = t.cast(str, stored["password"]) if stored else self._dummy_hash()
        ok = self.passwords.verify(password, encoded)
        return stored if ok and stored is not None else None

    def token_for(self, coll: Collection, record: Record) -> str:
        return make_token(
            collection_id=coll.id,
            record_id=t.cast(str, record["id"]),
            token_key=t.cast(str, record["tokenKey"]),
            collection_secret=self._secrets[coll.id],
            duration=coll.token_duration,
        )

    def auth_from_token(self, token: str) -> tuple[Collection, Record] | None:
        """The (collection, stored record) a valid token belongs to, else None."""
        if not token:
            return None
        claims = read_token_claims(token)
        if claims is None:
            return None
        coll = self.schema.get(claims.collection_id)
        if coll is None or not coll.is_auth or coll.id != claims.collection_id:
            return None
        record = self.get_record(coll.name, claims.record_id)
        if record is None:
            return None
        verified = verify_token(
            token,
            token_key=t.cast(str, record["tokenKey"]),
            collection_secret=self._secrets[coll.id],
        )
        return None if verified is None else (coll, record)

    def upsert_superuser(self, email: str, password: str) -> tuple[Record, bool]:
        """Create the superuser, or set its password; returns (record, created)."""
        coll = self.collection(SUPERUSERS)
        su = RequestContext(auth=None, superuser=True)
        with self._lock:
            row = self._db.execute(
                f"SELECT id FROM {_quote(coll.name)} WHERE email = ?", (email,)
            ).fetchone()
        body = {"password": password, "passwordConfirm": password}
        if row is None:
            return self.create(coll.name, {"email": email, **body}, su), True
        return self.update(coll.name, row[0], body, su), False

    # -- serialisation ----------------------------------------------------------------

    def public_record(
        self, coll: Collection, record: Record, ctx: RequestContext | None = None
    ) -> Record:
        """The record as the REST API shows it to ``ctx`` (a guest when None)."""
        superuser = ctx is not None and ctx.superuser
        own = (
            ctx is not None
            and ctx.auth is not None
            and ctx.auth.get("collectionId") == coll.id
            and ctx.auth.get("id") == record.get("id")
        )
        out: Record = {"collectionId": coll.id, "collectionName": coll.name}
        for f in coll.fields:
            if coll.is_auth and f.name in ("password", "tokenKey"):
                continue
            if f.hidden and not superuser:
                continue
            if (
                coll.is_auth
                and f.name == "email"
                and not (superuser or own or record.get("emailVisibility"))
            ):
                continue
            out[f.name] = record.get(f.name, _empty(f))
        return out

    def present(
        self,
        coll: Collection,
        record: Record,
        ctx: RequestContext,
        *,
        fields: str = "",
        expand: str = "",
    ) -> Record:
        """What the REST API returns to ``ctx`` for ``record`` (``expand``/``fields`` applied)."""
        out = self.public_record(coll, record, ctx)
        if expand:
            expanded = self.expand(coll, record, expand.split(","), ctx)
            if expanded is not None:
                out["expand"] = expanded
        return t.cast(Record, pick_fields(out, fields)) if fields else out

    def expand(
        self, coll: Collection, record: Record, paths: Sequence[str], ctx: RequestContext
    ) -> Record | None:
        """``record``'s ``expand`` object for dotted relation ``paths``, or None
        when no path names a relation field (PocketBase then sends no key)."""
        tree: dict[str, list[str]] = {}
        for path in paths:
            head, _, rest = path.strip().partition(".")
            if head:
                tree.setdefault(head, [])
                if rest:
                    tree[head].append(rest)
        out: Record = {}
        valid = False
        for name, nested in tree.items():
            f = coll.field(name)
            if f is None or f.type != "relation":
                continue
            valid = True
            target = self.schema.get(f.collection_id)
            if target is None:
                continue
            raw = record.get(name)
            ids = list(raw) if isinstance(raw, list) else ([raw] if raw else [])
            visible = []
            for rel in self.lookup(target.id, ids):
                if not self.can_access(target, "view", rel["id"], ctx):
                    continue
                shown = self.public_record(target, rel, ctx)
                if nested:
                    sub = self.expand(target, rel, nested, ctx)
                    if sub is not None:
                        shown["expand"] = sub
                visible.append(shown)
            if visible:
                out[name] = visible if f.multiple else visible[0]
        return out if valid else None

    def _dummy_hash(self) -> str:
        if self._dummy is None:
            self._dummy = self.passwords.hash(secrets.token_hex(8))
        return self._dummy
