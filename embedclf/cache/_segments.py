"""Immutable segment files and size-tiered compaction: writes cost what they add.

Why: format 1 folded the journal into the HDF5 file by rewriting the whole
file, so adding 10 rows to a 2 GB cache rewrote 2 GB (and needed 2 GB free).
HDF5 cannot be appended to crash-safely in place (a ``kill -9`` during an
h5py write can leave the file unreadable), so appending to the big file is
not an option either.

Design (a log-structured merge tree, size-tiered as in Cassandra's STCS or
Bigtable's minor compactions):

* A compaction writes the journal's rows into a **new segment**, an HDF5 file
  of the main file's layout named ``<cache>.seg-<first>-<last>.h5`` (sequence
  numbers), written to a temp file, fsynced and renamed into place. Its cost
  is proportional to the rows in the journal; nothing else is read or written.
* Segments are grouped in **tiers** by size (tier t holds files of
  ``BASE * FANOUT**t`` to ``BASE * FANOUT**(t+1)`` bytes). When the newest
  tier holds ``FANOUT`` segments, they are merged into one segment (of the
  next tier, usually), which may cascade. Each row is therefore rewritten at
  most once per tier: ``log_FANOUT(n_bytes / BASE)`` times over its life,
  about 6 times for a million 1280-d float32 rows.
* When the segments together reach the size of the main file, everything is
  merged into a new main file (the classic "major compaction"). That costs
  O(n), but only after at least n/2 rows were added since the last one: an
  amortised 2 row-writes per added row.
* A small cache (main file plus journal under ``FOLD_BYTES``, 8 MB) folds the
  journal straight into its main file, as format 1 did: bounded cost, and a
  small cache stays one file. (The environment variable
  ``EMBEDCLF_CACHE_FOLD_BYTES``, read at import, changes the bound; the
  tests set it to 0 so that every compaction after the first adds a segment.)

Lookups search the main file, then the segments oldest first, then the
journal; the first copy of a key wins (merges keep the first too, so a key
committed twice, by a crash between a rename and a delete, is harmless).
At most ``(FANOUT - 1)`` segments live per tier, about 20 files for 5 GB.

Crash safety: a merge writes its output before it deletes its inputs. A
segment whose sequence range lies inside another's is left over from a merge
killed before its deletes; one whose range ends at or before the main file's
``merged_through`` attribute was folded into the main file. Both are ignored
by lookups and deleted by the next compaction.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass

__all__ = ["FANOUT", "Segment", "list_segments", "plan_merge", "segment_path"]

FANOUT = 4
BASE = 1 << 20
FOLD_BYTES = int(os.environ.get("EMBEDCLF_CACHE_FOLD_BYTES", 8 << 20))


@dataclass(frozen=True)
class Segment:
    path: str
    first: int
    last: int
    nbytes: int


def segment_path(cache_path: str, first: int, last: int) -> str:
    return f"{cache_path}.seg-{first:010d}-{last:010d}.h5"


def list_segments(cache_path: str, merged_through: int = 0):
    """The live segments (oldest first) and the superseded ones (to delete).

    Returns
    -------
    live : list of Segment
    superseded : list of Segment
        Segments already folded into the main file (``last <=
        merged_through``) or into a bigger segment whose range contains theirs.
    next_seq : int
        The sequence number for the next new segment.
    """
    directory, base = os.path.split(os.path.abspath(cache_path))
    pattern = re.compile(re.escape(base) + r"\.seg-(\d{10})-(\d{10})\.h5")
    found = []
    try:
        names = os.listdir(directory)
    except OSError:
        names = []
    for name in names:
        m = pattern.fullmatch(name)
        if m is None:
            continue
        full = os.path.join(directory, name)
        try:
            nbytes = os.path.getsize(full)
        except FileNotFoundError:
            continue
        found.append(Segment(full, int(m.group(1)), int(m.group(2)), nbytes))
    found.sort(key=lambda s: (s.first, -s.last))
    live, superseded = [], []
    for seg in found:
        if seg.last <= merged_through or (live and seg.last <= live[-1].last):
            superseded.append(seg)
        else:
            live.append(seg)
    next_seq = 1 + max([merged_through] + [s.last for s in found])
    return live, superseded, next_seq


def tier(nbytes: int) -> int:
    return int(math.log(max(nbytes, BASE) / BASE, FANOUT))


def plan_merge(sizes, main_bytes):
    """The next merge for segments of ``sizes`` bytes (oldest first).

    Returns ``"main"`` (merge all segments into the main file), a
    ``(start, stop)`` slice of segments to merge into one, or None.
    """
    if not sizes:
        return None
    if main_bytes is not None and sum(sizes) >= main_bytes:
        return "main"
    newest = tier(sizes[-1])
    start = len(sizes) - 1
    while start > 0 and tier(sizes[start - 1]) == newest:
        start -= 1
    if len(sizes) - start >= FANOUT:
        return (start, len(sizes))
    return None
