"""What a newcomer relies on in the README and its guides: where to run the
example, what the troubleshooting notes quote, the timings with their source,
the verbs table, links that resolve and the library one-liner."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
TROUBLESHOOTING = (ROOT / "docs" / "troubleshooting.md").read_text()
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FLAT = " ".join(" ".join(p.read_text() for p in DOCS).split())


def _section(title):
    return README.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_python_example_says_where_to_run_it():
    python = " ".join(_section("Python").split("```python", 1)[0].split())
    assert "inside the clone" in python and ".venv/bin/python example.py" in python
    assert "[Troubleshooting](docs/troubleshooting.md)" in python


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
    notes = " ".join(TROUBLESHOOTING.split())
    assert f"`{message}`" in notes
    assert "namespace package" in notes
    # the fix the guide gives works: the same script saved inside the clone
    inside = clone / "example.py"
    inside.write_text(script.read_text())
    done = subprocess.run(
        [sys.executable, str(inside)], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0 or "unknown location" not in done.stderr


def test_timings_are_measured_figures_with_their_source():
    """Cold and warm times of the main command come from a results file.

    Cold: its embedding with the default runtime and with TensorFlow
    (benchmark item 19); warm: the whole ``train`` again (item 3).
    """
    two = _section("Two commands")
    paths = [
        r"results\.19\.metrics\.readme_command\.default\.embed_s",
        r"results\.19\.metrics\.readme_command\.tensorflow\.embed_s",
        r"results\.3\.metrics\.warm\.seconds",
    ]
    for path in paths:
        marker = rf"\d+(\.\d+)? s<!-- fig benchmarks/results/\S+\.json {path} -->"
        assert re.search(marker, two), path
    assert "2-core" in two
    # no second, contradicting estimate elsewhere
    assert "about 2 minutes" not in FLAT and "about 3 minutes cold" not in FLAT


def test_library_one_liner_is_documented_and_exists():
    import embedclf

    assert "embedclf.quiet_tensorflow()" in FLAT
    assert "quiet_tensorflow" in embedclf.__all__
    assert callable(embedclf.quiet_tensorflow)
    assert "-vv" in FLAT


def test_verbs_table_lists_every_command_and_only_commands():
    from embedclf.cli._entrypoint import build_parser

    verbs = set(build_parser()._subparsers._group_actions[0].choices)
    table = _section("Verbs")
    listed = set(re.findall(r"^\| `(\w+)", table, re.M))
    assert listed == verbs


LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_relative_links_resolve():
    """Every link to a file of the project, with its #anchor, exists."""
    broken = []
    for doc in DOCS + [ROOT / "benchmarks" / "README.md"]:
        for target in LINK.findall(doc.read_text()):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            file = (doc.parent / path).resolve() if path else doc
            if not file.exists():
                broken.append(f"{doc.relative_to(ROOT)}: {target}")
                continue
            if anchor and file.suffix == ".md":
                headings = re.findall(r"^#+ (.+)$", file.read_text(), re.M)
                slugs = {
                    re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-")
                    for h in headings
                }
                if anchor not in slugs:
                    broken.append(f"{doc.relative_to(ROOT)}: {target}")
    assert not broken, broken


def test_source_paths_named_in_the_docs_exist():
    """A `package/_module.py` the README or a guide names is still there."""
    missing = []
    for doc in DOCS + [ROOT / "benchmarks" / "README.md"]:
        for path in re.findall(r"`([\w/]+/[\w.]+\.py)`", doc.read_text()):
            # docs/architecture.md names a family's modules from workflow/
            bases = (
                ROOT,
                ROOT / "embedclf",
                ROOT / "embedclf" / "workflow",
                ROOT / "benchmarks",
            )
            if not any((base / path).is_file() for base in bases):
                missing.append(f"{doc.relative_to(ROOT)}: {path}")
    assert not missing, missing
