"""The report's figures: the confusion matrix and the reliability diagram.

Both are PNGs drawn with matplotlib (a dependency of embedclf, imported only
when a figure is drawn). The confusion matrix is row-normalised, ordered so
that classes confused with each other sit together (hierarchical clustering
of the confusions, SciPy's optimal leaf ordering) and carries a colour bar;
:func:`top_confusions` lists the largest off-diagonal cells for the page.
The reliability diagram bins the top-label confidence with scikit-learn's
``calibration_curve``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = [
    "calibration",
    "cluster_order",
    "plot_confusion_matrix",
    "plot_reliability",
    "top_confusions",
]


def _import_pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError(
            "The report's figures need matplotlib, which is not installed (it "
            "is a dependency of embedclf). Run: pip install matplotlib"
        ) from None
    return plt


def _confusion(y_true, y_pred, labels):
    from sklearn.metrics import confusion_matrix

    cm = confusion_matrix(
        np.asarray(y_true).astype(str), np.asarray(y_pred).astype(str), labels=labels
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = np.nan_to_num(cm / cm.sum(axis=1, keepdims=True))
    return cm, norm


def cluster_order(norm) -> np.ndarray:
    """Class order that puts mutually confused classes next to each other."""
    n = len(norm)
    if n < 3:
        return np.arange(n)
    from scipy.cluster.hierarchy import leaves_list, linkage
    from scipy.spatial.distance import squareform

    off = norm.copy()
    np.fill_diagonal(off, 0)
    similarity = off + off.T
    distance = 1.0 / (1.0 + 20.0 * similarity)
    np.fill_diagonal(distance, 0)
    tree = linkage(squareform(distance, checks=False), "average", optimal_ordering=True)
    return leaves_list(tree)


def top_confusions(y_true, y_pred, labels, *, k=20) -> list:
    """The ``k`` largest off-diagonal cells: true, predicted, count, share."""
    labels = [str(x) for x in labels]
    cm, norm = _confusion(y_true, y_pred, labels)
    off = cm.copy()
    np.fill_diagonal(off, 0)
    cells = np.argwhere(off > 0)
    cells = sorted(cells.tolist(), key=lambda c: (-off[c[0], c[1]], -norm[c[0], c[1]]))
    return [
        {
            "true": labels[i],
            "predicted": labels[j],
            "count": int(cm[i, j]),
            "share_of_true": float(norm[i, j]),
        }
        for i, j in cells[:k]
    ]


def plot_confusion_matrix(y_true, y_pred, labels, path, *, title=None) -> Path:
    """Draw the row-normalised confusion matrix (rows: true) as a PNG.

    Classes are ordered by :func:`cluster_order` when there are more than
    30 (alphabetical otherwise); raw counts are written in the cells when
    the matrix is small enough to read. A square-root colour scale keeps
    small confusions visible beside the diagonal.
    """
    from matplotlib.colors import PowerNorm

    plt = _import_pyplot()
    labels = [str(x) for x in labels]
    cm, norm = _confusion(y_true, y_pred, labels)
    n = len(labels)
    order = cluster_order(norm) if n > 30 else np.arange(n)
    cm, norm = cm[np.ix_(order, order)], norm[np.ix_(order, order)]
    names = [labels[i] for i in order]
    side = min(16.0, max(5.0, 0.17 * n + 3))
    fig, ax = plt.subplots(figsize=(side + 1.5, side))
    im = ax.imshow(norm, cmap="Blues", norm=PowerNorm(0.5, vmin=0, vmax=1))
    font = 6.5 if n > 30 else 9
    ax.set_xticks(range(n), labels=names, rotation=90, fontsize=font)
    ax.set_yticks(range(n), labels=names, fontsize=font)
    ax.set_xlabel("predicted label")
    ax.set_ylabel("true label")
    if n > 1:
        ax.set_xticks(np.arange(n + 1) - 0.5, minor=True)
        ax.set_yticks(np.arange(n + 1) - 0.5, minor=True)
        ax.grid(which="minor", color="#eee", linewidth=0.3)
        ax.tick_params(which="minor", length=0)
    bar = fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02)
    bar.set_label("share of the true class's images (each row sums to 1)")
    note = "rows normalised" + (
        "; classes ordered so that confused ones sit together" if n > 30 else ""
    )
    ax.set_title(f"{title}\n({note})" if title else f"Confusion matrix ({note})")
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


def calibration(y_true, y_pred, proba, *, n_bins=10) -> dict:
    """Top-label calibration: reliability bins and expected calibration error.

    The confidence of a prediction is its highest probability; a bin's
    accuracy is the share of its predictions that are right. ECE is the
    mean gap between the two, weighted by the bin's share of images.

    Returns
    -------
    result : dict
        ``ece``, ``n_bins`` and ``bins``: one dict per non-empty bin with
        ``confidence`` (mean), ``accuracy`` and ``count``.
    """
    from sklearn.calibration import calibration_curve

    y_true = np.asarray(y_true).astype(str)
    correct = (y_true == np.asarray(y_pred).astype(str)).astype(int)
    confidence = np.asarray(proba).max(axis=1) if len(y_true) else np.zeros(0)
    if len(y_true) == 0:
        return {"ece": None, "n_bins": n_bins, "bins": []}
    edges = np.linspace(0, 1, n_bins + 1)
    # Bin ids exactly as calibration_curve assigns them, for the counts.
    which = np.searchsorted(edges[1:-1], confidence)
    counts = np.bincount(which, minlength=n_bins)
    counts = counts[counts > 0]
    if correct.min() == correct.max():
        # calibration_curve needs both outcomes; all right or all wrong.
        conf = np.array([confidence[which == b].mean() for b in np.unique(which)])
        acc = np.full(len(conf), float(correct[0]))
    else:
        acc, conf = calibration_curve(correct, confidence, n_bins=n_bins)
    ece = float(np.sum(counts / len(correct) * np.abs(acc - conf)))
    return {
        "ece": ece,
        "n_bins": n_bins,
        "bins": [
            {"confidence": float(c), "accuracy": float(a), "count": int(m)}
            for c, a, m in zip(conf, acc, counts)
        ],
    }


def plot_reliability(result: dict, path, *, title=None) -> Path:
    """Draw the reliability diagram of :func:`calibration` as a PNG."""
    plt = _import_pyplot()
    bins = result["bins"]
    fig, (ax, hist) = plt.subplots(
        2, 1, figsize=(5.5, 6), height_ratios=[3, 1], sharex=True
    )
    ax.plot([0, 1], [0, 1], "--", color="#999", label="perfectly calibrated")
    if bins:
        conf = [b["confidence"] for b in bins]
        ax.plot(conf, [b["accuracy"] for b in bins], "o-", label="this model")
        hist.bar(conf, [b["count"] for b in bins], width=0.08, color="#69c")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", fontsize=8)
    ece = result["ece"]
    ece_text = "n/a" if ece is None else f"{ece:.3f}"
    ax.set_title(
        (f"{title}\n" if title else "")
        + f"Reliability (top label): expected calibration error {ece_text}",
        fontsize=9,
    )
    hist.set_xlabel("confidence (highest predicted probability)")
    hist.set_ylabel("images")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
