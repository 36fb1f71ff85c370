"""Exact and near-duplicate images, within and across splits.

Exact duplicates share a content key (the SHA-256 of the file's bytes, the
cache key). Near duplicates are pairs whose embeddings have a cosine
similarity of at least ``threshold`` (:data:`DUPLICATE_THRESHOLD`, chosen on
the Grocery Store photos with EfficientNet-Lite0: a JPEG re-encode at
quality 60 scores >= 0.97 against its original, a copy resized to 60 %
>= 0.96, a copy with 5 % cut off its borders >= 0.95, while only 5 of the
2,485 real test photos have a training photo that close, all different shots
of similar produce piles).

Embeddings catch crops and re-shoots but a small photo resized and re-encoded
can fall below the cosine threshold; perceptual hashes (``imagehash.phash``,
64 bits, the hash CleanVision's near-duplicate check uses) catch resized and
re-encoded copies whatever their size. :func:`phash_pairs` pairs images whose
hashes differ in at most :data:`PHASH_DISTANCE` bits and :func:`merge_pairs`
reports each pair once, with the signal(s) that found it.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "DUPLICATE_THRESHOLD",
    "PHASH_DISTANCE",
    "audit_command",
    "duplicate_pairs",
    "leak_count",
    "leak_hint",
    "twin_accuracy",
]

#: Cosine similarity at or above which two images count as near-duplicates.
DUPLICATE_THRESHOLD = 0.94

#: Hamming distance (bits of 64) up to which two perceptual hashes pair.
#: CleanVision pairs equal hashes only (distance 0); copies of Grocery Store
#: photos resized to 60-90 % and re-saved at JPEG quality 60-90 (348 and 240
#: pixels) measured 0 or 2 bits from their original (0 for 85 %), so equal
#: hashes miss about one copy in six. At 4 bits the 5,421 real photos give 20
#: pairs, none across splits (benchmarks/results/audit.json).
PHASH_DISTANCE = 4


def _unit(X):
    from sklearn.preprocessing import normalize

    return normalize(np.asarray(X, dtype=np.float32))


def duplicate_pairs(X, split=None, *, keys=None, threshold=DUPLICATE_THRESHOLD):
    """Every pair of rows that are exact or near duplicates.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Embeddings.
    split : ndarray of shape (n_samples,) of str, default=None
        The split of each row ("training", "validation", "testing").
    keys : sequence of str, default=None
        Content keys; rows with equal keys are exact duplicates. Without
        keys, identical vectors count as exact duplicates.
    threshold : float, default=DUPLICATE_THRESHOLD

    Returns
    -------
    pairs : list of dict
        ``i < j``, ``similarity``, ``kind`` ("exact" or "near") and
        ``splits`` ("training/testing", sorted; one name within a split),
        ``signal`` ("content" for equal keys, else "embedding"), most
        similar first.
    """
    from sklearn.neighbors import radius_neighbors_graph

    n = len(X)
    if n < 2:
        return []
    if not -1.0 < float(threshold) <= 1.0:
        raise ValueError(
            f"The duplicate threshold must be a cosine similarity in (-1, 1]; "
            f"got {threshold!r}."
        )
    split = np.full(n, "training") if split is None else np.asarray(split).astype(str)
    Xn = _unit(X)
    radius = float(np.sqrt(max(2.0 - 2.0 * float(threshold), 0.0))) + 1e-6
    graph = radius_neighbors_graph(Xn, radius, mode="connectivity").tocoo()
    upper = graph.row < graph.col
    rows, cols = graph.row[upper], graph.col[upper]
    sims = np.einsum("ij,ij->i", Xn[rows], Xn[cols]) if len(rows) else np.zeros(0)
    if keys is not None:
        keys = np.asarray(keys, dtype=object)
        exact = keys[rows] == keys[cols]
    else:
        X = np.asarray(X)
        exact = np.array([np.array_equal(X[i], X[j]) for i, j in zip(rows, cols)])
    zero = np.linalg.norm(Xn, axis=1) == 0
    pairs = []
    for i, j, s, e in zip(rows, cols, sims, exact):
        if zero[i] or zero[j]:
            continue
        names = sorted({split[i], split[j]})
        pairs.append(
            {
                "i": int(i),
                "j": int(j),
                "similarity": float(min(s, 1.0)),
                "kind": "exact" if e else "near",
                "splits": "/".join(names),
                "signal": "content" if e else "embedding",
            }
        )
    pairs.sort(key=lambda p: (p["kind"] != "exact", -p["similarity"], p["i"]))
    return pairs


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


def leak_count(X, split, *, threshold=DUPLICATE_THRESHOLD) -> int:
    """How many validation/testing rows have a near-twin in the training part.

    A cheap check (one matrix product) for ``embedclf train`` to point at
    the audit.
    """
    split = np.asarray(split).astype(str)
    train = np.flatnonzero(split == "training")
    held = np.flatnonzero(split != "training")
    if not len(train) or not len(held):
        return 0
    Xn = _unit(X)
    best = np.zeros(len(held), dtype=np.float32)
    for start in range(0, len(held), 1024):
        block = Xn[held[start : start + 1024]] @ Xn[train].T
        best[start : start + 1024] = block.max(axis=1)
    return int(np.sum(best >= threshold - 1e-6))


def audit_command(
    image_dir, *, val_dir=None, test_dir=None, cache=None, model=None, output="audit"
) -> str:
    """The ``embedclf audit`` command line that sees the same splits.

    When ``val_dir``/``test_dir`` sit beside ``image_dir`` in one folder
    holding only ``train/ val/ test/`` (the official layout), the command
    names that folder; otherwise it passes them on. ``model`` is a handle
    or a list of handles (None: the default backbone, no flag).
    """
    import shlex
    from pathlib import Path

    def q(x):
        return shlex.quote(str(x))

    parts = ["embedclf", "audit"]
    held = [d for d in (val_dir, test_dir) if d is not None]
    parent = Path(image_dir).resolve().parent
    official = {"train", "val", "valid", "validation", "test"}
    if (
        held
        and all(Path(d).resolve().parent == parent for d in held)
        and {Path(d).name for d in (image_dir, *held)} <= official
    ):
        parts.append(q(parent))
    else:
        parts.append(q(image_dir))
        for flag, d in (("--val-dir", val_dir), ("--test-dir", test_dir)):
            if d is not None:
                parts += [flag, q(d)]
    parts += ["--output", q(output)]
    if cache is not None:
        parts += ["--cache", q(cache)]
    models = [] if model is None else [model] if isinstance(model, str) else model
    for m in models:
        parts += ["--model", q(m)]
    return " ".join(parts)


def leak_hint(
    X, split, image_dir, *, threshold=DUPLICATE_THRESHOLD, **command
) -> str | None:
    """One line for ``embedclf train`` when held-out images have training twins.

    ``command`` (``val_dir``, ``test_dir``, ``cache``, ``model``) completes
    the audit command printed, as :func:`audit_command` builds it.
    """
    n = leak_count(X, split, threshold=threshold)
    if not n:
        return None
    return (
        f"Note: {n} validation/testing image(s) have a near-duplicate among the "
        f"training images (cosine >= {threshold:g}), which inflates their score; "
        f"`{audit_command(image_dir, **command)}` shows them and what they do "
        "to the accuracy."
    )


def twin_accuracy(y_true, y_pred, has_twin) -> dict:
    """Accuracy of held-out images with vs without a near-twin in training.

    Returns
    -------
    result : dict
        ``n_with_twin``, ``accuracy_with_twin``, ``n_without_twin``,
        ``accuracy_without_twin`` and ``accuracy_all`` (None when a part is
        empty).
    """
    y_true = np.asarray(y_true).astype(str)
    y_pred = np.asarray(y_pred).astype(str)
    has_twin = np.asarray(has_twin, dtype=bool)

    def acc(mask):
        return float(np.mean(y_true[mask] == y_pred[mask])) if mask.any() else None

    return {
        "n_with_twin": int(has_twin.sum()),
        "accuracy_with_twin": acc(has_twin),
        "n_without_twin": int((~has_twin).sum()),
        "accuracy_without_twin": acc(~has_twin),
        "accuracy_all": acc(np.ones(len(y_true), dtype=bool)),
    }
