"""Evaluation report: per-class metrics, a confusion-matrix PNG, an HTML page.

``write_report`` writes, into one directory::

    metrics.json        accuracy and per-class precision / recall / F1 / support
    per_class.tsv       the same per-class table, tab-separated
    confusion_matrix.png
    misclassified.html  every misclassified image as a thumbnail, with its true
                        and predicted labels and the predicted scores

The PNG needs matplotlib (a dependency of embedclf); it is imported
only when the figure is drawn.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
from pathlib import Path

import numpy as np

__all__ = [
    "classification_metrics",
    "format_metrics",
    "plot_confusion_matrix",
    "write_misclassified_html",
    "write_report",
]

logger = logging.getLogger("embedclf")

_THUMBNAIL = 160


def _import_pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError(
            "The confusion-matrix figure needs matplotlib, which is not "
            "installed (it is a dependency of embedclf). Run: pip install matplotlib"
        ) from None
    return plt


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


def plot_confusion_matrix(y_true, y_pred, labels, path, *, title=None) -> Path:
    """Draw the confusion matrix (rows: true, columns: predicted) as a PNG.

    Cells are row-normalised colours with raw counts written in them when the
    matrix is small enough to read.
    """
    from sklearn.metrics import confusion_matrix

    plt = _import_pyplot()
    labels = [str(x) for x in labels]
    cm = confusion_matrix(
        np.asarray(y_true).astype(str), np.asarray(y_pred).astype(str), labels=labels
    )
    n = len(labels)
    side = min(40.0, max(5.0, 0.28 * n + 3))
    fig, ax = plt.subplots(figsize=(side, side))
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = cm / cm.sum(axis=1, keepdims=True)
    ax.imshow(np.nan_to_num(norm), cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), labels=labels, rotation=90, fontsize=7 if n > 30 else 9)
    ax.set_yticks(range(n), labels=labels, fontsize=7 if n > 30 else 9)
    ax.set_xlabel("predicted label")
    ax.set_ylabel("true label")
    if title:
        ax.set_title(title)
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    colour = "white" if norm[i, j] > 0.5 else "black"
                    ax.text(j, i, str(cm[i, j]), ha="center", va="center", color=colour)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _thumbnail_data_uri(image_path) -> str | None:
    from PIL import Image, ImageOps

    try:
        with Image.open(image_path) as img:
            img.draft("RGB", (_THUMBNAIL, _THUMBNAIL))
            img = ImageOps.exif_transpose(img).convert("RGB")
            img.thumbnail((_THUMBNAIL, _THUMBNAIL))
            buf = io.BytesIO()
            img.save(buf, format="JPEG", quality=80)
    except (OSError, ValueError, SyntaxError):
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def write_misclassified_html(paths, y_true, y_pred, proba, classes, path, *, top_k=3):
    """Write a self-contained HTML page of the misclassified images.

    Parameters
    ----------
    paths : sequence of str
        Image files, one per sample.
    y_true, y_pred : array-like of shape (n_samples,)
    proba : ndarray of shape (n_samples, n_classes)
        Predicted probabilities, columns in the order of ``classes``.
    classes : sequence of str
    path : str or os.PathLike
        The HTML file to write; thumbnails are embedded in it.
    top_k : int, default=3
        Scores shown per image.

    Returns
    -------
    n_misclassified : int
    """
    y_true = np.asarray(y_true).astype(str)
    y_pred = np.asarray(y_pred).astype(str)
    classes = [str(c) for c in classes]
    wrong = np.flatnonzero(y_true != y_pred)
    esc = html.escape
    cards = []
    for i in wrong:
        order = np.argsort(-proba[i])[:top_k]
        scores = "".join(
            f"<li>{esc(classes[j])}: {proba[i, j]:.3f}</li>" for j in order
        )
        uri = _thumbnail_data_uri(paths[i])
        img = (
            f'<img src="{uri}" alt="{esc(str(paths[i]))}">'
            if uri
            else "<div class='missing'>(cannot read image)</div>"
        )
        cards.append(
            f"<div class='card'>{img}<p class='path'>{esc(str(paths[i]))}</p>"
            f"<p>true: <b>{esc(y_true[i])}</b><br>predicted: "
            f"<b class='bad'>{esc(y_pred[i])}</b></p><ol>{scores}</ol></div>"
        )
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Misclassified images</title>
<style>
body {{ font-family: sans-serif; margin: 1em; }}
.card {{ display: inline-block; vertical-align: top; width: 200px; margin: 6px;
  padding: 6px; border: 1px solid #ccc; border-radius: 4px; font-size: 13px; }}
.card img {{ max-width: {_THUMBNAIL}px; max-height: {_THUMBNAIL}px; }}
.path {{ color: #666; word-break: break-all; font-size: 11px; }}
.bad {{ color: #b00; }}
ol {{ padding-left: 1.2em; margin: 0; }}
</style></head><body>
<h1>Misclassified images: {len(wrong)} of {len(y_true)}</h1>
{"".join(cards) if cards else "<p>No misclassified images.</p>"}
</body></html>
"""
    Path(path).write_text(page, encoding="utf-8")
    return len(wrong)


def write_report(
    out_dir, paths, y_true, y_pred, proba, classes, *, title=None, open_set=None
):
    """Write metrics.json, per_class.tsv, confusion_matrix.png, misclassified.html.

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
        :func:`embedclf.workflow._report_open_set.open_set_inputs` gives: adds the
        files of :func:`embedclf.workflow._report_open_set.write_open_set_report`
        and ``metrics["open_set"]``.

    Returns
    -------
    metrics : dict
        As :func:`classification_metrics`, plus ``files`` (names written).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics = classification_metrics(y_true, y_pred, classes)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
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
    write_misclassified_html(
        paths, y_true, y_pred, proba, classes, out / "misclassified.html"
    )
    metrics["files"] = [
        "metrics.json",
        "per_class.tsv",
        "confusion_matrix.png",
        "misclassified.html",
    ]
    if open_set is not None:
        from embedclf.workflow._report_open_set import write_open_set_report

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
