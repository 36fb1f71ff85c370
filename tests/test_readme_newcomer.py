"""README claims a newcomer relies on: where to run the example, what its
troubleshooting notes quote, the measured timings and the library one-liner."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
FLAT = " ".join(README.split())


def _section(title):
    return README.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_python_example_says_where_to_run_it():
    python = " ".join(_section("Python").split("```python", 1)[0].split())
    assert "inside the clone" in python and ".venv/bin/python example.py" in python
    assert "[Troubleshooting](#troubleshooting)" in python


def test_troubleshooting_quotes_the_namespace_package_error(tmp_path):
    """A script beside a folder named embedclf: Python's own message, verbatim."""
    clone = tmp_path / "embedclf"  # a clone: no __init__.py at its top
    clone.mkdir()
    (clone / "README.md").write_text("a clone\n")
    script = tmp_path / "example.py"
    script.write_text("from embedclf import ImageEmbedder\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env
    )
    message = done.stderr.strip().splitlines()[-1] if done.returncode else ""
    if "unknown location" not in message:
        pytest.skip("embedclf is installed as a regular package here: no clash")
    notes = " ".join(_section("Troubleshooting").split())
    assert f"`{message}`" in notes
    assert "namespace package" in notes
    # the fix the README gives works: the same script saved inside the clone
    inside = clone / "example.py"
    inside.write_text(script.read_text())
    done = subprocess.run(
        [sys.executable, str(inside)], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0 or "unknown location" not in done.stderr


def test_timings_are_measured_figures_with_the_machine():
    two = " ".join(_section("Two commands").split())
    assert re.search(r"\*\*\d+ s cold\*\*", two) and re.search(
        r"\*\*\d+ s warm\*\*", two
    )
    assert "2 cores" in two and "load average" in two
    # no second, contradicting estimate elsewhere
    assert "about 2 minutes" not in FLAT and "about 3 minutes cold" not in FLAT


def test_library_one_liner_is_documented_and_exists():
    import embedclf

    assert "embedclf.quiet_tensorflow()" in FLAT
    assert "quiet_tensorflow" in embedclf.__all__
    assert callable(embedclf.quiet_tensorflow)
    assert "-vv" in FLAT
