"""The machine's store of converted backbones: convert once per machine.

A backbone converted for OpenVINO lives beside the cache that asked for it
(``<cache>.openvino/<folder>``, see ``_runtime.openvino_dir``): that folder
is what a run compiles, and what Dask workers on other machines read beside
a shared cache. But a new cache file would convert the same backbone again
(importing TensorFlow, tracing, converting and compiling take seconds), so
each converted folder is also kept in a store per user: ``$EMBEDCLF_OPENVINO_DIR``,
else ``$XDG_CACHE_HOME/embedclf/openvino``, else ``~/.cache/embedclf/openvino``
(the folder cache-less embedders already use). Folders have the same name
in both places (backbone identity + input size + OpenVINO version), so:

- **fetch**: a folder missing beside the cache is copied from the store when
  the store has it: the IR, ``meta.json`` and OpenVINO's compiled blobs
  (``compiled/``); compiled blobs the store has and the folder lacks are
  copied in too;
- **publish**: a folder beside the cache that the store lacks is copied to
  it, and compiled blobs made later are added to it, as is the
  ``.unconvertible`` marker of a backbone OpenVINO cannot convert.

Copies are hard links where the filesystem allows (the IR files are never
rewritten in place: ``_openvino`` writes new files and renames them), else
plain copies; compiled blobs are always copied, since OpenVINO may rewrite a
blob it cannot import. A whole folder is written as ``_openvino.ensure_ir``
writes one, into a temporary folder renamed at the end, so a reader sees all
of it or nothing and a concurrent process may win; single files are written
under a temporary name and renamed.

int8 models are not published: an int8 IR is calibrated on one project's
photos and serves only that exact calibration set, so in a store shared by
every project it would be a model derived from private photos that no other
project can use, one more per training set and never cleaned up. It stays
beside its cache (and its compiled blobs in ``compiled-int8/``, which is
never published either).

The store is a convenience: any failure to read or write it (a read-only
home, a full disk) is logged once per process and the run goes on with the
folder beside the cache. ``EMBEDCLF_OPENVINO_DIR=""`` (set, empty) turns it
off; cache-less embedders then convert into a temporary folder per process.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile

__all__ = [
    "fetch",
    "fetch_marker",
    "process_dir",
    "publish",
    "publish_compiled",
    "publish_marker",
    "store_root",
    "stored_twin",
]

logger = logging.getLogger("embedclf")

ENV = "EMBEDCLF_OPENVINO_DIR"
#: The files of a converted folder that the store keeps, and the compiled
#: blobs' folder (OpenVINO's CACHE_DIR for fp32 and bf16).
IR_FILES = ("model.xml", "model.bin", "meta.json")
COMPILED = "compiled"
_warned: set = set()
_process: list = []


def store_root() -> str | None:
    """The store's folder, or None when ``EMBEDCLF_OPENVINO_DIR`` is set empty."""
    value = os.environ.get(ENV)
    if value is not None:
        return value or None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return os.path.join(base, "embedclf", "openvino")


def process_dir() -> str:
    """A temporary folder for this process (cache-less, store turned off)."""
    if not _process:
        path = tempfile.mkdtemp(prefix="embedclf-openvino-")
        atexit.register(_remove, path, os.getpid())
        _process.append(path)
    return _process[0]


def _remove(path: str, pid: int) -> None:
    if os.getpid() == pid:  # not in a forked child exiting
        shutil.rmtree(path, ignore_errors=True)


def stored_twin(folder: str) -> str | None:
    """The store's folder of the same name as ``folder``; None when the store
    is off or ``folder`` already is in it (an embedder without a cache)."""
    root = store_root()
    if root is None:
        return None
    parent = os.path.dirname(folder)
    if os.path.realpath(parent) == os.path.realpath(root):
        return None
    return os.path.join(root, os.path.basename(folder))


def _failed(root: str, exc: OSError) -> None:
    if root not in _warned:
        _warned.add(root)
        logger.warning(
            "The store of converted backbones %s is not usable (%s); using "
            "only the folder beside the cache. Set %s to another folder, or "
            "to an empty value to turn the store off.",
            root,
            exc,
            ENV,
        )


def _has_ir(folder: str) -> bool:
    return os.path.exists(os.path.join(folder, "meta.json"))


def _blob_names(folder: str) -> set:
    try:
        names = os.listdir(os.path.join(folder, COMPILED))
    except FileNotFoundError:
        return set()
    return {n for n in names if n.endswith(".blob") and not n.startswith(".")}


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another filesystem, or links not allowed
        shutil.copy2(src, dst)


def _mirror(src: str, dst: str) -> None:
    """Copy the folder ``src`` to the missing ``dst``, all at once or not at all."""
    parent = os.path.dirname(dst)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tmp-", dir=parent)
    try:
        for name in IR_FILES:
            _link_or_copy(os.path.join(src, name), os.path.join(tmp, name))
        os.mkdir(os.path.join(tmp, COMPILED))
        for name in _blob_names(src):
            shutil.copy2(
                os.path.join(src, COMPILED, name), os.path.join(tmp, COMPILED, name)
            )
        os.chmod(tmp, 0o755)  # mkdtemp's 0o700 would hide it from other users
        try:
            os.rename(tmp, dst)
        except OSError:
            if not _has_ir(dst):  # else another process won
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _copy_file(src: str, dst: str) -> None:
    """``src`` to ``dst`` under a temporary name, renamed at the end."""
    tmp = os.path.join(
        os.path.dirname(dst), f".tmp-{os.getpid()}-{os.path.basename(dst)}"
    )
    try:
        shutil.copy2(src, tmp)
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _copy_blobs(src: str, dst: str) -> None:
    missing = _blob_names(src) - _blob_names(dst)
    if missing:
        os.makedirs(os.path.join(dst, COMPILED), exist_ok=True)
    for name in sorted(missing):
        _copy_file(os.path.join(src, COMPILED, name), os.path.join(dst, COMPILED, name))


def fetch(folder: str, stored: str | None) -> bool:
    """Bring what the store has of ``folder`` beside the cache.

    Returns True when the folder's IR came from the store.
    """
    if stored is None or not _has_ir(stored):
        return False
    try:
        if not _has_ir(folder):
            _mirror(stored, folder)
            logger.info("using the converted backbone from the store %s", stored)
            return True
        _copy_blobs(stored, folder)
    except OSError as exc:
        _failed(os.path.dirname(stored), exc)
    return False


def publish(folder: str, stored: str | None) -> None:
    """Copy the converted ``folder`` to the store if it lacks it."""
    if stored is None or _has_ir(stored) or not _has_ir(folder):
        return
    try:
        _mirror(folder, stored)
    except OSError as exc:
        _failed(os.path.dirname(stored), exc)


def publish_compiled(folder: str, stored: str | None) -> None:
    """Add the compiled blobs of ``folder`` that the store lacks to it."""
    if stored is None or not _has_ir(stored):
        return
    try:
        _copy_blobs(folder, stored)
    except OSError as exc:
        _failed(os.path.dirname(stored), exc)


def fetch_marker(marker: str, stored: str | None) -> bool:
    """Whether the backbone is known unconvertible, beside or in the store
    (then the store's marker is copied beside the cache)."""
    if os.path.exists(marker):
        return True
    if stored is None or not os.path.exists(stored + ".unconvertible"):
        return False
    try:
        os.makedirs(os.path.dirname(marker), exist_ok=True)
        _copy_file(stored + ".unconvertible", marker)
    except OSError as exc:
        _failed(os.path.dirname(stored), exc)
    return True


def publish_marker(marker: str, stored: str | None) -> None:
    """Copy the ``.unconvertible`` marker to the store."""
    if stored is None or os.path.exists(stored + ".unconvertible"):
        return
    try:
        os.makedirs(os.path.dirname(stored), exist_ok=True)
        _copy_file(marker, stored + ".unconvertible")
    except OSError as exc:
        _failed(os.path.dirname(stored), exc)
