"""The HDF5 files of an embedding cache: open and check, look rows up, write one.

The main file and every segment (``_segments.py``) share one layout::

    /                      attrs: format, format_version, created_by, role
                           ("main" or "segment"), merged_through (main only)
    /<fingerprint>/        one group per namespace (backbone, image size,
                           preprocessing); attrs: handle, identity, image_size,
                           preprocessing, dim, dtype
        keys     (n,) S64      SHA-256 of the image bytes, hex
        vectors  (n, dim)      float32 or float16
        crc32    (n,) uint32   CRC32 of each stored vector row

A file is never modified once written: :func:`write_file` writes a temp file,
fsyncs it, renames it over its destination (``os.replace``) and fsyncs the
directory, as joblib's ``concurrency_safe_write`` does. With h5py, the only
importers of it are this module and ``_store.py``.
"""

from __future__ import annotations

import contextlib
import os
import uuid

import numpy as np

from embedclf.cache._files import fsync_path, remove_stale_temps, reserve_space
from embedclf.cache._rewrite import plain, row_crcs, size_bound, write_namespaces
from embedclf.exceptions import CacheFormatError, CacheMismatchError

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "check_namespace_attrs",
    "fix_hint",
    "lookup",
    "open_checked",
    "open_hdf5",
    "write_file",
]

FORMAT = "embedclf-embedding-cache"
#: 1: one HDF5 file plus its journal. 2: the same file layout, plus immutable
#: segment files beside it (``<file>.seg-*.h5``) and the ``role`` and
#: ``merged_through`` attributes. Version 2 reads version 1 files as they are.
FORMAT_VERSION = 2


def fix_hint(path) -> str:
    return (
        f"Run `embedclf cache repair {path}` (or EmbeddingCache.repair(path) in "
        "Python) to rebuild it from every readable row, or delete it to start "
        "over."
    )


def open_hdf5(path: str):
    """Open an HDF5 file read-only (the cache's own file lock guards access)."""
    import h5py

    return h5py.File(path, "r", locking=False)


def open_checked(path: str, cache_path: str):
    """Open a main or segment file of the cache at ``cache_path`` and check its
    format attributes; raises ``CacheFormatError`` saying how to recover."""
    try:
        f = open_hdf5(path)
    except OSError as exc:
        raise CacheFormatError(
            f"The cache file {path!r} is not a readable HDF5 file ({exc}). "
            + fix_hint(cache_path)
        ) from None
    fmt = plain(f.attrs.get("format"))
    version = f.attrs.get("format_version")
    if fmt != FORMAT:
        f.close()
        raise CacheFormatError(
            f"The file {path!r} is an HDF5 file but not an embedclf "
            "embedding cache (it has no format='embedclf-embedding-cache' "
            "attribute). Choose another cache path; embedclf will not write "
            "into a file it did not create."
        )
    if version is None or int(version) > FORMAT_VERSION:
        f.close()
        raise CacheFormatError(
            f"The cache file {path!r} has format version {version}, but "
            f"this embedclf reads versions up to {FORMAT_VERSION}. Upgrade "
            "embedclf, or use another cache path."
        )
    return f


def check_namespace_attrs(cache_path, attrs, ns, dim=None) -> int:
    """Raise ``CacheMismatchError`` if stored dtype or dim disagree with ``ns``."""
    stored_dtype = str(attrs["dtype"])
    stored_dim = int(attrs["dim"])
    if stored_dtype != ns.dtype:
        raise CacheMismatchError(
            f"The cache {cache_path!r} stores vectors of model "
            f"{ns.handle!r} as {stored_dtype}, but dtype={ns.dtype!r} was "
            f"requested. Pass cache_dtype={stored_dtype!r}, or use another "
            "cache file."
        )
    if dim is not None and dim != stored_dim:
        raise CacheMismatchError(
            f"The cache {cache_path!r} holds {stored_dim}-d vectors for model "
            f"{ns.handle!r}, but the model now returns {dim}-d vectors. The "
            "model changed under the same handle: use another cache file, "
            "or delete this one."
        )
    return stored_dim


def lookup(f, cache_path, ns, keys, found, index, out):
    """Fill ``out`` (or a new array) with the rows of ``keys`` not ``found`` yet
    that the open file ``f`` holds, checking each row's CRC32.

    ``index`` memoises this file's key -> row dict per namespace (keep it as
    long as the file is unchanged). Returns ``out`` (None if still nothing).
    """
    fp = ns.fingerprint
    if fp not in f:
        return out
    group = f[fp]
    try:
        dim = check_namespace_attrs(cache_path, group.attrs, ns)
        rows_of = index.get(fp)
        if rows_of is None:
            stored = group["keys"][...]
            rows_of = {k.decode("ascii"): i for i, k in enumerate(stored)}
            index[fp] = rows_of
        lookup = np.array(
            [-1 if found[i] else rows_of.get(k, -1) for i, k in enumerate(keys)],
            dtype=np.int64,
        )
        hit = np.flatnonzero(lookup >= 0)
        if not len(hit):
            return out
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
    except (OSError, KeyError, ValueError, RuntimeError) as exc:
        if isinstance(exc, CacheMismatchError):
            raise
        raise CacheFormatError(
            f"The cache file {f.filename!r} is damaged (namespace {fp}: {exc}). "
            + fix_hint(cache_path)
        ) from None
    bad = np.flatnonzero(row_crcs(stored, picked) != crcs)
    if len(bad):
        raise CacheFormatError(
            f"The cache file {f.filename!r} is damaged: {len(bad)} stored "
            "vector(s) fail their checksum. " + fix_hint(cache_path)
        )
    source = picked[inverse]  # row of `stored` for each hit key
    found[hit] = True
    if out is None and len(hit) == len(keys):
        if (
            stored.dtype == np.float32
            and len(source) == len(stored)
            and np.array_equal(source, np.arange(len(stored)))
        ):
            return stored  # every stored row, in stored order: no copy
        return stored[source].astype(np.float32, copy=False)
    if out is None:
        out = np.full((len(keys), dim), np.nan, dtype=np.float32)
    out[hit] = stored[source]
    return out


def write_file(
    dst_path, cache_path, sources, records, *, attrs, skip_bad_rows=False, verify=False
) -> dict:
    """Write ``sources`` (open HDF5 files) plus journal ``records`` into a new
    file that atomically becomes ``dst_path``; returns ``write_namespaces``'s
    counts. Temp files are ``<cache_path>.tmp-*``, removed on failure (and
    those of dead writers first: the caller holds the cache lock). ``verify``
    checks every row's CRC32, even of namespaces copied whole."""
    import h5py

    from embedclf._version import __version__

    remove_stale_temps(cache_path)
    tmp = f"{cache_path}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        in_bytes = sum(os.path.getsize(f.filename) for f in sources)
        reserve_space(tmp, size_bound(in_bytes, records))
        with h5py.File(tmp, "w", locking=False) as dst:
            dst.attrs["format"] = FORMAT
            dst.attrs["format_version"] = FORMAT_VERSION
            dst.attrs["created_by"] = f"embedclf {__version__}"
            for name, value in attrs.items():
                dst.attrs[name] = value
            counts = write_namespaces(
                dst, sources, records, skip_bad_rows=skip_bad_rows, verify=verify
            )
        fsync_path(tmp)  # the data is on disk before the name points to it
        os.replace(tmp, dst_path)
        fsync_path(os.path.dirname(os.path.abspath(dst_path)))  # and the name
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    return counts
