"""The manifest of a model directory: its format, reading it, what it records.

The one place for the format constants (file names, ``format`` and
``format_version``) and for reading a manifest and checking its format
(:func:`read_manifest` strict, :func:`own_manifest` lenient); ``_io``, ``_load``
and ``_locations`` import them from here. Also what it records besides its files:
the library versions that shaped the model, JSON conversion, and the names
and explanations of its figures: the cross-validation score is ``cv_*``,
never ``validation_*`` (that is the validation part's), and ``notes`` in the
manifest says what each figure and the image size mean.
"""

from __future__ import annotations

import json
import os
import platform
import re
from pathlib import Path

import numpy as np

from embedclf.exceptions import ModelDirError

__all__ = [
    "HEAD_FILE",
    "LABELS_FILE",
    "MANIFEST_FILE",
    "MANIFEST_FORMAT",
    "MANIFEST_VERSION",
    "VERSION_FOLDER",
    "METRIC_NOTES",
    "jsonable",
    "library_versions",
    "manifest_c_grid",
    "manifest_notes",
    "own_manifest",
    "read_manifest",
]

MANIFEST_FORMAT = "embedclf-model-dir"
#: Version 2: head and labels in a versioned folder named by the manifest
#: (with their digests); ``backbone`` may be a list (several backbones).
#: Version 1 (embedclf 0.1.0) is still read.
MANIFEST_VERSION = 2
HEAD_FILE = "head.skops"
LABELS_FILE = "labels.txt"
MANIFEST_FILE = "manifest.json"
#: Name of the versioned folder that holds one trained head and its labels.
VERSION_FOLDER = re.compile(r"^model-\d{8}T\d{6}Z-[0-9a-f]{8}$")

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

    from embedclf._version import __version__

    out = {"python": platform.python_version(), "embedclf": __version__}
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


def own_manifest(path) -> dict | None:
    """``path/manifest.json`` when it is an embedclf manifest (any version)."""
    try:
        manifest = json.loads((Path(path) / MANIFEST_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        return None
    return manifest


def read_manifest(path) -> dict:
    """Read and check ``path/manifest.json`` (format and version)."""
    path = Path(path)
    if not path.is_dir():
        raise ModelDirError(
            f"Model directory {str(path)!r} does not exist. Pass the --output "
            "directory of `embedclf train`."
        )
    manifest_path = path / MANIFEST_FILE
    if not manifest_path.is_file():
        raise ModelDirError(
            f"{str(path)!r} is not an embedclf model directory: it has no "
            f"{MANIFEST_FILE}. Pass the --output directory of `embedclf train`."
        )
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelDirError(
            f"{str(manifest_path)!r} is not valid JSON ({exc}). Train the model "
            "again, or restore the file from a backup."
        ) from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise ModelDirError(
            f"{str(manifest_path)!r} is not an embedclf manifest (format "
            f"{manifest.get('format') if isinstance(manifest, dict) else None!r}, "
            f"expected {MANIFEST_FORMAT!r})."
        )
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > MANIFEST_VERSION:
        raise ModelDirError(
            f"Model directory {str(path)!r} has format version {version!r}, but "
            f"this embedclf reads versions up to {MANIFEST_VERSION}. Upgrade "
            "embedclf (pip install -U embedclf) to use it."
        )
    return manifest
