"""Evaluation report: per-class metrics, figures and an HTML page.

``write_report`` assembles, into one directory::

    metrics.json         accuracy, per-class precision / recall / F1 / support,
                         top confusions, calibration (expected calibration error)
    per_class.tsv        the same per-class table, tab-separated
    confusion_matrix.png row-normalised, clustered, with a colour bar
    reliability.png      the reliability diagram of the top-label confidence
    misclassified.html   summary, top confusions with thumbnails, every
                         misclassified image grouped by true class
    thumbs/              the page's thumbnails (linked, not embedded)

The figures live in ``_report_figures``, the page in ``_report_html``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from embedclf.workflow._report._figures import (
    calibration,
    plot_confusion_matrix,
    plot_reliability,
    top_confusions,
)
from embedclf.workflow._report._html import write_misclassified_html

__all__ = [
    "classification_metrics",
    "format_metrics",
    "plot_confusion_matrix",
    "write_misclassified_html",
    "write_report",
]

logger = logging.getLogger("embedclf")


def classification_metrics(y_true, y_pred, labels) -> dict:
    """Accuracy and per-class precision, recall, F1 and support.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_samples,)
        Labels as strings.
    labels : sequence of str
        Rows of the per-class table; true or predicted labels not in it
        (e.g. "unknown") are appended.

    Returns
    -------
    metrics : dict
        ``accuracy``, ``n_samples``, ``n_errors``, ``labels`` and ``per_class``
        (a list of dicts with label, precision, recall, f1, support).
    """
    from sklearn.metrics import precision_recall_fscore_support

    y_true = np.asarray(y_true).astype(str)
    y_pred = np.asarray(y_pred).astype(str)
    labels = [str(x) for x in labels]
    extra = sorted((set(y_true) | set(y_pred)) - set(labels))
    all_labels = labels + extra
    p, r, f, s = precision_recall_fscore_support(
        y_true, y_pred, labels=all_labels, zero_division=0
    )
    per_class = [
        {
            "label": label,
            "precision": float(p[i]),
            "recall": float(r[i]),
            "f1": float(f[i]),
            "support": int(s[i]),
        }
        for i, label in enumerate(all_labels)
    ]
    n = len(y_true)
    return {
        "accuracy": float(np.mean(y_true == y_pred)) if n else float("nan"),
        "n_samples": n,
        "n_errors": int(np.sum(y_true != y_pred)),
        "labels": all_labels,
        "per_class": per_class,
    }


def format_metrics(metrics: dict, *, only_present: bool = True) -> str:
    """The per-class table as aligned text (for the terminal)."""
    rows = [r for r in metrics["per_class"] if r["support"] or not only_present]
    width = max([len("class")] + [len(r["label"]) for r in rows])
    lines = [f"{'class':<{width}}  precision  recall     f1  support"]
    for r in rows:
        lines.append(
            f"{r['label']:<{width}}  {r['precision']:9.3f}  {r['recall']:6.3f}  "
            f"{r['f1']:5.3f}  {r['support']:7d}"
        )
    lines.append(
        f"{'accuracy':<{width}}  {metrics['accuracy']:9.4f}  "
        f"({metrics['n_samples'] - metrics['n_errors']}/{metrics['n_samples']})"
    )
    return "\n".join(lines)


def write_report(
    out_dir,
    paths,
    y_true,
    y_pred,
    proba,
    classes,
    *,
    title=None,
    open_set=None,
    explanations=None,
):
    """Write metrics.json, per_class.tsv, the figures and misclassified.html.

    Parameters
    ----------
    out_dir : str or os.PathLike
        Created if missing.
    paths : sequence of str
    y_true, y_pred : array-like of shape (n_samples,)
    proba : ndarray of shape (n_samples, n_classes)
    classes : sequence of str
        The model's classes (columns of ``proba``).
    title : str, optional
        Shown on the confusion matrix.
    open_set : dict, optional
        ``scores`` (unknown score per image) and ``threshold`` (or None), as
        :func:`embedclf.workflow._report._open_set.open_set_inputs` gives: adds the
        files of :func:`embedclf.workflow._report._open_set.write_open_set_report`
        and ``metrics["open_set"]``.
    explanations : dict, optional
        ``items`` (one per sample, None where not explained) and
        ``crop_fraction``, as :func:`embedclf.workflow._explain._explain.
        explain_misclassified` gives: shown beside each misclassified image.

    Returns
    -------
    metrics : dict
        As :func:`classification_metrics`, plus ``top_confusions``,
        ``calibration`` (``ece`` and the reliability bins) and ``files``
        (names written).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics = classification_metrics(y_true, y_pred, classes)
    lines = ["label\tprecision\trecall\tf1\tsupport"]
    lines += [
        f"{r['label']}\t{r['precision']:.4f}\t{r['recall']:.4f}\t{r['f1']:.4f}\t"
        f"{r['support']}"
        for r in metrics["per_class"]
    ]
    (out / "per_class.tsv").write_text("\n".join(lines) + "\n")
    plot_confusion_matrix(
        y_true, y_pred, metrics["labels"], out / "confusion_matrix.png", title=title
    )
    metrics["top_confusions"] = top_confusions(y_true, y_pred, metrics["labels"])
    metrics["calibration"] = calibration(y_true, y_pred, proba)
    plot_reliability(metrics["calibration"], out / "reliability.png", title=title)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    extra_html = None
    if explanations is not None:
        from embedclf.workflow._explain._explain import render_explanations

        extra_html = render_explanations(
            explanations["items"],
            [str(p) for p in paths],
            out / "explain",
            "explain",
            crop_fraction=explanations["crop_fraction"],
        )
    write_misclassified_html(
        paths,
        y_true,
        y_pred,
        proba,
        classes,
        out / "misclassified.html",
        confusions=metrics["top_confusions"],
        calibration=metrics["calibration"],
        figures=[
            ("reliability.png", "Calibration on these images"),
            ("confusion_matrix.png", "Confusion matrix (rows normalised)"),
        ],
        links=[("metrics.json", "metrics.json"), ("per_class.tsv", "per_class.tsv")],
        extra_html=extra_html,
    )
    metrics["files"] = [
        "metrics.json",
        "per_class.tsv",
        "confusion_matrix.png",
        "reliability.png",
        "misclassified.html",
    ]
    if open_set is not None:
        from embedclf.workflow._report._open_set import write_open_set_report

        closed = np.asarray([str(c) for c in classes])[np.argmax(proba, axis=1)]
        metrics["open_set"] = write_open_set_report(
            out,
            open_set["scores"],
            y_true,
            closed,
            classes,
            threshold=open_set["threshold"],
        )
        metrics["files"] += metrics["open_set"]["files"]
    return metrics
