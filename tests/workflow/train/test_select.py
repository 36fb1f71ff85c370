"""Model selection of ``embedclf train`` (issue 13, items 1, 2 and 6)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import make_image_folder

from embedclf import SoftmaxClassifier
from embedclf.workflow._train import cross_entropy_score
from embedclf.workflow._train._balance import add_balance_views, balance_plan
from embedclf.workflow._train._select import merge_validation, select_head


def blobs(n_per_class, seed, n_classes=3, dim=6):
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(0).normal(0, 1.5, (n_classes, dim))
    X = np.vstack([rng.normal(c, 1.0, (n_per_class, dim)) for c in centres])
    return X, np.repeat(np.array(["a", "b", "c"][:n_classes]), n_per_class)


def test_validation_rule_chooses_on_validation_and_refits_on_both():
    X, y = blobs(20, seed=1)
    X_val, y_val = blobs(8, seed=2)
    head, res = select_head(X, y, X_val=X_val, y_val=y_val, C_grid=[0.01, 1, 100])
    assert res["rule"] == "validation"
    # the choice is the candidate with the lowest validation cross-entropy
    scores = {}
    for C in (0.01, 1, 100):
        for std in (False, True):
            fit = SoftmaxClassifier(C=C, standardize=std).fit(X, y)
            scores[C, std] = (cross_entropy_score(fit, X_val, y_val), fit)
    best = min(scores, key=lambda k: scores[k][0])
    assert (res["best_C"], res["standardize"]) == best
    # the estimate is the validation accuracy of the train-only fit ...
    assert res["estimate"] == scores[best][1].score(X_val, y_val)
    # ... and the returned head is refitted on training + validation
    ref = SoftmaxClassifier(C=best[0], standardize=best[1])
    ref.fit(np.vstack([X, X_val]), np.concatenate([y, y_val]))
    np.testing.assert_allclose(head.coef_, ref.coef_)
    assert len(res["grid"]) == 6


def test_validation_near_duplicates_of_training_rows_are_counted():
    X, y = blobs(20, seed=1)
    X_val, y_val = blobs(8, seed=2)
    X_val[:5] = X[:5] * 1.001  # five validation rows copied from training
    y_val[:5] = y[:5]
    _, res = select_head(X, y, X_val=X_val, y_val=y_val, C_grid=[1], threshold=0.999)
    assert res["validation_near_duplicates"] == 5
    fit = SoftmaxClassifier(C=1).fit(X, y)
    expected = fit.score(X_val[5:], y_val[5:])
    assert res["estimate_unlike_training"] == pytest.approx(expected)


def test_auto_grid_is_wide_and_refined():
    X, y = blobs(15, seed=3)
    X_val, y_val = blobs(6, seed=4)
    _, res = select_head(X, y, X_val=X_val, y_val=y_val, standardize=False)
    Cs = sorted(r["C"] for r in res["grid"])
    assert Cs[0] <= 1e-4 and Cs[-1] >= 1e4
    finer = [c for c in Cs if not np.isclose(np.log10(c), round(np.log10(c)))]
    assert len(finer) == 2  # the half-decades around the best decade
    assert np.isclose(np.log10(finer[1] / finer[0]), 1.0)


def test_without_validation_the_folds_keep_groups_together():
    X, y = blobs(12, seed=5)
    groups = np.arange(len(y)) // 2  # pairs of rows: an image and its view
    head, res = select_head(X, y, groups=groups, C_grid=[0.1, 1], standardize=False)
    assert res["rule"] == "grouped-cv"
    assert res["cv_accuracy"] == res["estimate"] is not None
    for train, test in res["splits"]:
        assert not set(groups[train]) & set(groups[test])
    ref = SoftmaxClassifier(C=res["best_C"]).fit(X, y)
    np.testing.assert_allclose(head.coef_, ref.coef_)


def test_a_single_setting_without_validation_is_fixed():
    X, y = blobs(5, seed=6)
    head, res = select_head(X, y, C_grid=[0.5], standardize=True)
    assert res["rule"] == "fixed" and res["estimate"] is None and res["grid"] == []
    assert head.C == 0.5 and head.standardize


def test_too_small_a_class_asks_for_a_validation_folder():
    X, y = blobs(3, seed=7)
    y[0] = "lonely"
    with pytest.raises(ValueError, match="add a validation folder"):
        select_head(X, y, C_grid=[0.1, 1])


def test_balance_plan_fills_classes_up_to_the_median():
    labels = ["a"] * 6 + ["b"] * 2 + ["c"] * 6 + ["d"] * 4 + ["e"] * 3
    extra = balance_plan(labels)
    counts = {c: labels.count(c) + extra[np.array(labels) == c].sum() for c in "abcde"}
    assert counts == {"a": 6, "b": 4, "c": 6, "d": 4, "e": 4}
    assert extra[6:8].tolist() == [1, 1]  # spread over the images of "b"


@pytest.mark.tf
def test_balance_views_are_cached_views_of_the_small_class(tmp_path, tiny_model_dir):
    from embedclf import ImageEmbedder
    from embedclf.embedding._augment import Distortions

    root = make_image_folder(tmp_path / "img", ("red", "green", "blue"), 4)
    for extra in sorted((root / "green").iterdir())[1:]:
        extra.unlink()  # green: 1 image, the median class has 4
    paths = np.array(sorted(str(p) for p in root.rglob("*.*")))
    y = np.array([p.split("/")[-2] for p in paths])
    cache = tmp_path / "c.h5"
    embedder = ImageEmbedder(str(tiny_model_dir), cache=cache, progress=False)
    X = embedder.transform(paths)
    kwargs = dict(embedder=embedder, settings=Distortions(), copies=0)
    Xb, yb, gb, n_added, n_computed = add_balance_views(X, y, None, paths, **kwargs)
    assert n_added == 3 and n_computed == 3
    assert yb[len(y) :].tolist() == ["green"] * 3
    green = int(np.flatnonzero(y == "green")[0])
    assert gb[len(y) :].tolist() == [green] * 3  # grouped with their source
    assert not np.allclose(Xb[len(y) :], X[green])  # distorted, not copies
    again = add_balance_views(X, y, None, paths, **kwargs)
    assert again[4] == 0  # all from the cache
    np.testing.assert_array_equal(again[0], Xb)


@pytest.mark.tf
def test_train_selects_on_the_validation_folder(tmp_path_factory, tiny_model_dir):
    from _cli_helpers import trained

    session = trained(tmp_path_factory, tiny_model_dir)
    manifest = json.loads((session["output"] / "manifest.json").read_text())
    metrics = manifest["metrics"]
    assert metrics["selection_rule"] == "validation"
    assert metrics["estimate"] == metrics["validation_accuracy"]
    assert manifest["classifier"]["standardize"] in (True, False)
    assert "on the validation part" in session["stdout"]
    assert "Refitted on training + validation" in session["stdout"]


@pytest.mark.tf
def test_train_balance_views_fills_the_small_class(tmp_path, tiny_model_dir, caplog):
    import embedclf

    root = tmp_path / "data"
    for part, n in (("train", 6), ("val", 2), ("test", 2)):
        make_image_folder(root / part, ("red", "green", "blue"), n, seed=len(part))
    for extra in sorted((root / "train" / "green").iterdir())[2:]:
        extra.unlink()  # green: 2 training images, the median class has 6
    with caplog.at_level("INFO", logger="embedclf.train"):
        result = embedclf.train(
            root, output=tmp_path / "m", model=str(tiny_model_dir),
            cache=tmp_path / "c.h5", C=1, balance="views", progress=False,
        )  # fmt: skip
    assert "Added 4 distorted views to the classes below the median size" in (
        caplog.text
    )
    assert result.params["balance"] == "views"
    assert result.metrics["n_augmented_views"] == 4


def test_merge_validation_gives_validation_rows_their_own_groups():
    X, y = blobs(4, seed=8)
    X_val, y_val = blobs(2, seed=9)
    groups = np.arange(len(y)) // 2
    Xm, ym, gm, Xv, yv = merge_validation(X, y, groups, X_val, y_val)
    assert len(ym) == len(y) + len(y_val) and len(yv) == 0 and Xv.shape[0] == 0
    assert gm[len(y) :].tolist() == list(range(6, 12))


@pytest.mark.tf
def test_train_on_a_hash_split_chooses_by_grouped_cv(tmp_path, tiny_model_dir, caplog):
    import embedclf

    root = make_image_folder(tmp_path / "flat", ("red", "green", "blue"), 10)
    with caplog.at_level("INFO", logger="embedclf.train"):
        result = embedclf.train(
            root, output=tmp_path / "m", model=str(tiny_model_dir), C=[0.1, 1],
            scaling="none", validation_percentage=20, progress=False,
        )  # fmt: skip
    assert "chosen by grouped cross-validation on training + validation" in (
        caplog.text
    )
    assert result.estimate_rule == "grouped-cv"
    assert result.params["standardize"] is False and result.params["C"] in (0.1, 1)
