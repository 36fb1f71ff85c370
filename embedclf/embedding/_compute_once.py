"""Running the backbone on rows no process has cached yet, once across processes.

Each vector is computed once however many processes share the cache, and
processes embedding *different* images run their backbones at the same time:
instead of one global lock held across the backbone call (which made N
processes embed one batch at a time), every missing key is claimed with a
per-key lease (``cache/_leases.py``). A process computes the keys it won,
commits them, and only then releases their leases; keys leased by another
live process are waited for and read from the cache once committed, or
claimed and computed here if their owner dies (at once on this host, after
the lease's ``ttl`` for another host).
"""

from __future__ import annotations

import time

import numpy as np

__all__ = ["embed_missing"]

_FIRST_WAIT, _MAX_WAIT = 0.02, 0.5  # polling for keys another process computes


def embed_missing(cache, ns, keys, images, backbone):
    """Embed the rows of ``images`` whose keys are not in ``cache`` yet.

    The keys missing from the cache are claimed with the cache's leases
    (without waiting). The claimed ones are looked up again (another
    process may have committed them just before), the backbone runs on the
    rest, outside any lock, and their vectors are committed before the
    leases are released. Keys leased by another process are then polled for
    (20 ms, growing to 0.5 s): taken from the cache once committed, or
    claimed and computed here if their lease is released without a commit
    or taken over from a dead owner. So each vector is computed once,
    however many processes share the cache file.

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
        The keys this call ran through the backbone, in the order of ``keys``.
    """
    if cache is None:
        return dict(zip(keys, backbone(images))), list(keys)
    first = {}
    for j, key in enumerate(keys):
        first.setdefault(key, j)  # a key twice in a batch is computed once
    rows = list(first.values())
    vectors, done = {}, []
    pending = _take_found(cache, ns, keys, rows, vectors)
    leases, fp = cache.leases(), ns.fingerprint
    wait = _FIRST_WAIT
    while pending:
        won, _ = leases.claim(fp, [keys[j] for j in pending])
        mine = [pending[i] for i in won]
        if mine:
            try:
                todo = _take_found(cache, ns, keys, mine, vectors)
                if todo:
                    batch = images if len(todo) == len(keys) else images[todo]
                    out = backbone(batch)
                    cache.put(ns, [keys[j] for j in todo], out)
                    stored = out.astype(ns.dtype).astype(np.float32)
                    vectors.update(zip((keys[j] for j in todo), stored))
                    done += todo
            finally:  # after the commit, never before
                leases.release(fp, [keys[j] for j in mine])
        pending = [j for j in pending if keys[j] not in vectors]
        if pending:
            time.sleep(wait)
            wait = min(wait * 1.5, _MAX_WAIT)
            pending = _take_found(cache, ns, keys, pending, vectors)
    if done:
        cache.compact_if_due()
    return vectors, [keys[j] for j in sorted(done)]


def _take_found(cache, ns, keys, rows, vectors):
    """Put the cached vectors of ``keys[rows]`` into ``vectors``; the rows
    still missing."""
    found_vecs, found = cache.get(ns, [keys[j] for j in rows])
    for i in np.flatnonzero(found):
        vectors[keys[rows[i]]] = found_vecs[i]
    return [j for j, hit in zip(rows, found) if not hit]
