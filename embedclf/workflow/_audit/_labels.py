"""Label issues and outliers for the audit, from cleanlab.

Out-of-fold probabilities come from a softmax head fitted on the other
folds; folds are group-aware (:func:`~embedclf.model_selection.near_duplicate_groups`
keeps near-duplicate shots on one side) so a copy of an image cannot vouch
for its label. cleanlab then ranks the label issues
(``cleanlab.filter.find_label_issues``, ``cleanlab.rank.get_label_quality_scores``)
and scores outliers (``cleanlab.outlier.OutOfDistribution`` on the
embeddings: the distance to the nearest neighbours, whatever their class).
"""

from __future__ import annotations

import logging
import warnings

import numpy as np

__all__ = ["find_label_issues_oof", "find_outliers", "out_of_fold_proba"]

logger = logging.getLogger("embedclf")


def _import_cleanlab():
    try:
        import cleanlab  # noqa: F401
    except ImportError:
        raise ImportError(
            "The audit needs cleanlab, a dependency of embedclf that is not "
            "installed. Run: pip install cleanlab"
        ) from None


def _usable_groups(groups, y, n_folds):
    """Ungroup the classes whose rows fall into fewer than ``n_folds`` groups.

    With an embedding that sees a whole class as one blob (every row a
    near-duplicate of the next), grouping would put the class in a single
    fold, and its images would be judged by a head that never saw it.
    """
    groups = np.asarray(groups).copy()
    fresh = groups.max() + 1 if len(groups) else 0
    for c in np.unique(y):
        rows = np.flatnonzero(y == c)
        if len(np.unique(groups[rows])) < n_folds:
            logger.info(
                "class %d is one blob of near-duplicates; its rows "
                "are not grouped across folds",
                c,
            )
            groups[rows] = fresh + np.arange(len(rows))
            fresh += len(rows)
    return groups


def out_of_fold_proba(
    X, y, *, n_folds=5, C=1.0, groups=None, random_state=0, progress=False
):
    """Out-of-fold predicted probabilities of a softmax head.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,) of int
        Class indices 0 .. n_classes - 1.
    n_folds : int, default=5
    C : float, default=1.0
        Inverse regularisation of the head.
    groups : ndarray of shape (n_samples,), default=None
        Rows of one group never sit on both sides of a fold; None groups
        near-duplicates with ``near_duplicate_groups`` (its default
        threshold), except in a class whose rows form fewer than ``n_folds``
        groups (one blob for this embedding), which is left ungrouped.
    random_state : int, default=0
    progress : bool, default=False
        A tqdm bar over the folds.

    Returns
    -------
    proba : ndarray of shape (n_samples, n_classes)
        Each row predicted by a head that never saw it (nor its group).
    """
    from sklearn.base import clone
    from sklearn.model_selection import StratifiedGroupKFold
    from tqdm.auto import tqdm

    from embedclf.heads._linear import SoftmaxClassifier
    from embedclf.model_selection import near_duplicate_groups

    y = np.asarray(y)
    n_classes = int(y.max()) + 1
    if groups is None:
        groups = _usable_groups(near_duplicate_groups(X), y, n_folds)
    n_groups = len(np.unique(groups))
    n_folds = int(min(n_folds, n_groups))
    if n_folds < 2:
        raise ValueError(
            f"Out-of-fold probabilities need at least 2 groups of images; got "
            f"{n_groups}. Add images."
        )
    splitter = StratifiedGroupKFold(n_folds, shuffle=True, random_state=random_state)
    # A looser tolerance than the default: enough to rank examples, faster.
    base = SoftmaxClassifier(C=C, tol=1e-3)
    proba = np.zeros((len(y), n_classes))
    with warnings.catch_warnings():
        # Tiny classes: reported in the class-balance section instead.
        warnings.filterwarnings("ignore", message=".*least populated class.*")
        folds = list(splitter.split(X, y, groups))
    with tqdm(folds, desc="out-of-fold", unit="fold", disable=not progress) as bar:
        for train, test in bar:
            head = clone(base).fit(X[train], y[train])
            proba[np.ix_(test, head.classes_.astype(int))] = head.predict_proba(X[test])
    return proba


def find_label_issues_oof(y, proba):
    """Ranked label issues (cleanlab) and every row's label-quality score.

    Returns
    -------
    ranked : ndarray of int
        Row indices flagged by ``find_label_issues(filter_by="both")``, most
        severe first.
    quality : ndarray of shape (n_samples,)
        cleanlab's self-confidence label-quality score (low = suspect).
    """
    _import_cleanlab()
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    y = np.asarray(y)
    # cleanlab wants every class column to carry some probability mass.
    proba = np.clip(proba, 1e-12, None)
    proba = proba / proba.sum(axis=1, keepdims=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tiny classes: see class balance
        ranked = find_label_issues(
            y, proba, filter_by="both", return_indices_ranked_by="self_confidence"
        )
        quality = get_label_quality_scores(y, proba, method="self_confidence")
    return np.asarray(ranked, dtype=int), np.asarray(quality)


def find_outliers(X, *, k=10):
    """Outlier scores (cleanlab's ``OutOfDistribution`` on the embeddings).

    Returns
    -------
    flagged : ndarray of int
        Rows below the lower Tukey fence of the scores (Q1 - 1.5 IQR),
        lowest first: the same kind of interquartile rule that cleanlab's
        Datalab applies to kNN distances (Datalab itself needs the
        ``datasets`` package, which embedclf does not depend on).
    scores : ndarray of shape (n_samples,)
        In [0, 1]; small means unlike its nearest neighbours of any class.
    """
    _import_cleanlab()
    from cleanlab.outlier import OutOfDistribution
    from sklearn.preprocessing import normalize

    X = normalize(np.asarray(X, dtype=np.float64))
    k = int(min(k, len(X) - 1))
    if k < 1:
        return np.zeros(0, dtype=int), np.ones(len(X))
    ood = OutOfDistribution(params={"k": k})
    scores = ood.fit_score(features=X, verbose=False)
    q1, q3 = np.percentile(scores, [25, 75])
    fence = q1 - 1.5 * (q3 - q1)
    flagged = np.flatnonzero(scores < fence)
    return flagged[np.argsort(scores[flagged])], scores
