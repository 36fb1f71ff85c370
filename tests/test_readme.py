"""The README's commands and Python example stay true."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_MODEL

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "<!-- ci: test command -->" in ci
    block = README.split("<!-- ci: test command -->", 1)[1]
    command = re.search(r"```\n(.+)\n```", block).group(1)
    assert "pip install -e" in command and "pytest" in command


@pytest.mark.tf
@pytest.mark.shared
@pytest.mark.skipif(not SHARED_MODEL.exists(), reason="../shared is not present")
def test_python_example_runs(tmp_path, monkeypatch):
    code = re.search(r"```python\n(.+?)```", README, re.S).group(1)
    code = code.replace("print(model.score", "score = (model.score")
    monkeypatch.chdir(tmp_path)
    namespace = {}
    shared = str(ROOT.parent / "shared")
    exec(code.replace("../shared", shared), namespace)
    assert 0.6 < namespace["score"] <= 1.0
    assert (tmp_path / "embeddings.h5").exists()
    assert np.asarray(namespace["y_train"]).dtype.kind == "U"
