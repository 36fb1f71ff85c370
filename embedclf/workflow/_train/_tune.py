"""The head of ``embedclf train``: its kind, its folds, its open-set wrapper.

``make_head`` builds the classifier ``classifier=`` names, ``cv_splits``
the stratified (grouped) folds, ``cross_entropy_score`` the scorer that ranks
candidates, ``wrap_open_set`` the unknown answer around a fitted head.
"""

from __future__ import annotations

import numpy as np

from embedclf.heads._validation import _label_repr

__all__ = [
    "MIN_VALIDATION",
    "cross_entropy_score",
    "cv_splits",
    "make_head",
    "wrap_open_set",
]


def cross_entropy_score(estimator, X, y) -> float:
    """Mean cross-entropy of ``estimator`` on (X, y), as a scorer.

    Classes the estimator never saw get probability 1e-15 instead of an error,
    so the scorer works on cross-validation folds missing a rare class. As a
    loss, larger is worse: GridSearchCV must not rank by it.
    """
    proba = estimator.predict_proba(X)
    index = {c: j for j, c in enumerate(estimator.classes_)}
    p = np.array([proba[i, index[c]] if c in index else 0.0 for i, c in enumerate(y)])
    return float(-np.mean(np.log(np.clip(p, 1e-15, 1.0))))


def make_head(classifier: str, *, C=1.0, class_weight=None):
    """A fresh classifier of the kind named on the command line."""
    if classifier == "softmax":
        from embedclf.heads._linear import SoftmaxClassifier

        return SoftmaxClassifier(C=C, class_weight=class_weight)
    if classifier == "svm":
        from embedclf.heads._svm import SVMClassifier

        return SVMClassifier(C=C, class_weight=class_weight, cv=3)
    if classifier == "mlp":  # no C: early stopping and alpha regularise it
        from embedclf.heads._mlp import MLPHeadClassifier

        return MLPHeadClassifier(class_weight=class_weight, random_state=0)
    raise ValueError(
        f"classifier must be 'softmax', 'svm' or 'mlp'; got {classifier!r}."
    )  # pragma: no cover - argparse restricts the choices


def cv_splits(y, groups=None, *, max_splits: int = 3, random_state: int = 0):
    """Stratified (grouped, when ``groups`` is given) folds for tuning.

    The number of folds is the smallest class size, capped at ``max_splits``
    and at least 2; views of one image (one group) stay in one fold.
    """
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    _, counts = np.unique(y, return_counts=True)
    if groups is not None:
        _, first = np.unique(groups, return_index=True)
        _, counts = np.unique(np.asarray(y)[first], return_counts=True)
    n_splits = int(max(2, min(max_splits, counts.min())))
    if counts.min() < 2:
        raise ValueError(
            f"Class {_label_repr(np.unique(y)[counts.argmin()])} has only "
            f"{counts.min()} training image; tuning C by cross-validation needs "
            "at least 2 per class. Add images, or pass --C with a fixed value."
        )
    if groups is None:
        splitter = StratifiedKFold(n_splits, shuffle=True, random_state=random_state)
        return list(splitter.split(np.zeros((len(y), 1)), y))
    splitter = StratifiedGroupKFold(n_splits, shuffle=True, random_state=random_state)
    return list(splitter.split(np.zeros((len(y), 1)), y, groups))


#: Known validation images needed to set the unknown threshold on them.
MIN_VALIDATION = 50


def wrap_open_set(
    head, X, y, *, unknown: str, X_val=None, y_val=None, refit_on_val=False
):
    """Wrap a fitted head in OpenSetClassifier per ``unknown``.

    ``unknown`` is "auto" (the default fusion score, its threshold set on the
    validation part when it has at least :data:`MIN_VALIDATION` known images,
    else on group-aware out-of-fold scores), or a number: the lowest max
    probability accepted as a known class (``detector="max_proba"`` with
    ``score_threshold = 1 - number``; the same decisions as the 0.1.0 rule
    with that probability threshold and no distance).
    Rows labelled "unknown" in ``y`` or ``y_val`` are background images.
    ``refit_on_val``: the threshold is set on ``X_val`` with models fitted on
    ``X``, then they are refitted on both (``OpenSetClassifier.refit_on_val``).
    """
    from sklearn.base import clone

    from embedclf.heads._open_set import OpenSetClassifier

    if unknown == "auto":
        model = OpenSetClassifier(
            clone(head), unknown_label="unknown", cv=3, refit_on_val=refit_on_val
        )
        n_val = 0 if y_val is None else int(np.sum(np.asarray(y_val) != "unknown"))
        if n_val >= MIN_VALIDATION:
            return model.fit(X, y, X_val=X_val, y_val=y_val)
        return model.fit(X, y)
    model = OpenSetClassifier(
        clone(head),
        unknown_label="unknown",
        detector="max_proba",
        score_threshold=1.0 - float(unknown),
    )
    return model.fit(X, y)
