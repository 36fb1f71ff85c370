"""``embedclf.train``: the train policy through the library function.

The CLI tests (tests/cli/) check what ``embedclf train`` prints and its exit
codes; these check what the function decides and returns.
"""

from __future__ import annotations

import json
import logging
import re

import numpy as np
import pytest
from _cli_helpers import trained
from conftest import make_image_folder

import embedclf
from embedclf.workflow._model_dir import load_model_dir


def _names(model_dir):
    """Files of a model directory, the version folder's name replaced."""
    out = set()
    for p in model_dir.rglob("*"):
        rel = p.relative_to(model_dir).as_posix()
        out.add(re.sub(r"model-\d{8}T\d{6}Z-[0-9a-f]{8}", "model-*", rel))
    return out


def test_train_reproduces_the_command(tmp_path_factory, tmp_path, tiny_model_dir):
    session = trained(tmp_path_factory, tiny_model_dir)  # `embedclf train` itself
    assert session["status"] == 0
    # No cache: the vectors are computed and the head fitted again (no memo).
    result = embedclf.train(
        session["data"], output=tmp_path / "m", model=str(tiny_model_dir),
        C="0.1,1", progress=False,
    )  # fmt: skip
    cli = load_model_dir(session["output"])
    lib = load_model_dir(result.model_dir)
    for key in ("estimate", "selection_rule", "test_accuracy", "c_grid"):
        assert lib.manifest["metrics"][key] == cli.manifest["metrics"][key], key
    assert result.estimate == cli.manifest["metrics"]["estimate"]
    assert result.estimate_rule == "validation"
    assert result.test_accuracy == cli.manifest["metrics"]["test_accuracy"]
    assert result.params["C"] == cli.manifest["classifier"]["C"] in (0.1, 1.0)
    assert result.params["standardize"] == cli.manifest["classifier"]["standardize"]
    assert result.params["test_views"] == cli.manifest["test_views"] == "none"
    assert lib.labels == cli.labels
    X = np.random.default_rng(0).random((5, lib.head.n_features_in_))
    np.testing.assert_allclose(lib.head.predict_proba(X), cli.head.predict_proba(X))
    assert _names(result.model_dir) == _names(session["output"])
    report = json.loads((result.report_dir / "metrics.json").read_text())
    assert report["accuracy"] == result.test_accuracy == result.report["accuracy"]
    assert result.counts == {"training": 36, "validation": 9, "testing": 12}


def test_train_logs_instead_of_printing(tmp_path, tiny_model_dir, capsys, caplog):
    data = make_image_folder(tmp_path / "images", n_per_class=8)
    with caplog.at_level(logging.INFO, logger="embedclf.train"):
        result = embedclf.train(
            data, output=tmp_path / "m", model=str(tiny_model_dir), C=1.0,
            progress=False,
        )  # fmt: skip
    assert capsys.readouterr().out == ""
    said = [r.getMessage() for r in caplog.records if r.name == "embedclf.train"]
    assert said[0].startswith("Found ") and "(layout: hash-split)" in said[0]
    assert any(line.startswith("Best C = 1 ") for line in said)
    # hash split: validation merged back, C judged by grouped cross-validation
    assert result.estimate_rule == "grouped-cv"
    assert result.params["C"] == 1.0
    assert result.params["test_views"] == "none"


@pytest.mark.parametrize(
    "options, message",
    [
        ({"classifier": "mlp", "C": 0.1}, "--C does not apply to --classifier mlp"),
        ({"C": "0,1"}, "C must be 'auto', a positive number"),
        ({"unknown": 1.5}, "--unknown must be 'auto', 'off' or a probability"),
        ({"test_views": "flip", "unknown": "auto"}, "pass one of them, not both"),
        ({"augment_copies": 2}, "needs at least one distortion"),
        ({"test_views": "train"}, "train"),
        ({"scaling": "minmax"}, "scaling must be one of"),
        ({"validation_percentage": 100}, "validation_percentage must be in"),
    ],
)
def test_bad_settings_fail_before_any_work(tmp_path, options, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        embedclf.train(
            tmp_path / "nothing-here", output=tmp_path / "m",
            cache=tmp_path / "c.h5", **options,
        )  # fmt: skip
    assert not (tmp_path / "m").exists() and not (tmp_path / "c.h5").exists()


def test_unknown_threshold_is_the_max_proba_score(tmp_path, tiny_model_dir):
    data = tmp_path / "data"
    make_image_folder(data / "train", n_per_class=8, seed=0)
    make_image_folder(data / "test", n_per_class=3, seed=1)
    result = embedclf.train(
        data,
        output=tmp_path / "m",
        model=str(tiny_model_dir),
        C=1.0,
        unknown=0.9,
        progress=False,
    )  # fmt: skip  (no FutureWarning: not the deprecated 0.1.0 rule)
    head = load_model_dir(result.model_dir).head
    assert head.detector == "max_proba"
    assert result.params["unknown"]["probability_threshold"] == 0.9
    X = np.random.default_rng(0).random((20, head.n_features_in_)) * 3
    top = head.predict_proba(X).max(axis=1)
    np.testing.assert_array_equal(head.predict(X) == "unknown", top < 0.9)


def test_selection_says_why_two_cosine_bars():
    from embedclf.workflow._train._fit import selection_lines

    tuning = {
        "rule": "validation", "grid": [], "best_C": 1.0, "standardize": False,
        "estimate": 0.75, "validation_near_duplicates": 3, "n_validation": 10,
        "estimate_unlike_training": 0.7,
    }  # fmt: skip
    lines = selection_lines(tuning)
    assert "3 of 10 validation images" in lines[1] and "cosine >= 0.85" in lines[1]
    assert "other shots of the same object" in lines[2]
    assert "near-identical copies, cosine >= 0.94" in lines[2]
