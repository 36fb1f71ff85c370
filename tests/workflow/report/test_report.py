"""Per-class metrics, confusion-matrix PNG and the misclassified-images page."""

from __future__ import annotations

import json
import re
import sys

import numpy as np
import pytest
from conftest import write_image

from embedclf.workflow._report._figures import (
    calibration,
    cluster_order,
    top_confusions,
)
from embedclf.workflow._report._write import (
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
    # Thumbnails are linked files loaded lazily, not base64 in the page.
    assert "base64" not in page
    srcs = re.findall(r"src='(thumbs/[^']+)'", page)
    assert len(srcs) == 1 and (tmp_path / srcs[0]).is_file()
    assert "loading='lazy'" in page
    assert f"href='{paths[1].resolve().as_uri()}'" in page  # the full image
    # full paths: a thumbnail's hashed file name may itself end in "0.jpg"
    assert str(paths[1]) in page and str(paths[0]) not in page
    assert "&lt;y&gt;: 0.700" in page  # labels are escaped, scores shown
    assert "Misclassified images: 1 of 3" in page
    assert "x: 1 of 2 wrong" in page  # grouped by true class


def test_misclassified_html_groups_and_ranks(tmp_path):
    paths = [str(write_image(tmp_path / f"{i}.png", seed=i)) for i in range(8)]
    y_true = ["a", "a", "a", "b", "b", "c", "c", "c"]
    y_pred = ["b", "b", "a", "a", "b", "a", "c", "c"]
    proba = np.full((8, 3), 1 / 3)
    confusions = top_confusions(y_true, y_pred, ["a", "b", "c"])
    assert confusions[0] == {
        "true": "a",
        "predicted": "b",
        "count": 2,
        "share_of_true": pytest.approx(2 / 3),
    }
    # Equal counts: the larger share of the true class first.
    assert [(c["true"], c["predicted"]) for c in confusions[1:]] == [
        ("b", "a"),
        ("c", "a"),
    ]
    write_misclassified_html(
        paths,
        y_true,
        y_pred,
        proba,
        ["a", "b", "c"],
        tmp_path / "m.html",
        confusions=confusions,
        calibration={
            "ece": 0.25,
            "bins": [{"confidence": 0.33, "accuracy": 0.5, "count": 8}],
        },
        figures=[("confusion_matrix.png", "Confusion matrix")],
    )
    page = (tmp_path / "m.html").read_text()
    assert "Top confusions" in page and "Expected calibration error 0.250" in page
    assert "href='confusion_matrix.png'" in page
    # Classes with the most errors first.
    assert page.index("a: 2 of 3 wrong") < page.index("b: 1 of 2 wrong")
    assert page.index("Accuracy <b>50.0%</b>") < page.index("<h2 id='confusions'>")


def test_calibration_ece():
    y_true = ["a", "a", "a", "a", "b", "b", "b", "b"]
    y_pred = ["a", "a", "a", "b", "b", "b", "a", "a"]
    conf = np.array([0.95, 0.95, 0.95, 0.95, 0.55, 0.55, 0.55, 0.55])
    proba = np.column_stack([conf, 1 - conf])
    result = calibration(y_true, y_pred, proba)
    # Bin 0.9-1: confidence 0.95, accuracy 0.75; bin 0.5-0.6: 0.55 vs 0.5.
    assert result["ece"] == pytest.approx(0.5 * 0.2 + 0.5 * 0.05)
    assert [b["count"] for b in result["bins"]] == [4, 4]
    all_right = calibration(["a", "b"], ["a", "b"], np.array([[0.9, 0.1], [0.3, 0.7]]))
    assert all_right["ece"] == pytest.approx((0.1 + 0.3) / 2)
    assert calibration([], [], np.zeros((0, 2)))["ece"] is None


def test_cluster_order_puts_confused_classes_together():
    # 0 <-> 3 and 1 <-> 4 confuse each other; 2 and 5 are clean.
    norm = np.eye(6) * 0.6
    norm[0, 3] = norm[3, 0] = norm[1, 4] = norm[4, 1] = 0.4
    norm[2, 2] = norm[5, 5] = 1
    order = cluster_order(norm).tolist()
    assert sorted(order) == list(range(6))
    assert abs(order.index(0) - order.index(3)) == 1
    assert abs(order.index(1) - order.index(4)) == 1


def test_confusion_matrix_png(tmp_path):
    path = plot_confusion_matrix(
        ["a", "b", "b"], ["a", "a", "b"], ["a", "b"], tmp_path / "cm.png"
    )
    from PIL import Image

    with Image.open(path) as img:
        assert img.format == "PNG" and img.size[0] >= 300
        # The colour bar makes the figure wider than tall.
        assert img.size[0] > img.size[1]


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
    assert "reliability.png" in m["files"]
    assert stored["calibration"]["ece"] == pytest.approx(m["calibration"]["ece"])
    assert stored["top_confusions"][0] == {
        "true": "b",
        "predicted": "a",
        "count": 1,
        "share_of_true": pytest.approx(1 / 3),
    }
