"""The unknown answer of ``train``: background images, summary, manifest entry."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

__all__ = ["background_vectors", "unknown_entry", "unknown_text"]

logger = logging.getLogger("embedclf.train")


def background_vectors(unknown_dir, embedder, unknown: str):
    """Vectors of the ``unknown_dir`` images (background), or None."""
    if not unknown_dir or unknown == "off":
        return None
    from embedclf.embedding._images import IMAGE_EXTENSIONS

    root = Path(unknown_dir)
    if not root.is_dir():
        raise FileNotFoundError(
            f"--unknown-dir {str(root)!r} is not a folder. Pass a folder of "
            "images of none of the classes."
        )
    paths = sorted(
        str(p) for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS
    )
    if not paths:
        raise ValueError(f"--unknown-dir {str(root)!r} holds no images.")
    X = embedder.transform(paths)
    logger.info(f"Embedded {len(paths)} background images from {root}.")
    return X[~np.isin(paths, embedder.failed_paths_)]


def unknown_text(head, unknown: str) -> str:
    """One line on the fitted unknown rule (``unknown``: "auto" or a number)."""
    if unknown != "auto":
        return f"Open set: unknown below top probability {float(unknown):.4g}"
    text = (
        f"Open set: unknown when the {head.detector_} score is above "
        f"{head.unknown_threshold_:.4g}"
    )
    if head.known_recall_ is not None:
        text += f" (held-out known recall {head.known_recall_:.1%})"
    if head.unknown_recall_ is not None:
        text += f"; background images rejected {head.unknown_recall_:.1%}"
    return text + "."


def unknown_entry(head, unknown: str) -> dict:
    """The manifest's ``unknown``: the rule, its threshold(s) and recalls."""
    if unknown == "off":
        return {"mode": "off", "label": None}
    return {
        "mode": "auto" if unknown == "auto" else "threshold",
        "label": head.unknown_label,
        "detector": head.detector_,
        "threshold": head.unknown_threshold_,
        "fusion": None if not head.fusion_ else head.fusion_["kind"],
        "fusion_scores": None if not head.fusion_ else list(head.fusion_["names"]),
        "probability_threshold": None if unknown == "auto" else float(unknown),
        "distance_threshold": head.distance_threshold_,
        "known_recall": head.known_recall_,
        "background_rejected": head.unknown_recall_,
    }
