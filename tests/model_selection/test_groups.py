from __future__ import annotations

import re

import numpy as np
import pytest
from sklearn.model_selection import StratifiedGroupKFold

from embedclf.model_selection import near_duplicate_groups


def test_chains_of_near_duplicates_form_one_group():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(5, 64))
    X = np.vstack([base, base[:2] + 0.01 * rng.normal(size=(2, 64))])
    groups = near_duplicate_groups(X, threshold=0.99)
    assert groups.tolist() == [0, 1, 2, 3, 4, 0, 1]


def test_threshold_one_links_only_exact_directions():
    X = np.array([[1.0, 0.0], [2.0, 0.0], [1.0, 0.01], [0.0, 0.0], [0.0, 0.0]])
    assert near_duplicate_groups(X, threshold=1.0).tolist() == [0, 0, 1, 2, 3]


def test_groups_never_straddle_a_fold():
    rng = np.random.default_rng(1)
    base = rng.normal(size=(30, 32))
    X = np.repeat(base, 3, axis=0) + 0.001 * rng.normal(size=(90, 32))
    y = np.repeat(np.arange(30) % 3, 3)
    groups = near_duplicate_groups(X)
    assert len(np.unique(groups)) == 30
    for train, test in StratifiedGroupKFold(3).split(X, y, groups):
        assert not set(groups[train]) & set(groups[test])


def test_bad_threshold_is_named():
    with pytest.raises(ValueError, match=re.escape("got 1.5")):
        near_duplicate_groups(np.ones((2, 2)), threshold=1.5)
