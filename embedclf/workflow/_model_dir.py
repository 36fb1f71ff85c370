"""Saving and loading a trained model directory (MODEL_DIR).

Layout::

    MODEL_DIR/
      head.skops      the fitted classifier, written with skops.io (no pickle)
      labels.txt      one class label per line, in the order of the
                      classifier's ``classes_`` (the probability columns)
      manifest.json   format and version, backbone handle and identity, image
                      size, preprocessing, labels, open-set threshold, library
                      versions and metrics

The backbone itself is never stored: the manifest names it, and loading
refuses a backbone whose identity differs from the one the head was trained
on (its vectors would mean something else).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from embedclf.exceptions import ModelDirError

__all__ = [
    "MANIFEST_FORMAT",
    "MANIFEST_VERSION",
    "ModelDir",
    "save_model_dir",
    "load_model_dir",
    "check_backbone",
    "embedder_settings",
    "library_versions",
]

MANIFEST_FORMAT = "embedclf-model-dir"
#: Version 2: ``backbone`` may be a list (several backbones); directories
#: with one backbone are still written as version 1.
MANIFEST_VERSION = 2
HEAD_FILE = "head.skops"
LABELS_FILE = "labels.txt"
MANIFEST_FILE = "manifest.json"

#: Module prefixes whose types ``load_model_dir`` trusts in head.skops.
_TRUSTED_PREFIXES = ("embedclf.", "sklearn.", "numpy.", "scipy.", "builtins.")


@dataclass
class ModelDir:
    """A loaded model directory: the fitted head and its manifest."""

    path: Path
    head: object
    manifest: dict
    labels: list = field(default_factory=list)

    @property
    def backbone_handle(self):
        """The backbone's handle (a list of them for several backbones)."""
        recorded = self.manifest["backbone"]
        if isinstance(recorded, list):
            return [r["handle"] for r in recorded]
        return recorded["handle"]

    @property
    def backbone_identity(self):
        """The backbone's identity (a list of them for several backbones)."""
        recorded = self.manifest["backbone"]
        if isinstance(recorded, list):
            return [r["identity"] for r in recorded]
        return recorded["identity"]


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


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def save_model_dir(path, head, manifest: dict) -> Path:
    """Write ``head``, labels.txt and manifest.json into ``path``.

    Parameters
    ----------
    path : str or os.PathLike
        The model directory; created if missing. Existing files of a model
        directory are replaced.
    head : classifier
        Fitted classifier with ``classes_``.
    manifest : dict
        Must hold ``backbone`` (dict with ``handle`` and ``identity``); the
        format, version, labels, library versions and creation time are added.

    Returns
    -------
    path : pathlib.Path
    """
    import skops.io as sio

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    labels = [str(c) for c in head.classes_]
    for label in labels:
        if "\n" in label or "\r" in label:
            raise ValueError(
                f"Class label {label!r} contains a line break and cannot be "
                "written to labels.txt. Rename the class folder."
            )
    full = {
        "format": MANIFEST_FORMAT,
        "format_version": 2 if isinstance(manifest.get("backbone"), list) else 1,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"
        ),
        **manifest,
        "labels": labels,
        "head_file": HEAD_FILE,
        "library_versions": library_versions(),
    }
    tmp = path / (HEAD_FILE + ".tmp")
    sio.dump(head, tmp)
    os.replace(tmp, path / HEAD_FILE)
    (path / LABELS_FILE).write_text("".join(label + "\n" for label in labels))
    tmp = path / (MANIFEST_FILE + ".tmp")
    tmp.write_text(json.dumps(_jsonable(full), indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path / MANIFEST_FILE)
    return path


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


def load_head(head_path):
    """Load a head written with skops.io, trusting only known libraries' types.

    Raises
    ------
    ModelDirError
        If the file cannot be read or holds types from other libraries.
    """
    import skops.io as sio

    head_path = Path(head_path)
    try:
        untrusted = sio.get_untrusted_types(file=head_path)
    except Exception as exc:  # skops raises several types for a damaged zip
        raise ModelDirError(
            f"Could not read {str(head_path)!r} ({exc}). Train the model again."
        ) from None
    refused = [t for t in untrusted if not t.startswith(_TRUSTED_PREFIXES)]
    if refused:
        raise ModelDirError(
            f"{str(head_path)!r} contains types embedclf does not trust: "
            f"{refused}. Only embedclf, scikit-learn, NumPy and SciPy types are "
            "loaded; inspect the file with `skops.io.get_untrusted_types`."
        )
    return sio.load(head_path, trusted=untrusted)


def load_model_dir(path) -> ModelDir:
    """Load a model directory written by :func:`save_model_dir`.

    Only types from embedclf, scikit-learn, NumPy and SciPy are trusted in
    head.skops; anything else is refused.

    Raises
    ------
    ModelDirError
        Missing or malformed files, a newer format version, or untrusted types.
    """
    path = Path(path)
    manifest = read_manifest(path)
    head_path = path / manifest.get("head_file", HEAD_FILE)
    if not head_path.is_file():
        raise ModelDirError(
            f"Model directory {str(path)!r} has no {head_path.name}. Train the "
            "model again."
        )
    head = load_head(head_path)
    labels = [str(c) for c in head.classes_]
    if labels != [str(c) for c in manifest.get("labels", [])]:
        raise ModelDirError(
            f"The labels in {str(path / MANIFEST_FILE)!r} do not match the "
            "classes of the stored head. The directory was edited by hand; train "
            "the model again."
        )
    return ModelDir(path=path, head=head, manifest=manifest, labels=labels)


def check_backbone(model_dir: ModelDir, model=None):
    """The backbone handle(s) to embed with for ``model_dir``, checked.

    Parameters
    ----------
    model_dir : ModelDir
    model : str, list of str or None
        Backbone handle(s) given by the user (e.g. a local copy of the one in
        the manifest), one per recorded backbone and in the same order; None
        uses the manifest's handles.

    Returns
    -------
    handle : str or list of str
        What to pass to ImageEmbedder as ``model``: a list when the model
        directory was trained on several backbones.

    Raises
    ------
    ModelDirError
        If a backbone named by ``model`` (or the manifest) is not the one the
        head was trained on, the number of backbones differs, or the
        manifest's local backbone is gone.
    """
    recorded = model_dir.manifest["backbone"]
    several = isinstance(recorded, list)
    recorded = recorded if several else [recorded]
    given = [model] if isinstance(model, (str, os.PathLike)) else model
    if given is not None and len(given) != len(recorded):
        names = [r["handle"] for r in recorded]
        raise ModelDirError(
            f"Model directory {str(model_dir.path)!r} was trained on "
            f"{len(recorded)} backbone(s), {names}, but {len(given)} were "
            "given. Pass --model once per backbone, in that order (or not at "
            "all to use the recorded ones)."
        )
    handles = [
        _check_one_backbone(model_dir, r, None if given is None else given[i])
        for i, r in enumerate(recorded)
    ]
    return handles if several else handles[0]


def _check_one_backbone(model_dir: ModelDir, recorded: dict, model):
    from embedclf.embedding._backbones import resolve_backbone
    from embedclf.exceptions import BackboneLoadError

    handle = model if model is not None else recorded["handle"]
    missing = None
    if model is None and recorded.get("kind") == "savedmodel":
        if not os.path.isdir(handle):
            missing = "the directory does not exist any more."
    try:
        spec = resolve_backbone(handle) if missing is None else None
    except BackboneLoadError as exc:
        if model is not None:
            raise
        missing = str(exc)
    if missing is not None:
        raise ModelDirError(
            f"The backbone {handle!r} recorded in {str(model_dir.path)!r} cannot "
            f"be found: {missing} Pass --model with the path of a copy of that "
            "backbone."
        )
    if spec.identity != recorded["identity"]:
        raise ModelDirError(
            f"Model directory {str(model_dir.path)!r} was trained on backbone "
            f"{recorded['handle']!r}, but the backbone in use, {handle!r}, is a "
            "different model (its fingerprint differs). Its vectors would not "
            "fit this head: use the same backbone (--model), or train a new "
            "model directory with this one."
        )
    return spec.handle


def embedder_settings(manifest: dict) -> dict:
    """ImageEmbedder parameters (besides ``model``) a model was trained with.

    Manifests written before an option existed get its default.
    """
    return {
        "image_size": manifest.get("image_size"),
        "resample": manifest.get("resample", "bilinear"),
        "crop_fraction": manifest.get("crop_fraction", 1.0),
        "normalize_each": manifest.get("normalize_each", False),
    }
