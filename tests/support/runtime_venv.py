"""A virtual environment with realtime_flask's runtime dependencies only.

Users deploy with ``pip install .`` (or ``-r requirements.txt``), never with the
test extras.  A package that only the extras pull in (``packaging`` for
gunicorn's gevent worker, say) would make every test pass while a user's
``gunicorn -k gevent wsgi:app`` fails, so the entry-point tests and the
benchmarks start servers from this venv.

``runtime_venv()`` builds it once per content of the files that decide what is
installed (``setup.cfg``, ``requirements.txt``, the package's sources), in a
folder named after that content under ``$RF_RUNTIME_VENV_DIR`` (default:
``<repo>/.venv-runtime``), and returns its ``python``.  A venv is never
rebuilt in place, so a server still running from an older one keeps working;
concurrent callers wait for one build (a file lock); all but the newest few
are removed.  Raises ``RuntimeVenvError`` (with pip's output) when pip fails,
e.g. on a machine that cannot reach the package index.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import typing as t
from pathlib import Path

__all__ = ["RuntimeVenvError", "runtime_venv"]

REPO_ROOT: t.Final[Path] = Path(__file__).resolve().parents[2]
#: Seconds allowed for creating the venv and installing into it.
INSTALL_TIMEOUT: t.Final[float] = 600.0
#: Venvs of older source states kept beside the current one.
KEEP_OLD: t.Final[int] = 2


class RuntimeVenvError(RuntimeError):
    """The runtime-only venv could not be built."""


def _fingerprint() -> str:
    digest = hashlib.sha256()
    files = [REPO_ROOT / "setup.cfg", REPO_ROOT / "pyproject.toml", REPO_ROOT / "requirements.txt"]
    # Every file of the package: sources and package data (the demo page's files).
    files += sorted(
        p
        for p in (REPO_ROOT / "realtime_flask").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    )
    for path in files:
        if path.exists():
            digest.update(str(path.relative_to(REPO_ROOT)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def runtime_venv(root: Path | None = None) -> Path:
    """The ``python`` of a venv holding ``pip install <repo>`` and nothing else."""
    base = root or Path(os.environ.get("RF_RUNTIME_VENV_DIR") or REPO_ROOT / ".venv-runtime")
    base.mkdir(parents=True, exist_ok=True)
    fingerprint = _fingerprint()
    folder = base / fingerprint
    python = folder / "bin" / "python"
    stamp = folder / "installed-from"
    # One lock for every base: pip builds in the source tree (build/).
    with (REPO_ROOT / ".venv-runtime.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not (python.exists() and stamp.exists()):
            _build(folder, python)
            stamp.write_text(fingerprint)
        _prune(base, keep=folder)
    return python


def _prune(base: Path, keep: Path) -> None:
    old = sorted(
        (p for p in base.iterdir() if p.is_dir() and p != keep),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for path in old[KEEP_OLD:]:
        shutil.rmtree(path, ignore_errors=True)


def _build(folder: Path, python: Path) -> None:
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(folder)],
        # A regular (not editable) install: what `pip install .` gives a user.
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            str(REPO_ROOT),
        ],
    ]
    for step in steps:
        try:
            done = subprocess.run(
                step, capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise RuntimeVenvError(f"{' '.join(step)} took over {INSTALL_TIMEOUT:.0f}s") from exc
        if done.returncode != 0:
            raise RuntimeVenvError(
                f"{' '.join(step)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
            )
