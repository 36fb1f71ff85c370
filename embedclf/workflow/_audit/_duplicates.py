"""Exact and near-duplicate images, within and across splits.

Exact duplicates share a content key (the SHA-256 of the file's bytes, the
cache key). Near duplicates are pairs whose embeddings have a cosine
similarity of at least ``threshold`` (:data:`DUPLICATE_THRESHOLD`, chosen on
the Grocery Store photos with EfficientNet-Lite0: a JPEG re-encode at
quality 60 scores >= 0.97 against its original, a copy resized to 60 %
>= 0.96, a copy with 5 % cut off its borders >= 0.95, while only 5 of the
2,485 real test photos have a training photo that close, all different shots
of similar produce piles).

The second signal, perceptual hashes, is in :mod:`._hash_pairs`.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "DUPLICATE_THRESHOLD",
    "audit_command",
    "duplicate_pairs",
    "leak_count",
    "leak_hint",
    "twin_accuracy",
]

#: Cosine similarity at or above which two images count as near-duplicates.
DUPLICATE_THRESHOLD = 0.94


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
