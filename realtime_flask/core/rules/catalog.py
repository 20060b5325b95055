"""What the compiler knows about collections: the catalog names are resolved against.

Three protocols, read-only, satisfied structurally by ``core.schema``'s
``Field``, ``Collection`` and ``Schema``.  The rules package never imports
``core.schema``: the schema compiles its rules when it is built (and reports a
bad one as a ``SchemaError``), so it is the schema that imports this package,
and imports point one way.
"""

from __future__ import annotations

import typing as t

__all__ = ["Catalog", "CatalogCollection", "CatalogField"]


class CatalogField(t.Protocol):
    """A field: its name, PocketBase type (``text``, ``number``, ``relation``...) and options."""

    @property
    def name(self) -> str: ...

    @property
    def type(self) -> str: ...

    @property
    def hidden(self) -> bool:
        """Refused in client filters."""
        ...

    @property
    def multiple(self) -> bool:
        """A select or relation holding a list (``maxSelect > 1``)."""
        ...

    @property
    def collection_id(self) -> str:
        """A relation's target collection id (``""`` for other types)."""
        ...


class CatalogCollection(t.Protocol):
    """A collection: the table a rule runs over."""

    @property
    def id(self) -> str: ...

    @property
    def name(self) -> str:
        """Also the name of its SQLite table."""
        ...

    @property
    def is_auth(self) -> bool:
        """An auth collection: its ``email`` obeys ``emailVisibility`` in client filters."""
        ...

    def field(self, name: str) -> CatalogField | None:
        """The field called ``name`` (case-sensitive), or None."""
        ...


class Catalog(t.Protocol):
    """Every collection, for relation hops."""

    def get(self, name_or_id: str) -> CatalogCollection | None:
        """The collection with this name or id, or None."""
        ...
