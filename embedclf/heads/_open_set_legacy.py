"""OpenSetClassifier's two-threshold rule (``detector=None``, embedclf 0.1.0).

A max-probability threshold and an embedding-distance threshold (nearest
class centroid, or mean distance to the nearest training samples), tuned
jointly on out-of-fold scores by ``_open_set_rules._tune_thresholds``.
Models pickled by 0.1.0 use this rule; ``detector=None`` keeps it for new
ones, deprecated since 0.2.0 (``warn_deprecated``, called by ``fit``) and
removed in 0.3.0.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import clone
from sklearn.metrics import pairwise_distances
from sklearn.model_selection import cross_val_predict
from sklearn.neighbors import NearestCentroid, NearestNeighbors

from embedclf.heads._open_set_rules import _open_set_decision, _tune_thresholds
from embedclf.heads._validation import _check_cv_splits, _label_repr

__all__ = [
    "LEGACY_PARAMS",
    "decide",
    "distances",
    "filled_state",
    "fit_two_thresholds",
    "scores",
    "warn_deprecated",
]

#: The parameters of the two-threshold rule of 0.1.0 (``detector=None``) and
#: their defaults; deprecated with it in 0.2.0, removed in 0.3.0.
LEGACY_PARAMS = {
    "probability_threshold": "auto",
    "distance_threshold": "auto",
    "distance": "centroid",
    "metric": "euclidean",
    "n_neighbors": 5,
}
_REMOVED_IN = "0.3.0"


def warn_deprecated(estimator) -> None:
    """FutureWarning for the deprecated 0.1.0 rule or its parameters (in fit).

    Loading a saved model does not call ``fit``, so old models load silently.
    """
    names = ", ".join(LEGACY_PARAMS)
    if estimator.detector is None:
        warnings.warn(
            "OpenSetClassifier(detector=None), the two-threshold rule of embedclf "
            f"0.1.0, is deprecated since 0.2.0 and will be removed in {_REMOVED_IN}"
            f", with its parameters {names}. Use a detector (the default "
            "'fusion'), or detector='max_proba' with score_threshold=1 - p for a "
            "fixed lowest top probability p. Models saved with it still load.",
            FutureWarning,
            stacklevel=4,
        )
        return
    changed = [
        k for k, default in LEGACY_PARAMS.items() if getattr(estimator, k) != default
    ]
    if changed:
        warnings.warn(
            f"OpenSetClassifier's {', '.join(changed)} apply only to the deprecated "
            f"detector=None rule: ignored with detector={estimator.detector!r}, "
            f"and removed in {_REMOVED_IN}. Leave them at their defaults.",
            FutureWarning,
            stacklevel=4,
        )


# Parameters added after 0.1.0, with the value that keeps a model pickled
# before them on its rule (refit_on_val: only a fit-time choice).
_NEW_PARAMS = {
    "detector": None,
    "score_threshold": "auto",
    "fusion_scores": None,
    "kth_neighbor": 1,
    "refit_on_val": False,
}


def filled_state(state: dict) -> dict:
    """The pickled ``state`` of an OpenSetClassifier, completed for this release.

    A model pickled by embedclf 0.1.0 has none of the newer parameters or
    attributes: they are filled so that it keeps its two-threshold rule (and
    a model pickled before ``refit_on_val`` gets its default).
    """
    state = {**_NEW_PARAMS, **state}
    state.setdefault("detector_", None)
    return state


def _distances_or_none(clf, X):
    if clf.distance_model_ is None:
        return None
    return distances(clf, clf.distance_model_, X)


def decide(clf, X, proba):
    """Labels or ``unknown_label`` under the two thresholds of fitted ``clf``."""
    return _open_set_decision(
        clf.classes_,
        proba,
        clf.unknown_label,
        probability_threshold=clf.probability_threshold_,
        distances=_distances_or_none(clf, X),
        distance_threshold=clf.distance_threshold_,
    )


def scores(clf, X):
    """Bunch of the rule's ``max_proba`` and ``distance`` (None when unused)."""
    from sklearn.utils import Bunch

    proba = clf.estimator_.predict_proba(X)
    return Bunch(max_proba=proba.max(axis=1), distance=_distances_or_none(clf, X))


def fit_distance(clf, X, y):
    if clf.distance == "centroid":
        return NearestCentroid().fit(X, y)
    k = min(clf.n_neighbors, len(X))
    return NearestNeighbors(n_neighbors=k, metric=clf.metric).fit(X)


def distances(clf, model, X):
    """Distance of each row of ``X`` to the known classes under ``model``."""
    if isinstance(model, NearestCentroid):
        d = pairwise_distances(X, model.centroids_, metric=clf.metric)
        return d.min(axis=1)
    return model.kneighbors(X)[0].mean(axis=1)


def fit_two_thresholds(clf, base, Xk, yk, name):
    """Set ``distance_model_`` and the two thresholds of ``clf`` (see its Notes)."""
    # Scores are oriented "higher = more like a known class": the max
    # probability, and minus the distance.
    given = {"p": clf.probability_threshold, "d": clf.distance_threshold}
    sign = {"p": 1.0, "d": -1.0}
    used = [key for key, value in given.items() if value is not None]
    auto = [key for key in used if given[key] == "auto"]
    clf.distance_model_ = fit_distance(clf, Xk, yk) if "d" in used else None
    clf.known_recall_ = None
    if auto:
        oof = _oof_scores(clf, base, Xk, yk, used, name)
        accepted = np.ones(len(yk), dtype=bool)
        for key in set(used) - set(auto):
            accepted &= oof[key] >= sign[key] * given[key]
        tuned, clf.known_recall_ = _tune_thresholds(
            np.column_stack([oof[key] for key in auto]),
            clf.target_recall,
            accepted,
        )
        given.update({key: sign[key] * t for key, t in zip(auto, tuned)})
    clf.probability_threshold_ = float(given["p"]) if "p" in used else None
    clf.distance_threshold_ = float(given["d"]) if "d" in used else None


def _oof_scores(clf, base, X, y, used, name):
    """Out-of-fold scores of the known training samples, keyed "p" and "d"."""
    splits = _check_cv_splits(
        clf.cv,
        y,
        clf.classes_,
        name=name,
        purpose="tune its thresholds",
        alternative="give probability_threshold and distance_threshold as "
        "numbers so that nothing is tuned",
        rows=f"training rows not labelled {_label_repr(clf.unknown_label)}",
    )
    oof = {}
    if "p" in used:
        proba = cross_val_predict(
            clone(base), X, y, cv=splits, method="predict_proba",
            n_jobs=clf.n_jobs,
        )  # fmt: skip
        oof["p"] = proba.max(axis=1)
    if "d" in used:
        oof["d"] = np.empty(len(y))
        for train, test in splits:
            model = fit_distance(clf, X[train], y[train])
            oof["d"][test] = -distances(clf, model, X[test])
    return oof
