"""``EmbeddingCache.repair``: rebuild a damaged cache file from its readable rows.

HDF5 files are opened through the ``open_hdf5`` function ``_store.py``
passes in. The main file and every segment are read (rows failing their
CRC32 are dropped) and folded, with the journal, into a new main file.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time

from embedclf.cache._compact import write_main
from embedclf.cache._files import stat_token
from embedclf.cache._journal import read_records
from embedclf.cache._rewrite import plain
from embedclf.cache._segments import list_segments
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
    except (OSError, KeyError, ValueError, RuntimeError):
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
        stamp = time.strftime("%Y%m%d-%H%M%S")
        fmt = (format_name, format_version)
        if stat_token(cache.path) is not None:
            backup = f"{cache.path}.corrupt-{stamp}"
            shutil.copyfile(cache.path, backup)
            src = _open_source(cache, backup, open_hdf5, unreadable, fmt)
            if src is not None:
                sources.append(src)
        segments = []
        for seg in list_segments(cache.path)[0]:  # all of them: trust no attr
            try:
                src = open_hdf5(seg.path)
            except OSError:
                unreadable.append(os.path.basename(seg.path))
                os.replace(seg.path, f"{seg.path}.corrupt-{stamp}")
                continue
            try:
                refuse_foreign(src, seg.path, *fmt)
            except CacheFormatError:
                src.close()
                for f in sources:
                    f.close()
                raise
            sources.append(src)
            segments.append(seg)
        through = max([0] + [s.last for s in segments])
        try:
            report = write_main(
                cache,
                segments,
                records,
                skip_bad_rows=True,
                sources=sources,
                through=through,
            )
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
    report.pop("dropped_in", None)
    return report
