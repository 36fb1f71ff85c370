"""Compaction: folding the journal and segments of a cache into new files.

Every file is written whole to a temp file, fsynced, renamed into place and
its directory fsynced (``_rewrite.write_file`` via ``_hdf5.write_file``)
before what it replaces is deleted: the journal only once its rows are in a
durable file, segments only once a merged file holds them. Which files to
merge is ``_segments.py``'s policy. These functions work on an
``EmbeddingCache`` whose file lock the caller holds.
"""

from __future__ import annotations

import contextlib
import os

from embedclf.cache import _segments
from embedclf.cache._files import stat_token
from embedclf.cache._hdf5 import write_file
from embedclf.cache._journal import read_records
from embedclf.exceptions import CacheFormatError

__all__ = ["compact_locked", "merge_segments", "write_main", "write_segment"]


def compact_locked(cache) -> None:
    """Write the journal of cache ``cache`` into a new segment (or, while the
    cache is small, into its main file), then merge segments as
    ``_segments.py`` plans. The caller holds the cache's file lock."""
    records, _ = read_records(cache.journal_path)
    main, live, old, nxt = cache._state()
    if records:
        journal_bytes = os.path.getsize(cache.journal_path)
        small = main is None or main + journal_bytes <= _segments.FOLD_BYTES
        # A format-1 main file is rewritten once as format 2 before any
        # segment exists, so older embedclf refuses the cache instead
        # of reading it without its segments.
        if small or cache._main_attrs()[0] < 2:
            write_main(cache, live, records)
        else:
            write_segment(
                cache, _segments.segment_path(cache.path, nxt, nxt), [], records
            )
        os.remove(cache.journal_path)  # only once its rows are durable
        cache._journal.reset()
    elif os.path.exists(cache.journal_path):
        os.remove(cache.journal_path)  # empty or only a torn record
    merge_segments(cache)


def merge_segments(cache):
    """Merge the segments of cache ``cache`` until ``plan_merge`` says stop."""
    while True:
        main, live, old, _ = cache._state()
        for seg in old:  # left over by a killed merge: already copied
            with contextlib.suppress(FileNotFoundError):
                os.remove(seg.path)
        plan = _segments.plan_merge([s.nbytes for s in live], main or 0)
        if plan is None:
            return
        if plan == "main":
            write_main(cache, live, [])
            continue
        run = live[plan[0] : plan[1]]
        dst = _segments.segment_path(cache.path, run[0].first, run[-1].last)
        write_segment(cache, dst, run, [])
        for seg in run:
            os.remove(seg.path)


def write_segment(cache, dst, segments, records):
    """Write ``segments`` and journal ``records`` into a new segment ``dst``."""
    sources = [cache._open(s.path) for s in segments]
    try:
        _write(cache, dst, sources, records, {"role": "segment"})
    finally:
        for f in sources:
            f.close()


def write_main(
    cache, segments, records, *, skip_bad_rows=False, sources=None, through=None
):
    """Fold ``segments`` and ``records`` into a new main file; the segments
    are deleted after the rename (``merged_through`` marks them done)."""
    owned = sources is None  # else the caller (repair) closes them
    if owned:
        sources = [cache._open(cache.path)] if stat_token(cache.path) else []
        sources += [cache._open(s.path) for s in segments]
    if through is None:
        through = max([cache._merged_through()] + [s.last for s in segments])
    try:
        counts = _write(
            cache,
            cache.path,
            sources,
            records,
            {"role": "main", "merged_through": through},
            skip_bad_rows=skip_bad_rows,
        )
    finally:
        for f in sources if owned else ():
            f.close()
    for seg in segments:
        with contextlib.suppress(FileNotFoundError):
            os.remove(seg.path)
    return counts


def _write(cache, dst, sources, records, attrs, *, skip_bad_rows=False):
    try:
        return write_file(
            dst,
            cache.path,
            sources,
            records,
            attrs=attrs,
            skip_bad_rows=skip_bad_rows,
        )
    except OSError as exc:
        if isinstance(exc, CacheFormatError):
            raise
        raise OSError(
            exc.errno,
            f"Could not rewrite the cache file {cache.path!r} ({exc}). It is "
            f"unchanged and the new rows are kept in {cache.journal_path!r}; "
            "free some disk space and run again.",
        ) from exc
