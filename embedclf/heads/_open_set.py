"""The "unknown" answer: the OpenSetClassifier meta-estimator.

OpenSetClassifier wraps a probabilistic classifier, adds an embedding-distance
score and tunes both thresholds by cross-validation. The decision rule and the
threshold tuning it shares with SoftmaxClassifier and SVMClassifier live in
:mod:`embedclf.heads._open_set_rules`.
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, MetaEstimatorMixin, clone
from sklearn.metrics import pairwise_distances
from sklearn.model_selection import cross_val_predict
from sklearn.neighbors import NearestCentroid, NearestNeighbors
from sklearn.utils import Bunch

from embedclf._compat import Interval, StrOptions, _fit_context
from embedclf.heads._open_set_rules import (
    _known_rows,
    _open_set_decision,
    _tune_thresholds,
)
from embedclf.heads._validation import (
    _check_class_labels,
    _check_cv_splits,
    _check_n_classes,
    _label_repr,
    _validate_embeddings,
    _validate_for_predict,
)

__all__ = ["OpenSetClassifier"]


class OpenSetClassifier(MetaEstimatorMixin, ClassifierMixin, BaseEstimator):
    """Classifier that answers ``unknown_label`` for samples unlike any known class.

    Wraps a probabilistic classifier and adds two scores: the classifier's max
    class probability, and the distance in embedding space from the sample to
    the known classes (nearest class centroid, or mean distance to the nearest
    training samples). Each score has a threshold, given as a number or tuned
    from out-of-fold scores on the training data to keep ``target_recall`` of
    the known samples.

    Parameters
    ----------
    estimator : classifier with predict_proba, default=None
        The classifier to wrap; cloned in ``fit``. None means
        ``SoftmaxClassifier()``.

    unknown_label : str or int, default="unknown"
        Label returned for unknown samples. Training rows with this label (a
        background folder named "unknown", as in the retrain tutorial) are not
        a class: they are left out of the classifier and of the distances, and
        used to measure ``unknown_recall_``.

    probability_threshold : float in [0, 1], "auto" or None, default="auto"
        Lowest max class probability of a known sample. "auto" tunes it;
        None does not use this score.

    distance_threshold : float >= 0, "auto" or None, default="auto"
        Largest distance to the known classes of a known sample. "auto" tunes
        it; None does not use this score.

    distance : {"centroid", "knn"}, default="centroid"
        "centroid": distance to the nearest class centroid (mean embedding).
        "knn": mean distance to the ``n_neighbors`` nearest training samples.

    metric : {"euclidean", "cosine"}, default="euclidean"
        Metric of the distance score.

    n_neighbors : int, default=5
        Neighbours of the "knn" distance.

    target_recall : float in (0, 1], default=0.95
        Fraction of known training samples the tuned thresholds accept,
        measured on out-of-fold scores.

    cv : int, cross-validation generator or iterable, default=5
        Splits for the out-of-fold scores, as in ``cross_val_predict``; an int
        means stratified k-fold. Every class needs at least ``cv`` samples.
        Given splits index the training rows not labelled ``unknown_label``
        (only those are cross-validated).

    n_jobs : int, default=None
        Jobs for ``cross_val_predict``.

    Attributes
    ----------
    estimator_ : classifier
        The wrapped classifier fitted on all known training samples.

    classes_ : ndarray of shape (n_classes,)
        Known classes (never ``unknown_label``).

    distance_model_ : NearestCentroid, NearestNeighbors or None
        Fitted model of the distance score; None when it is not used.

    probability_threshold_ : float or None
        Threshold in use for the max probability.

    distance_threshold_ : float or None
        Threshold in use for the distance.

    known_recall_ : float or None
        Out-of-fold fraction of known training samples accepted by the
        thresholds; None when nothing was tuned.

    unknown_recall_ : float or None
        Fraction of training rows labelled ``unknown_label`` that ``predict``
        calls unknown; None when there are none.

    n_features_in_ : int
        Number of features seen during fit.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit, when X has string column names.

    See Also
    --------
    SoftmaxClassifier : The default wrapped classifier.

    Notes
    -----
    Decision rule. Let ``p(x)`` be the max of ``estimator_.predict_proba(x)``
    and ``d(x)`` the distance of ``x`` to the known classes. ``predict``
    returns ``classes_[argmax predict_proba(x)]`` when ``p(x) >=
    probability_threshold_`` and ``d(x) <= distance_threshold_`` (a ``None``
    threshold is skipped), and ``unknown_label`` otherwise.

    Tuning. The known training samples get out-of-fold scores:
    ``cross_val_predict(estimator, method="predict_proba")`` for ``p`` and, per
    fold, distances to a distance model fitted on the other folds. When both
    thresholds are "auto" they sit at the same quantile level ``q`` of their
    out-of-fold score distributions, with ``q`` the largest level at which at
    least ``target_recall`` of the samples pass both. A numeric threshold is
    applied first and the "auto" one is tuned on the samples that pass it.

    ``predict_proba`` is the wrapped classifier's: its columns are the known
    classes only and rows still sum to one. Unknown rows in the training data
    never change the thresholds; compare ``unknown_recall_`` with
    ``known_recall_`` to judge them.

    Examples
    --------
    >>> import numpy as np
    >>> from embedclf import OpenSetClassifier
    >>> rng = np.random.default_rng(0)
    >>> X = np.r_[rng.normal(0, 1, (40, 4)), rng.normal(4, 1, (40, 4))]
    >>> y = np.array(["cat"] * 40 + ["dog"] * 40)
    >>> clf = OpenSetClassifier(target_recall=0.95).fit(X, y)
    >>> clf.predict([[0, 0, 0, 0], [4, 4, 4, 4], [-30, 30, -30, 30]])
    array(['cat', 'dog', 'unknown'], dtype='<U7')
    >>> clf.predict_proba([[0, 0, 0, 0]]).shape
    (1, 2)
    """

    _parameter_constraints: dict = {
        "estimator": [object, None],
        "unknown_label": [str, Integral],
        "probability_threshold": [
            Interval(Real, 0, 1, closed="both"),
            StrOptions({"auto"}),
            None,
        ],
        "distance_threshold": [
            Interval(Real, 0, None, closed="left"),
            StrOptions({"auto"}),
            None,
        ],
        "distance": [StrOptions({"centroid", "knn"})],
        "metric": [StrOptions({"euclidean", "cosine"})],
        "n_neighbors": [Interval(Integral, 1, None, closed="left")],
        "target_recall": [Interval(Real, 0, 1, closed="right")],
        "cv": ["cv_object"],
        "n_jobs": [Integral, None],
    }

    def __init__(
        self,
        estimator=None,
        *,
        unknown_label="unknown",
        probability_threshold="auto",
        distance_threshold="auto",
        distance="centroid",
        metric="euclidean",
        n_neighbors=5,
        target_recall=0.95,
        cv=5,
        n_jobs=None,
    ):
        self.estimator = estimator
        self.unknown_label = unknown_label
        self.probability_threshold = probability_threshold
        self.distance_threshold = distance_threshold
        self.distance = distance
        self.metric = metric
        self.n_neighbors = n_neighbors
        self.target_recall = target_recall
        self.cv = cv
        self.n_jobs = n_jobs

    def _base_estimator(self):
        if self.estimator is None:
            from embedclf.heads._linear import SoftmaxClassifier

            return SoftmaxClassifier()
        if not hasattr(self.estimator, "predict_proba"):
            raise TypeError(
                f"{type(self).__name__} needs an estimator with predict_proba; got "
                f"{self.estimator!r}. Use SoftmaxClassifier, SVMClassifier or wrap "
                "the model in sklearn.calibration.CalibratedClassifierCV."
            )
        return clone(self.estimator)

    def _fit_distance(self, X, y):
        if self.distance == "centroid":
            return NearestCentroid().fit(X, y)
        k = min(self.n_neighbors, len(X))
        return NearestNeighbors(n_neighbors=k, metric=self.metric).fit(X)

    def _distances(self, model, X):
        if isinstance(model, NearestCentroid):
            d = pairwise_distances(X, model.centroids_, metric=self.metric)
            return d.min(axis=1)
        return model.kneighbors(X)[0].mean(axis=1)

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y):
        """Fit the classifier, the distance model, and tune the thresholds.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings.

        y : array-like of shape (n_samples,)
            Labels, all strings or all integers; rows equal to
            ``unknown_label`` are background examples.

        Returns
        -------
        self : object
            Fitted classifier.

        Raises
        ------
        ValueError
            If fewer than 2 known classes, a class too small for ``cv`` when a
            threshold is "auto", NaN rows or continuous labels.
        TypeError
            If the estimator has no predict_proba or labels mix types.
        """
        X, y = _validate_embeddings(self, X, y, reset=True, action="fit")
        name = type(self).__name__
        y = _check_class_labels(y, name)
        known = _known_rows(y, self.unknown_label, name)
        Xk, yk = X[known], y[known]
        self.classes_ = np.unique(yk)
        _check_n_classes(self.classes_, yk, name)
        base = self._base_estimator()

        # Scores are oriented "higher = more like a known class": the max
        # probability, and minus the distance.
        given = {"p": self.probability_threshold, "d": self.distance_threshold}
        sign = {"p": 1.0, "d": -1.0}
        used = [key for key, value in given.items() if value is not None]
        auto = [key for key in used if given[key] == "auto"]
        self.estimator_ = clone(base).fit(Xk, yk)
        self.distance_model_ = self._fit_distance(Xk, yk) if "d" in used else None
        self.known_recall_ = None
        if auto:
            oof = self._oof_scores(base, Xk, yk, used, name)
            accepted = np.ones(len(yk), dtype=bool)
            for key in set(used) - set(auto):
                accepted &= oof[key] >= sign[key] * given[key]
            tuned, self.known_recall_ = _tune_thresholds(
                np.column_stack([oof[key] for key in auto]),
                self.target_recall,
                accepted,
            )
            given.update({key: sign[key] * t for key, t in zip(auto, tuned)})
        self.probability_threshold_ = float(given["p"]) if "p" in used else None
        self.distance_threshold_ = float(given["d"]) if "d" in used else None

        self.unknown_recall_ = None
        if not known.all():
            pred = self._decide(X[~known])
            self.unknown_recall_ = float(np.mean(pred == self.unknown_label))
        return self

    def _oof_scores(self, base, X, y, used, name):
        """Out-of-fold scores of the known training samples, keyed "p" and "d"."""
        splits = _check_cv_splits(
            self.cv,
            y,
            self.classes_,
            name=name,
            purpose="tune its thresholds",
            alternative="give probability_threshold and distance_threshold as "
            "numbers so that nothing is tuned",
            rows=f"training rows not labelled {_label_repr(self.unknown_label)}",
        )
        oof = {}
        if "p" in used:
            proba = cross_val_predict(
                clone(base), X, y, cv=splits, method="predict_proba",
                n_jobs=self.n_jobs,
            )  # fmt: skip
            oof["p"] = proba.max(axis=1)
        if "d" in used:
            oof["d"] = np.empty(len(y))
            for train, test in splits:
                model = self._fit_distance(X[train], y[train])
                oof["d"][test] = -self._distances(model, X[test])
        return oof

    def _proba_and_distance(self, X):
        dist = None
        if self.distance_model_ is not None:
            dist = self._distances(self.distance_model_, X)
        return self.estimator_.predict_proba(X), dist

    def _decide(self, X):
        proba, dist = self._proba_and_distance(X)
        return _open_set_decision(
            self.classes_,
            proba,
            self.unknown_label,
            probability_threshold=self.probability_threshold_,
            distances=dist,
            distance_threshold=self.distance_threshold_,
        )

    def predict(self, X):
        """Predict known classes, or ``unknown_label`` (see Notes).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            Labels from ``classes_`` or ``unknown_label``.
        """
        X = _validate_for_predict(self, X)
        return self._decide(X)

    def predict_proba(self, X):
        """Probabilities of the known classes, from the wrapped classifier.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Columns in the order of ``classes_``; no "unknown" column.
        """
        X = _validate_for_predict(self, X)
        return self.estimator_.predict_proba(X)

    def open_set_scores(self, X):
        """The two scores the decision rule compares with the thresholds.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings.

        Returns
        -------
        scores : Bunch
            ``max_proba`` (ndarray of shape (n_samples,)) and ``distance``
            (ndarray of shape (n_samples,), or None when not used).
        """
        X = _validate_for_predict(self, X)
        proba, dist = self._proba_and_distance(X)
        return Bunch(max_proba=proba.max(axis=1), distance=dist)
