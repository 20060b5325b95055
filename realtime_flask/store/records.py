"""The embedded record store: PocketBase's records on SQLite, read and written.

``RecordStore`` runs the reads, the write transactions and the publishing of
committed changes; the rules, validation and presentation it applies live in
their own modules (see the package docstring).

Rules:

1. Access rules are the compiled rules of the Schema: list queries use their
   SQL form, single-record checks the same SQL against the stored row, and the
   realtime fan-out their in-memory form (tests prove both agree).
2. An event is emitted only after its transaction commits, exactly one per
   successful create, update and delete; a delete event carries the record as
   it was before the delete.  ``on_event`` runs outside the store's lock, and
   an exception it raises is logged, never returned to the writer.
3. A create's row is inserted, checked against the createRule, read back
   and committed or rolled back in one transaction (any failure rolls back,
   greenlet kills included), so a delete cannot slip in between.  A delete
   reads, checks and deletes in one transaction too.
4. The store never imports Flask.  Every statement runs through
   ``store.connections.Connections``: off the gevent hub, reads in parallel on
   WAL reader connections (a client's list queries in the ``scan`` lane,
   capped per client; lookups by id in the ``point`` lane), writes on the one
   writer connection, each statement interrupted past ``query_timeout``
   (QueryTimeout, 400).  Password hashing, the only CPU-heavy step outside
   SQLite, happens during validation, before the writer is taken, and goes
   through ``Passwords.run_blocking``.
5. Another process's write lock is waited for by SQLite on a pool thread,
   never on the hub; past ``write_timeout`` a write fails with StoreBusy (503).
6. Files (``store.files``): a write's uploads are stored before its
   transaction and removed when the transaction fails; files the committed
   row no longer names (compared with the row read inside the transaction),
   and the folders of deleted records, are deleted after the commit.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import typing as t
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from realtime_flask.core.events import Event
from realtime_flask.core.rules import CompiledRule
from realtime_flask.core.rules import RequestContext
from realtime_flask.core.schema import SUPERUSERS
from realtime_flask.core.schema import Collection
from realtime_flask.core.schema import Field
from realtime_flask.core.schema import Schema
from realtime_flask.errors import MissingCollection
from realtime_flask.errors import NotFound
from realtime_flask.errors import ValidationFailed
from realtime_flask.store.auth import Passwords
from realtime_flask.store.auth import TokenType
from realtime_flask.store.auth import file_secret
from realtime_flask.store.auth import make_token
from realtime_flask.store.auth import read_token_claims
from realtime_flask.store.auth import verify_token
from realtime_flask.store.connections import Connections
from realtime_flask.store.files import FileStorage
from realtime_flask.store.files import Upload
from realtime_flask.store.policy import DEFAULT_PER_PAGE
from realtime_flask.store.policy import action_rule
from realtime_flask.store.policy import list_query
from realtime_flask.store.policy import row_check
from realtime_flask.store.present import expand_relations
from realtime_flask.store.present import present_record
from realtime_flask.store.present import public_record
from realtime_flask.store.present import without_password
from realtime_flask.store.relations import Cascade
from realtime_flask.store.relations import cascade
from realtime_flask.store.sql import Record
from realtime_flask.store.sql import configure
from realtime_flask.store.sql import encode
from realtime_flask.store.sql import migrate
from realtime_flask.store.sql import quote
from realtime_flask.store.sql import row_to_record
from realtime_flask.store.sql import select_list
from realtime_flask.store.validate import not_unique
from realtime_flask.store.validate import validate_write

__all__ = ["EventSink", "ListResult", "RecordStore"]

logger = logging.getLogger(__name__)

#: Receives each committed change (``RecordStore.on_event``); its result is ignored.
EventSink = t.Callable[[Event], object]


@dataclass(frozen=True, slots=True)
class ListResult:
    """One page of a list query, PocketBase's list response in Python.

    ``items`` are stored records (not yet presented); ``page`` is 1-based;
    ``total_items`` and ``total_pages`` are -1 when the count was skipped.
    """

    items: list[Record]
    page: int
    per_page: int
    total_items: int
    total_pages: int


def split_uploads(coll: Collection, values: Record) -> tuple[Record, list[Upload]]:
    """The column values with each new upload replaced by its stored name, and the uploads.

    ``validate_write`` leaves ``Upload`` objects in file fields; only names are stored.
    """
    uploads: list[Upload] = []
    for f in coll.fields:
        if f.type != "file" or f.name not in values:
            continue
        value = values[f.name]
        items = value if isinstance(value, list) else [value]
        uploads.extend(i for i in items if isinstance(i, Upload))
        names = [i.name if isinstance(i, Upload) else i for i in items]
        values[f.name] = names if isinstance(value, list) else names[0]
    return values, uploads


def dropped_files(coll: Collection, before: Record, after: Record) -> list[str]:
    """File names ``before`` held in a file field that ``after`` no longer holds."""
    out: list[str] = []
    for f in coll.fields:
        if f.type != "file":
            continue
        old, new = before.get(f.name), after.get(f.name)
        kept = set(new) if isinstance(new, list) else {new}
        out.extend(n for n in (old if isinstance(old, list) else [old]) if n and n not in kept)
    return out


def _by_id(coll: Collection) -> str:
    """The SELECT of one stored record by id (parameter: the id)."""
    return f"SELECT {select_list(coll)} FROM {quote(coll.name)} WHERE id = ?"


class RecordStore:
    """Records of every collection of a Schema, in one SQLite database.

    :param schema: the collections (rules already compiled).
    :param path: a database file, or ``":memory:"``.
    :param on_event: called with each committed change, after the commit.
    :param passwords: the password hasher (its ``run_blocking`` decides where
        scrypt runs).
    :param readers: reader connections for list queries (``REALTIME_DB_READERS``;
        ``0``, or an in-memory database, runs every statement on the writer).
    :param query_timeout: seconds one statement may run before it is
        interrupted and answers QueryTimeout (400); ``0`` disables the limit
        (``REALTIME_QUERY_TIMEOUT``).
    :param write_timeout: seconds a write waits for another process's write lock
        (off the hub) before StoreBusy (503).
    :param files: where record files live (default: ``storage`` beside the database).

    ``db`` is the store's ``Connections`` (its ``statements`` count is what
    tests and metrics read).
    """

    def __init__(
        self,
        schema: Schema,
        path: str | Path = ":memory:",
        *,
        on_event: EventSink | None = None,
        passwords: Passwords | None = None,
        readers: int = 4,
        query_timeout: float = 10.0,
        write_timeout: float = 5.0,
        files: FileStorage | None = None,
    ) -> None:
        self.schema = schema
        #: record files (``store.files``): ``<database folder>/storage`` by default,
        #: a temporary folder for an in-memory database.
        self.files = files or FileStorage(
            None if str(path) == ":memory:" else Path(path).parent / "storage"
        )
        self.write_timeout = write_timeout
        self.on_event: EventSink = on_event or (lambda event: None)
        self.passwords = passwords or Passwords()
        self.db = Connections(
            path,
            readers=readers,
            query_timeout=query_timeout,
            write_timeout=write_timeout,
            configure=configure,
        )
        #: auth collection id -> the secret its tokens are signed with.
        self._secrets: dict[str, str] = self.db.setup(lambda conn: migrate(conn, schema))

    def close(self) -> None:
        """Close the database connections; the store is unusable afterwards."""
        self.db.close()
        self.files.close()

    def collection(self, name_or_id: str) -> Collection:
        """The collection named (or with id) ``name_or_id``.

        :raises MissingCollection: no such collection (404).
        """
        coll = self.schema.get(name_or_id)
        if coll is None:
            raise MissingCollection()
        return coll

    # -- reading --------------------------------------------------------------------

    def get_record(self, collection: str, record_id: str) -> Record | None:
        """The stored record (hidden fields included), without any rule check."""
        coll = self.collection(collection)
        row = self.db.read(_by_id(coll), (record_id,)).fetchone()
        return None if row is None else row_to_record(coll, row)

    def lookup(self, collection_id: str, ids: Sequence[str]) -> list[Record]:
        """Stored records by id, in the order of ``ids`` (the rules' RelationLookup).

        Unknown ids, and every id of an unknown collection, are skipped.
        """
        coll = self.schema.get(collection_id)
        if coll is None or not ids:
            return []
        marks = ", ".join("?" for _ in ids)
        rows = self.db.read(
            f"SELECT {select_list(coll)} FROM {quote(coll.name)} WHERE id IN ({marks})",
            tuple(ids),
        ).fetchall()
        by_id = {r["id"]: r for r in (row_to_record(coll, row) for row in rows)}
        return [by_id[i] for i in ids if i in by_id]

    def _passes(
        self, coll: Collection, rule: CompiledRule, record_id: str, ctx: RequestContext
    ) -> bool:
        check = row_check(coll, rule, record_id, ctx)
        if check is None:
            return True
        return self.db.read(*check).fetchone() is not None

    def can_access(
        self, coll: Collection, action: str, record_id: str, ctx: RequestContext
    ) -> bool:
        """Whether ``ctx`` passes ``coll``'s rule for ``action`` on the stored record.

        A locked rule admits superusers only; a missing record never passes a
        non-trivial rule.
        """
        rule = self.schema.compiled_rule(coll, action)
        if rule is None:
            return ctx.superuser
        return self._passes(coll, rule, record_id, ctx)

    def view(self, collection: str, record_id: str, ctx: RequestContext) -> Record:
        """The stored record, if ``ctx`` passes the viewRule.

        :raises Forbidden: viewRule locked and ``ctx`` not a superuser.
        :raises NotFound: no such record, or it fails the viewRule.
        """
        coll = self.collection(collection)
        rule = action_rule(self.schema, coll, "view", ctx)
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
        client: str | None = None,
    ) -> ListResult:
        """One page of the records ``ctx`` may list (``store.policy`` has the rules).

        ``client`` (the caller's address) is the key of the per-client cap on
        reader connections, so one client's slow queries leave readers for others.

        :raises Forbidden: listRule locked, or ``@request.`` in a non-superuser's
            ``filter``/``sort``.
        :raises BadRequest: ``filter`` or ``sort`` invalid.
        :raises QueryTimeout: a statement ran past ``query_timeout`` (400).
        """
        coll = self.collection(collection)
        query = list_query(
            self.schema, coll, ctx, page=page, per_page=per_page, sort=sort, filter=filter
        )
        table = quote(coll.name)
        page_sql = (
            f"SELECT {select_list(coll)} FROM {table}{query.where} ORDER BY {query.order} "
            "LIMIT ? OFFSET ?"
        )
        statements: list[tuple[str, tuple[object, ...]]] = [
            (page_sql, (*query.params, query.per_page, query.offset))
        ]
        if not skip_total:
            statements.append((f"SELECT COUNT(*) FROM {table}{query.where}", tuple(query.params)))
        results = self.db.read_many(statements, lane="scan", client=client)  # type: ignore[arg-type]
        rows = results[0].fetchall()
        if skip_total:
            total = pages = -1
        else:
            counted = results[1].fetchone()
            total = t.cast(int, counted[0]) if counted else 0
            pages = math.ceil(total / query.per_page)
        items = [row_to_record(coll, row) for row in rows]
        return ListResult(items, query.page, query.per_page, total, pages)

    # -- writing --------------------------------------------------------------------

    def create(self, collection: str, body: Mapping[str, object], ctx: RequestContext) -> Record:
        """Insert a record from a request body; emits ``create``; returns the stored record.

        :raises Forbidden: createRule locked and ``ctx`` not a superuser.
        :raises ValidationFailed: a bad field, a taken id or email, or the new
            record fails the createRule.
        :raises StoreBusy: another process held the write lock past ``write_timeout``.
        """
        coll = self.collection(collection)
        rule = action_rule(self.schema, coll, "create", ctx)
        values, uploads = split_uploads(coll, self._validate(coll, body, ctx, existing=None))
        names = list(values)
        sql = (
            f"INSERT INTO {quote(coll.name)} ({', '.join(quote(n) for n in names)}) "
            f"VALUES ({', '.join('?' for _ in names)})"
        )
        params = tuple(encode(coll.field(n), values[n]) for n in names)  # type: ignore[arg-type]
        check = None if rule is None else row_check(coll, rule, values["id"], ctx)

        def insert(conn: sqlite3.Connection) -> tuple[t.Any, ...]:
            conn.execute(sql, params)
            if check is not None and conn.execute(*check).fetchone() is None:
                raise ValidationFailed("Failed to create record.")
            # Read back in the transaction: a delete cannot slip in between.
            return t.cast(tuple[t.Any, ...], conn.execute(_by_id(coll), (values["id"],)).fetchone())

        # Files first, the row after (PocketBase's order); a failed insert removes them.
        self.files.save(coll.id, values["id"], uploads)
        try:
            row = self.db.transaction(insert)
        except BaseException as exc:
            self.files.delete(coll.id, values["id"], [u.name for u in uploads])
            if isinstance(exc, sqlite3.IntegrityError):
                raise not_unique("Failed to create record.", coll, exc) from None
            raise
        record = row_to_record(coll, row)
        self._emit(coll, "create", record)
        return record

    def update(
        self, collection: str, record_id: str, body: Mapping[str, object], ctx: RequestContext
    ) -> Record:
        """Change the fields ``body`` names; emits ``update``; returns the stored record.

        :raises Forbidden: updateRule locked and ``ctx`` not a superuser.
        :raises NotFound: no such record, it fails the updateRule, or it was
            deleted meanwhile.
        :raises ValidationFailed: a bad field or a taken email.
        :raises StoreBusy: another process held the write lock past ``write_timeout``.
        """
        coll = self.collection(collection)
        rule = action_rule(self.schema, coll, "update", ctx)
        existing = self.get_record(coll.name, record_id)
        if existing is None or (rule is not None and not self._passes(coll, rule, record_id, ctx)):
            raise NotFound()
        values, uploads = split_uploads(coll, self._validate(coll, body, ctx, existing=existing))
        values.pop("id", None)
        assignments = ", ".join(f"{quote(n)} = ?" for n in values)
        params = tuple(encode(coll.field(n), v) for n, v in values.items())  # type: ignore[arg-type]
        by_id = _by_id(coll)

        def change(conn: sqlite3.Connection) -> tuple[tuple[t.Any, ...], tuple[t.Any, ...]] | None:
            before = conn.execute(by_id, (record_id,)).fetchone()
            if before is None:  # deleted meanwhile
                return None
            if values:
                conn.execute(
                    f"UPDATE {quote(coll.name)} SET {assignments} WHERE id = ?",
                    (*params, record_id),
                )
            return t.cast(tuple[t.Any, ...], before), conn.execute(by_id, (record_id,)).fetchone()

        self.files.save(coll.id, record_id, uploads)
        try:
            outcome = self.db.transaction(change)
        except BaseException as exc:
            self.files.delete(coll.id, record_id, [u.name for u in uploads])
            if isinstance(exc, sqlite3.IntegrityError):  # an email taken since _validate
                raise not_unique("Failed to update record.", coll, exc) from None
            raise
        if outcome is None:
            self.files.delete(coll.id, record_id, [u.name for u in uploads])
            raise NotFound()
        before, after = (row_to_record(coll, row) for row in outcome)
        # After the commit: the files the committed row no longer names.
        self.files.delete(coll.id, record_id, dropped_files(coll, before, after))
        self._emit(coll, "update", after)
        return after

    def delete(self, collection: str, record_id: str, ctx: RequestContext) -> Record:
        """Delete a record; emits ``delete`` with it; returns it as it was stored.

        :raises Forbidden: deleteRule locked and ``ctx`` not a superuser.
        :raises NotFound: no such record, or it fails the deleteRule.
        :raises RelationRequired: a required relation of another record points at it
            (400; nothing changes).
        :raises StoreBusy: another process held the write lock past ``write_timeout``.

        Records that point at it are handled in the same transaction as
        PocketBase does (``store.relations``): ``cascadeDelete`` children are
        deleted (each with its ``delete`` event), other references lose the id
        (each with its ``update`` event).
        """
        coll = self.collection(collection)
        rule = action_rule(self.schema, coll, "delete", ctx)
        check = None if rule is None else row_check(coll, rule, record_id, ctx)

        def remove(conn: sqlite3.Connection) -> tuple[tuple[t.Any, ...], Cascade] | None:
            row = conn.execute(_by_id(coll), (record_id,)).fetchone()
            if row is None or (check is not None and conn.execute(*check).fetchone() is None):
                return None
            done = cascade(conn, self.schema, coll, record_id)  # store.relations
            conn.execute(f"DELETE FROM {quote(coll.name)} WHERE id = ?", (record_id,))
            return t.cast(tuple[t.Any, ...], row), done

        outcome = self.db.transaction(remove)
        if outcome is None:
            raise NotFound()
        row, done = outcome
        # After the commit: the files of every deleted record.
        for owner, gone_id in [(coll, record_id), *((o, r[0]) for o, r in done.deleted)]:
            if any(f.type == "file" for f in owner.fields):
                self.files.delete_record(owner.id, t.cast(str, gone_id))
        for other, gone in done.deleted:
            self._emit(other, "delete", row_to_record(other, gone))
        for other, changed in done.updated:
            self._emit(other, "update", row_to_record(other, changed))
        existing = row_to_record(coll, row)
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

    def _validate(
        self,
        coll: Collection,
        body: Mapping[str, object],
        ctx: RequestContext,
        *,
        existing: Record | None,
    ) -> Record:
        """The column values to write, or ValidationFailed naming every bad field."""
        return validate_write(
            coll,
            body,
            ctx,
            existing=existing,
            passwords=self.passwords,
            lookup=self.lookup,
            email_taken=self._email_taken,
        )

    def _email_taken(self, coll: Collection, email: str, record_id: str) -> bool:
        clash = self.db.read(
            f"SELECT id FROM {quote(coll.name)} WHERE email = ? AND id != ?",
            (email, record_id),
        ).fetchone()
        return clash is not None

    # -- auth -----------------------------------------------------------------------

    def auth_with_password(self, collection: str, identity: str, password: str) -> Record | None:
        """The auth record for these credentials, or None (no enumeration).

        ``identity`` is the email, matched exactly; a missing identity costs
        one hash, like a wrong password (``Passwords.check``).
        """
        coll = self.collection(collection)
        row = self.db.read(
            f"SELECT {select_list(coll)} FROM {quote(coll.name)} WHERE email = ?",
            (identity,),
        ).fetchone()
        stored = None if row is None else row_to_record(coll, row)
        encoded = None if stored is None else t.cast(str, stored["password"])
        return stored if self.passwords.check(password, encoded) else None

    def token_for(self, coll: Collection, record: Record) -> str:
        """A new auth token for the stored auth ``record`` (``store.auth.make_token``),
        valid for the collection's ``token_duration`` seconds."""
        return make_token(
            collection_id=coll.id,
            record_id=t.cast(str, record["id"]),
            token_key=t.cast(str, record["tokenKey"]),
            collection_secret=self._secrets[coll.id],
            duration=coll.token_duration,
        )

    def file_token_for(self, coll: Collection, record: Record) -> str:
        """A new file token (PocketBase's ``POST /api/files/token``) for the stored auth
        ``record``: ``type="file"``, valid ``coll.file_token_duration`` seconds (default
        180), signed with the record's ``tokenKey`` and the collection's file secret."""
        return make_token(
            collection_id=coll.id,
            record_id=t.cast(str, record["id"]),
            token_key=t.cast(str, record["tokenKey"]),
            collection_secret=file_secret(self._secrets[coll.id]),
            duration=coll.file_token_duration,
            token_type="file",
        )

    def auth_from_token(
        self, token: str, token_type: TokenType = "auth"
    ) -> tuple[Collection, Record] | None:
        """The (collection, stored record) a valid token belongs to, else None.

        None for an empty, malformed, expired or wrongly signed token, a token
        of another ``token_type`` (``"file"``: a file token, ``file_token_for``),
        a token of a collection that is not (or no longer) an auth collection,
        or one whose record is gone or has changed its ``tokenKey`` since.
        """
        if not token:
            return None
        claims = read_token_claims(token, token_type)
        if claims is None:
            return None
        coll = self.schema.get(claims.collection_id)
        if coll is None or not coll.is_auth or coll.id != claims.collection_id:
            return None
        record = self.get_record(coll.name, claims.record_id)
        if record is None:
            return None
        secret = self._secrets[coll.id]
        verified = verify_token(
            token,
            token_key=t.cast(str, record["tokenKey"]),
            collection_secret=file_secret(secret) if token_type == "file" else secret,
            token_type=token_type,
        )
        return None if verified is None else (coll, record)

    def find_file(
        self, collection: str, record_id: str, filename: str
    ) -> tuple[Collection, Record, Field] | None:
        """The (collection, stored record, file field) holding ``filename``, else None
        (no such collection, record, or no file field of the record names it)."""
        coll = self.schema.get(collection)
        if coll is None or not record_id or not filename:
            return None
        record = self.get_record(coll.name, record_id)
        if record is None:
            return None
        for f in coll.fields:
            value = record.get(f.name)
            if f.type == "file" and (
                filename in value if isinstance(value, list) else filename == value
            ):
                return coll, record, f
        return None

    def upsert_superuser(self, email: str, password: str) -> tuple[Record, bool]:
        """Create the superuser, or set its password; returns (record, created).

        :raises ValidationFailed: a bad email or password (8 to 71 characters).
        """
        coll = self.collection(SUPERUSERS)
        su = RequestContext(auth=None, superuser=True)
        row = self.db.read(
            f"SELECT id FROM {quote(coll.name)} WHERE email = ?", (email,)
        ).fetchone()
        body = {"password": password, "passwordConfirm": password}
        if row is None:
            return self.create(coll.name, {"email": email, **body}, su), True
        return self.update(coll.name, row[0], body, su), False

    # -- presentation (``store.present``) ---------------------------------------------

    def public_record(
        self, coll: Collection, record: Record, ctx: RequestContext | None = None
    ) -> Record:
        """The record as the REST API shows it to ``ctx`` (a guest when None)."""
        return public_record(coll, record, ctx)

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
        return present_record(self, coll, record, ctx, fields=fields, expand=expand)

    def expand(
        self, coll: Collection, record: Record, paths: Sequence[str], ctx: RequestContext
    ) -> Record | None:
        """``record``'s ``expand`` object for dotted relation ``paths``, or None
        when no path names a relation field (PocketBase then sends no key)."""
        return expand_relations(self, coll, record, paths, ctx)
