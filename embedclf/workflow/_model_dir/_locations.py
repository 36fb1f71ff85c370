"""Where a model directory's backbone and cache are, from any working directory.

A manifest records a local backbone (and the training cache) three ways: the
handle as the user typed it, its absolute path, and its path relative to the
model directory. Loading tries them in that order of robustness (absolute,
then relative to the model directory, then the handle as typed, which is all
an embedclf 0.1.0 manifest has) and accepts the first SavedModel whose
identity is the recorded one, so the model works from any folder, and after
the model directory and its backbone move together. A backbone moved
elsewhere is passed as ``--model`` (``model=``) and still checked.

Also: the check that ``train --output`` does not write into a user's folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from embedclf.exceptions import ModelDirError
from embedclf.workflow._model_dir._manifest import VERSION_FOLDER, own_manifest

__all__ = [
    "check_backbone",
    "check_output_dir",
    "location_entry",
    "remembered_cache",
]

#: What a killed ``train`` may leave in a folder that has no manifest yet.
_LEFTOVERS = {".embedclf.lock", "manifest.json.tmp"}


def location_entry(target, model_dir) -> dict:
    """``path`` (absolute) and ``relative_path`` (to ``model_dir``) of ``target``."""
    absolute = os.path.abspath(target)
    try:
        relative = os.path.relpath(absolute, os.path.abspath(model_dir))
    except ValueError:  # another drive on Windows
        relative = None
    return {"path": absolute, "relative_path": relative}


def _candidates(entry: dict, model_dir, as_typed) -> list[str]:
    out = []
    if entry.get("path"):
        out.append(entry["path"])
    if entry.get("relative_path"):
        out.append(os.path.normpath(os.path.join(model_dir, entry["relative_path"])))
    if as_typed:
        out.append(as_typed)
    return list(dict.fromkeys(out))


def check_backbone(model_dir, model=None):
    """The backbone handle(s) to embed with for ``model_dir``, checked.

    Parameters
    ----------
    model_dir : ModelDir
    model : str, list of str or None
        Backbone(s) given by the user (``--model`` / ``model=``), e.g. the
        folder a backbone was moved to, one per recorded backbone and in the
        same order; None finds the recorded ones.

    Returns
    -------
    handle : str or list of str
        What to pass to ImageEmbedder as ``model`` (absolute for a local
        SavedModel; a list when the model was trained on several backbones).

    Raises
    ------
    ModelDirError
        If a given backbone is not the one the head was trained on, the number
        of backbones differs, or a recorded local backbone is found nowhere.
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


def _check_one_backbone(model_dir, recorded: dict, model) -> str:
    from embedclf.embedding._backbones import resolve_backbone
    from embedclf.exceptions import BackboneLoadError

    if model is not None:
        spec = resolve_backbone(model)
        _check_identity(model_dir, recorded, spec, model)
        return spec.handle
    if recorded.get("kind") != "savedmodel":
        spec = resolve_backbone(recorded["handle"])
        _check_identity(model_dir, recorded, spec, recorded["handle"])
        return spec.handle
    tried, other = [], None
    query = recorded.get("handle", "").partition("?")[2]
    suffix = f"?{query}" if query else ""  # signature/output of a SavedModel
    for candidate in _candidates(recorded, model_dir.path, recorded.get("handle")):
        directory = candidate.partition("?")[0]
        if not os.path.isdir(directory):
            continue
        try:
            spec = resolve_backbone(directory + suffix)
        except BackboneLoadError:
            tried.append(f"{directory!r} is not a SavedModel")
            continue
        if spec.identity == recorded["identity"]:
            return os.path.abspath(directory) + suffix
        other = other or (recorded, spec, directory + suffix)
    if other is not None:  # e.g. the backbone was retrained in place
        _check_identity(model_dir, *other)
    looked = ", ".join(
        repr(c) for c in _candidates(recorded, model_dir.path, recorded.get("handle"))
    )
    found = f" ({'; '.join(tried)})" if tried else ""
    raise ModelDirError(
        f"The backbone {recorded['handle']!r} that {str(model_dir.path)!r} was "
        f"trained on cannot be found: looked at {looked}{found}. If it moved, "
        "pass its new folder with --model DIR (model=DIR in Python)."
    )


def _check_identity(model_dir, recorded, spec, given) -> None:
    if spec.identity != recorded["identity"]:
        raise ModelDirError(
            f"Model directory {str(model_dir.path)!r} was trained on backbone "
            f"{recorded['handle']!r}, but the backbone in use, {given!r}, is a "
            "different model (its fingerprint differs). Its vectors would not "
            "fit this head: use the same backbone (--model), or train a new "
            "model directory with this one."
        )


def remembered_cache(model_dir) -> str | None:
    """The embedding cache ``model_dir`` was trained with, if it still exists."""
    entry = model_dir.manifest.get("cache")
    if not isinstance(entry, dict):
        return None
    for candidate in _candidates(entry, model_dir.path, None):
        if os.path.isfile(candidate) or os.path.isfile(candidate + ".journal"):
            return os.path.abspath(candidate)
    return None


def check_output_dir(path, *, force: bool = False) -> None:
    """Refuse to write a model into a folder holding anything else.

    ``path`` may be missing, empty, an embedclf model directory (replaced), or
    hold only what an interrupted ``train`` leaves; anything else needs
    ``force``.

    Raises
    ------
    ModelDirError
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ModelDirError(
            f"--output {str(path)!r} is a file, not a folder. Pass a new or "
            "empty folder, or an existing model directory to replace."
        )
    if not path.is_dir():
        return
    if own_manifest(path) is not None:
        return
    others = sorted(
        p.name
        for p in path.iterdir()
        if p.name not in _LEFTOVERS and not VERSION_FOLDER.match(p.name)
    )
    if others and not force:
        shown = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
        raise ModelDirError(
            f"--output {str(path)!r} is a folder with other files ({shown}) and "
            "not an embedclf model directory; training would mix the model with "
            "them and may overwrite some. Pass a new or empty folder, or --force "
            "to write into it anyway."
        )
