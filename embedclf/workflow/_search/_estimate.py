"""Choosing among candidates, and an estimate that accounts for the choice.

Every candidate is scored by its held-out probabilities (``_heldout``): the
mean cross-entropy ranks them (smoother than accuracy, which moves in steps
of one image) and the accuracy is reported. On small pooled data the search
(``_run.search_vectors``) uses a *prior* instead: the plain probe on the best
candidate's vectors (unscaled, ``C=1``) is kept unless the best beats it by
more than one standard error of its cross-entropy; on a few images the
minimum over a C grid is mostly noise, and folds of photos from the same
sessions favour large C. The one-standard-error rule toward smaller ``C``
(Breiman et al. 1984; Hastie, Tibshirani & Friedman, ESL 7.10: among the
best one's family, same vectors, head and scaling, the smallest ``C`` within
one standard error) is available for comparison (``one_se``).

The accuracy of the chosen candidate on the rows it was chosen on is biased
upwards (the maximum of many noisy scores). The estimate is *cross-fitted*:
the held-out rows are cut in two halves (stratified by class, near-duplicate
groups kept whole), the same rule chooses on one half and the chosen
candidate's accuracy is measured on the other, then the halves swap; the
mean over both and over several random cuts is the estimate. It estimates
the accuracy of "choose with this rule, then predict" with models fitted on
the training part (or folds), slightly pessimistically (each choice sees
half the rows); ``train``'s final refit on training + validation is not in
it (docs/budget.md measures what that refit adds).
"""

from __future__ import annotations

import warnings

import numpy as np

__all__ = ["binomial_stderr", "choose", "cross_fitted_accuracy", "row_scores"]

#: Held-out rows per class below which pooled data count as small (prior rule).
SMALL_PER_CLASS = 10


def row_scores(P, y, classes):
    """(cross-entropy, correct) per row of probabilities ``P``."""
    idx = np.searchsorted(classes, y)
    ok = (idx < len(classes)) & (classes[np.minimum(idx, len(classes) - 1)] == y)
    p = np.where(ok, P[np.arange(len(y)), np.minimum(idx, len(classes) - 1)], 0.0)
    ce = -np.log(np.clip(p, 1e-15, 1.0))
    correct = ok & (P.argmax(axis=1) == idx)
    return ce, correct


def choose(ce, families, Cs, *, rows=None, one_se=False, prior_of=None) -> int:
    """Index of the chosen candidate.

    Parameters
    ----------
    ce : ndarray of shape (n_candidates, n_rows)
        Per-row cross-entropy of each candidate.
    families : sequence of hashable
        Candidates that differ only by ``C`` share a family.
    Cs : sequence of float or None
        ``C`` of each candidate (None: no C, e.g. the MLP head).
    rows : ndarray of int or None
        Score only these rows (a half, for cross-fitting).
    one_se : bool
        Apply the one-standard-error rule toward smaller ``C``.
    prior_of : sequence of int or None, or None
        The prior rule: ``prior_of[i]`` is the index of candidate ``i``'s
        prior (the plain probe on the same vectors: unscaled, ``C=1``), kept
        unless the best candidate beats it by more than one standard error.
    """
    sub = ce if rows is None else ce[:, rows]
    mean = sub.mean(axis=1)
    best = int(np.argmin(np.round(mean, 9)))
    se = sub[best].std(ddof=1) / np.sqrt(sub.shape[1]) if sub.shape[1] > 1 else 0.0
    if prior_of is not None:
        prior = prior_of[best]
        keep = prior is not None and mean[prior] <= mean[best] + se
        return int(prior) if keep else best
    if not one_se or Cs[best] is None:
        return best
    ok = [
        i
        for i in range(len(mean))
        if families[i] == families[best]
        and Cs[i] is not None
        and mean[i] <= mean[best] + se
    ]
    return int(min(ok, key=lambda i: (Cs[i], mean[i])))


def _halves(y, groups, seed):
    from sklearn.model_selection import StratifiedGroupKFold

    cv = StratifiedGroupKFold(2, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # classes of one row
        a, b = next(cv.split(np.zeros((len(y), 1)), y, groups))
    return a, b


def cross_fitted_accuracy(
    ce, correct, families, Cs, y, groups, *, repeats=10, random_state=0, **rule
):
    """Accuracy of the choice rule measured on rows it did not choose on.

    Parameters
    ----------
    ce, correct : ndarray of shape (n_candidates, n_rows)
    families, Cs : as :func:`choose`
    **rule
        ``one_se`` or ``prior_of``, as :func:`choose`.
    y : ndarray of shape (n_rows,)
        Labels of the held-out rows (for stratified halves).
    groups : ndarray of shape (n_rows,)
        Rows of one group stay in one half.
    repeats : int
        Random cuts averaged.

    Returns
    -------
    estimate : float
    spread : float
        Standard deviation of the per-cut estimates.
    """
    per_cut = []
    for r in range(repeats):
        a, b = _halves(y, groups, random_state + r)
        if not len(a) or not len(b):
            continue
        accs = []
        for pick, score in ((a, b), (b, a)):
            i = choose(ce, families, Cs, rows=pick, **rule)
            accs.append(float(correct[i, score].mean()))
        per_cut.append(float(np.mean(accs)))
    if not per_cut:
        return None, None
    return float(np.mean(per_cut)), float(np.std(per_cut))


def binomial_stderr(accuracy, n: int) -> float | None:
    """Standard error of an accuracy measured on ``n`` images.

    What the held-out photos themselves leave uncertain, whatever the
    choice: sqrt(p (1 - p) / n). The spread over halvings does not show it
    (it is 0 when every halving makes the same choice).
    """
    if accuracy is None or n <= 0:
        return None
    return float(np.sqrt(accuracy * (1.0 - accuracy) / n))
