"""Running the backbone on rows no process has cached yet, once across processes."""

from __future__ import annotations

import numpy as np

__all__ = ["embed_missing"]


def embed_missing(cache, ns, keys, images, backbone):
    """Embed the rows of ``images`` whose keys are not in ``cache`` yet.

    Under the cache's compute lock, ``keys`` are looked up again (another
    process may have committed some since the caller's own lookup), the
    backbone runs on the rest only, and their vectors are committed before
    the lock is released: each vector is computed once, however many
    processes share the cache file.

    Parameters
    ----------
    cache : EmbeddingCache or None
        None: no cache, every row is computed.
    ns : CacheNamespace
    keys : list of str
        Content keys of the rows of ``images``.
    images : ndarray of shape (len(keys), height, width, 3)
    backbone : callable
        Images -> float32 vectors of shape (n, dim).

    Returns
    -------
    vectors : dict of str to ndarray
        A float32 vector for every key, as stored (rounded to ``ns.dtype``).
    computed : list of str
        The keys this call ran through the backbone.
    """
    if cache is None:
        return dict(zip(keys, backbone(images))), list(keys)
    with cache.compute_lock():
        found_vecs, found = cache.get(ns, keys)
        vectors = {keys[j]: found_vecs[j] for j in np.flatnonzero(found)}
        todo = np.flatnonzero(~found)
        if len(todo) == 0:
            return vectors, []
        out = backbone(images if len(todo) == len(keys) else images[todo])
        computed = [keys[j] for j in todo]
        cache.put(ns, computed, out)
    cache.compact_if_due()
    vectors.update(zip(computed, out.astype(ns.dtype).astype(np.float32)))
    return vectors, computed
