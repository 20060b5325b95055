"""Collections and fields: PocketBase's collection-export JSON, as frozen values.

Rules: pure (no IO besides ``load_schema_file`` reading one file, no Flask, no
sqlite).  A schema is validated as a whole when it is built: an unknown field
type, a relation to a missing collection or a rule that does not parse raises
one SchemaError naming the collection and the field.  Rules are compiled once,
here, and the compiled objects are shared by the REST API and realtime.

Imports point one way: this module imports ``core.rules`` to compile; the rules
package never imports this one (it reads collections through the protocols of
``core.rules.catalog``, which ``Field``, ``Collection`` and ``Schema`` satisfy).
"""

from __future__ import annotations

import json
import typing as t
import zlib
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field as dc_field
from dataclasses import replace
from pathlib import Path

from realtime_flask.core.rules import CompiledRule
from realtime_flask.core.rules import RuleError
from realtime_flask.core.rules import compile_rule
from realtime_flask.errors import ConfigError

__all__ = [
    "ACTIONS",
    "AUTH",
    "BASE",
    "Collection",
    "Field",
    "FIELD_TYPES",
    "Schema",
    "SchemaError",
    "SUPERUSERS",
    "SUPERUSERS_ID",
    "DEFAULT_FILE_MAX_SIZE",
    "FILE_TOKEN_DURATION",
    "MULTI_TYPES",
    "collection_id_for",
    "default_schema",
    "load_schema_file",
]

BASE = "base"
AUTH = "auth"
SUPERUSERS = "_superusers"
SUPERUSERS_ID = "pbc_3142635823"
USERS_ID = "_pb_users_auth_"

FIELD_TYPES: t.Final[frozenset[str]] = frozenset(
    {
        "text",
        "number",
        "bool",
        "email",
        "url",
        "date",
        "select",
        "json",
        "relation",
        "autodate",
        "password",
        "editor",
        "file",
        "geoPoint",
    }
)
#: Field types whose value is a list when ``maxSelect > 1``.
MULTI_TYPES: t.Final[frozenset[str]] = frozenset({"select", "relation", "file"})
#: Collection types PocketBase 0.40 exports; ``view`` collections are accepted and left out.
COLLECTION_TYPES: t.Final[frozenset[str]] = frozenset({"base", "auth", "view"})
VIEW = "view"
#: PocketBase's default limit of one uploaded file when ``maxSize`` is 0: 5 MiB.
DEFAULT_FILE_MAX_SIZE: t.Final = 5 << 20
#: PocketBase's default file token lifetime, seconds (``fileToken.duration``).
FILE_TOKEN_DURATION: t.Final = 180
#: Rule keys of a collection, in PocketBase's export order.
ACTIONS: t.Final[tuple[str, ...]] = ("list", "view", "create", "update", "delete")

#: Default token lifetimes, seconds (PocketBase: users 5 days, superusers 1 day).
USERS_TOKEN_DURATION = 432000
SUPERUSERS_TOKEN_DURATION = 86400
#: The store's own table; no collection may take its name.
META_TABLE = "_realtime_meta"


class SchemaError(ConfigError):
    """The schema file is invalid; the message names the collection and field."""


def collection_id_for(type_: str, name: str) -> str:
    """PocketBase's deterministic id for a new collection: ``pbc_`` + crc32(type+name)."""
    return f"pbc_{zlib.crc32((type_ + name).encode())}"


@dataclass(frozen=True, slots=True)
class Field:
    """One field of a collection, with the options of its type."""

    name: str
    type: str
    required: bool = False
    hidden: bool = False
    system: bool = False
    #: text: min/max length; number: min/max value; password: min length
    min: float | None = None
    max: float | None = None
    pattern: str = ""
    only_int: bool = False
    #: select: allowed values
    values: tuple[str, ...] = ()
    #: select/relation: most values; 1 = single
    max_select: int = 1
    #: relation: target collection id (names are resolved to ids on load)
    collection_id: str = ""
    cascade_delete: bool = False
    #: autodate
    on_create: bool = True
    on_update: bool = False
    #: file: most bytes of one upload (0: PocketBase's default, 5 MiB)
    max_size: int = 0
    #: file: allowed MIME types of an upload (empty: any)
    mime_types: tuple[str, ...] = ()
    #: file: served only with a file token (``POST /api/files/token``) passing the viewRule
    protected: bool = False
    #: file: thumb sizes (accepted; a thumb is answered with the original file)
    thumbs: tuple[str, ...] = ()

    @property
    def multiple(self) -> bool:
        """A select, relation or file field holding a list (``maxSelect > 1``)."""
        return self.type in MULTI_TYPES and self.max_select > 1

    @property
    def file_max_size(self) -> int:
        """Most bytes of one upload of a file field (``maxSize``, else 5 MiB)."""
        return self.max_size if self.max_size > 0 else DEFAULT_FILE_MAX_SIZE


@dataclass(frozen=True, slots=True)
class Collection:
    """A collection: its fields and its five rules (None = superusers only)."""

    id: str
    name: str
    type: str
    fields: tuple[Field, ...]
    list_rule: str | None = None
    view_rule: str | None = None
    create_rule: str | None = None
    update_rule: str | None = None
    delete_rule: str | None = None
    token_duration: int = USERS_TOKEN_DURATION
    #: extra secret mixed into every token signature of this collection
    token_secret: str = ""
    #: seconds a file token of this auth collection is valid (``fileToken.duration``)
    file_token_duration: int = FILE_TOKEN_DURATION
    _by_name: dict[str, Field] = dc_field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._by_name.update({f.name: f for f in self.fields})

    @property
    def is_auth(self) -> bool:
        return self.type == AUTH

    def field(self, name: str) -> Field | None:
        return self._by_name.get(name)

    def rule(self, action: str) -> str | None:
        return t.cast("str | None", getattr(self, f"{action}_rule"))


def _system_fields(type_: str) -> tuple[Field, ...]:
    id_field = Field(
        "id", "text", required=True, system=True, min=15, max=15, pattern="^[a-z0-9]+$"
    )
    if type_ != AUTH:
        return (id_field,)
    return (
        id_field,
        Field("password", "password", required=True, hidden=True, system=True, min=8),
        Field("tokenKey", "text", required=True, hidden=True, system=True),
        Field("email", "email", required=True, system=True),
        Field("emailVisibility", "bool", system=True),
        Field("verified", "bool", system=True),
    )


SYSTEM_NAMES: t.Final[frozenset[str]] = frozenset(
    {"id", "password", "tokenKey", "email", "emailVisibility", "verified"}
)
RESERVED_NAMES: t.Final[frozenset[str]] = frozenset(
    {"collectionId", "collectionName", "expand", "passwordConfirm", "oldPassword"}
)


class Schema:
    """Every collection, by name and by id, with compiled rules."""

    def __init__(
        self, collections: Sequence[Collection], *, unsupported: Sequence[str] = ()
    ) -> None:
        self.collections: tuple[Collection, ...] = tuple(collections)
        #: What the source export has that this service accepts but does not honour,
        #: one entry per collection (``"users: oauth2, otp"``), for one log line at start-up.
        self.unsupported: tuple[str, ...] = tuple(unsupported)
        self._by_name = {c.name: c for c in self.collections}
        self._by_id = {c.id: c for c in self.collections}
        #: ``(collection id, action) -> compiled rule``, None for a null rule.
        self.rules: dict[tuple[str, str], CompiledRule | None] = {}
        self._validate()

    def get(self, name_or_id: str) -> Collection | None:
        return self._by_name.get(name_or_id) or self._by_id.get(name_or_id)

    def __iter__(self) -> t.Iterator[Collection]:
        return iter(self.collections)

    def compiled_rule(self, collection: Collection, action: str) -> CompiledRule | None:
        """The compiled rule of ``action`` (``None`` for a null rule: superusers only).

        :raises KeyError: ``collection`` is not in this schema or ``action`` is not
            one of :data:`ACTIONS`.
        """
        return self.rules[(collection.id, action)]

    def _validate(self) -> None:
        names: set[str] = set()
        ids: set[str] = set()
        for coll in self.collections:
            # SQLite table names are case-insensitive, so are PocketBase's.
            if coll.name.lower() in names:
                raise SchemaError(f"collection {coll.name!r}: the name is used twice")
            names.add(coll.name.lower())
            if coll.id in ids:
                raise SchemaError(f"collection {coll.name!r}: the id {coll.id!r} is used twice")
            ids.add(coll.id)
            if coll.name == SUPERUSERS and not coll.is_auth:
                raise SchemaError(f"collection {coll.name!r}: must be an auth collection")
            for f in coll.fields:
                if f.type == "relation" and self.get(f.collection_id) is None:
                    raise SchemaError(
                        f"collection {coll.name!r}, field {f.name!r}: relation to missing "
                        f"collection {f.collection_id!r}"
                    )
        for coll in self.collections:
            for action in ACTIONS:
                source = coll.rule(action)
                if source is None:
                    self.rules[(coll.id, action)] = None
                    continue
                try:
                    self.rules[(coll.id, action)] = compile_rule(source, coll, self)
                except RuleError as exc:
                    raise SchemaError(
                        f"collection {coll.name!r}, {action}Rule {source!r}: {exc}"
                    ) from None

    @classmethod
    def from_json(cls, data: object, *, with_superusers: bool = True) -> Schema:
        """Build from PocketBase's collection-export shape (a list of collections)."""
        if not isinstance(data, list):
            raise SchemaError("the schema must be a JSON array of collections")
        notes: dict[str, list[str]] = {}
        raw: list[Collection] = []
        views: set[str] = set()
        for n, item in enumerate(data):
            coll = _collection_from_json(item, n, notes)
            if coll.type == VIEW:
                views.update((coll.id, coll.name))
            else:
                raw.append(coll)
        if with_superusers and not any(c.name == SUPERUSERS for c in raw):
            raw.append(_superusers())
        # Relations may name their target by name or id: resolve to ids.  A relation
        # to a view collection (left out) is left out too.
        by_name = {c.name: c for c in raw}
        resolved = []
        for coll in raw:
            fields: list[Field] = []
            for f in coll.fields:
                if f.type == "relation" and f.collection_id in views:
                    notes.setdefault(coll.name, []).append(f"{f.name} (relation to a view)")
                    continue
                if f.type == "relation" and f.collection_id in by_name:
                    f = replace(f, collection_id=by_name[f.collection_id].id)
                fields.append(f)
            resolved.append(replace(coll, fields=tuple(fields), _by_name={}))
        unsupported = [f"{name}: {', '.join(items)}" for name, items in notes.items()]
        return cls(resolved, unsupported=unsupported)


def _superusers() -> Collection:
    return Collection(
        id=SUPERUSERS_ID,
        name=SUPERUSERS,
        type=AUTH,
        fields=(
            *_system_fields(AUTH),
            Field("created", "autodate", system=True, on_create=True),
            Field("updated", "autodate", system=True, on_create=True, on_update=True),
        ),
        token_duration=SUPERUSERS_TOKEN_DURATION,
    )


def _opt(item: Mapping[str, object], key: str, kind: type, where: str, default: t.Any) -> t.Any:
    value = item.get(key, default)
    if value is None:
        return default
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise SchemaError(f"{where}: {key!r} must be {kind.__name__}, got {value!r}")
    return value


#: Field options PocketBase 0.40 exports that are accepted but not enforced here, with
#: their "unset" values: a field with another value is listed as not supported.
_IGNORED_FIELD_OPTIONS: t.Final[dict[str, tuple[object, ...]]] = {
    "autogeneratePattern": ("",),
    "onlyDomains": ([],),
    "exceptDomains": ([],),
    "minSelect": (0,),
    "convertURLs": (False,),
    "maxSize": (0,),  # editor and json (a file field's maxSize is enforced)
    "thumbs": ([],),  # file: a thumb request answers the original file
}


def _string_list(item: Mapping[str, object], key: str, where: str) -> tuple[str, ...]:
    values = item.get(key) or []
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise SchemaError(f"{where}: {key!r} must be a list of strings")
    return tuple(values)


def _ignored_options(item: Mapping[str, object], type_: str) -> list[str]:
    found = []
    for key, unset in _IGNORED_FIELD_OPTIONS.items():
        if key == "maxSize" and type_ == "file":
            continue
        if key in item and item[key] not in (None, *unset):
            found.append(key)
    if type_ == "date" and (item.get("min") or item.get("max")):
        found.append("min/max")
    return found


def _field_from_json(item: object, coll: str, n: int, notes: list[str] | None = None) -> Field:
    if not isinstance(item, Mapping):
        raise SchemaError(f"collection {coll!r}, field #{n}: must be an object")
    name = item.get("name")
    if not isinstance(name, str) or not name or not name.replace("_", "a").isalnum():
        raise SchemaError(f"collection {coll!r}, field #{n}: invalid name {name!r}")
    where = f"collection {coll!r}, field {name!r}"
    type_ = item.get("type")
    if type_ not in FIELD_TYPES:
        raise SchemaError(f"{where}: unknown type {type_!r} (known: {sorted(FIELD_TYPES)})")
    if name in RESERVED_NAMES:
        raise SchemaError(f"{where}: the name is reserved")
    values = item.get("values", [])
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise SchemaError(f"{where}: 'values' must be a list of strings")
    target = item.get("collectionId", item.get("collection", ""))
    if type_ == "relation" and (not isinstance(target, str) or not target):
        raise SchemaError(f"{where}: a relation needs 'collectionId'")
    max_select = _opt(item, "maxSelect", int, where, 1)
    # A date's min/max are dates (not enforced here, see _ignored_options).
    bounded = type_ in ("text", "number", "password")
    low = _opt(item, "min", float, where, None) if bounded else None
    high = _opt(item, "max", float, where, None) if bounded else None
    if type_ in ("text", "password"):
        # PocketBase exports text/password lengths as 0 when unset ("no limit").
        low = low or None
        high = high or None
    max_size = _opt(item, "maxSize", int, where, 0)
    if max_size < 0:
        raise SchemaError(f"{where}: 'maxSize' must not be negative")
    mime_types = _string_list(item, "mimeTypes", where)
    thumbs = _string_list(item, "thumbs", where)
    if notes is not None:
        notes.extend(f"{name}.{opt}" for opt in _ignored_options(item, t.cast(str, type_)))
    return Field(
        name=name,
        type=t.cast(str, type_),
        required=_opt(item, "required", bool, where, False),
        hidden=_opt(item, "hidden", bool, where, False),
        min=low,
        max=high,
        pattern=_opt(item, "pattern", str, where, ""),
        only_int=_opt(item, "onlyInt", bool, where, False),
        values=tuple(values),
        max_select=max(1, max_select),
        collection_id=t.cast(str, target) if type_ == "relation" else "",
        cascade_delete=_opt(item, "cascadeDelete", bool, where, False),
        on_create=_opt(item, "onCreate", bool, where, True),
        on_update=_opt(item, "onUpdate", bool, where, False),
        max_size=max_size if type_ == "file" else 0,
        mime_types=mime_types if type_ == "file" else (),
        protected=type_ == "file" and _opt(item, "protected", bool, where, False),
        thumbs=thumbs if type_ == "file" else (),
    )


def _rule(item: Mapping[str, object], key: str, where: str) -> str | None:
    value = item.get(key)
    if value is not None and not isinstance(value, str):
        raise SchemaError(f"{where}: {key} must be a string or null, got {value!r}")
    return value


#: Default indexes of an auth collection export (``idx_tokenKey_*``, ``idx_email_*``):
#: the store keeps the email one; others are listed as not supported.
_DEFAULT_INDEX_PREFIXES: t.Final = (
    "CREATE UNIQUE INDEX `idx_tokenKey_",
    "CREATE UNIQUE INDEX `idx_email_",
)


def _enabled(item: Mapping[str, object], key: str) -> bool:
    value = item.get(key)
    return isinstance(value, Mapping) and bool(value.get("enabled"))


def _auth_notes(item: Mapping[str, object]) -> list[str]:
    """The auth options of an export that are not honoured here (accepted all the same)."""
    found = [
        name
        for key, name in (
            ("oauth2", "oauth2"),
            ("otp", "otp"),
            ("mfa", "mfa"),
            ("authAlert", "authAlert"),
        )
        if _enabled(item, key)
    ]
    password_auth = item.get("passwordAuth")
    if isinstance(password_auth, Mapping) and (
        not password_auth.get("enabled", True)
        or list(password_auth.get("identityFields") or ["email"]) != ["email"]
    ):
        found.append("passwordAuth (only email and password sign-in)")
    if item.get("authRule") not in (None, ""):
        found.append("authRule")
    if item.get("authRule", "") is None:
        found.append("authRule null (sign-in stays open)")
    if item.get("manageRule") is not None:
        found.append("manageRule")
    if any(
        key in item
        for key in ("verificationTemplate", "resetPasswordTemplate", "confirmEmailChangeTemplate")
    ):
        found.append("email templates (no e-mail is sent)")
    return found


def _collection_from_json(
    item: object, n: int, notes: dict[str, list[str]] | None = None
) -> Collection:
    if not isinstance(item, Mapping):
        raise SchemaError(f"collection #{n}: must be an object")
    name = item.get("name")
    if not isinstance(name, str) or not name or not name.replace("_", "a").isalnum():
        raise SchemaError(f"collection #{n}: invalid name {name!r}")
    where = f"collection {name!r}"
    if name.lower() == META_TABLE or name.lower().startswith("sqlite_"):
        raise SchemaError(f"{where}: the name is reserved")
    type_ = item.get("type", BASE)
    if type_ not in COLLECTION_TYPES:
        raise SchemaError(f"{where}: type must be 'base', 'auth' or 'view', got {type_!r}")
    type_ = t.cast(str, type_)
    mine = [] if notes is None else notes.setdefault(name, [])
    if type_ == VIEW:
        # A view is a SQL query over PocketBase's own tables: left out, listed once.
        mine.append("view collection (left out)")
        cid = item.get("id") or collection_id_for(type_, name)
        return Collection(id=str(cid), name=name, type=VIEW, fields=())
    if type_ == AUTH:
        mine.extend(_auth_notes(item))
    indexes = item.get("indexes") or []
    if (
        not item.get("system")
        and isinstance(indexes, list)
        and any(not (isinstance(i, str) and i.startswith(_DEFAULT_INDEX_PREFIXES)) for i in indexes)
    ):
        mine.append("indexes")
    cid = item.get("id") or (
        # PocketBase's built-in users collection always has this id, and relations
        # in exports name it so: a users auth collection given without an id gets it.
        USERS_ID if (type_, name) == (AUTH, "users") else collection_id_for(type_, name)
    )
    if not isinstance(cid, str):
        raise SchemaError(f"{where}: id must be a string")
    raw_fields = item.get("fields", [])
    if not isinstance(raw_fields, list):
        raise SchemaError(f"{where}: 'fields' must be a list")
    system = _system_fields(type_)
    system_names = {f.name for f in system}
    own: list[Field] = []
    # SQLite column names are case-insensitive: "Title" and "title" clash.
    seen = {f.name.lower() for f in system}
    for i, raw in enumerate(raw_fields):
        f = _field_from_json(raw, name, i, [])
        if f.name in system_names:
            continue  # exports repeat the system fields; ours win
        _field_from_json(raw, name, i, mine)  # its options not honoured, if any
        if f.name.lower() in seen:
            raise SchemaError(f"{where}, field {f.name!r}: the name is used twice")
        seen.add(f.name.lower())
        own.append(f)
    token = item.get("authToken")
    duration = SUPERUSERS_TOKEN_DURATION if name == SUPERUSERS else USERS_TOKEN_DURATION
    secret = ""
    if isinstance(token, Mapping):
        duration = _opt(token, "duration", int, f"{where}: authToken", duration)
        secret = _opt(token, "secret", str, f"{where}: authToken", "")
        if duration < 10:
            raise SchemaError(f"{where}: authToken duration must be at least 10 seconds")
    file_token = item.get("fileToken")
    file_duration = FILE_TOKEN_DURATION
    if isinstance(file_token, Mapping):
        file_duration = _opt(file_token, "duration", int, f"{where}: fileToken", file_duration)
        if file_duration < 10:
            raise SchemaError(f"{where}: fileToken duration must be at least 10 seconds")
    if notes is not None and not mine:
        del notes[name]
    return Collection(
        id=cid,
        name=name,
        type=type_,
        fields=(*system, *own),
        list_rule=_rule(item, "listRule", where),
        view_rule=_rule(item, "viewRule", where),
        create_rule=_rule(item, "createRule", where),
        update_rule=_rule(item, "updateRule", where),
        delete_rule=_rule(item, "deleteRule", where),
        token_duration=duration,
        token_secret=secret,
        file_token_duration=file_duration,
    )


DEFAULT_SCHEMA: t.Final[list[dict[str, object]]] = [
    {
        "id": USERS_ID,
        "name": "users",
        "type": "auth",
        "fields": [
            {"name": "name", "type": "text", "max": 255},
            {"name": "created", "type": "autodate", "onCreate": True},
            {"name": "updated", "type": "autodate", "onCreate": True, "onUpdate": True},
        ],
        "listRule": "id = @request.auth.id",
        "viewRule": "id = @request.auth.id",
        "createRule": "",
        "updateRule": "id = @request.auth.id",
        "deleteRule": "id = @request.auth.id",
    },
    {
        "name": "posts",
        "type": "base",
        "fields": [
            {"name": "title", "type": "text"},
            {"name": "body", "type": "text"},
            {"name": "owner", "type": "relation", "collectionId": "users", "maxSelect": 1},
            {"name": "created", "type": "autodate", "onCreate": True},
            {"name": "updated", "type": "autodate", "onCreate": True, "onUpdate": True},
        ],
        "listRule": "",
        "viewRule": "",
        "createRule": "",
        "updateRule": "",
        "deleteRule": "",
    },
]


def default_schema() -> Schema:
    """The schema the standalone service uses when ``REALTIME_SCHEMA`` is unset."""
    return Schema.from_json(json.loads(json.dumps(DEFAULT_SCHEMA)))


def load_schema_file(path: str | Path) -> Schema:
    """Read and validate a collection-export JSON file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SchemaError(f"cannot read schema file {str(path)!r}: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise SchemaError(f"schema file {str(path)!r} is not valid JSON: {exc}") from None
    return Schema.from_json(data)
