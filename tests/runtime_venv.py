"""A virtual environment with realtime_flask's runtime dependencies only.

Users deploy with ``pip install .`` (or ``-r requirements.txt``), never with the
test extras.  A package that only the extras pull in (``packaging`` for
gunicorn's gevent worker, say) would make every test pass while a user's
``gunicorn -k gevent wsgi:app`` fails, so the entry-point tests and the
benchmarks start servers from this venv.

``runtime_venv()`` builds it once per content of the files that decide what is
installed (``setup.cfg``, ``requirements.txt``, the package's sources) under
``$RF_RUNTIME_VENV_DIR`` (default: ``<repo>/.venv-runtime``) and returns its
``python``.  Raises ``RuntimeVenvError`` (with pip's output) when pip fails,
e.g. on a machine that cannot reach the package index.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import typing as t
from pathlib import Path

__all__ = ["RuntimeVenvError", "runtime_venv"]

REPO_ROOT: t.Final[Path] = Path(__file__).resolve().parent.parent
#: Seconds allowed for creating the venv and installing into it.
INSTALL_TIMEOUT: t.Final[float] = 600.0


class RuntimeVenvError(RuntimeError):
    """The runtime-only venv could not be built."""


def _fingerprint() -> str:
    digest = hashlib.sha256()
    files = [REPO_ROOT / "setup.cfg", REPO_ROOT / "pyproject.toml", REPO_ROOT / "requirements.txt"]
    files += sorted((REPO_ROOT / "realtime_flask").rglob("*.py"))
    for path in files:
        if path.exists():
            digest.update(str(path.relative_to(REPO_ROOT)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def runtime_venv(root: Path | None = None) -> Path:
    """The ``python`` of a venv holding ``pip install <repo>`` and nothing else."""
    base = root or Path(os.environ.get("RF_RUNTIME_VENV_DIR") or REPO_ROOT / ".venv-runtime")
    stamp = base / "installed-from"
    python = base / "bin" / "python"
    fingerprint = _fingerprint()
    if python.exists() and stamp.exists() and stamp.read_text() == fingerprint:
        return python
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(base)],
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
    stamp.write_text(fingerprint)
    return python
