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
    }
)
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

    @property
    def multiple(self) -> bool:
        return self.type in ("relation", "select") and self.max_select > 1


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

    def __init__(self, collections: Sequence[Collection]) -> None:
        self.collections: tuple[Collection, ...] = tuple(collections)
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
        raw = [_collection_from_json(item, n) for n, item in enumerate(data)]
        if with_superusers and not any(c.name == SUPERUSERS for c in raw):
            raw.append(_superusers())
        # Relations may name their target by name or id: resolve to ids.
        by_name = {c.name: c for c in raw}
        resolved = []
        for coll in raw:
            fields = tuple(
                replace(f, collection_id=by_name[f.collection_id].id)
                if f.type == "relation" and f.collection_id in by_name
                else f
                for f in coll.fields
            )
            resolved.append(replace(coll, fields=fields, _by_name={}))
        return cls(resolved)


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


def _field_from_json(item: object, coll: str, n: int) -> Field:
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
    low = _opt(item, "min", float, where, None)
    high = _opt(item, "max", float, where, None)
    if type_ in ("text", "password"):
        # PocketBase exports text/password lengths as 0 when unset ("no limit").
        low = low or None
        high = high or None
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
    )


def _rule(item: Mapping[str, object], key: str, where: str) -> str | None:
    value = item.get(key)
    if value is not None and not isinstance(value, str):
        raise SchemaError(f"{where}: {key} must be a string or null, got {value!r}")
    return value


def _collection_from_json(item: object, n: int) -> Collection:
    if not isinstance(item, Mapping):
        raise SchemaError(f"collection #{n}: must be an object")
    name = item.get("name")
    if not isinstance(name, str) or not name or not name.replace("_", "a").isalnum():
        raise SchemaError(f"collection #{n}: invalid name {name!r}")
    where = f"collection {name!r}"
    if name.lower() == META_TABLE or name.lower().startswith("sqlite_"):
        raise SchemaError(f"{where}: the name is reserved")
    type_ = item.get("type", BASE)
    if type_ not in (BASE, AUTH):
        raise SchemaError(f"{where}: type must be 'base' or 'auth', got {type_!r}")
    type_ = t.cast(str, type_)
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
        f = _field_from_json(raw, name, i)
        if f.name in system_names:
            continue  # exports repeat the system fields; ours win
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
