"""Per-class metrics, confusion-matrix PNG and the misclassified-images page."""

from __future__ import annotations

import json
import re
import sys

import numpy as np
import pytest
from conftest import write_image

from embedclf.workflow._report import (
    classification_metrics,
    format_metrics,
    plot_confusion_matrix,
    write_misclassified_html,
    write_report,
)


def test_classification_metrics_values():
    y_true = ["a", "a", "b", "b", "c"]
    y_pred = ["a", "b", "b", "b", "unknown"]
    m = classification_metrics(y_true, y_pred, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(0.6)
    assert m["n_errors"] == 2 and m["n_samples"] == 5
    assert m["labels"] == ["a", "b", "c", "unknown"]
    rows = {r["label"]: r for r in m["per_class"]}
    assert rows["a"]["precision"] == 1.0 and rows["a"]["recall"] == 0.5
    assert rows["b"]["precision"] == pytest.approx(2 / 3) and rows["b"]["recall"] == 1
    assert rows["c"]["recall"] == 0 and rows["c"]["support"] == 1
    text = format_metrics(m)
    assert "accuracy" in text and "(3/5)" in text
    assert "unknown" not in text  # no support: not shown


def test_misclassified_html(tmp_path):
    paths = [write_image(tmp_path / f"{i}.jpg", seed=i) for i in range(3)]
    proba = np.array([[0.9, 0.1], [0.3, 0.7], [0.2, 0.8]])
    n = write_misclassified_html(
        [str(p) for p in paths],
        ["x", "x", "<y>"],
        ["x", "<y>", "<y>"],
        proba,
        ["x", "<y>"],
        tmp_path / "m.html",
    )
    page = (tmp_path / "m.html").read_text()
    assert n == 1
    assert page.count('<img src="data:image/jpeg;base64,') == 1
    assert "1.jpg" in page and "0.jpg" not in page
    assert "&lt;y&gt;: 0.700" in page  # labels are escaped, scores shown
    assert "Misclassified images: 1 of 3" in page


def test_confusion_matrix_png(tmp_path):
    path = plot_confusion_matrix(
        ["a", "b", "b"], ["a", "a", "b"], ["a", "b"], tmp_path / "cm.png"
    )
    from PIL import Image

    with Image.open(path) as img:
        assert img.format == "PNG" and img.size[0] >= 300


def test_missing_matplotlib_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    msg = "Run: pip install matplotlib"
    with pytest.raises(ImportError, match=re.escape(msg)):
        plot_confusion_matrix(["a"], ["a"], ["a"], tmp_path / "cm.png")


def test_write_report_files(tmp_path):
    paths = [str(write_image(tmp_path / f"{i}.png", seed=i)) for i in range(4)]
    proba = np.array([[0.8, 0.2], [0.6, 0.4], [0.1, 0.9], [0.4, 0.6]])
    m = write_report(
        tmp_path / "r",
        paths,
        ["a", "b", "b", "b"],
        ["a", "a", "b", "b"],
        proba,
        ["a", "b"],
    )
    assert m["accuracy"] == 0.75
    stored = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert stored["accuracy"] == 0.75
    tsv = (tmp_path / "r" / "per_class.tsv").read_text().splitlines()
    assert tsv[0] == "label\tprecision\trecall\tf1\tsupport"
    assert tsv[2].startswith("b\t1.0000\t0.6667")
    for name in m["files"]:
        assert (tmp_path / "r" / name).is_file()
