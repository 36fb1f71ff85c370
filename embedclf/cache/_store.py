"""Content-addressed HDF5 embedding cache; the only module that imports h5py.

Layout of the HDF5 file::

    /                      attrs: format, format_version, created_by
    /<fingerprint>/        one group per namespace (backbone, image size,
                           preprocessing); attrs: handle, identity, image_size,
                           preprocessing, dim, dtype
        keys     (n,) S64      SHA-256 of the image bytes, hex
        vectors  (n, dim)      float32 or float16
        crc32    (n,) uint32   CRC32 of each stored vector row

Writers never modify the HDF5 file in place (HDF5 is not crash-safe under
``kill -9``): committed batches go to an append-only checksummed journal
beside it (``<file>.journal``, see ``_journal.py``), and :meth:`compact` folds
the journal into a new file that atomically replaces the old one, the same
write-then-rename pattern as joblib's ``concurrency_safe_write``. Every access
holds an inter-process file lock (``<file>.lock``, from ``filelock``), so
several processes can share one cache file.

Helpers, each with one job: ``_journal.py`` (record format),
``_journal_view.py`` (this process's incremental view of the journal),
``_cache_rewrite.py`` (streaming rows into a new file), ``_cache_repair.py``
(``repair``) and ``_cache_files.py`` (fsync, space reservation, temp files).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import uuid
from dataclasses import asdict, dataclass

import numpy as np
from filelock import FileLock, Timeout

from embedclf.cache._files import fsync_path as _fsync_path
from embedclf.cache._files import remove_stale_temps as _remove_stale_temps
from embedclf.cache._files import reserve_space as _reserve_space
from embedclf.cache._files import stat_token as _stat_token
from embedclf.cache._journal import encode_record, read_records
from embedclf.cache._journal_view import JournalView
from embedclf.cache._repair import repair as _repair
from embedclf.cache._rewrite import plain as _plain
from embedclf.cache._rewrite import row_crcs as _row_crcs
from embedclf.cache._rewrite import size_bound as _size_bound
from embedclf.cache._rewrite import write_namespaces as _write_namespaces
from embedclf.exceptions import CacheFormatError, CacheMismatchError

__all__ = ["EmbeddingCache", "CacheNamespace", "FORMAT", "FORMAT_VERSION"]

FORMAT = "embedclf-embedding-cache"
FORMAT_VERSION = 1
_COMPACT_MIN_BYTES = 64 << 20
_DTYPES = ("float32", "float16")


def _fix_hint(path):
    return (
        f"Run `embedclf cache repair {path}` (or EmbeddingCache.repair(path) in "
        "Python) to rebuild it from every readable row, or delete it to start "
        "over."
    )


@dataclass(frozen=True)
class CacheNamespace:
    """Everything that determines a vector besides the image bytes.

    Parameters
    ----------
    handle : str
        The backbone handle as given by the user (informational).
    identity : str
        What the backbone really is (a content hash of a SavedModel, a TF Hub
        URL, a Keras name and weights).
    image_size : str
        ``"default"`` or ``"HxW"``.
    preprocessing : str
        Version tag of the decoding rules.
    dtype : {"float32", "float16"}
        Storage dtype of the vectors.
    """

    handle: str
    identity: str
    image_size: str
    preprocessing: str
    dtype: str = "float32"

    @property
    def fingerprint(self) -> str:
        payload = json.dumps(
            [self.identity, self.image_size, self.preprocessing], sort_keys=True
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:32]


def _open_hdf5(path: str):
    """Open an HDF5 file read-only (our own file lock guards access)."""
    import h5py

    return h5py.File(path, "r", locking=False)


class EmbeddingCache:
    """A crash-safe, multi-process HDF5 store of image embeddings.

    Parameters
    ----------
    path : str or os.PathLike
        The HDF5 file. It is created on the first write.
    lock_timeout : float, default=600
        Seconds to wait for another process holding the file lock.

    Notes
    -----
    A row counts as committed once its batch is flushed to the journal; killing
    the process at any moment keeps every committed row. ``compact`` is called
    by ``ImageEmbedder`` at the end of each ``transform`` that computed rows.

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

    def __init__(self, path, *, lock_timeout=600):
        self.path = os.fspath(path)
        self.journal_path = self.path + ".journal"
        self.lock_timeout = lock_timeout
        self._lock = FileLock(self.path + ".lock", timeout=lock_timeout)
        self._compute_lock = FileLock(self.path + ".compute.lock", timeout=-1)
        self._forget_main()
        self._journal = JournalView(self.journal_path)

    # -- what this object learnt from the HDF5 file ------------------------------
    def _forget_main(self) -> None:
        self._main_token = None  # stat token of the file the memos below are of
        self._main_index: dict[str, dict[str, int]] = {}  # fp -> key -> row
        self._main_checked: set = set()  # (fp, dtype, dim) that put() checked

    def _main_file_token(self):
        """The HDF5 file's stat token (None if absent); the memos of an older
        version of the file (replaced by a compaction) are forgotten."""
        token = _stat_token(self.path)
        if token != self._main_token:
            self._forget_main()
            self._main_token = token
        return token

    # -- locking ---------------------------------------------------------------
    @contextlib.contextmanager
    def _acquired(self, lock):
        """``with lock``, with a fix in the error when the lock file cannot be made."""
        try:
            lock.acquire()
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

    def compute_lock(self):
        """Inter-process lock held while computing vectors for a batch.

        ``ImageEmbedder`` takes it, re-checks the cache, computes only what is
        still missing and commits: so concurrent processes (cross-validation
        with ``n_jobs``) never run the backbone twice on the same image.
        """
        return self._acquired(self._compute_lock)

    # -- reading ---------------------------------------------------------------
    def _directory_error(self):
        return CacheFormatError(
            f"The cache path {self.path!r} is a directory. Pass the path of a "
            f"file, e.g. {os.path.join(self.path, 'embeddings.h5')!r}."
        )

    def _open_main(self):
        if os.path.isdir(self.path):
            raise self._directory_error()
        try:
            f = _open_hdf5(self.path)
        except OSError as exc:
            raise CacheFormatError(
                f"The cache file {self.path!r} is not a readable HDF5 file ({exc}). "
                + _fix_hint(self.path)
            ) from None
        fmt = _plain(f.attrs.get("format"))
        version = f.attrs.get("format_version")
        if fmt != FORMAT:
            f.close()
            raise CacheFormatError(
                f"The file {self.path!r} is an HDF5 file but not an embedclf "
                "embedding cache (it has no format='embedclf-embedding-cache' "
                "attribute). Choose another cache path; embedclf will not write "
                "into a file it did not create."
            )
        if version is None or int(version) > FORMAT_VERSION:
            f.close()
            raise CacheFormatError(
                f"The cache file {self.path!r} has format version {version}, but "
                f"this embedclf reads versions up to {FORMAT_VERSION}. Upgrade "
                "embedclf, or use another cache path."
            )
        return f

    def _check_namespace_attrs(self, attrs, ns: CacheNamespace, dim=None):
        stored_dtype = str(attrs["dtype"])
        stored_dim = int(attrs["dim"])
        if stored_dtype != ns.dtype:
            raise CacheMismatchError(
                f"The cache {self.path!r} stores vectors of model "
                f"{ns.handle!r} as {stored_dtype}, but dtype={ns.dtype!r} was "
                f"requested. Pass cache_dtype={stored_dtype!r}, or use another "
                "cache file."
            )
        if dim is not None and dim != stored_dim:
            raise CacheMismatchError(
                f"The cache {self.path!r} holds {stored_dim}-d vectors for model "
                f"{ns.handle!r}, but the model now returns {dim}-d vectors. The "
                "model changed under the same handle: use another cache file, "
                "or delete this one."
            )
        return stored_dim

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
            token = self._main_file_token()
            if token is not None:
                with self._open_main() as f:
                    out = self._get_main(f, ns, keys, found)
            jrows = self._journal.rows.get(fp, {})
            if jrows:
                meta = self._journal.meta[fp]
                self._check_namespace_attrs(meta, ns)
                for i, key in enumerate(keys):
                    if not found[i] and key in jrows:
                        if out is None:
                            out = np.full((len(keys), meta["dim"]), np.nan, np.float32)
                        out[i] = jrows[key]
                        found[i] = True
        return out, found

    def _get_main(self, f, ns, keys, found):
        fp = ns.fingerprint
        if fp not in f:
            return None
        group = f[fp]
        try:
            dim = self._check_namespace_attrs(group.attrs, ns)
            index = self._main_index.get(fp)
            if index is None:
                stored = group["keys"][...]
                index = {k.decode("ascii"): i for i, k in enumerate(stored)}
                self._main_index[fp] = index
            lookup = np.array([index.get(k, -1) for k in keys], dtype=np.int64)
            hit = np.flatnonzero(lookup >= 0)
            if not len(hit):
                return None
            # h5py reads need increasing, unique rows; `inverse` maps back.
            rows, inverse = np.unique(lookup[hit], return_inverse=True)
            inverse = inverse.ravel()
            vectors_ds = group["vectors"]
            if len(rows) > 0.25 * vectors_ds.shape[0]:
                # Most of the namespace: one contiguous read straight into our
                # buffer beats h5py's point selection (and a copy).
                stored = np.empty(vectors_ds.shape, dtype=vectors_ds.dtype)
                vectors_ds.read_direct(stored)
                picked = rows  # row of `stored` for each of `rows`
            else:
                stored = vectors_ds[rows]
                picked = np.arange(len(rows))
            crcs = group["crc32"][...][rows]
        except (OSError, KeyError, ValueError) as exc:
            if isinstance(exc, CacheMismatchError):
                raise
            raise CacheFormatError(
                f"The cache file {self.path!r} is damaged (namespace {fp}: {exc}). "
                + _fix_hint(self.path)
            ) from None
        bad = np.flatnonzero(_row_crcs(stored, picked) != crcs)
        if len(bad):
            raise CacheFormatError(
                f"The cache file {self.path!r} is damaged: {len(bad)} stored "
                "vector(s) fail their checksum. " + _fix_hint(self.path)
            )
        source = picked[inverse]  # row of `stored` for each hit key
        found[hit] = True
        if len(hit) == len(keys):
            if (
                stored.dtype == np.float32
                and len(source) == len(stored)
                and np.array_equal(source, np.arange(len(stored)))
            ):
                return stored  # every stored row, in stored order: no copy
            return stored[source].astype(np.float32, copy=False)
        out = np.full((len(keys), dim), np.nan, dtype=np.float32)
        out[hit] = stored[source]
        return out

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
            self._check_against_main(ns, vectors.shape[1])
            if ns.fingerprint in self._journal.meta:
                self._check_namespace_attrs(
                    self._journal.meta[ns.fingerprint], ns, vectors.shape[1]
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

    def _check_against_main(self, ns, dim):
        if self._main_file_token() is None:
            return
        checked = (ns.fingerprint, ns.dtype, dim)
        if checked in self._main_checked:
            return  # same file as last time: skip reopening it every batch
        with self._open_main() as f:
            if ns.fingerprint in f:
                self._check_namespace_attrs(f[ns.fingerprint].attrs, ns, dim)
        self._main_checked.add(checked)

    def compact_if_due(self) -> bool:
        """Compact when the journal outgrows a quarter of the HDF5 file (and 64 MB).

        Called between batches of long runs, so the journal (read into memory
        on lookups) stays small while the amortised cost of rewriting the file
        stays linear in the number of rows.
        """
        journal = _stat_token(self.journal_path)
        main = _stat_token(self.path)
        due = journal is not None and journal[2] > max(
            _COMPACT_MIN_BYTES, 0.25 * (main[2] if main else 0)
        )
        if due:
            self.compact()
        return due

    def compact(self) -> None:
        """Fold the journal into the HDF5 file (atomic replace), then drop it."""
        with self._locked():
            records, _ = read_records(self.journal_path)
            if not records:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(self.journal_path)
                return
            sources = []
            if _stat_token(self.path) is not None:
                sources.append(self._open_main())
            try:
                self._rewrite(sources, records)
            finally:
                for f in sources:
                    f.close()
            os.remove(self.journal_path)
            self._journal.reset()

    def _rewrite(self, sources, records, *, skip_bad_rows=False):
        """Write main-file rows plus journal rows to a temp file, then rename."""
        import h5py

        _remove_stale_temps(self.path)
        tmp = f"{self.path}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            main = _stat_token(self.path)
            _reserve_space(tmp, _size_bound(main[2] if main else 0, records))
            with h5py.File(tmp, "w", locking=False) as dst:
                dst.attrs["format"] = FORMAT
                dst.attrs["format_version"] = FORMAT_VERSION
                from embedclf import __version__

                dst.attrs["created_by"] = f"embedclf {__version__}"
                counts = _write_namespaces(
                    dst, sources, records, skip_bad_rows=skip_bad_rows
                )
            _fsync_path(tmp)
            os.replace(tmp, self.path)
            _fsync_path(os.path.dirname(os.path.abspath(self.path)))
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.remove(tmp)
            if isinstance(exc, OSError) and not isinstance(exc, CacheFormatError):
                raise OSError(
                    exc.errno,
                    f"Could not rewrite the cache file {self.path!r} ({exc}). It is "
                    f"unchanged and the new rows are kept in {self.journal_path!r}; "
                    "free some disk space and run again.",
                ) from exc
            raise
        self._forget_main()
        return counts

    # -- inspection and recovery -------------------------------------------------
    def info(self) -> list[dict]:
        """Describe each namespace: fingerprint, handle, size, dim, dtype, rows."""
        out = {}
        with self._locked():
            if _stat_token(self.path) is not None:
                with self._open_main() as f:
                    for fp, group in f.items():
                        meta = {k: _plain(v) for k, v in group.attrs.items()}
                        out[fp] = dict(meta, fingerprint=fp, n_rows=len(group["keys"]))
            records, _ = read_records(self.journal_path)
        for rec in records:
            fp = rec.meta["fingerprint"]
            entry = out.setdefault(fp, dict(rec.meta, n_rows=0))
            entry["n_rows"] += len(rec.keys)  # upper bound before compaction
        return list(out.values())

    @classmethod
    def repair(cls, path) -> dict:
        """Rebuild a damaged cache from every readable, checksum-valid row.

        The damaged file is kept beside it as ``<file>.corrupt-<time>``.

        Returns
        -------
        report : dict
            ``kept`` (rows written), ``dropped`` (rows failing their checksum),
            ``unreadable`` (namespaces, or ``"<file>"``, that could not be read
            at all) and ``backup`` (path of the damaged file, or None).
        """
        return _repair(cls(path), _open_hdf5, FORMAT, FORMAT_VERSION)
