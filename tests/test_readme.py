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


def _offline_paragraph() -> str:
    start = README.index("Machines without internet")
    return README[start : README.index("\n\n", start)]


def test_offline_keras_sentence_names_a_weights_file_not_a_bare_download():
    text = " ".join(_offline_paragraph().split())
    assert '`"keras:<Application>?weights=/path/to/file.weights.h5"`' in text
    # A bare keras:<Application> needs the download: the README must not say
    # it works offline without the file in the Keras folder.
    assert "works offline only once that file is there" in text
    assert "~/.keras/models" in text


@pytest.mark.tf
def test_offline_keras_handle_of_the_readme_embeds(tmp_path):
    keras = pytest.importorskip("keras")
    from conftest import write_image

    from embedclf import ImageEmbedder

    handle = re.search(r'`"(keras:<Application>\?weights=[^"]+)"`', README).group(1)
    weights = tmp_path / "file.weights.h5"
    keras.applications.MobileNet(
        include_top=False, weights=None, pooling="avg", input_shape=(64, 64, 3)
    ).save_weights(str(weights))
    handle = handle.replace("<Application>", "MobileNet").replace(
        "/path/to/file.weights.h5", str(weights)
    )
    images = [str(write_image(tmp_path / f"{i}.png", seed=i)) for i in range(2)]
    X = ImageEmbedder(model=handle, image_size=64).transform(images)
    assert X.shape == (2, 1024) and np.isfinite(X).all()
