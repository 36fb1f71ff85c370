"""``embedclf train``: the unknown answer's background images and summaries."""

from __future__ import annotations


def _print(*args):
    print(*args, flush=True)


def _background(args, embedder, unknown):
    """Vectors of the ``--unknown-dir`` images (background), or None."""
    if not getattr(args, "unknown_dir", None) or unknown == "off":
        return None
    from pathlib import Path

    import numpy as np

    from embedclf.embedding._images import IMAGE_EXTENSIONS

    root = Path(args.unknown_dir)
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
    _print(f"Embedded {len(paths)} background images from {root}.")
    return X[~np.isin(paths, embedder.failed_paths_)]


def _unknown_text(head) -> str:
    if getattr(head, "detector_", None) is None:
        return (
            f"Open set: unknown below top probability {head.probability_threshold_:.4g}"
        )
    text = (
        f"Open set: unknown when the {head.detector_} score is above "
        f"{head.unknown_threshold_:.4g}"
    )
    if head.known_recall_ is not None:
        text += f" (held-out known recall {head.known_recall_:.1%})"
    if head.unknown_recall_ is not None:
        text += f"; background images rejected {head.unknown_recall_:.1%}"
    return text + "."


def _unknown_entry(head, unknown):
    if unknown == "off":
        return {"mode": "off", "label": None}
    return {
        "mode": "auto" if unknown == "auto" else "threshold",
        "label": head.unknown_label,
        "detector": head.detector_,
        "threshold": head.unknown_threshold_,
        "fusion": None if not head.fusion_ else head.fusion_["kind"],
        "fusion_scores": None if not head.fusion_ else list(head.fusion_["names"]),
        "probability_threshold": head.probability_threshold_,
        "distance_threshold": head.distance_threshold_,
        "known_recall": head.known_recall_,
        "background_rejected": head.unknown_recall_,
    }
