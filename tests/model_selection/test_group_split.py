"""NearDuplicateKFold, class_groups and merge_groups (issue 13, item 1)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_score

from embedclf.model_selection import NearDuplicateKFold
from embedclf.model_selection._group_split import class_groups, merge_groups


def sessions(
    n_classes=3, n_sessions=6, shots=5, dim=32, seed=0, noise=0.05, spread=1.5
):
    """Photos taken in sessions: near-identical shots, sessions far apart.

    Each class is a direction with a lot of between-session spread, so a new
    session is much harder to recognise than another shot of a seen one.
    """
    classes = np.random.default_rng(100).normal(size=(n_classes, dim))
    rng = np.random.default_rng(seed)
    X, y, s = [], [], []
    for c in range(n_classes):
        for k in range(n_sessions):
            centre = classes[c] + spread * rng.normal(size=dim) + 4
            X.append(centre + noise * rng.normal(size=(shots, dim)))
            y += [c] * shots
            s += [c * n_sessions + k] * shots
    return np.vstack(X), np.array(y), np.array(s)


def test_sessions_never_straddle_a_fold():
    X, y, s = sessions()
    cv = NearDuplicateKFold(3, threshold=0.98)
    for train, test in cv.split(X, y):
        assert not set(s[train]) & set(s[test])
        assert set(y[test]) == set(y)  # stratified: every class in every fold


def test_grouped_cv_is_not_fooled_by_near_duplicates():
    # Ungrouped CV recognises shots of seen sessions and scores ~perfectly;
    # grouped CV measures new sessions, like a fresh test set does.
    X, y, s = sessions(seed=1, spread=4.0)
    X_new, y_new, _ = sessions(seed=2, spread=4.0, n_sessions=20)  # new sessions
    clf = LogisticRegression(C=1, max_iter=2000)
    new = clf.fit(X, y).score(X_new, y_new)
    plain = cross_val_score(clf, X, y, cv=StratifiedKFold(3, shuffle=True)).mean()
    grouped = cross_val_score(clf, X, y, cv=NearDuplicateKFold(3, threshold=0.98))
    assert plain - new > 0.2  # 1.00 vs 0.73 here
    assert abs(grouped.mean() - new) < 0.15  # 0.61


def test_works_as_cv_of_gridsearchcv():
    X, y, _ = sessions()
    search = GridSearchCV(
        LogisticRegression(max_iter=2000),
        {"C": [0.1, 1]},
        cv=NearDuplicateKFold(3, threshold=0.98),
    ).fit(X, y)
    assert search.n_splits_ == 3


def test_groups_link_within_a_class_only():
    # Two classes of identical vectors would be one group across classes.
    X = np.ones((6, 4)) + np.arange(6)[:, None] * 1e-6
    y = np.array([0, 0, 0, 1, 1, 1])
    g = class_groups(X, y, threshold=0.9)
    assert g.tolist() == [0, 0, 0, 1, 1, 1]


def test_a_class_that_would_be_one_group_is_split_at_a_higher_threshold():
    rng = np.random.default_rng(0)
    X = 5 + rng.normal(0, 0.3, (6, 16))  # all pairs above 0.85, below ~1
    y = np.zeros(6, dtype=int)
    assert len(np.unique(class_groups(X, y, threshold=0.85))) == 1
    assert len(np.unique(class_groups(X, y, threshold=0.85, min_groups=3))) >= 3


def test_merge_groups_joins_any_shared_label():
    assert merge_groups([0, 0, 1, 2, 3], [5, 6, 6, 7, 8]).tolist() == [0, 0, 0, 1, 2]


def test_extra_groups_are_kept_together():
    X, y, s = sessions()
    views = np.arange(len(y)) // 10  # rows 0-9, 10-19, ...: one "image" each
    for train, test in NearDuplicateKFold(3, threshold=0.999).split(X, y, views):
        assert not set(views[train]) & set(views[test])


def test_bad_n_splits_is_named():
    X, y, _ = sessions()
    with pytest.raises(ValueError, match=re.escape("n_splits must be at least 2")):
        next(NearDuplicateKFold(1).split(X, y))
