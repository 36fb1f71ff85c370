"""``EmbeddingCache``: a content-addressed, crash-safe, multi-process vector store.

Files (format 2; ``_hdf5.py`` describes the HDF5 layout)::

    <file>                 the main HDF5 file
    <file>.seg-A-B.h5      immutable segments (``_segments.py``: why, and the
                           size-tiered merge policy)
    <file>.journal         committed batches not yet in a file (``_journal.py``)
    <file>.lock            the inter-process lock around every access
    <file>.leases/         per-key leases: which process is computing which
                           vector (``_leases.py``: why, and how they are
                           taken over from dead processes)

Writers never modify an HDF5 file in place (HDF5 is not crash-safe under
``kill -9``): a batch is committed by appending it to the checksummed,
fsynced journal, and :meth:`EmbeddingCache.compact` turns the journal into a
new segment (or, for a small cache, a new main file), written to a temp
file, fsynced, renamed into place and its directory fsynced before the
journal is deleted. Every access holds the file lock (``filelock``), so
several processes can share one cache.

Helpers, each with one job: ``_leases.py`` and ``_lease_owner.py`` (per-key
leases, so processes sharing the cache compute each vector once but embed
different images in parallel), ``_journal.py`` (record format),
``_journal_view.py`` (this process's incremental view of the journal),
``_hdf5.py`` (opening, looking up and writing HDF5 files), ``_rewrite.py``
(streaming rows into a new file), ``_segments.py`` (which files to merge),
``_compact.py`` (folding the journal and segments into new files),
``_repair.py`` and ``_files.py`` (fsync, space reservation, temp files).
"""

from __future__ import annotations

import contextlib
import errno
import os
from dataclasses import asdict

import numpy as np
from filelock import FileLock, Timeout

from embedclf.cache import _segments
from embedclf.cache._compact import compact_locked
from embedclf.cache._files import stat_token as _stat_token
from embedclf.cache._hdf5 import (
    FORMAT,
    FORMAT_VERSION,
    check_namespace_attrs,
    lookup,
    open_checked,
    open_hdf5,
)
from embedclf.cache._journal import encode_record, read_records
from embedclf.cache._journal_view import JournalView
from embedclf.cache._leases import Leases
from embedclf.cache._merge import merge as _merge
from embedclf.cache._namespace import CacheNamespace
from embedclf.cache._repair import repair as _repair
from embedclf.cache._rewrite import plain as _plain
from embedclf.exceptions import CacheFormatError

__all__ = ["EmbeddingCache", "CacheNamespace", "FORMAT", "FORMAT_VERSION"]

_COMPACT_MIN_BYTES = 64 << 20
# The file lock is held for milliseconds (a lookup, an fsynced append), and
# processes embedding side by side take it several times per batch: poll it
# every 5 ms, not filelock's 50 ms, so a waiter does not idle 25 ms each time.
_LOCK_POLL_SECONDS = 0.005
_DTYPES = ("float32", "float16")


class EmbeddingCache:
    """A crash-safe, multi-process HDF5 store of image embeddings.

    Parameters
    ----------
    path : str or os.PathLike
        The HDF5 file. It is created on the first compaction; segment files
        ``<path>.seg-*.h5`` and a journal ``<path>.journal`` live beside it.
    lock_timeout : float, default=600
        Seconds to wait for another process holding the file lock.
    lease_ttl : float, default=30
        Seconds a lease on a key being computed lives without renewal (the
        leases in ``<path>.leases/``, see :meth:`leases`). Holders renew
        theirs every ``lease_ttl / 3`` s; a lease of a dead process on this
        host is taken over at once, one from another host once expired.

    Notes
    -----
    A row counts as committed once its batch is fsynced to the journal;
    killing the process at any moment keeps every committed row. ``compact``
    is called by ``ImageEmbedder`` at the end of each ``transform`` that
    computed rows; it costs in proportion to the rows added since the last
    one (amortised, see ``embedclf/cache/_segments.py``), not to the size of
    the cache.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from embedclf import EmbeddingCache
    >>> from embedclf.cache._store import CacheNamespace
    >>> ns = CacheNamespace("my-model", "my-model", "default", "v1")
    >>> path = os.path.join(tempfile.mkdtemp(), "cache.h5")
    >>> cache = EmbeddingCache(path)
    >>> cache.put(ns, ["a" * 64], np.ones((1, 3), dtype=np.float32))
    >>> vectors, found = cache.get(ns, ["a" * 64, "b" * 64])
    >>> found.tolist(), vectors[0].tolist()
    ([True, False], [1.0, 1.0, 1.0])
    """

    def __init__(self, path, *, lock_timeout=600, lease_ttl=30):
        self.path = os.fspath(path)
        self.journal_path = self.path + ".journal"
        self.lock_timeout = lock_timeout
        if not (isinstance(lease_ttl, (int, float)) and lease_ttl > 0):
            raise ValueError(
                "The 'lease_ttl' parameter of EmbeddingCache must be a positive "
                f"number of seconds. Got {lease_ttl!r} instead."
            )
        self.lease_ttl = lease_ttl
        self._lock = FileLock(self.path + ".lock", timeout=lock_timeout)
        self._leases = None
        self._indexes: dict[str, tuple] = {}  # file -> (stat token, fp -> index)
        self._checked: set = set()  # (files, fp, dtype, dim) that put() checked
        self._journal = JournalView(self.journal_path)

    # -- locking ---------------------------------------------------------------
    @contextlib.contextmanager
    def _acquired(self, lock):
        """``with lock``, with a fix in the error when the lock file cannot be made."""
        try:
            lock.acquire(poll_interval=_LOCK_POLL_SECONDS)
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise
            folder = os.path.dirname(os.path.abspath(self.path))
            error = PermissionError(
                f"Cannot create the lock file {lock.lock_file!r} of cache "
                f"{self.path!r}: its folder {folder!r} is not writable "
                f"({exc.strerror}). The cache needs a writable folder even to "
                "read it (lock files). Make the folder writable, copy the cache "
                "into a writable folder and pass that path, or run without a "
                "cache (cache=None; no --cache)."
            )
            error.errno = exc.errno
            raise error from None
        try:
            yield
        finally:
            lock.release()

    @contextlib.contextmanager
    def _locked(self):
        try:
            with self._acquired(self._lock):
                yield
        except Timeout:
            raise TimeoutError(
                f"Waited {self.lock_timeout} s for the lock on cache {self.path!r}; "
                "another process is using it. Wait for it to finish, or pass a "
                "larger lock_timeout."
            ) from None

    def leases(self) -> Leases:
        """The per-key leases of this cache (``<path>.leases/``).

        ``embedding/_compute_once.py`` claims the leases of the keys a batch
        misses, computes those it won outside any lock, commits them and
        releases the leases: so concurrent processes (cross-validation with
        ``n_jobs``) never run the backbone twice on the same image, and embed
        different images in parallel. See ``embedclf/cache/_leases.py``.
        """
        if self._leases is None:
            self._leases = Leases(
                self.path + ".leases", ttl=self.lease_ttl, cache_path=self.path
            )
        return self._leases

    # -- the files -------------------------------------------------------------
    def _directory_error(self):
        return CacheFormatError(
            f"The cache path {self.path!r} is a directory. Pass the path of a "
            f"file, e.g. {os.path.join(self.path, 'embeddings.h5')!r}."
        )

    def _open(self, path):
        if path == self.path and os.path.isdir(path):
            raise self._directory_error()
        return open_checked(path, self.path)

    def _merged_through(self) -> int:
        return self._main_attrs()[1]

    def _main_attrs(self) -> tuple[int, int]:
        """(format_version, merged_through) of the main file ((2, 0) if none)."""
        if _stat_token(self.path) is None:
            return FORMAT_VERSION, 0
        with self._open(self.path) as f:
            return int(f.attrs["format_version"]), int(f.attrs.get("merged_through", 0))

    def _state(self):
        """(main file's size or None, live segments, superseded ones, next seq)."""
        main = _stat_token(self.path)
        if main is None and os.path.isdir(self.path):
            raise self._directory_error()
        live, old, nxt = _segments.list_segments(self.path, self._merged_through())
        return (None if main is None else main[2]), live, old, nxt

    def _files(self) -> list[str]:
        """The HDF5 files to search, in lookup order (main, then oldest first)."""
        main, live, _, _ = self._state()
        return ([] if main is None else [self.path]) + [s.path for s in live]

    def _index_of(self, path) -> dict:
        token = _stat_token(path)
        memo = self._indexes.get(path)
        if memo is None or memo[0] != token:
            memo = self._indexes[path] = (token, {})
        return memo[1]

    # -- reading ---------------------------------------------------------------
    def get(self, ns: CacheNamespace, keys):
        """Look up vectors by content key.

        Returns
        -------
        vectors : ndarray of shape (len(keys), dim), float32, or None
            Rows of keys not found are NaN. None when nothing was found.
        found : ndarray of shape (len(keys),), bool
        """
        keys = list(keys)
        found = np.zeros(len(keys), dtype=bool)
        out = None
        fp = ns.fingerprint
        with self._locked():
            self._journal.refresh()
            for path in self._files():
                if found.all():
                    break
                with self._open(path) as f:
                    index = self._index_of(path)
                    out = lookup(f, self.path, ns, keys, found, index, out)
            jrows = self._journal.rows.get(fp, {})
            if jrows:
                meta = self._journal.meta[fp]
                check_namespace_attrs(self.path, meta, ns)
                for i, key in enumerate(keys):
                    if not found[i] and key in jrows:
                        if out is None:
                            out = np.full((len(keys), meta["dim"]), np.nan, np.float32)
                        out[i] = jrows[key]
                        found[i] = True
        return out, found

    def stored_dim(self, ns: CacheNamespace) -> int | None:
        """The width of the vectors stored for ``ns``, or None if it has none."""
        with self._locked():
            self._journal.refresh()
            meta = self._journal.meta.get(ns.fingerprint)
            if meta is not None:
                return int(meta["dim"])
            for path in self._files():
                with self._open(path) as f:
                    if ns.fingerprint in f:
                        return int(f[ns.fingerprint].attrs["dim"])
        return None

    # -- writing ---------------------------------------------------------------
    def put(self, ns: CacheNamespace, keys, vectors) -> None:
        """Commit vectors: appended to the journal, flushed and fsynced.

        Raises
        ------
        OSError
            If the disk is full or not writable; rows committed before are kept.
        """
        keys = list(keys)
        vectors = np.asarray(vectors).astype(ns.dtype, copy=False)
        if len(keys) == 0:
            return
        meta = dict(asdict(ns), fingerprint=ns.fingerprint, dim=int(vectors.shape[1]))
        record = encode_record(meta, keys, vectors)
        with self._locked():
            self._journal.refresh()
            self._check_stored(ns, vectors.shape[1])
            if ns.fingerprint in self._journal.meta:
                check_namespace_attrs(
                    self.path, self._journal.meta[ns.fingerprint], ns, vectors.shape[1]
                )
            try:
                self._journal.append(record, meta, keys, vectors)
            except OSError as exc:
                raise OSError(
                    exc.errno,
                    f"Could not write to the cache journal {self.journal_path!r} "
                    f"({exc.strerror}). Every row committed before this batch is "
                    "kept; free some disk space or choose another cache path, then "
                    "run again to compute the rest.",
                ) from exc

    def _check_stored(self, ns, dim):
        """Refuse ``dim``/``dtype`` that the files already holding ``ns`` disagree
        with (checked once per set of files, not every batch)."""
        files = tuple((p, _stat_token(p)) for p in self._files())
        checked = (files, ns.fingerprint, ns.dtype, dim)
        if checked in self._checked:
            return
        for path, _ in files:
            with self._open(path) as f:
                if ns.fingerprint in f:
                    check_namespace_attrs(self.path, f[ns.fingerprint].attrs, ns, dim)
        self._checked.add(checked)

    def compact_if_due(self) -> bool:
        """Compact when the journal (read into memory on lookups) outgrows 64 MB.

        Called between batches of long runs. Compaction costs in proportion to
        the journal, not to the cache, so the bound does not grow with it.
        """
        journal = _stat_token(self.journal_path)
        due = journal is not None and journal[2] > _COMPACT_MIN_BYTES
        if due:
            self.compact()
        return due

    def compact(self) -> None:
        """Write the journal into a new segment (or, while the cache is small,
        into its main file), then merge segments as ``_segments.py`` plans
        (``_compact.py``)."""
        with self._locked():
            compact_locked(self)

    # -- inspection and recovery -------------------------------------------------
    def info(self) -> list[dict]:
        """Describe each namespace: fingerprint, handle, size, dim, dtype, rows."""
        out, seen = {}, {}
        with self._locked():
            for path in self._files():
                with self._open(path) as f:
                    for fp, group in f.items():
                        meta = {k: _plain(v) for k, v in group.attrs.items()}
                        out.setdefault(fp, dict(meta, fingerprint=fp))
                        keys = group["keys"][...]
                        seen.setdefault(fp, set()).update(k.decode() for k in keys)
            records, _ = read_records(self.journal_path)
        for rec in records:
            fp = rec.meta["fingerprint"]
            out.setdefault(fp, dict(rec.meta))
            seen.setdefault(fp, set()).update(rec.keys)
        return [dict(meta, n_rows=len(seen[fp])) for fp, meta in out.items()]

    @classmethod
    def repair(cls, path) -> dict:
        """Rebuild a damaged cache from every readable, checksum-valid row.

        The damaged main file is kept beside it as ``<file>.corrupt-<time>``
        (unreadable segments as ``<segment>.corrupt-<time>``).

        Returns
        -------
        report : dict
            ``kept`` (rows written), ``dropped`` (rows failing their checksum),
            ``unreadable`` (namespaces, or ``"<file>"``, that could not be read
            at all) and ``backup`` (path of the damaged file, or None).
        """
        return _repair(cls(path), open_hdf5, FORMAT, FORMAT_VERSION)

    @classmethod
    def merge(cls, sources, output) -> dict:
        """Write every row of the caches ``sources`` into a new cache ``output``.

        Namespaces are checked (same dim and dtype in every source) and every
        row's CRC32 is verified; see ``embedclf/cache/_merge.py``.

        Returns
        -------
        report : dict
            ``kept`` (rows written), ``namespaces``, ``shared`` (keys in more
            than one source) and ``differing`` (of those, keys whose vectors
            differ; the first source's row is kept).
        """
        return _merge(cls, sources, output)
