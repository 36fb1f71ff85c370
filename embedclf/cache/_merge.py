"""``EmbeddingCache.merge``: one cache from caches filled on different machines.

Every row of every source (main file, segments, journal) is read, its CRC32
checked, and written to a new main file at the output path (temp file, fsync,
rename, as every rewrite). A namespace (same backbone identity, image size and
preprocessing) present in several sources must agree on dim and dtype. A key
present in several sources keeps the row of the first source holding it (HDF5
files before journals); keys whose vectors differ between sources are counted
(vectors of one image computed on different CPUs may differ in the last bits).
Sources are only read, under their own locks; the output must not exist yet.
"""

from __future__ import annotations

import contextlib
import os

import numpy as np

from embedclf.cache._hdf5 import check_namespace_attrs, fix_hint, write_file
from embedclf.cache._journal import read_records
from embedclf.cache._namespace import CacheNamespace
from embedclf.cache._rewrite import plain
from embedclf.exceptions import CacheFormatError, CacheMismatchError

__all__ = ["merge"]


def _namespaces(files, records):
    """fingerprint -> (CacheNamespace, dim) of one source cache."""
    out = {}
    for f in files:
        for fp, group in f.items():
            attrs = {k: plain(v) for k, v in group.attrs.items()}
            out.setdefault(fp, (attrs, int(attrs["dim"])))
    for rec in records:
        out.setdefault(rec.meta["fingerprint"], (rec.meta, int(rec.meta["dim"])))
    return {
        fp: (
            CacheNamespace(
                *(str(a[n]) for n in ("handle", "identity", "image_size")),
                str(a["preprocessing"]),
                dtype=str(a["dtype"]),
            ),
            dim,
        )
        for fp, (a, dim) in out.items()
    }


def _check_compatible(all_ns):
    """Raise if one namespace has other dims or dtypes in two sources."""
    first = {}
    for path, namespaces in all_ns:
        for fp, (ns, dim) in namespaces.items():
            if fp not in first:
                first[fp] = (path, ns, dim)
                continue
            path0, ns0, dim0 = first[fp]
            attrs = {"dtype": ns0.dtype, "dim": dim0}
            try:
                check_namespace_attrs(path0, attrs, ns, dim)
            except CacheMismatchError as exc:
                raise CacheMismatchError(
                    f"Cannot merge {path!r} into {path0!r}: {exc} Merge only "
                    "caches filled with the same embedder settings."
                ) from None


def merge(cache_cls, sources, output) -> dict:
    """Merge the caches at ``sources`` into a new cache at ``output``.

    Returns
    -------
    report : dict
        ``kept`` (rows written), ``namespaces``, ``shared`` (keys found in
        more than one source) and ``differing`` (of those, keys whose vectors
        differ; the first source's is kept).
    """
    output = os.fspath(output)
    for other in (output, output + ".journal"):
        if os.path.exists(other):
            raise FileExistsError(
                f"The merge output {other!r} already exists. Choose a new path, "
                "or delete it first (a merge never writes into an existing cache)."
            )
    caches = [cache_cls(p) for p in sources]
    with contextlib.ExitStack() as stack:
        files, records, all_ns, per_source = [], [], [], []
        for cache in caches:
            stack.enter_context(cache._locked())
            opened = [stack.enter_context(cache._open(p)) for p in cache._files()]
            recs, _ = read_records(cache.journal_path)
            files += opened
            records += recs
            all_ns.append((cache.path, _namespaces(opened, recs)))
            per_source.append((opened, recs))
        _check_compatible(all_ns)
        shared, differing = _compare(caches, per_source, all_ns)
        out = cache_cls(output)
        stack.enter_context(out._locked())
        counts = write_file(
            output,
            output,
            files,
            records,
            attrs={"role": "main", "merged_through": 0},
            verify=True,
        )
    if counts["dropped"]:
        os.remove(output)
        bad = [
            c.path
            for c in caches
            if any(
                f == c.path or f.startswith(c.path + ".seg-")
                for f in counts["dropped_in"]
            )
        ]
        raise CacheFormatError(
            f"{counts['dropped']} row(s) of {bad} fail their checksum; nothing "
            f"was written to {output!r}. " + fix_hint(bad[0] if bad else "SOURCE")
        )
    return {
        "kept": counts["kept"],
        "namespaces": len({fp for _, ns in all_ns for fp in ns}),
        "shared": shared,
        "differing": differing,
    }


def _keys(files, records, fp):
    out = set()
    for f in files:
        if fp in f:
            out.update(k.decode() for k in f[fp]["keys"][...])
    for rec in records:
        if rec.meta["fingerprint"] == fp:
            out.update(rec.keys)
    return out


def _compare(caches, opened, all_ns):
    """Keys held by more than one source, and how many of them differ."""
    shared = differing = 0
    for fp in {fp for _, ns in all_ns for fp in ns}:
        holders = [
            (cache, ns[fp][0], _keys(files, recs, fp))
            for cache, (files, recs), (_, ns) in zip(caches, opened, all_ns)
            if fp in ns
        ]
        counted = {}
        for _, _, keys in holders:
            for key in keys:
                counted[key] = counted.get(key, 0) + 1
        common = sorted(k for k, n in counted.items() if n > 1)
        if not common:
            continue
        first = {}
        for cache, ns, keys in holders:
            mine = [k for k in common if k in keys]
            vectors, _ = cache.get(ns, mine)
            for key, vec in zip(mine, vectors):
                if key in first:
                    differing += not np.array_equal(first[key], vec, equal_nan=True)
                else:
                    first[key] = vec
        shared += len(common)
    return shared, differing
