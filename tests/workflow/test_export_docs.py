"""The Python snippets of docs/export.md run and give ``embedclf predict``'s answer."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
from pathlib import Path

import pytest
from _cli_helpers import trained

from embedclf.cli import list_images, main

pytestmark = pytest.mark.tf
DOC = Path(__file__).resolve().parents[2] / "docs" / "export.md"


def _snippets() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)


@pytest.fixture(scope="module")
def folder(tmp_path_factory, tiny_model_dir):
    """exported/ (SavedModel), lite/ (TFLite), photo.jpg and predict's label."""
    session = trained(tmp_path_factory, tiny_model_dir)
    base = tmp_path_factory.mktemp("docs")
    photo = list_images([str(session["data"] / "test" / "red")])[0]
    shutil.copy(photo, base / "photo.jpg")
    model = str(session["output"])
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["export", model, "--savedmodel", str(base / "exported")]) == 0
        assert main(["export", model, "--tflite", str(base / "lite")]) == 0
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["predict", model, str(base / "photo.jpg"), "--json"]) == 0
    (expected,) = json.loads(buf.getvalue())
    return base, expected


def _run(snippet, folder, monkeypatch) -> str:
    monkeypatch.chdir(folder)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        exec(compile(snippet, str(DOC), "exec"), {})
    return buf.getvalue()


def test_savedmodel_snippet(folder, monkeypatch):
    base, expected = folder
    printed = _run(_snippets()[0], base, monkeypatch).split()
    assert printed[:2] == ["photo.jpg", expected["label"]]
    assert float(printed[2]) == pytest.approx(expected["top_k"][0]["score"], abs=2e-3)


def test_tflite_snippet(folder, monkeypatch):
    pytest.importorskip("ai_edge_litert")
    base, expected = folder
    assert _run(_snippets()[1], base, monkeypatch).strip() == expected["label"]
