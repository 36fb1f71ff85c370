"""Near-duplicates by perceptual hash, and merging them with embedding pairs.

Embeddings catch crops and re-shoots but a small photo resized and re-encoded
can fall below the cosine threshold; perceptual hashes (``imagehash.phash``,
64 bits, the hash CleanVision's near-duplicate check uses) catch resized and
re-encoded copies whatever their size. :func:`phash_pairs` pairs images whose
hashes differ in at most :data:`PHASH_DISTANCE` bits and :func:`merge_pairs`
reports each pair once, with the signal(s) that found it.
"""

from __future__ import annotations

import numpy as np

from embedclf.workflow._audit._duplicates import _unit

__all__ = ["PHASH_DISTANCE", "merge_pairs", "phash_pairs"]

#: Hamming distance (bits of 64) up to which two perceptual hashes pair.
#: CleanVision pairs equal hashes only (distance 0); copies of Grocery Store
#: photos resized to 60-90 % and re-saved at JPEG quality 60-90 (348 and 240
#: pixels) measured 0 or 2 bits from their original (0 for 85 %), so equal
#: hashes miss about one copy in six. At 4 bits the 5,421 real photos give 20
#: pairs, none across splits (benchmarks/results/audit.json).
PHASH_DISTANCE = 4


def phash_pairs(bits, split=None, *, max_distance=PHASH_DISTANCE, valid=None):
    """Pairs of rows whose perceptual hashes differ in few bits.

    Parameters
    ----------
    bits : ndarray of shape (n_samples, n_bits) of bool
        The hashes' bits (``_images.phash_bits``).
    split : ndarray of shape (n_samples,) of str, default=None
    max_distance : int, default=PHASH_DISTANCE
    valid : ndarray of shape (n_samples,) of bool, default=None
        Rows to consider (unreadable images have no hash).

    Returns
    -------
    pairs : list of dict
        ``i < j``, ``distance`` (bits), ``splits``.
    """
    bits = np.asarray(bits, dtype=bool)
    n = len(bits)
    split = np.full(n, "training") if split is None else np.asarray(split).astype(str)
    rows = np.arange(n) if valid is None else np.flatnonzero(valid)
    signs = bits[rows].astype(np.float32) * 2 - 1
    n_bits = bits.shape[1] if bits.ndim == 2 else 0
    pairs = []
    for start in range(0, len(rows), 1024):
        block = signs[start : start + 1024]
        dist = (n_bits - block @ signs.T) / 2
        a, b = np.nonzero(dist <= max_distance + 1e-3)
        for ia, ib in zip(a + start, b):
            if ia < ib:
                i, j = int(rows[ia]), int(rows[ib])
                pairs.append(
                    {
                        "i": i,
                        "j": j,
                        "distance": int(round(dist[ia - start, ib])),
                        "splits": "/".join(sorted({split[i], split[j]})),
                    }
                )
    return pairs


def merge_pairs(embedding_pairs, hash_pairs, X=None) -> list:
    """One list of duplicate pairs, each with the signal(s) that found it.

    ``signal`` becomes "content" (same bytes), "embedding", "phash" or
    "embedding+phash"; ``phash_distance`` is set where the hashes paired.
    Pairs found by the hash only get their cosine ``similarity`` from ``X``
    (None without it) and kind "near".
    """
    merged = {(p["i"], p["j"]): dict(p) for p in embedding_pairs}
    Xn = None if X is None else _unit(X)
    for h in hash_pairs:
        key = (h["i"], h["j"])
        if key in merged:
            p = merged[key]
            p["phash_distance"] = h["distance"]
            if p["signal"] == "embedding":
                p["signal"] = "embedding+phash"
            continue
        sim = None if Xn is None else float(min(Xn[h["i"]] @ Xn[h["j"]], 1.0))
        merged[key] = {
            "i": h["i"],
            "j": h["j"],
            "similarity": sim,
            "kind": "near",
            "splits": h["splits"],
            "signal": "phash",
            "phash_distance": h["distance"],
        }
    pairs = list(merged.values())
    pairs.sort(key=lambda p: (p["kind"] != "exact", -(p["similarity"] or 0.0), p["i"]))
    return pairs
