"""The audit on small synthetic vectors and images (fast)."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest
from conftest import write_image

from embedclf.workflow._audit._duplicates import (
    duplicate_pairs,
    leak_count,
    leak_hint,
    twin_accuracy,
)
from embedclf.workflow._audit._run import audit_vectors, write_audit


def _blobs(n_per_class=40, n_classes=4, dim=24, seed=0):
    """Well separated classes (cosine between classes ~0) with some spread."""
    rng = np.random.default_rng(seed)
    centres = np.eye(n_classes, dim) * 6
    X = np.vstack([c + rng.normal(0, 1.0, (n_per_class, dim)) for c in centres]).astype(
        np.float32
    )
    y = np.repeat([f"c{k}" for k in range(n_classes)], n_per_class)
    return X, y


def test_duplicate_pairs_exact_near_within_and_across():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(6, 32)).astype(np.float32)
    X[1] = X[0]  # exact copy (same vector)
    X[3] = X[2] + 0.05 * rng.normal(size=32)  # near copy
    split = np.array(["training", "testing", "training", "training", "testing", "x"])
    pairs = duplicate_pairs(X, split, threshold=0.95)
    found = {(p["i"], p["j"]): p for p in pairs}
    assert set(found) == {(0, 1), (2, 3)}
    assert found[(0, 1)]["kind"] == "exact"
    assert found[(0, 1)]["splits"] == "testing/training"
    assert found[(2, 3)]["kind"] == "near"
    assert found[(2, 3)]["splits"] == "training"
    assert 0.95 <= found[(2, 3)]["similarity"] < 1.0


def test_duplicate_pairs_keys_decide_exactness():
    X = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    pairs = duplicate_pairs(X, keys=["a", "b", "c"], threshold=0.99)
    assert [(p["i"], p["j"], p["kind"]) for p in pairs] == [(0, 1, "near")]
    pairs = duplicate_pairs(X, keys=["a", "a", "c"], threshold=0.99)
    assert [p["kind"] for p in pairs] == ["exact"]


def test_duplicate_pairs_ignore_zero_rows_and_check_threshold():
    X = np.zeros((3, 4), dtype=np.float32)
    assert duplicate_pairs(X) == []
    msg = "The duplicate threshold must be a cosine similarity in (-1, 1]; got 1.5."
    with pytest.raises(ValueError, match=re.escape(msg)):
        duplicate_pairs(np.eye(3), threshold=1.5)


def test_leak_count_and_hint():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(5, 16)).astype(np.float32)
    split = np.array(["training", "training", "testing", "validation", "testing"])
    assert leak_count(X, split) == 0
    assert leak_hint(X, split, "photos") is None
    X[2] = X[0] * 3  # same direction: cosine 1
    X[3] = X[1] + 1e-3
    assert leak_count(X, split) == 2
    hint = leak_hint(X, split, "photos")
    assert hint.startswith("Note: 2 validation/testing image(s) have a near-dup")
    assert "embedclf audit photos" in hint
    # Training-only data cannot leak.
    assert leak_count(X, np.full(5, "training")) == 0


def test_twin_accuracy():
    out = twin_accuracy(["a", "b", "a", "b"], ["a", "b", "b", "a"], [1, 1, 0, 0])
    assert out == {
        "n_with_twin": 2,
        "accuracy_with_twin": 1.0,
        "n_without_twin": 2,
        "accuracy_without_twin": 0.0,
        "accuracy_all": 0.5,
    }
    assert twin_accuracy(["a"], ["a"], [False])["accuracy_with_twin"] is None


def test_audit_vectors_finds_flipped_labels_and_planted_leak():
    X, y = _blobs()
    rng = np.random.default_rng(3)
    flipped = rng.choice(len(y), 8, replace=False)
    y_noisy = y.copy()
    for i in flipped:
        y_noisy[i] = "c0" if y[i] != "c0" else "c1"
    split = np.where(np.arange(len(y)) % 4 == 0, "testing", "training")
    # A testing copy of a training image.
    X[0 * 40 + 0] = X[0 * 40 + 1]
    split[0], split[1] = "testing", "training"
    result = audit_vectors(X, y_noisy, split, n_folds=4)
    flagged = {r["index"] for r in result.label_issues}
    assert set(flipped.tolist()) <= flagged
    assert len(flagged) <= len(flipped) + 2
    for r in result.label_issues:
        if r["index"] in flipped:
            assert r["suggested_label"] == y[r["index"]]
    assert result.summary["n_exact_duplicate_pairs"] == 1
    assert result.summary["cross_split_pairs_by_splits"] == {"testing/training": 1}
    assert result.twins["n_with_twin"] == 1
    assert result.balance["counts"]["c1"]["training"] + result.balance["counts"]["c1"][
        "testing"
    ] == int(np.sum(y_noisy == "c1"))


def test_audit_vectors_flags_an_outlier_and_tiny_class():
    X, y = _blobs(n_per_class=30)
    rng = np.random.default_rng(5)
    X = np.vstack([X, rng.normal(0, 40, (1, X.shape[1]))]).astype(np.float32)
    y = np.append(y, "c2")
    X = np.vstack([X, X[:3] + 0.3])
    y = np.append(y, ["tiny"] * 3)
    result = audit_vectors(X, y, n_folds=4)
    assert [r["index"] for r in result.outliers][:1] == [len(y) - 4]
    assert result.balance["tiny_classes"] == ["tiny"]
    assert result.summary["balance"]["smallest"] == 3


def test_audit_vectors_bad_input():
    msg = "X must be 2-D with one row per label; got shape (3, 2) for 2 labels."
    with pytest.raises(ValueError, match=re.escape(msg)):
        audit_vectors(np.zeros((3, 2)), ["a", "b"])
    with pytest.raises(ValueError, match="at least 2 classes; got 1"):
        audit_vectors(np.eye(4), ["a"] * 4)


def test_write_audit_files(tmp_path):
    X, y = _blobs(n_per_class=12, n_classes=3, dim=12)
    paths = []
    for i, label in enumerate(y):
        paths.append(str(write_image(tmp_path / "img" / label / f"{i}.png", seed=i)))
    y = y.copy()
    y[0] = "c1"  # a label issue
    X[5] = X[6]  # a duplicate pair
    out = tmp_path / "audit"
    result = audit_vectors(X, y, paths=paths, n_folds=3)
    files = write_audit(result, out)
    page = files["html"].read_text()
    assert "base64" not in page
    srcs = re.findall(r"src='([^']+)'", page)
    assert srcs and all((out / s).is_file() for s in srcs)
    assert "loading='lazy'" in page
    assert paths[0] in page and "Label issues" in page and "Class balance" in page
    rows = list(csv.DictReader(open(files["csv"], encoding="utf-8")))
    kinds = {r["issue"] for r in rows}
    assert {"label", "exact_duplicate"} <= kinds
    label_rows = [r for r in rows if r["issue"] == "label"]
    assert label_rows[0]["path"] == paths[0]
    assert label_rows[0]["suggested_label"] == "c0"
    payload = json.loads(files["json"].read_text())
    assert payload["n_label_issues"] == len(label_rows)
    assert payload["class_counts"]["c2"] == {"training": 12}


def _count_fits(monkeypatch) -> list:
    """A list that grows by one at each SoftmaxClassifier.fit (which still runs)."""
    from embedclf.heads._linear import SoftmaxClassifier

    fits = []
    real_fit = SoftmaxClassifier.fit

    def counting_fit(self, *args, **kwargs):
        fits.append(1)
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(SoftmaxClassifier, "fit", counting_fit)
    return fits


def test_audit_vectors_memory_skips_the_heads_on_a_second_run(tmp_path, monkeypatch):
    X, y = _blobs(n_per_class=15, n_classes=3, dim=12)
    split = np.where(np.arange(len(y)) % 5 == 0, "testing", "training")
    fits = _count_fits(monkeypatch)
    first = audit_vectors(X, y, split, n_folds=3, memory=tmp_path / "memo")
    n_first = len(fits)
    assert n_first >= 4  # three folds and the twin head
    second = audit_vectors(X, y, split, n_folds=3, memory=tmp_path / "memo")
    assert len(fits) == n_first  # all read back
    np.testing.assert_array_equal(first.proba, second.proba)
    assert first.summary == second.summary
    y2 = y.copy()
    y2[0] = "c1"  # other labels: computed again
    audit_vectors(X, y2, split, n_folds=3, memory=tmp_path / "memo")
    assert len(fits) > n_first


def test_audit_memory_folder_keeps_only_the_latest_results(tmp_path, monkeypatch):
    import joblib

    from embedclf.workflow._audit import _run

    monkeypatch.setattr(_run, "MEMO_ITEMS", 6)
    X, y = _blobs(n_per_class=15, n_classes=3, dim=12)
    split = np.where(np.arange(len(y)) % 5 == 0, "testing", "training")
    folder = tmp_path / "memo"

    def n_items():
        return len(joblib.Memory(folder, verbose=0).store_backend.get_items())

    audit_vectors(X, y, split, n_folds=3, memory=folder)
    per_audit = n_items()
    assert 2 <= per_audit <= 6
    for i in range(1, 4):  # other labels each time: new results
        y_i = y.copy()
        y_i[i] = "c2" if y[i] != "c2" else "c0"
        audit_vectors(X, y_i, split, n_folds=3, memory=folder)
    assert n_items() <= 6
    fits = _count_fits(monkeypatch)
    audit_vectors(X, y_i, split, n_folds=3, memory=folder)  # the latest: kept
    assert fits == []
    audit_vectors(X, y, split, n_folds=3, memory=folder)  # the first: pruned
    assert fits
