"""Model directories written by embedclf 0.1.0 (flat module layout) still load.

The fixtures in ``tests/fixtures/model_dir_0_1_0`` were written by the code
before the subpackage move; their ``head.skops`` name classes such as
``embedclf._linear.SoftmaxClassifier``, which ``embedclf._legacy_paths``
resolves to the modules that hold that code now.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA, SHARED_MODEL

from embedclf.workflow._model_dir import load_model_dir

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "model_dir_0_1_0"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())


def test_fixture_heads_name_the_old_module_paths():
    import skops.io as sio

    names = set(sio.get_untrusted_types(file=FIXTURES / "softmax" / "head.skops"))
    assert "embedclf._linear.SoftmaxClassifier" in names
    assert "embedclf._open_set.OpenSetClassifier" in names
    names = set(sio.get_untrusted_types(file=FIXTURES / "svm" / "head.skops"))
    assert "embedclf._svm.SVMClassifier" in names


@pytest.mark.parametrize("kind", ["softmax", "svm"])
def test_old_heads_predict_the_recorded_labels(kind):
    model_dir = load_model_dir(FIXTURES / kind)
    from embedclf.heads import OpenSetClassifier, SoftmaxClassifier, SVMClassifier

    expected_type = {"softmax": OpenSetClassifier, "svm": SVMClassifier}[kind]
    assert type(model_dir.head) is expected_type
    if kind == "softmax":
        assert type(model_dir.head.estimator_) is SoftmaxClassifier
    X = np.load(FIXTURES / "vectors.npy")
    assert model_dir.head.predict(X).tolist() == EXPECTED[kind]
    top1 = model_dir.head.predict_proba(X).max(axis=1)
    np.testing.assert_allclose(top1, EXPECTED[f"{kind}_top1_score"], rtol=1e-6)


@pytest.mark.shared
@pytest.mark.tf
@pytest.mark.parametrize("kind", ["softmax", "svm"])
def test_old_model_dir_predicts_through_the_cli(kind, tmp_path):
    if not SHARED_MODEL.is_dir():
        pytest.skip("../shared is absent")
    images = [str(SHARED_DATA / rel) for rel in EXPECTED["images"]]
    cmd = [sys.executable, "-m", "embedclf", "predict", str(FIXTURES / kind)]
    cmd += images + ["--json", "--model", str(SHARED_MODEL), "--no-progress"]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    results = json.loads(out.stdout)
    assert [r["label"] for r in results] == EXPECTED[kind]
    np.testing.assert_allclose(
        [r["top_k"][0]["score"] for r in results],
        EXPECTED[f"{kind}_top1_score"],
        rtol=1e-4,
    )


def test_every_legacy_alias_is_one_a_saved_file_names():
    """The aliases are the fixture's three head modules and HashSplit's."""
    from embedclf._legacy_paths import LEGACY_MODULES

    assert sorted(LEGACY_MODULES) == [
        "embedclf._linear",
        "embedclf._open_set",
        "embedclf._split",
        "embedclf._svm",
    ]


def test_a_0_1_0_pickle_of_hash_split_loads():
    """A pickle naming ``embedclf._split.HashSplit`` (0.1.0's module)."""
    import pickle

    from embedclf.model_selection import HashSplit

    new = pickle.dumps(HashSplit(validation_percentage=20), protocol=0)
    old = new.replace(b"embedclf.model_selection._split", b"embedclf._split")
    assert b"cembedclf._split\nHashSplit" in old
    loaded = pickle.loads(old)
    assert type(loaded) is HashSplit and loaded.validation_percentage == 20


def test_old_module_paths_outside_the_list_do_not_import():
    import importlib

    for gone in ("embedclf._train", "embedclf._cli_train", "embedclf._embedder"):
        with pytest.raises(ModuleNotFoundError):
            importlib.import_module(gone)
