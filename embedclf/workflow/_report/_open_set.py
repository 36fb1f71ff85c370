"""The open-set part of a report: the "unknown" answer measured like a detector.

Given each image's unknown score (higher = less like any known class, from
``OpenSetClassifier.unknown_score``) and whether its true label is one of the
model's classes, :func:`open_set_metrics` gives the detector figures and
:func:`write_open_set_report` writes them with two figures::

    open_set.json             AUROC, FPR at 95 % TPR, known recall, rejected
    unknown_scores.png        known vs unknown score histograms, threshold
    risk_coverage.png         error among accepted known images vs coverage
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

__all__ = [
    "format_open_set",
    "open_set_inputs",
    "open_set_metrics",
    "write_open_set_report",
]


def open_set_inputs(head, X) -> dict | None:
    """``{"scores", "threshold"}`` of an open-set head on ``X``, else None.

    The threshold is None for the 0.1.0 two-threshold rule, whose decision is
    not one threshold on the score.
    """
    if not hasattr(head, "unknown_score"):
        return None
    return {
        "scores": head.unknown_score(X),
        "threshold": getattr(head, "unknown_threshold_", None),
    }


def open_set_metrics(scores, is_unknown, threshold=None) -> dict:
    """Detector figures of unknown ``scores`` (unknown = the positive class).

    Parameters
    ----------
    scores : array-like of shape (n_samples,)
        Unknown scores, higher = less like any known class.
    is_unknown : array-like of bool, shape (n_samples,)
        True where the true label is none of the model's classes.
    threshold : float, optional
        The model's threshold: a score above it answers "unknown".

    Returns
    -------
    metrics : dict
        ``n_known``, ``n_unknown``; ``auroc`` and ``fpr_at_95_tpr`` (None
        without both kinds); ``known_recall`` (known images accepted) and
        ``unknown_rejected`` (unknown images answered "unknown") when a
        threshold is given.
    """
    from sklearn.metrics import roc_auc_score

    s = np.asarray(scores, dtype=float)
    unknown = np.asarray(is_unknown, dtype=bool)
    out = {"n_known": int((~unknown).sum()), "n_unknown": int(unknown.sum())}
    both = out["n_known"] and out["n_unknown"]
    out["auroc"] = float(roc_auc_score(unknown, s)) if both else None
    out["fpr_at_95_tpr"] = None
    if both:
        # TPR: known images accepted; FPR: unknown images accepted with them.
        cut = np.quantile(s[~unknown], 0.95, method="inverted_cdf")
        out["fpr_at_95_tpr"] = float(np.mean(s[unknown] <= cut))
    out["threshold"] = None if threshold is None else float(threshold)
    out["known_recall"] = out["unknown_rejected"] = None
    if threshold is not None:
        if out["n_known"]:
            out["known_recall"] = float(np.mean(s[~unknown] <= threshold))
        if out["n_unknown"]:
            out["unknown_rejected"] = float(np.mean(s[unknown] > threshold))
    return out


def format_open_set(metrics: dict) -> str:
    """One line of the open-set figures (for the terminal)."""
    parts = [f"{metrics['n_known']} known, {metrics['n_unknown']} unknown images"]
    if metrics["auroc"] is not None:
        parts.append(f"AUROC {metrics['auroc']:.3f}")
        parts.append(f"FPR at 95% TPR {metrics['fpr_at_95_tpr']:.1%}")
    if metrics["known_recall"] is not None:
        parts.append(f"known recall {metrics['known_recall']:.1%}")
    if metrics["unknown_rejected"] is not None:
        parts.append(f"unknown rejected {metrics['unknown_rejected']:.1%}")
    return "Open set: " + ", ".join(parts) + "."


def _plot_histograms(s, unknown, threshold, path, plt):
    fig, ax = plt.subplots(figsize=(7, 4))
    bins = np.histogram_bin_edges(s, bins=40)
    ax.hist(s[~unknown], bins=bins, alpha=0.6, density=True, label="known classes")
    if unknown.any():
        ax.hist(s[unknown], bins=bins, alpha=0.6, density=True, label="unknown")
    if threshold is not None:
        ax.axvline(threshold, color="k", linestyle="--", label="threshold")
    ax.set_xlabel("unknown score (higher = less like any known class)")
    ax.set_ylabel("density")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_risk_coverage(s, wrong, threshold, path, plt):
    order = np.argsort(s, kind="stable")
    n = np.arange(1, len(order) + 1)
    coverage = n / len(order)
    risk = np.cumsum(wrong[order]) / n
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(coverage, risk)
    if threshold is not None:
        c = float(np.mean(s <= threshold))
        ax.axvline(c, color="k", linestyle="--", label=f"threshold ({c:.0%} kept)")
        ax.legend()
    ax.set_xlabel("coverage (fraction of images answered with a class)")
    ax.set_ylabel("risk (error among them)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, max(0.05, float(risk.max()) * 1.05))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_open_set_report(
    out_dir, scores, y_true, y_closed, classes, *, threshold=None
):
    """Write open_set.json, unknown_scores.png and risk_coverage.png.

    Parameters
    ----------
    out_dir : str or os.PathLike
        Existing report directory.
    scores : array-like of shape (n_samples,)
        Unknown scores.
    y_true : array-like of shape (n_samples,)
        True labels; those not in ``classes`` are unknown images.
    y_closed : array-like of shape (n_samples,)
        The model's best known class per image (argmax of predict_proba), for
        the risk: an image answered with a class is an error when it is not
        its true label (always, for an unknown image).
    classes : sequence of str
    threshold : float, optional

    Returns
    -------
    metrics : dict
        As :func:`open_set_metrics`, plus ``files``.
    """
    from embedclf.workflow._report._figures import _import_pyplot

    out = Path(out_dir)
    s = np.asarray(scores, dtype=float)
    y_true = np.asarray(y_true).astype(str)
    unknown = ~np.isin(y_true, [str(c) for c in classes])
    metrics = open_set_metrics(s, unknown, threshold)
    plt = _import_pyplot()
    _plot_histograms(s, unknown, threshold, out / "unknown_scores.png", plt)
    wrong = y_true != np.asarray(y_closed).astype(str)
    _plot_risk_coverage(s, wrong, threshold, out / "risk_coverage.png", plt)
    metrics["files"] = ["open_set.json", "unknown_scores.png", "risk_coverage.png"]
    (out / "open_set.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics
