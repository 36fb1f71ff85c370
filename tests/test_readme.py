"""The README's commands and Python examples stay true."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED, SHARED_MODEL

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BACKBONES = (ROOT / "docs" / "backbones.md").read_text()
PYTHON_GUIDE = (ROOT / "docs" / "python.md").read_text()


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.+?)```", text, re.S)


def main_command() -> str:
    block = README.split("<!-- main command -->", 1)[1]
    return re.search(r"```\n(.+?)\n```", block, re.S).group(1)


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "<!-- ci: test command -->" in ci
    block = README.split("<!-- ci: test command -->", 1)[1]
    command = re.search(r"```\n(.+)\n```", block).group(1)
    assert "pip install -e" in command and "pytest" in command
    # every optional extra the tests exercise is installed, so none of
    # their tests skip in CI (dask: the cluster tests; lite: LiteRT)
    extras = re.search(r"\.\[([\w,]+)\]", command).group(1).split(",")
    assert {"dev", "dask", "lite"} <= set(extras)


def test_readme_is_short():
    assert len(README.splitlines()) <= 250


def test_python_example_reuses_the_main_commands_cache_and_model_dir():
    """The example trains what the main command trained, from its cache."""
    command = main_command()
    example = python_blocks(README)[0]
    assert re.findall(r'cache="([^"]+)"', example) == re.findall(
        r"--cache (\S+)", command
    )
    assert re.findall(r'output="([^"]+)"', example) == re.findall(
        r"--output (\S+)", command
    )
    assert "embedclf.train(" in example
    for flag in ("--val-dir", "--test-dir", "--model"):
        value = re.search(rf"{flag} (\S+)", command).group(1)
        assert value.split("grocery_store/")[-1] in example, flag


@pytest.fixture(scope="module")
def readme_cache(tmp_path_factory) -> Path:
    """The cache the examples reuse: the clone's own when the main command ran.

    Otherwise a cache in a temporary folder, shared by this module's tests:
    a copy of ``EMBEDCLF_GROCERY_CACHE`` when that names a cache already
    holding the grocery vectors (as in tests/workflow/test_audit_grocery.py;
    copied, never written), else empty, so the first test fills it.
    """
    if (ROOT / "grocery-cache.h5").exists():
        return ROOT / "grocery-cache.h5"
    cache = tmp_path_factory.mktemp("readme") / "grocery-cache.h5"
    given = os.environ.get("EMBEDCLF_GROCERY_CACHE")
    if given and os.path.isfile(given):
        shutil.copyfile(given, cache)
    return cache


def _run(code: str, cache: Path, cwd: Path, monkeypatch) -> dict:
    """Run a README snippet as a user would: the default runtime, not the
    suite's TensorFlow (tests/conftest.py sets EMBEDCLF_RUNTIME)."""
    monkeypatch.delenv("EMBEDCLF_RUNTIME", raising=False)
    monkeypatch.chdir(cwd)
    code = code.replace("../shared", str(SHARED))
    code = code.replace('"grocery-cache.h5"', repr(str(cache)))
    namespace: dict = {}
    exec(code, namespace)
    return namespace


def _quoted_percent(path: str) -> float:
    """The figure the README writes before the marker naming ``path``."""
    match = re.search(rf"([\d.]+) %<!-- fig \S+ {re.escape(path)} x100 -->", README)
    assert match, f"the README no longer quotes {path}"
    return float(match.group(1))


def _cpu_model() -> str | None:
    """This CPU's model name, as benchmarks/_common.machine_info reads it."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


@pytest.mark.tf
@pytest.mark.shared
@pytest.mark.skipif(not SHARED_MODEL.exists(), reason="../shared is not present")
def test_python_example_runs(tmp_path, monkeypatch, readme_cache, capsys):
    """The README's embedclf.train example gives the figures the README quotes.

    The default runtime's figure was measured at the precision and on the
    CPU model that runtime.json records; on another CPU model or precision
    (no bf16: fp32; AMX's bf16 kernels) the vectors differ slightly, so the
    accuracy must stay within the 0.5 points the runtimes guarantee.
    """
    import json

    namespace = _run(python_blocks(README)[0], readme_cache, tmp_path, monkeypatch)
    result = namespace["result"]
    path = "results.19.metrics.readme_command.default.test_accuracy"
    accuracy = _quoted_percent(path)
    results = json.loads((ROOT / "benchmarks/results/runtime.json").read_text())
    measured = results["results"]["19"]["metrics"]["readme_command"]["default"]
    manifest = json.loads((Path(result.model_dir) / "manifest.json").read_text())
    same = (manifest["runtime"], manifest["precision"]) == (
        measured["runtime"],
        measured["precision"],
    ) and _cpu_model() == results["machine"]["cpu_model"]
    if same:
        assert round(100 * result.test_accuracy, 1) == accuracy
    else:
        assert abs(100 * result.test_accuracy - accuracy) <= 0.5
    assert abs(result.estimate - result.test_accuracy) <= 0.02
    model_dir = Path(result.model_dir)
    assert model_dir.resolve() == (tmp_path / "grocery-model").resolve()
    assert (model_dir / "manifest.json").is_file()
    assert Path(result.report_dir).is_dir()
    assert f"test accuracy {100 * result.test_accuracy:.1f}%" in capsys.readouterr().out


@pytest.mark.tf
@pytest.mark.shared
@pytest.mark.skipif(not SHARED_MODEL.exists(), reason="../shared is not present")
def test_python_guide_pipeline_example_runs(tmp_path, monkeypatch, readme_cache):
    code = next(b for b in python_blocks(PYTHON_GUIDE) if "make_pipeline" in b)
    code = code.replace("print(model.score", "score = (model.score")
    namespace = _run(code, readme_cache, tmp_path, monkeypatch)
    assert 0.6 < namespace["score"] <= 1.0
    assert readme_cache.exists()
    assert np.asarray(namespace["y_train"]).dtype.kind == "U"


@pytest.mark.tf
@pytest.mark.shared
@pytest.mark.skipif(not SHARED_MODEL.exists(), reason="../shared is not present")
def test_readme_pipeline_snippet_runs(tmp_path, monkeypatch, readme_cache):
    code = next(b for b in python_blocks(README) if "make_pipeline" in b)
    model = _run(code, readme_cache, tmp_path, monkeypatch)["model"]
    assert len(model.classes_) == 81
    assert readme_cache.exists()


def _offline_paragraph() -> str:
    start = BACKBONES.index("Machines without internet")
    return BACKBONES[start : BACKBONES.index("\n\n", start)]


def test_offline_keras_sentence_names_a_weights_file_not_a_bare_download():
    text = " ".join(_offline_paragraph().split())
    assert '`"keras:<Application>?weights=/path/to/file.weights.h5"`' in text
    # A bare keras:<Application> needs the download: the guide must not say
    # it works offline without the file in the Keras folder.
    assert "works offline only once that file is there" in text
    assert "~/.keras/models" in text


@pytest.mark.tf
def test_offline_keras_handle_of_the_guide_embeds(tmp_path):
    keras = pytest.importorskip("keras")
    from conftest import write_image

    from embedclf import ImageEmbedder

    handle = re.search(r'`"(keras:<Application>\?weights=[^"]+)"`', BACKBONES).group(1)
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
