"""How open-set thresholds are tuned and applied.

The rule (:func:`_open_set_decision`) is shared by every classifier of the
package: SoftmaxClassifier and SVMClassifier apply it with a fixed probability
threshold when given ``unknown_label``, and OpenSetClassifier with the
thresholds that :func:`_tune_thresholds` picks from out-of-fold scores.
:func:`_known_rows` and :func:`_label_dtype` check and hold the labels;
:class:`_UnknownThresholdMixin` is the ``predict`` of the first two.
"""

from __future__ import annotations

import math
import warnings

import numpy as np


def _known_rows(y: np.ndarray, unknown_label, estimator_name: str) -> np.ndarray:
    """Boolean mask of the rows of ``y`` NOT labelled ``unknown_label``.

    Raises a TypeError when ``unknown_label`` and the labels are not of the
    same kind (string vs integer), since predictions would then mix types and
    break scikit-learn's metrics.
    """
    if unknown_label is None:
        return np.ones(len(y), dtype=bool)
    labels_are_str = y.dtype.kind in "US" or (
        y.dtype == object and len(y) > 0 and isinstance(y[0], str)
    )
    if labels_are_str != isinstance(unknown_label, str):
        kind = "strings" if labels_are_str else "integers"
        fix = (
            "a string unknown_label such as 'unknown'"
            if labels_are_str
            else "an integer unknown_label such as -1, or string class labels "
            "(e.g. y = data.target_names[data.target])"
        )
        raise TypeError(
            f"{estimator_name} got unknown_label={unknown_label!r} but the class "
            f"labels in y are {kind}; predictions would mix the two types. Use "
            f"{fix}."
        )
    return np.asarray(y != unknown_label, dtype=bool)


def _label_dtype(classes: np.ndarray, unknown_label):
    """dtype that holds both ``classes`` and ``unknown_label``."""
    if unknown_label is None:
        return classes.dtype
    label = np.asarray(unknown_label)
    if classes.dtype.kind == "U" and label.dtype.kind == "U":
        return np.result_type(classes.dtype, label.dtype)
    if classes.dtype.kind in "iuf" and label.dtype.kind in "iu":
        return np.result_type(classes.dtype, label.dtype)
    return np.dtype(object)


def _open_set_decision(
    classes: np.ndarray,
    proba: np.ndarray,
    unknown_label,
    *,
    probability_threshold: float | None = None,
    distances: np.ndarray | None = None,
    distance_threshold: float | None = None,
) -> np.ndarray:
    """Labels with the open-set rule applied.

    A sample gets ``classes[argmax(proba)]`` when it is *known*:

    - its max probability is >= ``probability_threshold`` (if not None), and
    - its distance to the known classes is <= ``distance_threshold`` (if not
      None);

    otherwise it gets ``unknown_label``. With ``unknown_label=None`` the
    thresholds are ignored and this is plain argmax.

    Parameters
    ----------
    classes : ndarray of shape (n_classes,)
        Known classes, the columns of ``proba``.
    proba : ndarray of shape (n_samples, n_classes)
        Class probabilities.
    unknown_label : str, int or None
        Label returned for unknown samples.
    probability_threshold : float or None, default=None
        Lowest accepted max probability.
    distances : ndarray of shape (n_samples,) or None, default=None
        Distance of each sample to the known classes in embedding space.
    distance_threshold : float or None, default=None
        Largest accepted distance.

    Returns
    -------
    y_pred : ndarray of shape (n_samples,)
        Predicted labels; dtype holds both the classes and ``unknown_label``.
    """
    labels = classes[np.argmax(proba, axis=1)]
    if unknown_label is None:
        return labels
    known = np.ones(len(labels), dtype=bool)
    if probability_threshold is not None:
        known &= proba.max(axis=1) >= probability_threshold
    if distance_threshold is not None:
        known &= distances <= distance_threshold
    out = labels.astype(_label_dtype(classes, unknown_label))
    out[~known] = unknown_label
    return out


def _tune_thresholds(
    scores: np.ndarray, target_recall: float, accepted: np.ndarray | None = None
) -> tuple[np.ndarray, float]:
    """Per-column thresholds accepting ``target_recall`` of the rows jointly.

    ``scores`` is oriented so that higher means "more like a known class". All
    columns share one quantile level ``q``: a row is accepted when each of its
    scores is at or above that column's ``q``-quantile (empirical CDF), and
    ``q`` is the largest level that accepts at least ``target_recall`` of the
    rows among those already ``accepted`` by fixed thresholds.

    Returns the thresholds (accept when ``score >= threshold``) and the
    fraction of rows accepted.
    """
    n, k = scores.shape
    if accepted is None:
        accepted = np.ones(n, dtype=bool)
    ranks = np.column_stack(
        [
            np.searchsorted(np.sort(scores[:, j]), scores[:, j], side="right") / n
            for j in range(k)
        ]
    )
    level = np.where(accepted, ranks.min(axis=1), -np.inf)
    need = max(1, math.ceil(target_recall * n - 1e-9))
    q = np.sort(level)[::-1][need - 1]
    if not np.isfinite(q):
        warnings.warn(
            f"The fixed threshold alone accepts {accepted.mean():.1%} of the known "
            f"training samples, below target_recall={target_recall}; the tuned "
            "threshold accepts every sample that passes it. Lower the fixed "
            "threshold or set it to 'auto'.",
            UserWarning,
            stacklevel=3,
        )
        q = -np.inf
    thresholds = np.array([scores[ranks[:, j] >= q, j].min() for j in range(k)])
    recall = float(np.mean(accepted & (scores >= thresholds).all(axis=1)))
    return thresholds, recall


class _UnknownThresholdMixin:
    """``predict`` of a classifier with ``unknown_label`` and ``unknown_threshold``.

    Shared by SoftmaxClassifier and SVMClassifier, which differ only in how
    they compute ``predict_proba``.
    """

    def predict(self, X):
        """Predict class labels (argmax of ``predict_proba``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            Labels from ``classes_``, or ``unknown_label`` where the max
            probability is below ``unknown_threshold`` (when set).
        """
        proba = self.predict_proba(X)
        return _open_set_decision(
            self.classes_,
            proba,
            self.unknown_label,
            probability_threshold=self.unknown_threshold,
        )
