"""What a request brings to a rule: ``@request.*``, ``@now``, and related records.

:class:`RequestContext` is read when a compiled rule is lowered (once per
context object); :data:`RelationLookup` is how the in-Python evaluation
follows relations, injected by the store.
"""

from __future__ import annotations

import typing as t
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field as dc_field

__all__ = ["GUEST", "RelationLookup", "RequestContext"]


@dataclass(frozen=True, slots=True)
class RequestContext:
    """What ``@request.*`` and ``@now`` see.

    ``auth`` is the requester's auth record (stored values plus ``id``,
    ``collectionId``, ``collectionName``), None for guests.  ``headers`` names are
    snake_cased lower-case (``X-Flag`` -> ``x_flag``).  ``now`` is UTC text
    ``YYYY-MM-DD HH:MM:SS.mmmZ``; None means the current time.
    """

    auth: Mapping[str, object] | None
    body: Mapping[str, object] = dc_field(default_factory=dict)
    headers: Mapping[str, str] = dc_field(default_factory=dict)
    query: Mapping[str, str] = dc_field(default_factory=dict)
    method: str = "GET"
    context: str = "default"
    now: str | None = None
    superuser: bool = False


#: The context of an anonymous request.
GUEST: t.Final = RequestContext(auth=None)

#: ``(collection_id, record_ids) -> stored records``, injected by the store.
RelationLookup: t.TypeAlias = Callable[[str, Sequence[str]], Sequence[Mapping[str, object]]]
