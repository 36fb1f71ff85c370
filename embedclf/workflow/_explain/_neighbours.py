"""Nearest training photos of the predicted and of the runner-up class."""

from __future__ import annotations

import numpy as np

__all__ = ["nearest_training"]


def _unit(X):
    X = np.asarray(X, dtype=np.float64)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return np.divide(X, norms, out=np.zeros_like(X), where=norms > 0)


def nearest_training(X, proba, classes, X_train, y_train, paths_train, *, k=3):
    """For each row, the ``k`` training photos most similar by cosine, of the
    predicted class and of the runner-up class.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    proba : array-like of shape (n_samples, n_classes)
        Columns in the order of ``classes``.
    classes : sequence of str
    X_train : array-like of shape (n_train, n_features)
        Vectors of the training photos (rows with NaN are skipped).
    y_train, paths_train : sequence of str of length n_train
    k : int, default=3

    Returns
    -------
    neighbours : list of dict
        Per row: ``predicted`` and ``runner_up``, each ``{"label": str,
        "photos": [{"path", "similarity"}, ...]}`` (most similar first; ties
        by training order). ``runner_up`` is None for a single class.
    """
    classes = [str(c) for c in classes]
    y_train = np.asarray(y_train).astype(str)
    paths_train = np.asarray(paths_train).astype(str)
    X_train = np.asarray(X_train, dtype=np.float64)
    good = np.isfinite(X_train).all(axis=1)
    Q, T = _unit(X), _unit(np.where(good[:, None], X_train, 0.0))
    proba = np.asarray(proba)
    rows_of = {c: np.flatnonzero((y_train == c) & good) for c in classes}
    out = []
    for i in range(len(Q)):
        order = np.argsort(-proba[i], kind="stable")
        entry = {}
        for name, rank in (("predicted", 0), ("runner_up", 1)):
            if rank >= len(order):
                entry[name] = None
                continue
            label = classes[order[rank]]
            rows = rows_of[label]
            sims = T[rows] @ Q[i]
            best = np.argsort(-sims, kind="stable")[:k]
            entry[name] = {
                "label": label,
                "photos": [
                    {"path": str(paths_train[rows[j]]), "similarity": float(sims[j])}
                    for j in best
                ],
            }
        out.append(entry)
    return out
