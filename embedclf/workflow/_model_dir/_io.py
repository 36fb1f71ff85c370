"""Saving and loading a trained model directory (MODEL_DIR).

Layout (format version 2)::

    MODEL_DIR/
      manifest.json   format and version, backbone (handle, absolute and
                      relative path, identity), image size, preprocessing,
                      labels, open-set threshold, the training cache, library
                      versions, metrics (each explained under ``notes``), and
                      the files of the current model with their SHA-256
      model-<UTC time>-<random>/
        head.skops    the fitted classifier, written with skops.io (no pickle)
        labels.txt    one class label per line, in the order of the
                      classifier's ``classes_`` (the probability columns)
        report/       the evaluation report of this model (``embedclf
                      train`` writes it before the switch, so it belongs to
                      this head and labels)
      report          a link to the current model's report/ (a copy where
                      links are not allowed), replaced right after the switch

``manifest.json`` is the pointer: a re-train writes a new ``model-*`` folder
beside the current one, then replaces the manifest atomically
(``os.replace``), then deletes the old folder. A crash at any point leaves
either the old model or the new one, whole, and its report with it (the
manifest names it under ``files``); ``load_model_dir`` checks the digests,
so a head, labels and manifest that do not belong together are refused.
Setting the environment variable ``EMBEDCLF_TEST_KILL_AT`` to one of
:data:`KILL_POINTS` makes ``save_model_dir`` kill its own process (SIGKILL)
at that step; the crash-safety tests use it.

Format version 1 (embedclf 0.1.0: ``head.skops`` and ``labels.txt`` next to
the manifest, no digests) is still read.

The backbone itself is never stored: the manifest names it, and loading
refuses a backbone whose identity differs from the one the head was trained
on (its vectors would mean something else).
"""

from __future__ import annotations

import datetime
import json
import os
import secrets
import shutil
import signal
from pathlib import Path

from embedclf.workflow._model_dir._load import file_sha256
from embedclf.workflow._model_dir._locations import check_output_dir, location_entry
from embedclf.workflow._model_dir._manifest import (
    HEAD_FILE,
    LABELS_FILE,
    MANIFEST_FILE,
    MANIFEST_FORMAT,
    MANIFEST_VERSION,
    VERSION_FOLDER,
    jsonable,
    library_versions,
    manifest_notes,
    own_manifest,
)

__all__ = ["KILL_POINTS", "save_model_dir"]

LOCK_FILE = ".embedclf.lock"
REPORT_DIR = "report"
#: Prefix of the temporary link (or old report folder) ``_publish_report`` uses.
_REPORT_TMP = ".report.tmp-"
#: Steps of ``save_model_dir`` at which ``EMBEDCLF_TEST_KILL_AT`` kills it.
KILL_POINTS = ("folder", "head", "labels", "manifest-tmp", "switched", "cleaned")


def _kill_point(step: str) -> None:
    if os.environ.get("EMBEDCLF_TEST_KILL_AT") == step:
        os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))


def _fsync(path) -> None:
    """Flush ``path`` (a file, or a folder's entries) to disk; best effort."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - folders cannot be opened on Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some filesystems refuse folder fsync
        pass
    finally:
        os.close(fd)


def _replaced_files(path: Path) -> list:
    """What the current manifest of ``path`` names, to delete once replaced."""
    old = own_manifest(path)
    if old is None:
        return []  # not ours (a folder written into with --force): keep it all
    if old.get("format_version") == 1:
        return [path / old.get("head_file", HEAD_FILE), path / LABELS_FILE]
    return []  # version 2: its model-* folder goes with the other stale ones


def _remove(entry: Path) -> None:
    """Delete a file, a link or a folder; missing is fine."""
    if entry.is_symlink() or entry.is_file():
        entry.unlink(missing_ok=True)
    elif entry.is_dir():
        shutil.rmtree(entry, ignore_errors=True)


def _publish_report(path: Path, folder: str) -> None:
    """Point ``path/report`` at ``folder``'s report (or remove it: none).

    A relative link replaced with ``os.replace``, so a reader sees the old or
    the new report, never a mix; where links are refused (Windows without
    the right), a copy. Runs under the directory's lock, right after the
    manifest switch.
    """
    link = path / REPORT_DIR
    target = path / folder / REPORT_DIR
    if link.is_dir() and not link.is_symlink():  # a real folder (embedclf <= 0.1)
        trash = path / f"{_REPORT_TMP}{secrets.token_hex(4)}"
        os.replace(link, trash)
        _remove(trash)
    if not target.is_dir():
        _remove(link)
        return
    tmp = path / f"{_REPORT_TMP}{secrets.token_hex(4)}"
    try:
        os.symlink(f"{folder}/{REPORT_DIR}", tmp, target_is_directory=True)
    except (OSError, NotImplementedError):  # pragma: no cover - no symlinks
        _remove(link)
        shutil.copytree(target, link)
        return
    os.replace(tmp, link)
    _fsync(path)


def _write_extra_files(path: Path, folder: str, extra_files) -> dict:
    """Write ``extra_files`` into ``path/folder``; their ``files`` entries."""
    extra = {}
    for name, (file_name, data) in (extra_files or {}).items():
        (path / folder / file_name).write_bytes(data)
        _fsync(path / folder / file_name)
        extra[name] = {
            "path": f"{folder}/{file_name}",
            "sha256": file_sha256(path / folder / file_name),
        }
    return extra


def _write_version(
    path: Path, folder: str, head, labels, write_report, extra_files
) -> dict:
    """Write ``path/folder``: head, labels, extra files, report; ``files``."""
    import skops.io as sio

    (path / folder).mkdir()
    _kill_point("folder")
    sio.dump(head, path / folder / HEAD_FILE)
    _fsync(path / folder / HEAD_FILE)
    _kill_point("head")
    labels_path = path / folder / LABELS_FILE
    labels_path.write_text("".join(label + "\n" for label in labels), encoding="utf-8")
    _fsync(labels_path)
    extra = _write_extra_files(path, folder, extra_files)
    _fsync(path / folder)
    _kill_point("labels")
    if write_report is not None:
        write_report(path / folder / REPORT_DIR)
    files = {
        "head": {
            "path": f"{folder}/{HEAD_FILE}",
            "sha256": file_sha256(path / folder / HEAD_FILE),
        },
        "labels": {
            "path": f"{folder}/{LABELS_FILE}",
            "sha256": file_sha256(labels_path),
        },
        **extra,
    }
    if (path / folder / REPORT_DIR).is_dir():
        files["report"] = {"path": f"{folder}/{REPORT_DIR}"}
        _fsync(path / folder)
    return files


def save_model_dir(
    path,
    head,
    manifest: dict,
    *,
    force: bool = False,
    write_report=None,
    extra_files=None,
) -> Path:
    """Write ``head``, its labels and the manifest into ``path``, atomically.

    Parameters
    ----------
    path : str or os.PathLike
        The model directory; created if missing. A model directory there is
        replaced; a folder holding anything else is refused unless ``force``.
    head : classifier
        Fitted classifier with ``classes_``.
    manifest : dict
        Must hold ``backbone`` (dict with ``handle``, ``identity`` and
        ``kind``); may hold ``cache`` (the path of the training cache). The
        format, version, files and digests, labels, library versions, notes
        and creation time are added; a local backbone and the cache are
        recorded with their absolute path and their path relative to ``path``.
    force : bool, default=False
        Write into a non-empty folder that is not a model directory.
    write_report : callable, default=None
        Called with the new version's ``report/`` folder (a Path, not yet
        created) while the directory is locked, before the switch: what it
        writes there becomes the report of this model, switched with it, and
        ``path/report`` shows it afterwards.
    extra_files : dict, default=None
        ``{name: (file name, bytes)}``: more files of this model (e.g. the
        training photos, ``workflow/_explain/_training_index.py``), written
        into the versioned folder and listed under ``files`` with their
        SHA-256 like the head and labels.

    Returns
    -------
    path : pathlib.Path

    Raises
    ------
    ModelDirError
        ``path`` is a file, or a non-empty folder that is not a model
        directory (without ``force``).
    """
    from filelock import FileLock

    path = Path(path)
    check_output_dir(path, force=force)
    labels = _checked_labels(head)
    path.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    full = _full_manifest(path, manifest, labels, now)
    with FileLock(str(path / LOCK_FILE)):
        replaced = _replaced_files(path)
        folder = f"model-{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"
        full["files"] = _write_version(
            path, folder, head, labels, write_report, extra_files
        )
        tmp = path / (MANIFEST_FILE + ".tmp")
        tmp.write_text(json.dumps(jsonable(full), indent=2) + "\n")
        _fsync(tmp)
        _kill_point("manifest-tmp")
        os.replace(tmp, path / MANIFEST_FILE)  # the switch
        _fsync(path)
        _kill_point("switched")
        _publish_report(path, folder)
        _remove_stale(path, folder, replaced)
        _kill_point("cleaned")
    return path


def _checked_labels(head) -> list:
    """``head.classes_`` as the lines of labels.txt; a line break is refused."""
    labels = [str(c) for c in head.classes_]
    for label in labels:
        if "\n" in label or "\r" in label:
            raise ValueError(
                f"Class label {label!r} contains a line break and cannot be "
                "written to labels.txt. Rename the class folder."
            )
    return labels


def _full_manifest(path: Path, manifest: dict, labels, now) -> dict:
    """``manifest`` with what :func:`save_model_dir` adds (all but ``files``)."""

    def located(entry):
        entry = dict(entry)
        directory = entry["handle"].partition("?")[0]
        if entry.get("kind") == "savedmodel" and os.path.isdir(directory):
            # A SavedModel handle may carry "?signature=...&output=..."; the
            # locations are of its directory, the query is re-applied on load.
            entry.update(location_entry(directory, path))
        return entry

    recorded = manifest["backbone"]
    backbone = (
        [located(e) for e in recorded]
        if isinstance(recorded, list)
        else located(recorded)
    )
    cache = manifest.get("cache")
    full = {
        "format": MANIFEST_FORMAT,
        "format_version": MANIFEST_VERSION,
        "created": now.isoformat(timespec="seconds"),
        **manifest,
        "backbone": backbone,
        "cache": None if cache is None else location_entry(cache, path),
        "labels": labels,
        "library_versions": library_versions(),
    }
    if full.get("image_size") is None:
        full.pop("image_size", None)
    full["notes"] = manifest_notes(full)
    return full


def _remove_stale(path: Path, folder: str, replaced) -> None:
    """After the switch: the replaced files, other versions, report leftovers."""
    for stale in replaced:
        stale.unlink(missing_ok=True)
    for other in path.iterdir():
        if other.name != folder and VERSION_FOLDER.match(other.name):
            shutil.rmtree(other, ignore_errors=True)
        elif other.name.startswith(_REPORT_TMP):
            _remove(other)
