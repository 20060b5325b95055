"""``python wsgi.py``: the README's first command, as a newcomer runs it."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from realtime_flask.testing import HTTPEventStream
from realtime_flask.testing import post_subscriptions
from tests.support.entry_points import EntryPoint
from tests.support.entry_points import check_realtime_round_trip
from tests.support.entry_points import clean_env
from tests.support.entry_points import install_failed
from tests.support.runtime_venv import INSTALL_TIMEOUT
from tests.support.servers import REPO_ROOT

pytestmark = pytest.mark.e2e

SECRET = "wsgi-entry-secret"


def readme_first_command() -> str:
    """The command of the README's first ``sh`` block (its one non-comment line)."""
    readme = (REPO_ROOT / "README.md").read_text()
    block = re.search(r"```sh\n(.*?)```", readme, re.S)
    assert block is not None, "README.md has no sh block"
    lines = [ln for ln in block.group(1).splitlines() if ln.strip() and not ln.startswith("#")]
    assert len(lines) == 1, lines
    return lines[0]


def test_python_wsgi_py_serves_pb_connect_and_publish_and_stops_cleanly(tmp_path: Path) -> None:
    server = EntryPoint(
        "python wsgi.py",
        lambda port: [sys.executable, "wsgi.py"],
        cwd=REPO_ROOT,
        env=lambda port: clean_env(
            {
                "REALTIME_PORT": str(port),
                "REALTIME_PUBLISH_SECRET": SECRET,
                "REALTIME_DATA_DIR": str(tmp_path),
            }
        ),
    )
    with server, HTTPEventStream(server.host, server.port) as stream:
        assert stream.status == 200
        event = stream.next_event(timeout=5)
        assert event.event == "PB_CONNECT"
        assert bytes(stream.raw).startswith(f"id:{event.id}\nevent:PB_CONNECT\n".encode())
        status, _ = post_subscriptions(server.host, server.port, event.id, ["posts/*"])
        assert status == 204
        status, body = server.request(
            "POST",
            "/api/realtime/publish",
            {"collection": "posts", "action": "create", "record": {"id": "a"}},
            headers={"Authorization": f"Bearer {SECRET}"},
        )
        assert status == 200, body
        assert stream.next_event(timeout=5).event == "posts/*"
        server.send_sigterm()
        stream.wait_closed(timeout=10)  # the stream ends cleanly on shutdown
        assert stream.ended_cleanly
        assert server.wait_exit(timeout=15) == 0, server.error("unclean exit")


@pytest.mark.timeout(INSTALL_TIMEOUT + 120)
def test_readme_first_command_installs_and_starts_the_service(tmp_path: Path) -> None:
    """The README's first command, run as written but with its ``.venv`` in a
    fresh temporary folder (the developer's own venv stays untouched)."""
    command = readme_first_command()
    assert command.endswith("wsgi.py"), command
    venv = tmp_path / "venv"
    steps = []
    for step in command.split("&&"):
        words = shlex.split(step)
        words = [str(venv) + w[len(".venv") :] if w.split("/")[0] == ".venv" else w for w in words]
        steps.append(words)
    *install, serve = steps
    assert install[0][0] == "python3", install
    install[0][0] = shutil.which("python3") or sys.executable
    for words in install:
        done = subprocess.run(
            words,
            cwd=REPO_ROOT,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT,
            check=False,
        )
        if done.returncode != 0:
            install_failed(f"`{shlex.join(words)}`", done.stdout + done.stderr)
    data = tmp_path / "data"
    data.mkdir()
    server = EntryPoint(
        "README: " + " ".join(serve),
        lambda port: serve,
        cwd=REPO_ROOT,
        env=lambda port: clean_env({"REALTIME_PORT": str(port), "REALTIME_DATA_DIR": str(data)}),
    )
    with server:
        check_realtime_round_trip(server)
