"""The click commands shared by ``python -m realtime_flask`` and ``flask realtime``.

Rules: a command prints what it did on stdout and, when it cannot, exactly one
line ``error: <message>`` on stderr, never a traceback.  Exit statuses:

* 0: done;
* 1: a runtime failure (the store refused the values, a missing extra);
* 2: bad input: a usage error (click's own status), a ``REALTIME_*`` setting
  or a schema file that does not load (what ``python wsgi.py`` answers too),
  a command this app cannot run.

``superuser upsert`` needs the standalone service's embedded record store; the
``flask realtime`` group (registered on ``app.cli`` by ``Realtime.init_app``)
finds it on the current app and says so in one line when the app has none.
``schema check`` reads only its file.

This module imports Flask only inside the functions that need it: ``python -m
realtime_flask serve`` imports it before monkey-patching, and nothing that
creates a lock (Flask's logging handler does) may load before the patch.
"""

from __future__ import annotations

import contextlib
import json
import typing as t
from collections.abc import Iterator
from collections.abc import Mapping
from pathlib import Path

import click

from realtime_flask.core.schema import ACTIONS
from realtime_flask.core.schema import Field
from realtime_flask.core.schema import Schema
from realtime_flask.core.schema import load_schema_file
from realtime_flask.errors import ConfigError
from realtime_flask.errors import RealtimeError

if t.TYPE_CHECKING:
    from flask.cli import AppGroup

    from realtime_flask.store.records import RecordStore

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_FAILED",
    "StoreOpener",
    "examples",
    "fail",
    "fail_start",
    "realtime_group",
    "schema_group",
    "schema_report",
    "superuser_group",
]

#: A runtime failure: the store refused the values, a missing extra.
EXIT_FAILED: t.Final[int] = 1
#: Bad input: usage, a setting or schema that does not load (click's usage status too).
EXIT_BAD_INPUT: t.Final[int] = 2

#: Opens the record store a command works on, closing what it opened on exit.
StoreOpener = t.Callable[[], t.ContextManager["RecordStore"]]


#: Collection keys of a PocketBase 0.40 export whose feature is not served here:
#: key -> what it is.  Listed by ``schema check`` when enabled.
def examples(*lines: str, title: str = "Examples:") -> str:
    """An epilog listing ``lines`` as they are (click does not rewrap them)."""
    return f"{title}\n\n\b\n" + "\n".join(f"  {line}" for line in lines)


def fail(exc: RealtimeError | str, status: int) -> t.NoReturn:
    """Print ``error: <message>`` as one line on stderr and exit with ``status``."""
    message = exc if isinstance(exc, str) else exc.message
    click.echo(f"error: {' '.join(message.splitlines())}", err=True)  # one line
    raise click.exceptions.Exit(status)


def fail_start(exc: RealtimeError) -> t.NoReturn:
    """Stop for an error raised while building the app: a bad setting or schema is
    bad input (status 2, as ``python wsgi.py``), anything else a runtime failure."""
    fail(exc, EXIT_BAD_INPUT if isinstance(exc, ConfigError) else EXIT_FAILED)


# -- superuser ------------------------------------------------------------------


def superuser_group(open_store: StoreOpener, prog: str) -> click.Group:
    """``superuser upsert EMAIL PASSWORD`` on the store ``open_store`` yields;
    ``prog`` starts the examples of the help texts."""
    example = examples(f"{prog} superuser upsert admin@example.com 'a-long-password'")

    @click.group(
        "superuser",
        short_help="Manage superusers of the embedded record store.",
        epilog=example,
    )
    def group() -> None:
        """Manage superusers (the _superusers collection) of the embedded record store.

        Same meaning as PocketBase's `superuser` command.
        """

    @group.command(
        "upsert",
        short_help="Create a superuser, or set the password of an existing one.",
        epilog=example,
    )
    @click.argument("email")
    @click.argument("password")
    def upsert(email: str, password: str) -> None:
        """Create the superuser EMAIL with PASSWORD, or set the password of an
        existing one (PocketBase's `superuser upsert`).

        The password needs at least 8 characters.  Exit status 1 when the store
        refuses the values, 2 when the settings or schema do not load.
        """
        with open_store() as store:
            try:
                _, created = store.upsert_superuser(email, password)
            except RealtimeError as exc:
                details = "; ".join(f"{k}: {v.get('message', v)}" for k, v in exc.data.items())
                fail(f"{exc.message} {details}".strip(), EXIT_FAILED)
        click.echo(f"Successfully {'created' if created else 'updated'} superuser {email!r}!")

    return group


# -- schema ---------------------------------------------------------------------


def _rule_text(rule: str | None) -> str:
    if rule is None:
        return "null (superusers only)"
    if rule == "":
        return '"" (everyone)'
    return rule


def _field_text(schema: Schema, f: Field) -> str:
    if f.type == "relation":
        target = schema.get(f.collection_id)
        return f"{f.name} (relation to {target.name if target else f.collection_id})"
    return f"{f.name} ({f.type})"


def schema_report(schema: Schema, names: t.Collection[str]) -> list[str]:
    """What loads: one block per collection of the file (``names``): type, id,
    fields with their types, the five rules; collections the loader adds (the
    ``_superusers`` auth collection) as one line."""
    own = [c for c in schema if c.name in names]
    lines = [f"{len(own)} collection(s) load:"]
    for coll in own:
        fields = [f for f in coll.fields if not f.system]
        system = len(coll.fields) - len(fields)
        lines.append(
            f"  {coll.name} ({coll.type}, id {coll.id}): {len(fields)} field(s)"
            f" + {system} system field(s)"
        )
        if fields:
            lines.append("    fields: " + ", ".join(_field_text(schema, f) for f in fields))
        for action in ACTIONS:
            lines.append(f"    {action + 'Rule:':<12}{_rule_text(coll.rule(action))}")
    added = [c.name for c in schema if c.name not in names]
    if added:
        lines.append(
            f"Added, not in the file: {', '.join(added)} (PocketBase's built-in superusers)"
        )
    return lines


def schema_group(prog: str) -> click.Group:
    """``schema check FILE``; ``prog`` starts the examples of the help texts."""

    @click.group(
        "schema",
        short_help="Check a PocketBase collections export.",
        epilog=examples(f"{prog} schema check pb_schema.json"),
    )
    def group() -> None:
        """Work with collection schemas in PocketBase's export shape (the JSON
        array the dashboard's "Export collections" gives, what REALTIME_SCHEMA
        names)."""

    @group.command(
        "check",
        short_help="Load a collections export; print what loads and what is ignored.",
        epilog=examples(
            f"{prog} schema check pb_schema.json",
            f"{prog} schema check pb_schema.json && REALTIME_SCHEMA=pb_schema.json python wsgi.py",
        ),
    )
    @click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
    def check(file: Path) -> None:
        """Load FILE as the standalone service would (REALTIME_SCHEMA=FILE) and
        print its collections (type, id, fields, rules), then what it holds that
        is accepted but not served (OAuth2, OTP, MFA, e-mail templates, indexes).

        A file that does not load prints one line naming the collection and the
        field on stderr and exits with status 2.  Nothing is written.
        """
        try:
            schema = load_schema_file(file)
        except ConfigError as exc:
            fail(exc, EXIT_BAD_INPUT)
        data = json.loads(file.read_text(encoding="utf-8"))
        names = {str(c.get("name")) for c in data if isinstance(c, Mapping)}
        click.echo(f"{file}: loads.")
        for line in schema_report(schema, names):
            click.echo(line)
        ignored = [f"  {line}" for line in schema.unsupported]  # what start-up logs, too
        click.echo("Accepted but not supported (ignored):" if ignored else "Nothing is ignored.")
        for line in ignored:
            click.echo(line)

    return group


# -- flask realtime ---------------------------------------------------------------


@contextlib.contextmanager
def _app_store() -> Iterator[RecordStore]:
    """The current app's embedded record store (the app owns it: not closed here)."""
    from flask import current_app

    from realtime_flask.web.api.records import STORE_KEY

    store = current_app.extensions.get(STORE_KEY)
    if store is None:
        fail(
            "this app has no embedded record store (it uses the Realtime extension only, "
            "its users live in its own database); superusers belong to the standalone "
            "service: flask --app realtime_flask.web.app:create_app realtime superuser ...",
            EXIT_BAD_INPUT,
        )
    yield t.cast("RecordStore", store)


_GROUP_HELP = """realtime_flask commands for this app.

\b
superuser upsert   needs the embedded record store, so only the standalone
                   service has it (--app realtime_flask.web.app:create_app, or
                   wsgi:app); an app using only the Realtime extension keeps
                   its users in its own database and stops with status 2.
schema check       reads only its FILE: works with any app.

There is no `flask realtime serve`: flask imports the app before anything could
monkey-patch, and realtime streams need gevent's patched sockets to scale.
Serve with `gunicorn -k gevent 'yourapp:create_app()'` (plus the hooks of
realtime_flask.server.gunicorn_hooks), or the standalone service with
`python -m realtime_flask serve`. `flask run` (threads) is fine for a try-out.
"""


FLASK_PROG: t.Final[str] = "flask --app yourapp realtime"


def realtime_group() -> AppGroup:
    """The ``flask realtime`` click group ``Realtime.init_app`` adds to ``app.cli``."""
    from flask.cli import AppGroup

    group = AppGroup(
        "realtime",
        help=_GROUP_HELP,
        short_help="realtime_flask: superusers of the embedded store, schema checks.",
        epilog=examples(
            "flask --app realtime_flask.web.app:create_app realtime superuser upsert \\",
            "    admin@example.com 'a-long-password'",
            "flask --app yourapp realtime schema check pb_schema.json",
        ),
    )
    group.add_command(superuser_group(_app_store, FLASK_PROG))
    group.add_command(schema_group(FLASK_PROG))
    return group
