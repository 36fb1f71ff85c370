"""``embedclf train --unknown auto [--unknown-dir DIR]`` and ``evaluate``: the
unknown answer measured in the summary, the manifest and the report."""

from __future__ import annotations

import json

import pytest
from _cli_helpers import grocery_like
from conftest import make_image_folder

from embedclf.cli import main

pytestmark = pytest.mark.tf


def _train(data, out, model, cache, *extra):
    return main(
        ["train", str(data), "--output", str(out), "--model", str(model),
         "--cache", str(cache), "--C", "1", "--unknown", "auto", "--no-progress",
         *extra]
    )  # fmt: skip


def test_background_folder_fits_fusion_and_is_measured(
    tmp_path, tiny_model_dir, capsys
):
    data = grocery_like(tmp_path / "data")
    background = make_image_folder(tmp_path / "bg", ("yellow", "purple"), 8, seed=5)
    out = tmp_path / "model"
    assert _train(data, out, tiny_model_dir, tmp_path / "c.h5",
                  "--unknown-dir", str(background)) == 0  # fmt: skip
    text = capsys.readouterr().out
    assert "Embedded 16 background images" in text
    assert "Open set: unknown when the fusion score is above" in text
    assert "background images rejected" in text
    entry = json.loads((out / "manifest.json").read_text())["unknown"]
    assert entry["detector"] == "fusion"
    assert entry["fusion"] == "logistic"  # 16 >= 10 background images
    assert entry["fusion_scores"] == ["react_max_proba", "knn"]
    assert isinstance(entry["threshold"], float)
    assert 0 <= entry["background_rejected"] <= 1
    assert (out / "report" / "open_set.json").exists()
    assert (out / "report" / "risk_coverage.png").exists()

    # evaluate on a folder holding classes the model has never seen
    test = make_image_folder(
        tmp_path / "eval", ("red", "green", "blue", "yellow"), 4, 9
    )
    capsys.readouterr()
    assert main(["evaluate", str(out), str(test), "--cache", str(tmp_path / "c.h5"),
                 "--report-dir", str(tmp_path / "rep")]) == 0  # fmt: skip
    text = capsys.readouterr().out
    assert "Open set: 12 known, 4 unknown images, AUROC" in text
    saved = json.loads((tmp_path / "rep" / "open_set.json").read_text())
    assert saved["n_unknown"] == 4 and saved["auroc"] is not None


def test_unknown_dir_that_is_not_a_folder(tmp_path, tiny_model_dir, capsys):
    data = grocery_like(tmp_path / "data")
    status = _train(data, tmp_path / "m", tiny_model_dir, tmp_path / "c.h5",
                    "--unknown-dir", str(tmp_path / "nope"))  # fmt: skip
    assert status != 0
    assert "is not a folder" in capsys.readouterr().err


def test_validation_folder_sets_the_threshold_of_the_refitted_head(
    tmp_path, tiny_model_dir
):
    # C chosen on val/ and the head refitted on train + val: the unknown
    # threshold comes from val/'s scores under models fitted on train (then
    # refitted), not from out-of-fold scores over both parts.
    from sklearn.base import clone

    from embedclf import ImageEmbedder, OpenSetClassifier, load_image_folder
    from embedclf.workflow._model_dir import load_model_dir

    train = make_image_folder(tmp_path / "train", ("red", "green"), 30)
    val = make_image_folder(tmp_path / "val", ("red", "green"), 30, seed=3)
    out, cache = tmp_path / "model", tmp_path / "c.h5"
    assert main(
        ["train", str(train), "--val-dir", str(val), "--output", str(out),
         "--model", str(tiny_model_dir), "--cache", str(cache),
         "--unknown", "auto", "--no-progress"]
    ) == 0  # fmt: skip
    head = load_model_dir(out).head
    assert isinstance(head, OpenSetClassifier) and head.refit_on_val
    embed = ImageEmbedder(model=str(tiny_model_dir), cache=str(cache))
    (Xt, yt), (Xv, yv) = (
        (embed.transform(b.paths), b.target_names[b.target])
        for b in (load_image_folder(train), load_image_folder(val))
    )
    expected = OpenSetClassifier(
        clone(head.estimator), unknown_label="unknown", cv=3
    ).fit(Xt, yt, X_val=Xv, y_val=yv)
    assert head.unknown_threshold_ == pytest.approx(expected.unknown_threshold_)
    assert len(head.score_state_["knn_train"]) == len(yt) + len(yv)
