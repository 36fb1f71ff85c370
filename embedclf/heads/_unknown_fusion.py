"""Held-out unknown scores, their fusion, and the threshold at a target recall.

OpenSetClassifier's score-based rule (``score`` not None) is fitted here:

1. :func:`held_out_scores`: component scores of samples the scoring models
   did not see: a validation set when given, otherwise out-of-fold scores of
   the training samples with near-duplicate shots kept in one fold
   (``model_selection._group_split.class_groups``, linked within each class
   as ``NearDuplicateKFold`` links them, and scikit-learn's
   ``StratifiedGroupKFold``), since a near-duplicate on the other side of a
   fold makes a known sample look more familiar than a new photo will.
2. :func:`fit_fusion`: each component is mapped to a common scale fitted on
   the held-out known scores, then averaged (rank fusion) or, when enough
   background images are given, combined by a logistic regression trained to
   tell held-out known samples from background ones.
3. :func:`tune_unknown_threshold`: the fused score's ``target_recall``
   quantile over the held-out known samples.
"""

from __future__ import annotations

import math
import warnings
from numbers import Integral

import numpy as np

from embedclf.heads._open_set_rules import _known_rows
from embedclf.heads._unknown_scores import SCORES, compute_scores, fit_score_state
from embedclf.heads._validation import (
    _check_class_labels,
    _label_repr,
    _validate_for_predict,
)

__all__ = [
    "DEFAULT_FUSION",
    "MIN_BACKGROUND",
    "fit_score_rule",
    "fit_fusion",
    "fused_score",
    "held_out_scores",
    "tune_unknown_threshold",
]

#: Components of ``detector="fusion"`` when ``fusion_scores`` is None.
DEFAULT_FUSION = ("react_max_proba", "knn")
#: Background (unknown) images needed before the logistic fusion is used.
MIN_BACKGROUND = 10


def _splits(cv, X, y, name: str, rows: str = "known training rows") -> list:
    """Folds of the known rows: group-aware for an int ``cv``, else ``cv``'s own."""
    from sklearn.model_selection import StratifiedGroupKFold

    from embedclf.heads._validation import _check_cv_splits
    from embedclf.model_selection._group_split import SPLIT_THRESHOLD, class_groups

    if not isinstance(cv, Integral):
        # Given folds are checked as given: they must index the known rows.
        return _check_cv_splits(
            cv,
            y,
            np.unique(y),
            name=name,
            purpose="tune its unknown threshold",
            alternative="give score_threshold as a number",
            rows=rows,
        )
    # The grouping that model selection uses (within each class, cosine 0.85;
    # a class with fewer than cv groups is grouped at a higher threshold):
    # the former near_duplicate_groups(X) at 0.9 left shots of one session
    # on both sides of a fold, and the threshold it set kept only 85 % of
    # grocery's known test photos at a 95 % target (five classes, about 50
    # photos each; 94 % with this grouping).
    groups = class_groups(X, y, threshold=SPLIT_THRESHOLD, min_groups=int(cv))
    _, first = np.unique(groups, return_index=True)
    _, counts = np.unique(y[first], return_counts=True)
    if len(counts) == len(np.unique(y)) and counts.min() >= cv:
        splitter = StratifiedGroupKFold(int(cv), shuffle=True, random_state=0)
        return list(splitter.split(X, y, groups))
    # Too few groups of distinct photos per class for group-aware folds:
    # near-duplicates may then sit on both sides (the threshold is optimistic).
    warnings.warn(
        f"{name}: some class has fewer than cv={cv} groups of distinct photos "
        f"(class_groups of the {len(y)} known samples), so the "
        "out-of-fold scores that set the unknown threshold are not "
        "group-aware; pass X_val and y_val for an honest threshold.",
        UserWarning,
        stacklevel=4,
    )
    return _check_cv_splits(
        int(cv),
        y,
        np.unique(y),
        name=name,
        purpose="tune its unknown threshold",
        alternative="give score_threshold as a number",
    )


def held_out_scores(base, X, y, known, names, *, X_val, y_val, cv, kth_neighbor,
                    unknown_label, name):  # fmt: skip
    """Component scores of held-out known and background samples.

    Returns ``(known_scores, background_scores)``: dicts name -> ndarray;
    the second is None when there is no background sample.
    """
    from sklearn.base import clone

    def fit_and_score(train_X, train_y, query):
        est = clone(base).fit(train_X, train_y)
        state = fit_score_state(train_X, train_y, names, kth_neighbor=kth_neighbor)
        return compute_scores(est, state, query, names)

    Xk, yk = X[known], y[known]
    background = [X[~known]]
    if X_val is not None:
        val_known = np.asarray(y_val != unknown_label, dtype=bool)
        if val_known.sum() < 2:
            raise ValueError(
                f"{name} got X_val with {int(val_known.sum())} known samples; "
                "tuning the unknown threshold on it needs more. Pass more "
                "validation images, or X_val=None to use out-of-fold scores."
            )
        background.append(X_val[~val_known])
        held = fit_and_score(Xk, yk, np.vstack([X_val[val_known]] + background))
        n = int(val_known.sum())
        known_scores = {k: v[:n] for k, v in held.items()}
        bg_scores = {k: v[n:] for k, v in held.items()}
    else:
        rows = f"training rows not labelled {_label_repr(unknown_label)}"
        splits = _splits(cv, Xk, yk, name, rows)
        Xb = np.vstack(background)
        known_scores = {k: np.full(len(yk), np.nan) for k in names}
        bg_scores = {k: np.full(len(Xb), np.nan) for k in names}
        for i, (train, test) in enumerate(splits):
            part = np.arange(i, len(Xb), len(splits))  # background rows, in turns
            held = fit_and_score(Xk[train], yk[train], np.vstack([Xk[test], Xb[part]]))
            for k, v in held.items():
                known_scores[k][test] = v[: len(test)]
                bg_scores[k][part] = v[len(test) :]
        scored = ~np.isnan(known_scores[names[0]])
        known_scores = {k: v[scored] for k, v in known_scores.items()}
    if not len(next(iter(bg_scores.values()))):
        bg_scores = None
    return known_scores, bg_scores


def fit_fusion(known_scores: dict, background_scores: dict | None) -> dict:
    """Fit the map from component scores to one fused unknown score.

    Every component is put on the scale of the held-out known samples: its
    empirical CDF among them, extended linearly (in their standard
    deviations) above their range so that far-out samples still rank; below
    the range it stays 0. Rank
    fusion averages the components; with at least :data:`MIN_BACKGROUND`
    background samples a logistic regression on the same scaled components
    weighs them instead.
    """
    names = list(known_scores)
    fusion = {
        "names": np.array(names),
        "reference": {k: np.sort(known_scores[k]) for k in names},
        "scale": {k: float(np.std(known_scores[k])) or 1.0 for k in names},
        "kind": "rank",
    }
    n_bg = 0 if background_scores is None else len(background_scores[names[0]])
    if n_bg >= MIN_BACKGROUND:
        Zk = _scaled(fusion, known_scores)
        Zb = _scaled(fusion, background_scores)
        Z = np.vstack([Zk, Zb])
        target = np.r_[np.zeros(len(Zk)), np.ones(len(Zb))]
        fitted = _non_negative_logistic(Z, target)
        if fitted is not None:  # else every component weighs against: rank
            fusion.update(kind="logistic", coef=fitted[0], intercept=fitted[1])
    return fusion


def _non_negative_logistic(Z, target):
    """Logistic regression of ``target`` on ``Z`` with every weight >= 0.

    Every component is oriented "higher = more unknown", so a negative weight
    only fits how the background photos were sampled, not unknowns: photos
    of a background folder shot in the same sessions as the training photos
    sit closer to them (``knn``) than new photos of known classes do, and an
    unconstrained fit learned a negative ``knn`` weight that cut the grocery
    AUROC from 0.750 to 0.712 (benchmark item 10). scikit-learn's
    LogisticRegression has no sign constraint, so components with a
    negative weight are dropped (weight 0) and the rest refitted, until
    every weight is >= 0 (an active-set loop over at most 7 components).
    Returns ``(coef, intercept)``, or None when no component has a positive
    weight (the caller keeps the rank fusion).
    """
    from sklearn.linear_model import LogisticRegression

    active = np.ones(Z.shape[1], dtype=bool)
    coef = np.zeros(Z.shape[1])
    while active.any():
        model = LogisticRegression(class_weight="balanced").fit(Z[:, active], target)
        w = model.coef_.ravel()
        if (w >= 0).all():
            coef[active] = w
            return coef, float(model.intercept_[0])
        active[np.flatnonzero(active)[np.argmin(w)]] = False
    return None


def _scaled(fusion: dict, scores: dict) -> np.ndarray:
    cols = []
    for k in fusion["names"]:
        ref, s, scale = (
            fusion["reference"][k],
            np.asarray(scores[k]),
            fusion["scale"][k],
        )
        cdf = np.searchsorted(ref, s, side="right") / len(ref)
        above = np.clip(s - ref[-1], 0.0, None) / scale
        # Not extended below the range: more confident or nearer than every
        # held-out known sample is no evidence of a known class (far from the
        # training data a softmax saturates to 1), so it must not cancel what
        # another component sees (a far point with max probability 1.0 was
        # accepted, its knn distance 1.5x beyond the known range).
        cols.append(cdf + above)
    return np.column_stack(cols)


def fused_score(fusion: dict, scores: dict) -> np.ndarray:
    """The fused unknown score of component ``scores`` (higher = more unknown)."""
    Z = _scaled(fusion, scores)
    if fusion["kind"] == "logistic":
        return Z @ fusion["coef"] + fusion["intercept"]
    return Z.mean(axis=1)


def tune_unknown_threshold(known_scores, target_recall: float):
    """Smallest threshold with ``score <= threshold`` for ``target_recall`` of rows.

    Returns the threshold and the fraction of rows it accepts.
    """
    s = np.sort(np.asarray(known_scores, dtype=float))
    need = max(1, math.ceil(target_recall * len(s) - 1e-9))
    threshold = float(s[need - 1])
    return threshold, float(np.mean(s <= threshold))


def _components(self) -> list:
    """The component scores of OpenSetClassifier ``self``'s detector."""
    if self.detector != "fusion":
        return [self.detector]
    names = list(self.fusion_scores or DEFAULT_FUSION)
    if not names or set(names) - set(SCORES):
        raise ValueError(
            f"fusion_scores must be a non-empty tuple of scores from "
            f"{SCORES}; got {self.fusion_scores!r}."
        )
    return names


def fit_score_rule(self, base, X, y, known, X_val, y_val, name):
    """Fit OpenSetClassifier ``self``'s score rule: state, fusion, threshold."""
    self.probability_threshold_ = self.distance_threshold_ = None
    self.distance_model_ = None
    names = _components(self)
    Xk, yk = X[known], y[known]
    self.score_state_ = fit_score_state(Xk, yk, names, kth_neighbor=self.kth_neighbor)
    tune = self.score_threshold == "auto"
    self.known_recall_ = None
    if not tune and self.detector != "fusion":
        self.unknown_threshold_ = float(self.score_threshold)
        return
    if X_val is not None:
        X_val = _validate_for_predict(self, X_val)
        y_val = _check_class_labels(np.asarray(y_val), name)
        _known_rows(y_val, self.unknown_label, name)
    held_known, held_bg = held_out_scores(
        base, X, y, known, names, X_val=X_val, y_val=y_val, cv=self.cv,
        kth_neighbor=self.kth_neighbor, unknown_label=self.unknown_label,
        name=name,
    )  # fmt: skip
    if self.detector == "fusion":
        self.fusion_ = fit_fusion(held_known, held_bg)
        held = fused_score(self.fusion_, held_known)
    else:
        held = held_known[self.detector]
    if tune:
        self.unknown_threshold_, self.known_recall_ = tune_unknown_threshold(
            held, self.target_recall
        )
    else:
        self.unknown_threshold_ = float(self.score_threshold)
    if self.refit_on_val and X_val is not None:
        _refit_with_val(self, base, Xk, yk, X_val, y_val, names)


def _refit_with_val(self, base, Xk, yk, X_val, y_val, names):
    """Refit the classifier and score state on training + validation rows.

    The threshold and the fusion's scales stay those set on the validation
    scores of models fitted on the training rows: models fitted on a little
    more data score new photos of known classes about the same. Grocery, all
    81 classes known (Lite0): 97.2 % of known test photos accepted against
    96.8 % without the refit, whereas out-of-fold scores over training +
    validation (photos from the same sessions) accepted only 79.6 %.
    Validation rows of a class absent from training are left out.
    """
    from sklearn.base import clone

    extra = np.isin(y_val, self.classes_)
    X_all = np.vstack([Xk, X_val[extra]])
    y_all = np.concatenate([yk, y_val[extra]])
    self.estimator_ = clone(base).fit(X_all, y_all)
    self.score_state_ = fit_score_state(
        X_all, y_all, names, kth_neighbor=self.kth_neighbor
    )
