"""Stream namespaces of old HDF5 cache files plus journal records into a new file.

Used by ``EmbeddingCache.compact`` and ``EmbeddingCache.repair``. Rows are
copied in blocks, so memory stays bounded by the block size (not by the size
of the cache), and every row is checked against its CRC32 on the way.
This module receives open ``h5py`` objects; it does not import h5py itself.
"""

from __future__ import annotations

import zlib

import numpy as np

from embedclf.cache._journal import KEY_BYTES

__all__ = ["write_namespaces", "row_crcs", "plain", "size_bound"]

BLOCK_ROWS = 8192
_CHUNK_ROWS = 1024
_ATTRS = ("handle", "identity", "image_size", "preprocessing", "dtype")


def row_crcs(vectors: np.ndarray, rows=None) -> np.ndarray:
    """CRC32 of the bytes of each row (of each of ``rows``, if given)."""
    vectors = np.ascontiguousarray(vectors)
    if rows is None:
        rows = range(len(vectors))
    return np.fromiter(
        (zlib.crc32(vectors[r].data) for r in rows),  # rows are views: no copy
        dtype=np.uint32,
        count=len(rows),
    )


def size_bound(main_bytes: int, records) -> int:
    """An upper bound on the size in bytes of a file rewritten from a main file
    of ``main_bytes`` plus journal ``records`` (space is reserved up front)."""
    total = main_bytes + (1 << 16)
    touched = {}
    for rec in records:
        n, dim = rec.vectors.shape
        total += n * (KEY_BYTES + 4 + dim * rec.vectors.dtype.itemsize)
        touched[rec.meta["fingerprint"]] = dim * rec.vectors.dtype.itemsize
    # Each namespace written may start one more chunk per dataset.
    return total + sum(
        4 * _CHUNK_ROWS * (KEY_BYTES + 4) + _CHUNK_ROWS * b for b in touched.values()
    )


def plain(value):
    """An HDF5 attribute as a plain Python value."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


class _Appender:
    """Resizable keys/vectors/crc32 datasets of one namespace in the new file."""

    def __init__(self, dst, fp, meta, n_rows=None):
        self.dim, self.dtype = int(meta["dim"]), str(meta["dtype"])
        # Chunks no bigger than the data: a small segment stays small.
        rows = _CHUNK_ROWS if n_rows is None else max(1, min(_CHUNK_ROWS, n_rows))
        group = dst.create_group(fp)
        for name in _ATTRS:
            group.attrs[name] = str(meta[name])
        group.attrs["dim"] = self.dim
        self.keys = group.create_dataset(
            "keys", (0,), "S64", maxshape=(None,), chunks=(rows * 4,)
        )
        self.vectors = group.create_dataset(
            "vectors",
            (0, self.dim),
            self.dtype,
            maxshape=(None, self.dim),
            chunks=(rows, self.dim),
        )
        self.crc = group.create_dataset(
            "crc32", (0,), "uint32", maxshape=(None,), chunks=(rows * 4,)
        )
        self.n = 0

    def append(self, keys, vectors):
        if not len(keys):
            return
        vectors = np.asarray(vectors).astype(self.dtype, copy=False)
        m = self.n + len(keys)
        for ds in (self.keys, self.vectors, self.crc):
            ds.resize(m, axis=0)
        self.keys[self.n : m] = np.asarray(keys, dtype="S64")
        self.vectors[self.n : m] = vectors
        self.crc[self.n : m] = row_crcs(vectors)
        self.n = m


def _copy_old_rows(src_group, out, seen, counts):
    """Copy checksum-valid rows of an existing namespace, block by block."""
    n = src_group["keys"].shape[0]
    for start in range(0, n, BLOCK_ROWS):
        stop = min(n, start + BLOCK_ROWS)
        keys = src_group["keys"][start:stop]
        vectors = src_group["vectors"][start:stop]
        good = row_crcs(vectors) == src_group["crc32"][start:stop]
        if not good.all():
            counts["dropped"] += int((~good).sum())
            if src_group.file.filename not in counts["dropped_in"]:
                counts["dropped_in"].append(src_group.file.filename)
        keys = [k.decode("ascii") for k in keys[good]]
        vectors = vectors[good]
        new = [i for i, key in enumerate(keys) if key not in seen]
        if len(new) < len(keys):  # already copied from an older file
            keys, vectors = [keys[i] for i in new], vectors[new]
        out.append(keys, vectors)
        seen.update(keys)


def write_namespaces(dst, sources, records, *, skip_bad_rows, verify=False):
    """Write every namespace of ``sources`` (open HDF5 files) and ``records``.

    Parameters
    ----------
    dst : h5py.File
        The new file, open for writing.
    sources : list of h5py.File
        Existing cache files, oldest first (the main file being replaced and
        the segments merged into it); a key in several keeps its first row.
    records : list of JournalRecord
        Journal records to add; a key already present is kept as it was.
    skip_bad_rows : bool
        Repair mode: namespaces or rows that cannot be read are dropped and
        counted instead of raising.
    verify : bool, default=False
        Decode and check every row, even of a namespace HDF5 could copy whole.

    Returns
    -------
    counts : dict
        ``kept`` rows, ``dropped`` rows (failed checksums), ``dropped_in``
        (the files they were in), ``unreadable`` namespaces.
    """
    by_fp: dict[str, list] = {}
    for rec in records:
        by_fp.setdefault(rec.meta["fingerprint"], []).append(rec)
    counts = {"kept": 0, "dropped": 0, "dropped_in": [], "unreadable": []}
    fps = []
    for f in sources:
        try:
            fps.extend(f)
        except (OSError, KeyError, ValueError, RuntimeError):
            if not skip_bad_rows:
                raise
            counts["unreadable"].append("<root group>")
    for fp in dict.fromkeys(fps + list(by_fp)):
        groups, meta = [], None
        for f in sources:
            try:
                if fp not in f:
                    continue
                group = f[fp]
                group_meta = {k: plain(v) for k, v in group.attrs.items()}
            except (OSError, KeyError, ValueError, RuntimeError):
                if not skip_bad_rows:
                    raise
                counts["unreadable"].append(fp)
                continue
            groups.append(group)
            if meta is None and "dim" in group_meta:
                meta = group_meta
        if len(groups) == 1 and fp not in by_fp and not (skip_bad_rows or verify):
            # In one file only and untouched: HDF5's own copy, no decoding.
            groups[0].file.copy(groups[0], dst, name=fp)
            counts["kept"] += len(dst[fp]["keys"])
            continue
        if meta is None:
            if fp not in by_fp:
                continue
            meta = by_fp[fp][0].meta
        n_rows = sum(len(r.keys) for r in by_fp.get(fp, []))
        try:
            n_rows += sum(g["keys"].shape[0] for g in groups)
        except (OSError, KeyError, ValueError, RuntimeError):
            n_rows = None  # a damaged source (repair): default chunks
        out = _Appender(dst, fp, meta, n_rows)
        seen: set[str] = set()
        for group in groups:  # oldest first: the first copy of a key wins
            try:
                _copy_old_rows(group, out, seen, counts)
            except (OSError, KeyError, ValueError, RuntimeError):
                if not skip_bad_rows:
                    raise
                counts["unreadable"].append(fp)
        for rec in by_fp.get(fp, []):
            keep = [i for i, key in enumerate(rec.keys) if key not in seen]
            seen.update(rec.keys[i] for i in keep)
            out.append([rec.keys[i] for i in keep], rec.vectors[keep])
        counts["kept"] += out.n
    return counts
