"""Field validation of a write: a request body in, the column values to store out.

PocketBase's record validation, for the field types of ``core.schema``: each
bad field gets one ``{"code", "message"[, "params"]}`` entry under its name in
a ``ValidationFailed`` (400) whose message is ``"Failed to create record."`` or
``"Failed to update record."``.

Rules:

1. Every field is checked and every bad field reported at once, with one
   exception taken from PocketBase: an auth record's password pair
   (``password``, ``passwordConfirm``, ``oldPassword``) is checked first, and
   when it is bad only its errors are reported.
2. Values are coerced the way PocketBase's form binding does (``"5"`` to 5 for
   a number, ``"on"`` to True for a bool, a scalar to a one-item list for a
   multi-valued field...); what cannot be coerced is ``validation_invalid_value``.
3. Only fields the body names are written on update; on create every field
   gets a value (the body's, or the field's empty value, a new id, ``now``
   for autodates).  Constraints (required, min/max, pattern, email/url shape)
   apply to the value the record will hold.
4. A non-superuser may not set ``verified`` on create, nor change ``email`` or
   ``verified`` on update (``validation_values_mismatch``); changing a password
   takes the old one unless the caller is a superuser.
5. What needs the database (related records exist, an email is free) is asked
   through the callables given; the password is hashed here, before the
   caller takes its write lock, and a new ``tokenKey`` comes with it (which
   revokes the record's earlier tokens).
6. Nothing here writes.  A unique index can still catch a racing writer after
   validation: ``not_unique`` turns that into the same field error.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import secrets
import sqlite3
import typing as t
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence

from realtime_flask.core.rules import RequestContext
from realtime_flask.core.schema import Collection
from realtime_flask.core.schema import Field
from realtime_flask.errors import ErrorData
from realtime_flask.errors import ValidationFailed
from realtime_flask.store.auth import Passwords
from realtime_flask.store.auth import new_token_key
from realtime_flask.store.files import Upload
from realtime_flask.store.files import mime_matches
from realtime_flask.store.files import safe_name
from realtime_flask.store.sql import Record
from realtime_flask.store.sql import empty

__all__ = [
    "ID_ALPHABET",
    "ID_LENGTH",
    "MISMATCH",
    "REQUIRED",
    "EmailTaken",
    "RelationLookup",
    "format_datetime",
    "new_record_id",
    "not_unique",
    "validate_write",
]

ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
ID_LENGTH = 15
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_URL = re.compile(r"^https?://[^\s/$.?#].[^\s]*$", re.IGNORECASE)

#: (collection id, ids) -> the stored records among ``ids`` (unknown ids skipped).
RelationLookup = Callable[[str, Sequence[str]], list[Record]]
#: (auth collection, email, id of the record being written or "") -> does another record have it?
EmailTaken = Callable[[Collection, str, str], bool]


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
    """PocketBase's datetime text: UTC, milliseconds, a space, ``Z``.

    ``2024-01-02 03:04:05.678Z``; an aware ``moment`` is converted to UTC, a
    naive one is taken as local time (``astimezone``).
    """
    moment = moment.astimezone(dt.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def now_text() -> str:
    """The current time as the store writes datetimes (PocketBase's format, UTC)."""
    return format_datetime(dt.datetime.now(dt.UTC))


def _err(code: str, message: str, **params: object) -> ErrorData:
    out: ErrorData = {"code": code, "message": message}
    if params:
        out["params"] = params
    return out


REQUIRED = _err("validation_required", "Cannot be blank.")
MISMATCH = _err("validation_values_mismatch", "Values don't match.")


def not_unique(message: str, coll: Collection, exc: sqlite3.IntegrityError) -> ValidationFailed:
    """A unique-index violation (two writers raced past validation) as a field error.

    The field is ``email`` when the auth collection's email index fired, else ``id``.
    """
    field = "email" if coll.is_auth and f"{coll.name}.email" in str(exc) else "id"
    return ValidationFailed(
        message, {field: _err("validation_not_unique", "Value must be unique.")}
    )


def validate_write(
    coll: Collection,
    body: Mapping[str, object],
    ctx: RequestContext,
    *,
    existing: Record | None,
    passwords: Passwords,
    lookup: RelationLookup,
    email_taken: EmailTaken,
) -> Record:
    """The column values to write (decoded form: field name -> value).

    :param existing: the stored record for an update, None for a create.
    :param passwords: hashes a new password and verifies ``oldPassword``.
    :param lookup: finds related records, to check that relation ids exist.
    :param email_taken: whether another record of ``coll`` holds an email.
    :raises ValidationFailed: naming every bad field (rule 1).
    """
    creating = existing is None
    message = "Failed to create record." if creating else "Failed to update record."
    errors: ErrorData = {}
    values: Record = {}
    now = now_text()

    if coll.is_auth:
        _validate_password(body, ctx, existing, values, passwords, message)

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
            problem = _check_text(f, raw_id)
            if problem:
                errors["id"] = problem
            else:
                values["id"] = raw_id
            continue
        if f.type == "file":
            outcome = _file_value(f, body, existing)
            if outcome is None and not creating:
                continue
            value, problem = outcome or ("" if not f.multiple else [], None)
            if problem is None:
                problem = _check_files(f, value, existing)
            if problem:
                errors[f.name] = problem
            else:
                values[f.name] = value
            continue
        if f.name in body:
            if coll.is_auth and f.name in ("email", "verified"):
                if not creating and not ctx.superuser and body[f.name] != existing[f.name]:  # type: ignore[index]
                    errors[f.name] = MISMATCH
                    continue
                if creating and f.name == "verified" and not ctx.superuser and body[f.name]:
                    errors[f.name] = MISMATCH
                    continue
            value, problem = _coerce(f, body[f.name])
            if problem:
                errors[f.name] = problem
                continue
            values[f.name] = value
        elif creating:
            values[f.name] = empty(f)
        if f.name in values or creating:
            final = values.get(f.name, existing.get(f.name) if existing else None)
            problem = _check_constraints(f, final)
            if problem and f.name not in errors:
                errors[f.name] = problem

    for f in coll.fields:
        if f.type == "relation" and f.name in values and f.name not in errors:
            ids = values[f.name] if f.multiple else ([values[f.name]] if values[f.name] else [])
            if ids and len(lookup(f.collection_id, ids)) != len(set(ids)):
                errors[f.name] = _err(
                    "validation_missing_rel_records",
                    "Failed to find all relation records with the provided ids.",
                )
    if (
        coll.is_auth
        and "email" in values
        and "email" not in errors
        and values["email"]
        and email_taken(coll, values["email"], (existing or {}).get("id", ""))
    ):
        errors["email"] = _err("validation_not_unique", "Value must be unique.")
    if errors:
        raise ValidationFailed(message, errors)
    return values


def _validate_password(
    body: Mapping[str, object],
    ctx: RequestContext,
    existing: Record | None,
    values: Record,
    passwords: Passwords,
    message: str,
) -> None:
    """Check the password pair (rule 1); when a password is set, hash it into ``values``."""
    creating = existing is None
    errors: ErrorData = {}
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
            elif not isinstance(old, str) or not passwords.verify(
                old,
                t.cast(str, existing["password"]),  # type: ignore[index]
            ):
                errors["oldPassword"] = _err(
                    "validation_invalid_old_password", "Missing or invalid old password."
                )
        if errors:
            # PocketBase checks the password pair first and stops there.
            raise ValidationFailed(message, errors)
        values["password"] = passwords.hash(t.cast(str, password))
        values["tokenKey"] = new_token_key()


def _geo_point(value: object) -> tuple[object, ErrorData | None]:
    """A geoPoint value ``{"lon", "lat"}`` (an object, or its JSON text in a form);
    empty (None, ``""``) is ``{"lon": 0, "lat": 0}``, PocketBase's zero value."""
    if value is None or value == "":
        return {"lon": 0, "lat": 0}, None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            value = None
    invalid = _err("validation_invalid_value", "Invalid value.")
    if not isinstance(value, Mapping):
        return None, invalid
    point: dict[str, float | int] = {}
    for key in ("lon", "lat"):
        number = value.get(key, 0)
        if isinstance(number, bool) or not isinstance(number, int | float):
            return None, invalid
        if not math.isfinite(number):
            return None, invalid
        point[key] = number
    return point, None


def _coerce(f: Field, value: object) -> tuple[object, ErrorData | None]:
    """``value`` as field ``f`` holds it (rule 2), or (None, the error)."""
    invalid = _err("validation_invalid_value", "Invalid value.")
    if f.type == "geoPoint":
        return _geo_point(value)
    if f.type in ("text", "editor", "email", "url", "date", "autodate", "password"):
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


def _file_items(value: object) -> list[object] | None:
    """A file field's body value as a list of names and uploads; None if not one."""
    if value is None or value == "":
        return []
    items = value if isinstance(value, list) else [value]
    if not all(isinstance(i, str | Upload) for i in items):
        return None
    return [i for i in items if i != ""]


def _file_name(item: object) -> str:
    return item.name if isinstance(item, Upload) else t.cast(str, item)


def _file_value(
    f: Field, body: Mapping[str, object], existing: Record | None
) -> tuple[object, ErrorData | None] | None:
    """The files field ``f`` will hold: names (``str``) and new uploads (``Upload``).

    PocketBase's setters, in its order: ``f`` replaces the stored list, ``+f``
    prepends, ``f+`` appends, ``f-`` removes names.  Duplicates keep their first
    place; a single file field keeps the last item.  None when the body names
    none of the keys.
    """
    keys = (f.name, "+" + f.name, f.name + "+", f.name + "-")
    if not any(k in body for k in keys):
        return None
    old = (existing or {}).get(f.name)
    current = list(old) if isinstance(old, list) else ([old] if old else [])
    for key in keys:
        if key not in body:
            continue
        items = _file_items(body[key])
        if items is None:
            return None, _err("validation_invalid_value", "Invalid value.")
        if key == f.name:
            current = items
        elif key.startswith("+"):
            current = items + current
        elif key.endswith("+"):
            current = current + items
        else:
            gone = {_file_name(i) for i in items}
            current = [i for i in current if _file_name(i) not in gone]
    seen: set[str] = set()
    unique = []
    for item in current:
        name = _file_name(item)
        if name not in seen:
            seen.add(name)
            unique.append(item)
    if f.multiple:
        return unique, None
    return (unique[-1] if unique else ""), None


def _check_files(f: Field, value: object, existing: Record | None) -> ErrorData | None:
    """PocketBase's file checks on the value the field will hold (first failure only)."""
    items = value if isinstance(value, list) else ([value] if value else [])
    if not items:
        return REQUIRED if f.required else None
    old = (existing or {}).get(f.name)
    stored = set(old) if isinstance(old, list) else ({old} if old else set())
    invalid = [i[:250] for i in items if isinstance(i, str) and i not in stored]
    if invalid:
        return _err(
            "validation_invalid_file",
            f"Invalid new files: [{' '.join(invalid)}].",
            invalidFiles=invalid,
        )
    limit = f.max_select if f.multiple else 1
    if len(items) > limit:
        return _err(
            "validation_too_many_files",
            f"The maximum allowed files is {limit}",
            maxSelect=limit,
        )
    for upload in items:
        if not isinstance(upload, Upload):
            continue
        if not safe_name(upload.name):
            return _err("validation_match_invalid", "must be in a valid format")
        if upload.size > f.file_max_size:
            return _err(
                "validation_file_size_limit",
                f"Failed to upload {upload.original_name[:300]} - the maximum allowed "
                f"file size is {f.file_max_size} bytes.",
                file=upload.original_name[:300],
                maxSize=f.file_max_size,
            )
        if f.mime_types and not mime_matches(upload.mime, f.mime_types):
            return _err(
                "validation_invalid_mime_type",
                f"{json.dumps(upload.name)} mime type must be one of: {', '.join(f.mime_types)}.",
            )
    return None


def _check_text(f: Field, value: object) -> ErrorData | None:
    """Length (in code points) and pattern of a text value."""
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


def _check_constraints(f: Field, value: object) -> ErrorData | None:
    """The field's constraints on the value the record will hold (rule 3)."""
    if f.type == "geoPoint":
        point = t.cast(dict[str, float], value)
        if point.get("lon", 0) == 0 and point.get("lat", 0) == 0:
            return REQUIRED if f.required else None
        if not -90 <= point["lat"] <= 90:
            return _err(
                "validation_invalid_latitude", "Latitude must be between -90 and 90 degrees."
            )
        if not -180 <= point["lon"] <= 180:
            return _err(
                "validation_invalid_longitude", "Longitude must be between -180 and 180 degrees."
            )
        return None
    blank = value in (None, "", 0, False, []) or value == {}
    if f.required and blank:
        return REQUIRED
    if blank:
        return None
    if f.type in ("text", "editor"):
        return _check_text(f, value)
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
