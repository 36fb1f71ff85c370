"""``ImageEmbedder.transform`` for one backbone, once the files are hashed.

Look the content keys up in the cache namespace, embed the misses (here or on
a Dask cluster), then assemble one row per path and record what happened on
the embedder (``failed_paths_``, ``n_computed_``, ``n_cached_`` ...).
"""

from __future__ import annotations

import logging

import numpy as np

from embedclf.cache._store import EmbeddingCache
from embedclf.embedding._backbones import resolve_backbone
from embedclf.embedding._batches import compute_missing
from embedclf.embedding._inputs import normalize_size
from embedclf.embedding._runtime import load_runtime, recorded_dim

__all__ = ["transform_hashed"]

logger = logging.getLogger("embedclf")


def transform_hashed(embedder, paths, keys, errors):
    """``embedder.transform(paths)`` given each file's content key.

    Parameters
    ----------
    embedder : ImageEmbedder
        With a single backbone as ``model``.
    paths : list of str
    keys : list of str or None
        The content key of each path (None where hashing failed).
    errors : list of Exception or None
        Each path's error so far; updated in place with those of decoding.

    Returns
    -------
    X : ndarray of shape (n_samples, dim), float32
    """
    spec = resolve_backbone(embedder.model)
    rt = embedder._runtime(spec)
    ns = embedder._namespace(spec, rt)
    cache = EmbeddingCache(embedder.cache) if embedder.cache is not None else None
    embedder._raise_first(errors, paths)
    unique = list(dict.fromkeys(k for k in keys if k is not None))
    vectors, found_vecs = _look_up(cache, ns, unique)  # key -> float32 vector
    todo = {}  # key -> first path index with that key
    for i, k in enumerate(keys):
        if k is not None and k not in vectors:
            todo.setdefault(k, i)
    computed = set()
    if todo:
        computed = _compute(embedder, paths, todo, spec, ns, cache, vectors, errors, rt)
        _share_failures(keys, todo, errors)
    embedder._raise_first(errors, paths)

    dim = len(next(iter(vectors.values()))) if vectors else None
    if dim is None:
        dim = _dim_without_images(embedder, spec, rt, cache, ns)
    if vectors and not todo and len(unique) == len(keys) == len(vectors):
        out = found_vecs  # all cached, distinct, in order
    else:
        fill = 0.0 if embedder.on_error == "zero" else np.nan
        out = np.full((len(paths), dim), fill, dtype=np.float32)
        for i, k in enumerate(keys):
            if errors[i] is None and k in vectors:
                out[i] = vectors[k]
    _record(embedder, out, paths, keys, errors, vectors, computed, dim, rt)
    return out


def _look_up(cache, ns, unique):
    """The cached vectors of the keys ``unique``: ``({key: vector}, rows)``.

    ``rows`` is what ``cache.get`` returned, one per key (None without a
    cache or keys).
    """
    vectors, found_vecs = {}, None
    if cache is not None and unique:
        found_vecs, found = cache.get(ns, unique)
        for j in np.flatnonzero(found):
            vectors[unique[j]] = found_vecs[j]
    return vectors, found_vecs


def _compute(embedder, paths, todo, spec, ns, cache, vectors, errors, rt):
    """Embed the files of ``todo`` into ``vectors``; the keys computed here."""
    try:
        if embedder.scheduler is not None:  # the workers load the backbone
            from embedclf.embedding._dask import compute_on_cluster

            return compute_on_cluster(
                embedder, paths, todo, spec, ns, cache, vectors, errors, rt
            )
        requested = normalize_size(embedder.image_size)
        backbone = load_runtime(spec, requested, rt)
        size = embedder._resolved_size(backbone)
        return compute_missing(
            embedder, paths, todo, backbone, size, ns, cache, vectors, errors
        )
    finally:
        # Committed rows are safe in the journal either way; folding
        # them into the HDF5 file now keeps later lookups fast.
        if cache is not None:
            _compact_quietly(cache)


def _share_failures(keys, todo, errors):
    """Copies of a failed file share its key and its failure."""
    failed = {k: errors[i] for k, i in todo.items() if errors[i] is not None}
    for i, k in enumerate(keys):
        if errors[i] is None and k in failed:
            errors[i] = failed[k]


def _record(embedder, out, paths, keys, errors, vectors, computed, dim, rt):
    """Set the embedder's ``transform`` attributes, normalise ``out``, log."""
    failed = [(p, str(e)) for p, e in zip(paths, errors) if e is not None]
    embedder.failed_paths_ = np.array([p for p, _ in failed], dtype=str)
    embedder.failure_reasons_ = np.array([r for _, r in failed], dtype=str)
    # Rows another process committed while we waited count as cached.
    n_cached = sum(
        1
        for k, e in zip(keys, errors)
        if e is None and k in vectors and k not in computed
    )
    n_computed = len(computed)
    embedder.n_computed_ = n_computed
    embedder.n_cached_ = n_cached
    embedder.embedding_slices_ = [slice(0, dim)]
    embedder.runtime_, embedder.precision_ = rt.name, rt.precision
    if embedder.normalize_each:
        from embedclf.embedding._multi import normalize_blocks

        normalize_blocks(out, embedder.embedding_slices_)
    logger.info(
        "%d images: %d computed by the backbone, %d from cache, %d failed",
        len(paths),
        n_computed,
        n_cached,
        len(embedder.failed_paths_),
    )


def _compact_quietly(cache):
    try:
        cache.compact()
    except OSError as exc:  # e.g. disk full: rows stay in the journal
        logger.warning("%s", exc)


def _dim_without_images(embedder, spec, rt, cache, ns):
    """Embedding dim when no row was produced (empty input or all failed).

    Recorded beside the OpenVINO IR, or in the cache when it holds vectors
    of this namespace; else the backbone is loaded (and run once if its
    output size is not static) to find out.
    """
    dim = recorded_dim(rt)
    if dim is None and cache is not None:
        dim = cache.stored_dim(ns)
    if dim is not None:
        return dim
    backbone = load_runtime(spec, normalize_size(embedder.image_size), rt)
    if backbone.dim is None:
        size = embedder._resolved_size(backbone)
        backbone(np.zeros((1, *size, 3), dtype=np.float32))
    return backbone.dim
