"""``EmbeddingCache.repair``: rebuild a damaged cache file from its readable rows.

Split out of ``_cache.py`` (which stays the only module importing h5py: HDF5
files are opened through the ``open_hdf5`` function it passes in).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time

from embedclf.cache._files import stat_token
from embedclf.cache._journal import read_records
from embedclf.cache._rewrite import plain
from embedclf.exceptions import CacheFormatError

__all__ = ["repair", "refuse_foreign"]

_PADDED_SUFFIX = ".padded-for-repair"


def _open_padded_copy(path: str, exc: OSError, open_hdf5):
    """Open a copy of a truncated HDF5 file, zero-filled back to its stored size.

    HDF5 refuses a file shorter than the end-of-file address recorded in its
    superblock. Zero-filling the lost tail lets ``repair`` read the intact
    part: rows that lay in the lost tail fail their CRC32 (or their datasets
    fail to read) and are dropped. Returns None if ``exc`` is another error.
    """
    match = re.search(r"truncated file: eof = \d+.*stored_eof = (\d+)", str(exc))
    if match is None:
        return None
    copy = path + _PADDED_SUFFIX
    try:
        shutil.copyfile(path, copy)
        os.truncate(copy, int(match.group(1)))
        return open_hdf5(copy)
    except OSError:
        with contextlib.suppress(OSError):
            os.remove(copy)
        return None


def refuse_foreign(f, path: str, format_name: str, format_version: int) -> None:
    """Raise if the open HDF5 file ``f`` is not an embedclf cache that this
    version can rewrite (``repair`` must not turn someone else's file, or a
    newer cache, into an empty cache)."""
    try:
        fmt = plain(f.attrs.get("format"))
        version = f.attrs.get("format_version")
    except (OSError, KeyError, ValueError):
        return  # damaged root attributes: a damaged cache, repairable
    if fmt != format_name:
        raise CacheFormatError(
            f"The file {path!r} is an HDF5 file but not an embedclf "
            "embedding cache (it has no format='embedclf-embedding-cache' "
            "attribute), so embedclf will not rewrite it. Choose another "
            "cache path."
        )
    if version is not None and int(version) > format_version:
        raise CacheFormatError(
            f"The cache file {path!r} has format version {version}, but "
            f"this embedclf writes version {format_version}: repairing it "
            "would lose data. Upgrade embedclf, then repair it."
        )


def _open_source(cache, backup, open_hdf5, unreadable, fmt):
    """The damaged main file opened for reading (or its zero-padded copy)."""
    try:
        src = open_hdf5(cache.path)
    except OSError as exc:
        padded = _open_padded_copy(backup, exc, open_hdf5)
        if padded is None:
            unreadable.append("<file>")
        return padded
    try:
        refuse_foreign(src, cache.path, *fmt)
    except CacheFormatError:
        src.close()
        os.remove(backup)
        raise
    return src


def repair(cache, open_hdf5, format_name: str, format_version: int) -> dict:
    """Rebuild ``cache`` (an ``EmbeddingCache``) from every valid row.

    See ``EmbeddingCache.repair`` for the report it returns; ``format_name``
    and ``format_version`` are those the cache writes.
    """
    with cache._locked():
        records, _ = read_records(cache.journal_path)
        sources, unreadable, backup = [], [], None
        if os.path.isdir(cache.path):
            raise cache._directory_error()
        if stat_token(cache.path) is not None:
            backup = f"{cache.path}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}"
            shutil.copyfile(cache.path, backup)
            src = _open_source(
                cache, backup, open_hdf5, unreadable, (format_name, format_version)
            )
            if src is not None:
                sources.append(src)
        try:
            report = cache._rewrite(sources, records, skip_bad_rows=True)
        finally:
            for f in sources:
                name = f.filename
                f.close()
                if name.endswith(_PADDED_SUFFIX):
                    with contextlib.suppress(OSError):
                        os.remove(name)
        with contextlib.suppress(FileNotFoundError):
            os.remove(cache.journal_path)
    report["unreadable"] = unreadable + report["unreadable"]
    report["backup"] = backup
    return report
