"""One process's in-memory view of a cache journal, kept in step with the file.

``EmbeddingCache`` reads the journal incrementally (only the records appended
since its last look) and appends its own records at the offset it knows to be
valid. Callers hold the cache's inter-process file lock around every method.
"""

from __future__ import annotations

import numpy as np

from embedclf.cache._files import TAIL_BYTES, read_tail, stat_token
from embedclf.cache._journal import append_record, read_records

__all__ = ["JournalView"]


class JournalView:
    """Rows and namespace metadata of the journal at ``path``.

    Attributes
    ----------
    rows : dict of str to dict of str to ndarray
        Namespace fingerprint -> content key -> vector (first record wins).
    meta : dict of str to dict
        Namespace fingerprint -> the metadata of its latest record.
    """

    def __init__(self, path: str):
        self.path = path
        self.reset()

    def reset(self) -> None:
        """Forget everything (the journal was folded into the HDF5 file)."""
        self.rows: dict[str, dict[str, np.ndarray]] = {}
        self.meta: dict[str, dict] = {}
        self._token = None
        self._end = 0
        self._tail = b""  # the bytes just before _end

    def refresh(self) -> None:
        """Read the records appended since the last look (all, if the file
        was replaced or cut in the meantime)."""
        token = stat_token(self.path)
        if (
            token is None
            or self._token is None
            or token[0] != self._token[0]
            or token[2] < self._end
            or not self._continues()
        ):
            self.reset()
        self._token = token
        if token is None:
            return
        end = self._end
        records, self._end = read_records(self.path, end)
        if self._end != end:
            self._tail = read_tail(self.path, self._end)
        for rec in records:
            self._remember(rec.meta, rec.keys, rec.vectors)

    def _continues(self) -> bool:
        """Whether the file still holds, just before ``_end``, the bytes this
        view last read or wrote there.

        Another process may have compacted (deleted) the journal and started a
        new one that reuses the inode number and is already longer; offsets
        into the old file mean nothing in the new one, and appending at a stale
        offset would cut off the other process's committed records.
        """
        if self._end == 0:
            return True
        return read_tail(self.path, self._end) == self._tail

    def append(self, record: bytes, meta: dict, keys, vectors) -> None:
        """Append an encoded record (flushed and fsynced) and remember its rows.

        Call ``refresh`` first, under the same lock. Raises ``OSError`` if the
        write fails; the file then still ends at the last valid record.
        """
        self._end = append_record(self.path, record, valid_length=self._end)
        self._token = stat_token(self.path)
        self._tail = record[-TAIL_BYTES:]
        self._remember(meta, keys, vectors)

    def _remember(self, meta, keys, vectors) -> None:
        fp = meta["fingerprint"]
        self.meta[fp] = meta
        rows = self.rows.setdefault(fp, {})
        for key, vec in zip(keys, vectors):
            rows.setdefault(key, vec)
