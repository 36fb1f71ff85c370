"""Model selection for ``embedclf train``: which rule, which C, which scaling.

The rule (as in the linear-probe protocols of Kornblith et al. 2019 and CLIP):

* a validation part exists (official ``val/`` or ``--val-dir``; the CLI
  merges retrain.py's hash split back into training, see
  ``merge_validation``): fit on the training part for every candidate,
  keep the one with the lowest cross-entropy on the validation part, report
  its validation accuracy as the estimate, then refit it on training +
  validation;
* otherwise: the same on near-duplicate-grouped, stratified folds of the
  training part (``NearDuplicateKFold``), so that near-identical shots never
  sit on both sides of a fold, then refit on the whole training part.

Candidates are ``C`` on a log grid crossed with the head's ``standardize``
(on or off). The default grid is every decade from 1e-4 to 1e4, then the two
half-decades around the best (coarse to fine). Cross-entropy, not accuracy,
ranks the candidates: on a few hundred validation images accuracy moves in
steps of one image and its maximum over many candidates is biased upwards,
while the accuracy reported for the candidate chosen by another criterion is
a fairer estimate.
"""

from __future__ import annotations

import logging

import numpy as np

from embedclf.heads._validation import _label_repr

__all__ = ["AUTO_C_GRID", "fit_and_score", "merge_validation", "select_head"]

logger = logging.getLogger("embedclf")

#: Coarse grid of the default search (every decade); refined around the best.
AUTO_C_GRID = tuple(float(10.0**k) for k in range(-4, 5))


def _cross_entropy(head, X, y) -> float:
    from embedclf.workflow._train._tune import cross_entropy_score

    return cross_entropy_score(head, X, y)


def fit_and_score(base, params: dict, X, y, train, test) -> dict:
    """Fit a clone of ``base`` with ``params`` on rows ``train``; score ``test``."""
    from sklearn.base import clone

    head = clone(base).set_params(**params).fit(X[train], y[train])
    return {
        "train_accuracy": float(np.mean(head.predict(X[train]) == y[train])),
        "validation_accuracy": float(np.mean(head.predict(X[test]) == y[test])),
        "train_cross_entropy": _cross_entropy(head, X[train], y[train]),
        "validation_cross_entropy": _cross_entropy(head, X[test], y[test]),
    }


def _evaluate(base, candidates, X, y, folds, n_jobs):
    """Mean fold scores of every candidate, one dict per candidate."""
    from joblib import Parallel, delayed

    jobs = [(c, f) for c in range(len(candidates)) for f in range(len(folds))]
    scores = Parallel(n_jobs=n_jobs)(
        delayed(fit_and_score)(base, candidates[c], X, y, *folds[f]) for c, f in jobs
    )
    rows = []
    for c, params in enumerate(candidates):
        mine = [s for (cc, _), s in zip(jobs, scores) if cc == c]
        row = {k: float(np.mean([s[k] for s in mine])) for k in mine[0]}
        rows.append(
            {"C": float(params["C"]), "standardize": params["standardize"]} | row
        )
    return rows


def _best(rows) -> dict:
    # Lowest validation cross-entropy; ties: higher accuracy, then smaller C.
    return min(
        rows,
        key=lambda r: (
            round(r["validation_cross_entropy"], 6),
            -r["validation_accuracy"],
            r["C"],
        ),
    )


def _near_duplicate_rows(X, y, X_val, y_val, threshold) -> np.ndarray:
    """Validation rows with a same-class training row at cosine >= threshold."""
    from sklearn.preprocessing import normalize

    A, B = normalize(np.asarray(X, float)), normalize(np.asarray(X_val, float))
    y, y_val = np.asarray(y), np.asarray(y_val)
    found = np.zeros(len(y_val), dtype=bool)
    for label in np.unique(y_val):
        rows, train = np.flatnonzero(y_val == label), np.flatnonzero(y == label)
        if len(train):
            found[rows] = (B[rows] @ A[train].T).max(axis=1) >= threshold
    return found


def merge_validation(X, y, groups, X_val, y_val):
    """Append the validation rows to the training rows (for grouped CV).

    Used for retrain.py's hash split, whose validation part is drawn from the
    same folder as the training part: on the Grocery Store training photos its
    validation accuracy was 99.2 % against 68.5 % on the official test photos
    (benchmark item 6), as leaky as ungrouped cross-validation.

    Returns
    -------
    X, y, groups, X_val, y_val : the merged rows, and an empty validation part
    """
    n = len(y)
    X = np.vstack([X, X_val])
    y = np.concatenate([y, y_val])
    if groups is not None:
        start = int(np.max(groups)) + 1 if len(groups) else 0
        groups = np.concatenate([groups, start + np.arange(len(y_val))])
    empty = np.asarray(y_val)[:0]
    return X, y, groups, X[n:n], empty


def _grouped_folds(X, y, groups, *, threshold):
    """NearDuplicateKFold folds of the training rows (2 or 3 of them)."""
    from embedclf.model_selection._group_split import NearDuplicateKFold

    y = np.asarray(y)
    if groups is not None:  # count source images, not views
        _, first = np.unique(groups, return_index=True)
        _, counts = np.unique(y[first], return_counts=True)
    else:
        _, counts = np.unique(y, return_counts=True)
    if counts.min() < 2:
        raise ValueError(
            f"Class {_label_repr(np.unique(y)[counts.argmin()])} has only "
            f"{counts.min()} "
            "training image; choosing C by cross-validation needs at least 2 per "
            "class. Add images, add a validation folder (--val-dir), or pass --C "
            "with a single value."
        )
    n_splits = int(max(2, min(3, counts.min())))
    cv = NearDuplicateKFold(n_splits, threshold=threshold)
    return list(cv.split(X, y, groups)), cv


def select_head(
    X,
    y,
    *,
    classifier="softmax",
    C_grid="auto",
    standardize="auto",
    class_weight=None,
    groups=None,
    X_val=None,
    y_val=None,
    threshold=None,
    n_jobs=None,
):
    """Choose C and scaling by the rule of the module docstring; fit the head.

    Parameters
    ----------
    X, y : training vectors and labels (augmented views included).
    classifier : {"softmax", "svm"}
    C_grid : "auto" or sequence of float
        "auto": decades 1e-4..1e4, then the half-decades around the best.
    standardize : "auto" or bool
        "auto" tries the head with and without standardisation.
    class_weight : "balanced" or None
    groups : ndarray or None
        Source image of each row of X (views share one).
    X_val, y_val : validation vectors and labels, or None.
    threshold : float or None
        Near-duplicate threshold of the grouped folds (None: the splitter's
        default).
    n_jobs : int or None

    Returns
    -------
    head : fitted classifier (on train + validation when there is one)
    result : dict
        ``rule`` ("validation", "grouped-cv" or "fixed"), ``best_C``,
        ``standardize``, ``estimate`` (accuracy of the choice on held-out
        rows, or None), ``cv_accuracy`` (the estimate under "grouped-cv"),
        ``validation_accuracy`` (the estimate under "validation"),
        ``grid`` (one row per candidate tried), ``n_groups`` and ``splits``
        (the grouped folds, for the open-set rule).
    """
    from sklearn.base import clone

    from embedclf.model_selection._group_split import SPLIT_THRESHOLD
    from embedclf.workflow._train._tune import make_head

    X, y = np.asarray(X), np.asarray(y)
    has_val = X_val is not None and len(y_val) > 0
    auto = isinstance(C_grid, str)
    grid = list(AUTO_C_GRID) if auto else sorted({float(c) for c in C_grid})
    scalings = [False, True] if standardize == "auto" else [bool(standardize)]
    base = make_head(classifier, class_weight=class_weight)
    threshold = SPLIT_THRESHOLD if threshold is None else threshold
    rule, X_all, y_all, folds, n_groups = _plan(
        X, y, X_val if has_val else None, y_val, groups, threshold,
        single=len(grid) == 1 and len(scalings) == 1,
    )  # fmt: skip
    rows, choice, estimate = _tune(
        base, grid, scalings, auto, X_all, y_all, folds, n_jobs
    )
    leak = {}
    if rule == "validation":
        leak = _validation_leak(base, choice, X, y, X_val, y_val, threshold)
    head = clone(base).set_params(**choice).fit(X_all, y_all)
    logger.info(
        "%s chose C=%g standardize=%s (estimate %s)",
        rule,
        choice["C"],
        choice["standardize"],
        estimate,
    )
    rows.sort(key=lambda r: (r["standardize"], r["C"]))
    return head, {
        "rule": rule,
        "best_C": float(choice["C"]),
        "standardize": bool(choice["standardize"]),
        "estimate": estimate,
        "cv_accuracy": estimate if rule == "grouped-cv" else None,
        "validation_accuracy": estimate if rule == "validation" else None,
        "grid": rows,
        "n_groups": n_groups,
        "n_validation": int(len(y_val)) if has_val else 0,
        "splits": folds if rule == "grouped-cv" else None,
    } | leak


def _plan(X, y, X_val, y_val, groups, threshold, *, single):
    """(rule, X_all, y_all, folds, n_groups): where candidates are judged.

    With a validation part: one fold, training -> validation. With one
    candidate and no validation part: no folds ("fixed"). Otherwise grouped
    folds over the training rows (near-duplicate shots kept together).
    """
    if X_val is not None:
        X_all = np.vstack([X, X_val])
        y_all = np.concatenate([y, np.asarray(y_val)])
        folds = [(np.arange(len(y)), np.arange(len(y), len(y_all)))]
        return "validation", X_all, y_all, folds, None
    if single:
        return "fixed", X, y, [], None
    folds, cv = _grouped_folds(X, y, groups, threshold=threshold)
    n_groups = int(len(np.unique(cv.groups(X, y, groups))))
    return "grouped-cv", X, y, folds, n_groups


def _tune(base, grid, scalings, auto, X_all, y_all, folds, n_jobs):
    """(rows tried, chosen params, its estimate) over the C x scaling grid."""
    if not folds:
        return [], {"C": grid[0], "standardize": scalings[0]}, None
    candidates = [{"C": c, "standardize": s} for s in scalings for c in grid]
    rows = _evaluate(base, candidates, X_all, y_all, folds, n_jobs)
    best = _best(rows)
    if auto:  # refine: the half-decades on each side of the best decade
        finer = [
            {"C": best["C"] * f, "standardize": best["standardize"]}
            for f in (10**-0.5, 10**0.5)
        ]
        rows += _evaluate(base, finer, X_all, y_all, folds, n_jobs)
        best = _best(rows)
    choice = {"C": best["C"], "standardize": best["standardize"]}
    return rows, choice, best["validation_accuracy"]


def _validation_leak(base, choice, X, y, X_val, y_val, threshold) -> dict:
    """How many validation photos are near-duplicates of training photos
    (e.g. a hash split of one folder of sessions), and the accuracy on the
    others: an estimate for photos unlike the training ones."""
    from sklearn.base import clone

    dup = _near_duplicate_rows(X, y, X_val, y_val, threshold)
    leak = {"validation_near_duplicates": int(dup.sum())}
    if dup.any() and (~dup).any():
        fitted = clone(base).set_params(**choice).fit(X, y)
        y_val = np.asarray(y_val)
        leak["estimate_unlike_training"] = float(
            np.mean(fitted.predict(X_val[~dup]) == y_val[~dup])
        )
    return leak
