"""``python -m realtime_flask`` and ``flask realtime``: every command run as a real
subprocess (help texts, superuser upsert, schema check, serve's refusals)."""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from realtime_flask.core.rules import RequestContext
from realtime_flask.core.schema import default_schema
from realtime_flask.server.workers import GUNICORN_SETTINGS
from realtime_flask.store.auth import Passwords
from realtime_flask.store.records import RecordStore
from tests.support.env import REPO_ROOT
from tests.support.env import SCHEMA_FIXTURE

ROOT = REPO_ROOT
SU = RequestContext(auth=None, superuser=True)


def run(*args: str, data_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("REALTIME_")}
    return subprocess.run(
        [sys.executable, "-m", "realtime_flask", *args],
        cwd=ROOT,
        env={**clean, "REALTIME_DATA_DIR": str(data_dir), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def can_log_in(data_dir: Path, email: str, password: str) -> bool:
    """Whether the store opened on ``data_dir`` accepts these superuser credentials."""
    store = RecordStore(default_schema(), data_dir / "data.db", passwords=Passwords(n=2**4))
    try:
        return store.auth_with_password("_superusers", email, password) is not None
    finally:
        store.close()


def test_superuser_upsert_creates_then_updates(tmp_path: Path) -> None:
    created = run("superuser", "upsert", "root@example.com", "firstpass123", data_dir=tmp_path)
    assert created.returncode == 0, created.stderr
    assert created.stdout == "Successfully created superuser 'root@example.com'!\n"
    assert created.stderr == ""
    assert (tmp_path / "data.db").exists()
    assert can_log_in(tmp_path, "root@example.com", "firstpass123")

    updated = run("superuser", "upsert", "root@example.com", "secondpass456", data_dir=tmp_path)
    assert updated.returncode == 0, updated.stderr
    assert updated.stdout == "Successfully updated superuser 'root@example.com'!\n"
    assert can_log_in(tmp_path, "root@example.com", "secondpass456")
    assert not can_log_in(tmp_path, "root@example.com", "firstpass123")

    store = RecordStore(default_schema(), tmp_path / "data.db", passwords=Passwords(n=2**4))
    try:
        result = store.list_records("_superusers", SU)
        assert [r["email"] for r in result.items] == ["root@example.com"]
    finally:
        store.close()


@pytest.mark.parametrize(
    ("email", "password", "expected"),
    [
        ("root@example.com", "short", "password: Must be at least 8 character(s)."),
        ("not-an-email", "longenough123", "email: Must be a valid email address."),
    ],
)
def test_superuser_upsert_rejects_bad_input(
    tmp_path: Path, email: str, password: str, expected: str
) -> None:
    result = run("superuser", "upsert", email, password, data_dir=tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error: Failed to create record.")
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_a_bad_schema_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    result = run(
        "superuser",
        "upsert",
        "root@example.com",
        "longenough123",
        data_dir=tmp_path,
        REALTIME_SCHEMA=str(missing),
    )
    # Status 2, as `python wsgi.py` answers a schema that does not load (it was 1).
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"error: cannot read schema file {str(missing)!r}")
    assert "Traceback" not in result.stderr


HELP_COMMANDS = [
    [],
    ["serve"],
    ["superuser"],
    ["superuser", "upsert"],
    ["schema"],
    ["schema", "check"],
]


@pytest.mark.parametrize("command", HELP_COMMANDS, ids=lambda c: " ".join(c) or "top")
def test_help_of_every_command(tmp_path: Path, command: list[str]) -> None:
    result = run(*command, "--help", data_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    head = " ".join(["python -m realtime_flask", *command])
    assert result.stdout.startswith(f"Usage: {head} "), result.stdout
    assert "Examples:" in result.stdout or "Example:" in result.stdout
    # Every example of the epilog is a whole command line of this program.
    epilog = result.stdout.split("Example", 1)[1].splitlines()[1:]
    examples = [line.strip() for line in epilog if line.startswith("    ")]
    assert examples and all("python -m realtime_flask " in line for line in examples)
    assert not (tmp_path / "data.db").exists()


def test_top_level_help_lists_every_command_with_a_summary(tmp_path: Path) -> None:
    result = run("--help", data_dir=tmp_path)
    commands = result.stdout.split("Commands:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    summaries = dict(line.split(None, 1) for line in commands)
    assert sorted(summaries) == ["schema", "serve", "superuser"]
    assert all(len(text) > 20 for text in summaries.values()), summaries


def test_serve_help_names_its_options(tmp_path: Path) -> None:
    result = run("serve", "--help", data_dir=tmp_path)
    for option in ("--host", "--port", "--workers"):
        assert option in result.stdout
    assert "REALTIME_REDIS_URL" in result.stdout


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    result = run("superuser", data_dir=tmp_path)
    assert result.returncode == 2 and "Usage:" in result.stderr
    result = run("superuser", "upsert", "only-an-email", data_dir=tmp_path)
    assert result.returncode == 2 and "Missing argument 'PASSWORD'" in result.stderr
    result = run("serve", "--workers", "0", data_dir=tmp_path)
    assert result.returncode == 2 and "--workers" in result.stderr
    result = run("nope", data_dir=tmp_path)
    assert result.returncode == 2 and "No such command 'nope'" in result.stderr
    assert not (tmp_path / "data.db").exists()


# -- schema check -------------------------------------------------------------------

#: A PocketBase 0.40 export's shape: an auth collection with the keys PocketBase
#: writes (OAuth2 enabled here, templates, indexes), a base collection relating to it.
EXPORT: list[dict[str, object]] = [
    {
        "id": "_pb_users_auth_",
        "name": "users",
        "type": "auth",
        "system": False,
        "fields": [
            {"name": "id", "type": "text", "system": True, "primaryKey": True},
            {"name": "email", "type": "email", "system": True},
            {"name": "name", "type": "text", "max": 255},
        ],
        "indexes": ["CREATE UNIQUE INDEX `idx_email` ON `users` (`email`)"],
        "listRule": "id = @request.auth.id",
        "viewRule": "id = @request.auth.id",
        "createRule": "",
        "updateRule": "id = @request.auth.id",
        "deleteRule": None,
        "authRule": "",
        "manageRule": None,
        "oauth2": {"enabled": True, "providers": [], "mappedFields": {}},
        "otp": {"enabled": False, "duration": 180, "length": 8},
        "mfa": {"enabled": False, "duration": 600, "rule": ""},
        "authAlert": {"enabled": True, "emailTemplate": {"subject": "s", "body": "b"}},
        "verificationTemplate": {"subject": "s", "body": "b"},
        "resetPasswordTemplate": {"subject": "s", "body": "b"},
        "confirmEmailChangeTemplate": {"subject": "s", "body": "b"},
        "passwordAuth": {"enabled": True, "identityFields": ["email", "username"]},
    },
    {
        "id": "pbc_111",
        "name": "tasks",
        "type": "base",
        "fields": [
            {"name": "title", "type": "text", "required": True},
            {"name": "owner", "type": "relation", "collectionId": "_pb_users_auth_"},
        ],
        "indexes": [],
        "listRule": "owner = @request.auth.id",
        "viewRule": "owner = @request.auth.id",
        "createRule": '@request.auth.id != ""',
        "updateRule": None,
        "deleteRule": None,
    },
]


def check(path: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return run("schema", "check", str(path), data_dir=tmp_path / "data")


def test_schema_check_lists_what_loads_and_what_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "pb_schema.json"
    path.write_text(json.dumps(EXPORT))
    result = check(path, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    out = result.stdout.splitlines()
    assert out[0] == f"{path}: loads."
    assert out[1] == "2 collection(s) load:"
    assert "  users (auth, id _pb_users_auth_): 1 field(s) + 6 system field(s)" in out
    assert "    fields: name (text)" in out
    assert "    listRule:   id = @request.auth.id" in out
    assert '    createRule: "" (everyone)' in out
    assert "    deleteRule: null (superusers only)" in out
    assert "  tasks (base, id pbc_111): 2 field(s) + 1 system field(s)" in out
    assert "    fields: title (text), owner (relation to users)" in out
    assert "Added, not in the file: _superusers (PocketBase's built-in superusers)" in out
    ignored = out[out.index("Accepted but not supported (ignored):") + 1 :]
    # The same list start-up logs once (Schema.unsupported): one line per collection.
    assert ignored == [
        "  users: oauth2, authAlert, passwordAuth (only email and password sign-in), "
        "email templates (no e-mail is sent), indexes"
    ]
    assert not (tmp_path / "data").exists()  # nothing written


def test_schema_check_of_the_fixture_ignores_nothing(tmp_path: Path) -> None:
    result = check(SCHEMA_FIXTURE, tmp_path)
    assert result.returncode == 0, result.stderr
    names = [json.loads(SCHEMA_FIXTURE.read_text())[i]["name"] for i in (0, -1)]
    assert all(f"  {name} (" in result.stdout for name in names)
    assert result.stdout.endswith("Nothing is ignored.\n")


BAD_FILES = {
    "unknown-type": (
        [{"name": "posts", "fields": [{"name": "x", "type": "nope"}]}],
        ["'posts'", "'x'", "unknown type 'nope'"],
    ),
    "relation-to-nowhere": (
        [{"name": "posts", "fields": [{"name": "owner", "type": "relation", "collectionId": "z"}]}],
        ["'posts'", "'owner'", "missing collection 'z'"],
    ),
    "bad-rule": (
        [{"name": "posts", "fields": [], "listRule": "title ="}],
        ["'posts'", "listRule"],
    ),
    "not-json": ("{not json", ["is not valid JSON"]),
    "not-a-list": ({"name": "posts"}, ["must be a JSON array"]),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_schema_check_of_a_bad_file_is_one_line_and_status_2(tmp_path: Path, case: str) -> None:
    content, expected = BAD_FILES[case]
    path = tmp_path / "bad.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    result = check(path, tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and result.stderr.endswith("\n"), result.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in result.stderr
    for text in expected:
        assert text in lines[0], lines[0]


def test_schema_check_of_a_missing_file_is_one_line_and_status_2(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    result = check(missing, tmp_path)
    assert result.returncode == 2
    assert (
        result.stderr
        == f"error: cannot read schema file {str(missing)!r}: No such file or directory\n"
    )


# -- flask realtime ---------------------------------------------------------------------


def flask(app: str, *args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    return run_argv([FLASK, "--app", app, "realtime", *args], data_dir)


def run_argv(argv: list[str], data_dir: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("REALTIME_", "FLASK_"))}
    return subprocess.run(
        argv,
        cwd=ROOT,
        env={**clean, "REALTIME_DATA_DIR": str(data_dir)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


#: The venv's own ``flask`` script, as a user runs it.
FLASK = str(Path(sys.executable).parent / "flask")
EXTENSION_APP = "examples/extension_app.py"
STANDALONE_APP = "realtime_flask.web.app:create_app"


@pytest.mark.parametrize("app", [EXTENSION_APP, STANDALONE_APP])
def test_flask_realtime_help(tmp_path: Path, app: str) -> None:
    result = flask(app, "--help", data_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: flask realtime [OPTIONS] COMMAND")
    commands = result.stdout.split("Commands:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert sorted(line.split()[0] for line in commands) == ["schema", "superuser"]
    # The help says which commands need the embedded store, and why there is no serve.
    assert "needs the embedded record store" in result.stdout
    assert "There is no `flask realtime serve`" in result.stdout
    for command in (["superuser", "upsert"], ["schema", "check"]):
        sub = flask(app, *command, "--help", data_dir=tmp_path)
        assert sub.returncode == 0, sub.stderr
        assert sub.stdout.startswith(f"Usage: flask realtime {' '.join(command)} [OPTIONS]")
        assert "flask --app yourapp realtime " + " ".join(command) in sub.stdout


def test_flask_lists_the_realtime_group(tmp_path: Path) -> None:
    result = run_argv([FLASK, "--app", EXTENSION_APP, "--help"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "  realtime  realtime_flask: superusers of the embedded store" in result.stdout


def test_flask_realtime_superuser_upsert_on_the_standalone_app(tmp_path: Path) -> None:
    result = flask(
        STANDALONE_APP, "superuser", "upsert", "a@example.com", "longpass123", data_dir=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Successfully created superuser 'a@example.com'!\n"
    assert can_log_in(tmp_path, "a@example.com", "longpass123")


def test_flask_realtime_superuser_upsert_without_a_store_is_one_line_and_status_2(
    tmp_path: Path,
) -> None:
    result = flask(
        EXTENSION_APP, "superuser", "upsert", "a@example.com", "longpass123", data_dir=tmp_path
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: this app has no embedded record store")


def test_flask_realtime_schema_check(tmp_path: Path) -> None:
    good = flask(EXTENSION_APP, "schema", "check", str(SCHEMA_FIXTURE), data_dir=tmp_path)
    assert good.returncode == 0 and "  posts (base, id " in good.stdout, good.stderr
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(BAD_FILES["unknown-type"][0]))
    result = flask(EXTENSION_APP, "schema", "check", str(bad), data_dir=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "'posts', field 'x'" in result.stderr


# -- serve --------------------------------------------------------------------------------


def test_serve_with_several_workers_needs_redis(tmp_path: Path) -> None:
    result = run("serve", "--workers", "2", "--port", "1", data_dir=tmp_path)
    assert result.returncode == 2
    assert result.stderr == (
        "error: --workers 2 needs REALTIME_REDIS_URL: with the in-process broker an event "
        "reaches only the clients of the worker that published it\n"
    )


def test_serve_with_several_workers_needs_a_data_dir_on_disk(tmp_path: Path) -> None:
    result = run(
        "serve",
        "-w",
        "3",
        data_dir=tmp_path,
        REALTIME_DATA_DIR=":memory:",
        REALTIME_REDIS_URL="redis://127.0.0.1:1/0",
    )
    assert result.returncode == 2
    assert result.stderr == "error: --workers 3 needs REALTIME_DATA_DIR on disk, not :memory:\n"


def test_serve_with_several_workers_checks_the_schema_first(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(BAD_FILES["unknown-type"][0]))
    result = run(
        "serve",
        "-w",
        "2",
        data_dir=tmp_path,
        REALTIME_SCHEMA=str(bad),
        REALTIME_REDIS_URL="redis://x",
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "'posts', field 'x'" in result.stderr


def test_gunicorn_settings_are_those_of_gunicorn_conf_py() -> None:
    conf = runpy.run_path(str(REPO_ROOT / "gunicorn.conf.py"))
    from realtime_flask.server import gunicorn_hooks

    assert {k: conf[k] for k in GUNICORN_SETTINGS} == dict(GUNICORN_SETTINGS)
    hooks = {k: v for k, v in conf.items() if callable(v) and k in gunicorn_hooks.HOOKS}
    assert hooks == dict(gunicorn_hooks.HOOKS), "a hook serve --workers N would not set"
    named = {
        k
        for k, v in conf.items()
        if callable(v) and getattr(v, "__module__", "") == gunicorn_hooks.__name__
    }
    assert named == set(gunicorn_hooks.HOOKS), "a hook of gunicorn.conf.py missing from HOOKS"
    settings = {k: v for k, v in conf.items() if not k.startswith("_") and not callable(v)}
    assert settings == dict(GUNICORN_SETTINGS), "a gunicorn.conf.py setting serve does not use"


def test_the_command_line_loads_no_framework_before_serve_patches() -> None:
    # `serve` monkey-patches first; Flask (its logging handler takes a lock) or
    # gevent loaded by the import of the command line itself would come before it
    # (a lock made before the patch breaks the interpreter's exit).
    code = (
        "import sys, realtime_flask.cli; "
        "print(sorted(m for m in ('flask', 'werkzeug', 'gevent', 'logging') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
