"""Held-out probabilities of each candidate: the validation part or folds.

A :class:`Plan` says which rows fit and which are predicted: with a
validation part large enough (``validation``), fit on the training part and
predict the validation part; otherwise (``pooled-cv``) training and
validation rows are pooled and cut into near-duplicate-grouped, stratified
folds (``NearDuplicateKFold``), each row predicted once by the fold that
holds it out. Either way every candidate ends as one probability row per
held-out image, which is all that choosing (``_estimate``) needs.

A *config* is the part of a candidate that changes the vectors: backbones
(concatenated, each L2-normalised, when several), training views
(``copies``) and test-time views; ``C``, scaling and the head are fitted on
them. Training views join the fitting rows of their image only; test-time
views of a held-out row average its probabilities with the plain row's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Config", "Plan", "evaluate", "features", "make_plan"]

#: Validation images needed (overall, and per class x this) to choose on them.
MIN_VALIDATION = 100
MIN_VALIDATION_PER_CLASS = 3


@dataclass(frozen=True)
class Config:
    """Backbones (tuple of handles), training views and test-time views."""

    backbones: tuple
    copies: int = 0
    test_views: str = "none"

    def label(self, names) -> str:
        text = " + ".join(names[h] for h in self.backbones)
        if len(self.backbones) > 1:
            text += " (each L2)"
        if self.copies:
            text += f", {self.copies} training views"
        if self.test_views != "none":
            text += f", test views {self.test_views}"
        return text


@dataclass
class Plan:
    """Which rows are fitted and which predicted, per fold."""

    mode: str  # "validation" or "pooled-cv"
    folds: list  # [(fit rows, held-out rows)], global row indices
    rows: np.ndarray  # every held-out row, in the order of the score arrays
    halves_groups: np.ndarray  # group of each of ``rows`` for cross-fitting
    classes: np.ndarray
    y: np.ndarray  # labels of all rows (global)

    @property
    def fit_rows(self) -> np.ndarray:
        return np.unique(np.concatenate([f for f, _ in self.folds]))


def make_plan(y, split, X_first, *, pooled=None, random_state=0) -> Plan:
    """The plan for labels ``y`` and parts ``split`` (rows "training" etc.).

    ``X_first``: vectors of one backbone, to group near-duplicates in folds.
    ``pooled``: force (True) or forbid (False) pooling; None decides by the
    size of the validation part (module constants).
    """
    from embedclf.model_selection._group_split import NearDuplicateKFold

    y = np.asarray(y).astype(str)
    tr, va = np.flatnonzero(split == "training"), np.flatnonzero(split == "validation")
    n_classes = len(np.unique(y[tr]))
    if pooled is None:
        need = max(MIN_VALIDATION, MIN_VALIDATION_PER_CLASS * n_classes)
        pooled = len(va) < need
    if not pooled:
        return Plan("validation", [(tr, va)], va, va.copy(), np.unique(y[tr]), y)
    rows = np.concatenate([tr, va])
    _, counts = np.unique(y[rows], return_counts=True)
    n_splits = int(np.clip(counts.min(), 2, 5))
    cv = NearDuplicateKFold(n_splits, random_state=random_state)
    groups = cv.groups(X_first[rows], y[rows])
    folds = [(rows[a], rows[b]) for a, b in cv.split(X_first[rows], y[rows])]
    held = np.concatenate([b for _, b in folds])
    group_of = dict(zip(rows.tolist(), groups.tolist()))
    halves = np.array([group_of[r] for r in held.tolist()])
    return Plan("pooled-cv", folds, held, halves, np.unique(y[rows]), y)


def features(source, backbones, rows=None) -> np.ndarray:
    """Concatenated vectors of ``rows``; each backbone L2-normalised if several."""
    from sklearn.preprocessing import normalize

    blocks = [source.plain(h) for h in backbones]
    if rows is not None:
        blocks = [b[rows] for b in blocks]
    if len(blocks) == 1:
        return np.asarray(blocks[0], dtype=np.float32)
    return np.hstack([normalize(b) for b in blocks]).astype(np.float32)


def _view_features(source, backbones, rows, kind, copies):
    from sklearn.preprocessing import normalize

    blocks = [source.views(h, rows, kind, copies)[0] for h in backbones]
    if len(blocks) == 1:
        return np.asarray(blocks[0], dtype=np.float32)
    return np.hstack([normalize(b) for b in blocks]).astype(np.float32)


def make_estimator(params: dict, *, class_weight=None):
    """The head of a candidate, with a search tolerance (refitted exactly later)."""
    if params.get("head") == "mlp":
        from embedclf.heads._mlp import MLPHeadClassifier

        return MLPHeadClassifier(class_weight=class_weight, random_state=0)
    from embedclf.heads._linear import SoftmaxClassifier

    return SoftmaxClassifier(
        C=params["C"],
        standardize=params["standardize"],
        class_weight=class_weight,
        tol=1e-3,
    )


def _fit_predict(params, X_fit, y_fit, X_views, classes, class_weight):
    """Probabilities (columns: ``classes``) of each held-out row, views averaged."""
    head = make_estimator(params, class_weight=class_weight).fit(X_fit, y_fit)
    cols = np.searchsorted(classes, head.classes_)
    out = []
    for X in X_views:  # plain rows first, then each test-time view set
        P = np.zeros((len(X), len(classes)))
        P[:, cols] = head.predict_proba(X)
        out.append(P)
    return out


def evaluate(
    source,
    plan,
    config,
    candidates,
    *,
    test_views=("none",),
    class_weight=None,
    n_jobs=None,
):
    """Held-out probabilities of each candidate on ``config``'s vectors.

    Returns
    -------
    dict
        ``(test_views, index of candidate) -> ndarray (len(plan.rows),
        n_classes)`` for each requested test-view setting.
    """
    from joblib import Parallel, delayed

    y = plan.y
    jobs, meta = [], []
    for fit, held in plan.folds:
        X_fit, y_fit = features(source, config.backbones, fit), y[fit]
        if config.copies:
            V = _view_features(source, config.backbones, fit, "train", config.copies)
            X_fit = np.vstack([X_fit, V])
            y_fit = np.concatenate([y_fit, np.repeat(y[fit], config.copies)])
        X_views = [features(source, config.backbones, held)]
        for tv in test_views:
            if tv == "none":
                continue
            kind, k = ("flip", 1) if tv == "flip" else ("train", config.copies)
            V = _view_features(source, config.backbones, held, kind, k)
            X_views.append(V)
        for c, params in enumerate(candidates):
            jobs.append(
                delayed(_fit_predict)(
                    params, X_fit, y_fit, X_views, plan.classes, class_weight
                )
            )
            meta.append((c, held))
    results = Parallel(n_jobs=n_jobs)(jobs)
    position = {r: i for i, r in enumerate(plan.rows.tolist())}
    out = {}
    for (c, held), probas in zip(meta, results):
        idx = np.array([position[r] for r in held.tolist()])
        plain, views = probas[0], probas[1:]
        j = 0
        for tv in test_views:
            if tv == "none":
                P = plain
            else:
                k = 1 if tv == "flip" else config.copies
                V = views[j].reshape(len(held), k, -1)
                P = (plain + V.sum(axis=1)) / (1 + k)
                j += 1
            out.setdefault((tv, c), np.zeros((len(plan.rows), len(plan.classes))))
            out[(tv, c)][idx] = P
    return out
