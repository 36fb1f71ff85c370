"""Loading a model directory written by ``save_model_dir`` (see ``_io``).

The manifest is read and checked, the head and labels it names are checked
against their SHA-256 (format version 2), the head is loaded trusting only
known types, and its classes must match the labels; ``embedder_settings``
turns a manifest into the ImageEmbedder parameters it was trained with.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from embedclf.exceptions import ModelDirError
from embedclf.workflow._model_dir._manifest import (
    HEAD_FILE,
    MANIFEST_FILE,
    read_manifest,
)
from embedclf.workflow._model_dir._trust import load_head

logger = logging.getLogger("embedclf")

__all__ = ["ModelDir", "embedder_settings", "file_sha256", "load_model_dir"]


@dataclass
class ModelDir:
    """A loaded model directory: the fitted head and its manifest."""

    path: Path
    head: object
    manifest: dict
    labels: list = field(default_factory=list)

    def _backbone_field(self, name):
        recorded = self.manifest["backbone"]
        if isinstance(recorded, list):
            return [r[name] for r in recorded]
        return recorded[name]

    @property
    def backbone_handle(self):
        """The backbone's handle (a list of them for several backbones)."""
        return self._backbone_field("handle")

    @property
    def backbone_identity(self):
        """The backbone's identity (a list of them for several backbones)."""
        return self._backbone_field("identity")


def file_sha256(path) -> str:
    """The SHA-256 of a file's bytes, as the manifest records it."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _member(path: Path, entry, what: str) -> tuple[Path, str | None]:
    """The file a version-2 manifest names for ``what``, and its digest."""
    rel = entry.get("path") if isinstance(entry, dict) else None
    if (
        not isinstance(rel, str)
        or os.path.isabs(rel)
        or ".." in Path(rel).parts
        or not rel
    ):
        raise ModelDirError(
            f"The manifest of {str(path)!r} names no valid {what} file "
            f"({rel!r}). Train the model again."
        )
    return path / rel, entry.get("sha256")


def _check_belong_together(path: Path, manifest: dict):
    """Head and labels file of a version-2 manifest, digests checked."""
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise ModelDirError(
            f"The manifest of {str(path)!r} lists no model files. Train the "
            "model again."
        )
    found = {}
    for what in ("head", "labels"):
        file, digest = _member(path, files.get(what), what)
        if not file.is_file():
            raise ModelDirError(
                f"Model directory {str(path)!r} has no {file.relative_to(path)}, "
                "which its manifest names. Train the model again, or restore the "
                "directory from a backup."
            )
        if digest != file_sha256(file):
            raise ModelDirError(
                f"In model directory {str(path)!r}, {file.relative_to(path)} is "
                "not the file manifest.json was written with (its SHA-256 "
                "differs): the head, labels and manifest do not belong together. "
                "Train the model again, or restore the directory from a backup."
            )
        found[what] = file
    return found["head"], found["labels"]


def load_model_dir(path) -> ModelDir:
    """Load a model directory written by :func:`save_model_dir`.

    Only the types listed by ``trusted_types`` are trusted in head.skops;
    anything else (any function, such as ``builtins.eval``) is refused.

    Raises
    ------
    ModelDirError
        Missing or malformed files, files that do not belong together, a
        newer format version, or untrusted types.
    """
    path = Path(path)
    manifest = read_manifest(path)
    labels_file = None
    if manifest["format_version"] >= 2:
        head_path, labels_file = _check_belong_together(path, manifest)
    else:
        head_path = path / manifest.get("head_file", HEAD_FILE)
        if not head_path.is_file():
            raise ModelDirError(
                f"Model directory {str(path)!r} has no {head_path.name}. Train "
                "the model again."
            )
    head = load_head(head_path)
    labels = [str(c) for c in head.classes_]
    written = labels
    if labels_file is not None:
        written = labels_file.read_text(encoding="utf-8").splitlines()
    if labels != [str(c) for c in manifest.get("labels", [])] or written != labels:
        raise ModelDirError(
            f"The labels in {str(path / MANIFEST_FILE)!r} do not match the "
            "classes of the stored head. The directory was edited by hand; train "
            "the model again."
        )
    return ModelDir(path=path, head=head, manifest=manifest, labels=labels)


def embedder_settings(manifest: dict, **overrides) -> dict:
    """ImageEmbedder parameters (besides ``model``) a model was trained with.

    Manifests written before an option existed get its default (before
    runtimes: TensorFlow, fp32). ``overrides`` (e.g. ``runtime="tensorflow"``
    from the command line) replace recorded values; a runtime or precision
    that differs from the recorded one is logged, since the head then sees
    slightly different vectors than it was trained on.
    """
    settings = {
        "image_size": manifest.get("image_size"),
        "resample": manifest.get("resample", "bilinear"),
        "crop_fraction": manifest.get("crop_fraction", 1.0),
        "normalize_each": manifest.get("normalize_each", False),
        "runtime": manifest.get("runtime", "tensorflow"),
        "precision": manifest.get("precision", "fp32"),
        "calibration_images": manifest.get("calibration_images"),
    }
    if overrides.get("runtime") == "tensorflow" and "precision" not in overrides:
        overrides = {**overrides, "precision": "fp32"}  # TensorFlow's only one
    for name in ("runtime", "precision"):
        if name in overrides and overrides[name] != settings[name]:
            logger.warning(
                "The model was trained with %s=%s; embedding with %s=%s as "
                "asked. The vectors differ slightly (docs/runtimes.md), so "
                "predictions may differ from the training run's.",
                name,
                settings[name],
                name,
                overrides[name],
            )
    return {**settings, **overrides}
