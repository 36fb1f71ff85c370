"""What a model directory's manifest records besides its files.

The library versions that shaped the model, JSON conversion, and the names
and explanations of its figures: the cross-validation score is ``cv_*``,
never ``validation_*`` (that is the validation part's), and ``notes`` in the
manifest says what each figure and the image size mean.
"""

from __future__ import annotations

import os
import platform

import numpy as np

__all__ = [
    "METRIC_NOTES",
    "jsonable",
    "library_versions",
    "manifest_c_grid",
    "manifest_notes",
]

#: What each figure of ``metrics`` is (written under ``notes`` in the manifest).
METRIC_NOTES = {
    "cv_accuracy": (
        "Mean accuracy on the held-out folds of a cross-validation inside the "
        "training part, for the chosen C. C was picked by this figure, so it is "
        "optimistic, and near-duplicate photos (one object shot several times) "
        "in different folds inflate it further. Not the validation accuracy."
    ),
    "validation_accuracy": (
        "Accuracy on the validation part: images never used to fit the head."
    ),
    "test_accuracy": (
        "Accuracy on the testing part: images used neither to fit the head nor "
        "to pick C."
    ),
    "c_grid": (
        "One row per C (and scaling) tried. With cross-validation (no "
        "validation part), means over the folds: cv_accuracy and "
        "cv_cross_entropy on the held-out folds, cv_train_* on the folds "
        "fitted on. With a validation part, each candidate fitted on the "
        "training part: validation_part_* on the validation part, "
        "training_part_* on the training part."
    ),
}


def library_versions() -> dict:
    """Versions of the libraries that shape a trained model."""
    from importlib.metadata import PackageNotFoundError, version

    import embedclf

    out = {"python": platform.python_version(), "embedclf": embedclf.__version__}
    for dist in ("numpy", "scikit-learn", "skops", "tensorflow", "pillow", "h5py"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:  # pragma: no cover - core deps are present
            out[dist] = None
    return out


def jsonable(value):
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def manifest_c_grid(grid, rule: str | None = None) -> list:
    """Rows of the selection grid, named for the manifest (see METRIC_NOTES).

    With cross-validation, ``validation_*`` (the held-out folds) becomes
    ``cv_*`` and ``train_*`` (the folds fitted on) ``cv_train_*``; with
    ``rule="validation"`` (candidates fitted on the training part, scored on
    the validation part) they become ``validation_part_*`` and
    ``training_part_*``. So no figure of the grid shares a name with the
    ``validation_accuracy`` of the chosen, refitted head.
    """
    held, fitted = (
        ("validation_part_", "training_part_")
        if rule == "validation"
        else ("cv_", "cv_train_")
    )
    out = []
    for row in grid:
        named = {}
        for key, value in row.items():
            if key.startswith("validation_"):
                key = held + key[len("validation_") :]
            elif key.startswith("train_"):
                key = fitted + key[len("train_") :]
            named[key] = value
        out.append(named)
    return out


def manifest_notes(full: dict) -> dict:
    size = full.get("image_size")
    notes = {
        "image_size": (
            f"Images are resized to {size[0]}x{size[1]} (--image-size) before "
            "the backbone."
            if size
            else "Absent: images are resized to the backbone's own input size."
        ),
    }
    metrics = full.get("metrics") or {}
    notes.update({f"metrics.{k}": v for k, v in METRIC_NOTES.items() if k in metrics})
    return notes
