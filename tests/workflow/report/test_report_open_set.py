"""The open-set part of the report: detector figures and the two PNGs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from embedclf.workflow._report import write_report
from embedclf.workflow._report._open_set import (
    format_open_set,
    open_set_metrics,
    write_open_set_report,
)


def test_metrics_match_their_definitions():
    rng = np.random.default_rng(0)
    known, unknown = rng.normal(0, 1, 400), rng.normal(1.5, 1, 100)
    s = np.r_[known, unknown]
    is_unknown = np.r_[np.zeros(400, bool), np.ones(100, bool)]
    m = open_set_metrics(s, is_unknown, threshold=1.0)
    pairs = (unknown[:, None] > known[None, :]).mean()
    assert m["auroc"] == pytest.approx(pairs)
    cut = np.sort(known)[379]  # 95 % of 400 known scores are <= cut
    assert m["fpr_at_95_tpr"] == pytest.approx(np.mean(unknown <= cut))
    assert m["known_recall"] == pytest.approx(np.mean(known <= 1.0))
    assert m["unknown_rejected"] == pytest.approx(np.mean(unknown > 1.0))
    assert (m["n_known"], m["n_unknown"]) == (400, 100)
    text = format_open_set(m)
    assert f"AUROC {pairs:.3f}" in text and "unknown rejected" in text


def test_only_known_images_gives_no_auroc():
    m = open_set_metrics([0.1, 0.2, 0.9], [False, False, False], threshold=0.5)
    assert m["auroc"] is None and m["fpr_at_95_tpr"] is None
    assert m["known_recall"] == pytest.approx(2 / 3)
    assert m["unknown_rejected"] is None


def test_write_report_adds_the_open_set_files(tmp_path):
    classes = ["a", "b"]
    y_true = np.array(["a", "b", "a", "other", "other", "b"])
    proba = np.array(
        [[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.5, 0.5], [0.6, 0.4], [0.1, 0.9]]
    )
    scores = np.array([0.1, 0.2, 0.4, 0.9, 0.3, 0.15])
    y_pred = np.array(["a", "b", "b", "unknown", "a", "b"])
    paths = [str(tmp_path / f"{i}.jpg") for i in range(6)]
    metrics = write_report(
        tmp_path / "r", paths, y_true, y_pred, proba, classes,
        open_set={"scores": scores, "threshold": 0.5},
    )  # fmt: skip
    assert {"open_set.json", "unknown_scores.png", "risk_coverage.png"} <= set(
        metrics["files"]
    )
    saved = json.loads((tmp_path / "r" / "open_set.json").read_text())
    assert saved["unknown_rejected"] == 0.5  # "other": 0.9 rejected, 0.3 not
    assert saved["known_recall"] == 1.0
    assert saved["auroc"] == pytest.approx(metrics["open_set"]["auroc"])
    for name in ("unknown_scores.png", "risk_coverage.png"):
        with Image.open(tmp_path / "r" / name) as img:
            assert img.size[0] > 300


def test_report_without_open_set_is_unchanged(tmp_path):
    m = write_report(
        tmp_path, ["x.jpg"], ["a"], ["a"], np.array([[1.0, 0.0]]), ["a", "b"]
    )
    assert "open_set" not in m
    assert not (tmp_path / "open_set.json").exists()


def test_risk_coverage_counts_unknown_images_as_errors(tmp_path):
    # the lowest scores are correct known images, the highest unknown ones
    write_open_set_report(
        tmp_path, [0.1, 0.2, 0.8, 0.9], ["a", "a", "x", "x"], ["a", "a", "a", "a"],
        ["a"], threshold=0.5,
    )  # fmt: skip
    m = json.loads((tmp_path / "open_set.json").read_text())
    assert m["auroc"] == 1.0 and m["fpr_at_95_tpr"] == 0.0
