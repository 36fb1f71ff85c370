"""The counts an audit reports (``AuditResult.summary``, the report's metrics)."""

from __future__ import annotations

import numpy as np

__all__ = ["audit_summary"]


def _image_counts(image_issues) -> dict:
    from embedclf.workflow._audit._images import IMAGE_ISSUES

    return {k: sum(r["issue"] == k for r in image_issues) for k in IMAGE_ISSUES}


def audit_summary(result, y, pairs, image_issues, outliers, twins, **settings) -> dict:
    """The audit's counts (``AuditResult.summary``, the report's metrics)."""
    suggested = result.proba.argmax(axis=1)
    checked = settings["phash_distance"] is not None
    cross = [p for p in pairs if "/" in p["splits"]]
    signals = ("content", "embedding", "embedding+phash", "phash")
    return {
        "n_images": len(result.labels),
        "n_classes": int(len(result.classes)),
        "duplicate_threshold": float(settings["duplicate_threshold"]),
        "out_of_fold_accuracy": float(np.mean(suggested == y)),
        "n_label_issues": len(result.label_issues),
        "n_exact_duplicate_pairs": sum(p["kind"] == "exact" for p in pairs),
        "n_near_duplicate_pairs": sum(p["kind"] == "near" for p in pairs),
        "n_cross_split_pairs": len(cross),
        "cross_split_pairs_by_splits": {
            s: sum(p["splits"] == s for p in cross)
            for s in sorted({p["splits"] for p in cross})
        },
        "pairs_by_signal": {k: sum(p["signal"] == k for p in pairs) for k in signals},
        "cross_split_pairs_by_signal": {
            k: sum(p["signal"] == k for p in cross) for k in signals
        },
        "phash_distance": settings["phash_distance"],
        "image_checks": checked,
        "n_image_issues": _image_counts(image_issues) if checked else {},
        "n_images_with_image_issue": len({r["index"] for r in image_issues}),
        "n_outliers": len(outliers),
        "twins": twins,
        "balance": {k: v for k, v in result.balance.items() if k != "counts"},
    }
