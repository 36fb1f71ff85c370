"""Run the real ``embedclf`` command in a subprocess, as a user's shell would.

``TF_CPP_MIN_LOG_LEVEL`` is removed from the environment (``.ci/run`` and
``conftest.py`` set it), so stderr is what a user's terminal shows.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def user_env() -> dict:
    """os.environ without TF_CPP_MIN_LOG_LEVEL, with this checkout importable."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_cli(*argv, cwd=None) -> subprocess.CompletedProcess:
    """``python -m embedclf ARGV...``; arguments may be paths or bytes."""
    args = [a if isinstance(a, bytes) else str(a) for a in argv]
    return subprocess.run(
        [sys.executable.encode(), b"-m", b"embedclf", *map(os.fsencode, args)],
        capture_output=True,
        text=True,
        errors="backslashreplace",
        env=user_env(),
        cwd=cwd,
    )
