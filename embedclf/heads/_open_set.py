"""The "unknown" answer: the OpenSetClassifier meta-estimator.

OpenSetClassifier wraps a probabilistic classifier and answers
``unknown_label`` when an unknown score (:mod:`embedclf.heads._unknown_scores`)
is above a threshold set on held-out data (:mod:`embedclf.heads._unknown_fusion`).
The two-threshold rule of 0.1.0 (``detector=None``) lives in
:mod:`embedclf.heads._open_set_legacy`, the rule shared with SoftmaxClassifier
and SVMClassifier in :mod:`embedclf.heads._open_set_rules`.
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, MetaEstimatorMixin, clone

from embedclf._compat import Interval, StrOptions, _fit_context
from embedclf.heads import _open_set_legacy as legacy
from embedclf.heads._open_set_rules import _known_rows, _label_dtype
from embedclf.heads._unknown_fusion import fit_score_rule, fused_score
from embedclf.heads._unknown_scores import SCORES, compute_scores
from embedclf.heads._validation import (
    _check_class_labels,
    _check_n_classes,
    _validate_embeddings,
    _validate_for_predict,
)

__all__ = ["OpenSetClassifier"]


class OpenSetClassifier(MetaEstimatorMixin, ClassifierMixin, BaseEstimator):
    """Classifier that answers ``unknown_label`` for samples unlike any known class.

    Wraps a probabilistic classifier and computes an unknown score per
    sample (higher = less like any known class): by default a fusion of the
    classifier's max probability on ReAct-clipped features and the cosine
    distance to the nearest training sample. The threshold keeps
    ``target_recall`` of known samples, measured on held-out data: ``X_val``
    when given, else group-aware out-of-fold scores.

    Parameters
    ----------
    estimator : classifier with predict_proba, default=None
        The classifier to wrap; cloned in ``fit``. None means
        ``SoftmaxClassifier()``.

    unknown_label : str or int, default="unknown"
        Label returned for unknown samples. Training (and ``y_val``) rows with
        this label (a background folder named "unknown", as in the retrain
        tutorial) are not a class: they fit the logistic fusion and measure
        ``unknown_recall_``.

    detector : {"fusion", "max_proba", "react_max_proba", "max_logit", \
            "energy", "knn", "mahalanobis", "relative_mahalanobis"} or None, \
            default="fusion"
        The unknown score (see Notes). None selects the two-threshold rule of
        embedclf 0.1.0 (``probability_threshold``, ``distance_threshold``).

        .. deprecated:: 0.2.0
           ``detector=None`` and its five parameters (``probability_threshold``,
           ``distance_threshold``, ``distance``, ``metric``, ``n_neighbors``)
           are removed in 0.3.0; ``fit`` warns (FutureWarning). Models saved
           with it keep loading until then. For a fixed lowest top probability
           ``p`` use ``detector="max_proba", score_threshold=1 - p``.

    score_threshold : float or "auto", default="auto"
        Largest unknown score of a known sample. "auto" tunes it to
        ``target_recall`` on held-out data.

    fusion_scores : tuple of str, default=None
        Components of ``detector="fusion"``; None means ("react_max_proba", "knn")
        (models fitted before 0.2 keep the components they were fitted with).

    kth_neighbor : int, default=1
        k of the "knn" score: distance to the k-th nearest training sample.

    probability_threshold : float in [0, 1], "auto" or None, default="auto"
        ``detector=None`` only: lowest max class probability of a known sample.

    distance_threshold : float >= 0, "auto" or None, default="auto"
        ``detector=None`` only: largest distance to the known classes.

    distance : {"centroid", "knn"}, default="centroid"
        ``detector=None`` only: distance to the nearest class centroid, or mean
        distance to the ``n_neighbors`` nearest training samples.

    metric : {"euclidean", "cosine"}, default="euclidean"
        ``detector=None`` only: metric of the distance.

    n_neighbors : int, default=5
        ``detector=None`` only: neighbours of the "knn" distance.

    target_recall : float in (0, 1], default=0.95
        Fraction of held-out known samples the tuned threshold accepts.

    refit_on_val : bool, default=False
        With ``X_val``: once the threshold (and fusion) are set on the
        validation scores, refit the classifier and the score state on the
        training and validation known rows, keeping that threshold. What
        ``embedclf train`` does when it refits the head on training +
        validation.

    cv : int, cross-validation generator or iterable, default=5
        Folds of the out-of-fold scores when there is no ``X_val``. An int
        means ``StratifiedGroupKFold`` over the near-duplicate groups of
        :class:`~embedclf.model_selection.NearDuplicateKFold` (linked within
        each class at cosine 0.85) of the known rows (with
        ``detector=None``: stratified k-fold); an iterable gives index
        splits of the known rows.

    n_jobs : int, default=None
        Jobs for ``cross_val_predict`` (``detector=None``).

    Attributes
    ----------
    estimator_ : classifier
        The wrapped classifier fitted on all known training samples.

    classes_ : ndarray of shape (n_classes,)
        Known classes (never ``unknown_label``).

    detector_ : str or None
        The unknown score in use; None for the two-threshold rule.

    unknown_threshold_ : float or None
        Samples whose unknown score is above it are unknown.

    fusion_ : dict or None
        Scales (and logistic weights) of the fusion, fitted on held-out
        scores; None unless ``detector="fusion"``.

    score_state_ : dict of ndarray or None
        Fitted state of the embedding scores (training vectors for "knn",
        class means and whitening for "mahalanobis").

    probability_threshold_, distance_threshold_ : float or None
        Thresholds of the two-threshold rule; None with a ``detector``.

    distance_model_ : NearestCentroid, NearestNeighbors or None
        Distance model of the two-threshold rule.

    known_recall_ : float or None
        Fraction of held-out known samples accepted; None when nothing was
        tuned.

    unknown_recall_ : float or None
        Fraction of background rows (``unknown_label`` in ``y`` and ``y_val``)
        that ``predict`` calls unknown; None when there are none. Optimistic
        when they also fitted the logistic fusion.

    n_features_in_ : int
        Number of features seen during fit.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit, when X has string column names.

    See Also
    --------
    SoftmaxClassifier : The default wrapped classifier.

    Notes
    -----
    Decision rule. ``predict`` returns ``classes_[argmax predict_proba(x)]``
    when ``unknown_score(x) <= unknown_threshold_`` and ``unknown_label``
    otherwise. Scores: ``max_proba`` is ``1 - max predict_proba``;
    ``react_max_proba`` the same with every feature clipped at the 95th
    percentile of the training features (ReAct; not clipped when the
    training features have negative values);
    ``max_logit`` and ``energy`` minus the max and the log-sum-exp of the
    logits; ``knn`` is ``1 - cos`` to the ``kth_neighbor``-th nearest
    training sample; ``mahalanobis`` the squared distance of the
    L2-normalised sample to the nearest class mean under a LedoitWolf-shrunk
    shared covariance, ``relative_mahalanobis`` that minus the distance to
    the overall mean. ``fusion`` maps each component to its empirical CDF
    among held-out known samples (extended linearly above their range) and
    averages them; with 10 or more background samples a logistic regression
    on the same scaled components, known vs background, weighs them instead.

    Threshold. The held-out known samples are ``X_val`` when given (scores
    from models fitted on ``X``), else out-of-fold samples of ``X``; the
    threshold is their ``target_recall`` quantile.

    With ``detector=None`` (models of embedclf 0.1.0): known when ``max
    predict_proba >= probability_threshold_`` and the distance is ``<=
    distance_threshold_`` (a None threshold is skipped); "auto" thresholds
    share one quantile level of their out-of-fold distributions, the largest
    at which ``target_recall`` of the samples pass both.

    ``predict_proba`` is the wrapped classifier's: its columns are the known
    classes only and rows still sum to one.

    Examples
    --------
    >>> import numpy as np
    >>> from embedclf import OpenSetClassifier
    >>> rng = np.random.default_rng(0)
    >>> def draw(n):  # non-negative, like CNN embeddings
    ...     X = np.r_[rng.normal([5, 1, 1, 1], 0.5, (n, 4)),
    ...               rng.normal([1, 5, 1, 1], 0.5, (n, 4))]
    ...     return np.abs(X), np.array(["cat"] * n + ["dog"] * n)
    >>> X, y = draw(40)
    >>> X_val, y_val = draw(20)  # the threshold is set on these
    >>> clf = OpenSetClassifier(target_recall=0.95).fit(X, y, X_val=X_val, y_val=y_val)
    >>> clf.predict([[5, 1, 1, 1], [1, 5, 1, 1], [1, 1, 5, 5]])
    array(['cat', 'dog', 'unknown'], dtype='<U7')
    >>> clf.predict_proba([[5, 1, 1, 1]]).shape
    (1, 2)
    """

    _parameter_constraints: dict = {
        "estimator": [object, None],
        "unknown_label": [str, Integral],
        "detector": [StrOptions({"fusion", *SCORES}), None],
        "score_threshold": [Real, StrOptions({"auto"})],
        "fusion_scores": [tuple, list, None],
        "kth_neighbor": [Interval(Integral, 1, None, closed="left")],
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
        "refit_on_val": ["boolean"],
        "cv": ["cv_object"],
        "n_jobs": [Integral, None],
    }

    def __init__(
        self,
        estimator=None,
        *,
        unknown_label="unknown",
        detector="fusion",
        score_threshold="auto",
        fusion_scores=None,
        kth_neighbor=1,
        probability_threshold="auto",
        distance_threshold="auto",
        distance="centroid",
        metric="euclidean",
        n_neighbors=5,
        target_recall=0.95,
        refit_on_val=False,
        cv=5,
        n_jobs=None,
    ):
        self.estimator = estimator
        self.unknown_label = unknown_label
        self.detector = detector
        self.score_threshold = score_threshold
        self.fusion_scores = fusion_scores
        self.kth_neighbor = kth_neighbor
        self.probability_threshold = probability_threshold
        self.distance_threshold = distance_threshold
        self.distance = distance
        self.metric = metric
        self.n_neighbors = n_neighbors
        self.target_recall = target_recall
        self.refit_on_val = refit_on_val
        self.cv = cv
        self.n_jobs = n_jobs

    def __setstate__(self, state):
        super().__setstate__(legacy.filled_state(state))

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

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y, X_val=None, y_val=None):
        """Fit the classifier and the unknown score, and set the threshold.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings.

        y : array-like of shape (n_samples,)
            Labels, all strings or all integers; rows equal to
            ``unknown_label`` are background examples.

        X_val : array-like of shape (n_val_samples, n_features), default=None
            Held-out embeddings to set the threshold (and fit the fusion) on;
            None uses out-of-fold scores of ``X``. Ignored when ``detector=None``.

        y_val : array-like of shape (n_val_samples,), default=None
            Labels of ``X_val``; ``unknown_label`` rows are background.

        Returns
        -------
        self : object
            Fitted classifier.

        Raises
        ------
        ValueError
            If fewer than 2 known classes, too few samples or groups for
            ``cv`` when a threshold is "auto", NaN rows or continuous labels.
        TypeError
            If the estimator has no predict_proba or labels mix types.
        """
        legacy.warn_deprecated(self)
        X, y = _validate_embeddings(self, X, y, reset=True, action="fit")
        name = type(self).__name__
        y = _check_class_labels(y, name)
        known = _known_rows(y, self.unknown_label, name)
        Xk, yk = X[known], y[known]
        self.classes_ = np.unique(yk)
        _check_n_classes(self.classes_, yk, name)
        base = self._base_estimator()
        self.estimator_ = clone(base).fit(Xk, yk)
        self.detector_, self.fusion_, self.score_state_ = self.detector, None, None
        self.unknown_threshold_ = None
        background = [X[~known]]
        if self.detector is None:
            legacy.fit_two_thresholds(self, base, Xk, yk, name)
        else:
            fit_score_rule(self, base, X, y, known, X_val, y_val, name)
            if X_val is not None:
                y_val = np.asarray(y_val)
                background.append(X_val[y_val == self.unknown_label])
        background = np.vstack(background)
        self.unknown_recall_ = None
        if len(background):
            pred = self._decide(background)
            self.unknown_recall_ = float(np.mean(pred == self.unknown_label))
        return self

    def _unknown_score(self, X):
        if self.detector_ is None:  # the two-threshold rule: 1 - max probability
            return 1.0 - self.estimator_.predict_proba(X).max(axis=1)
        names = list(self.fusion_["names"]) if self.fusion_ else [self.detector_]
        scores = compute_scores(self.estimator_, self.score_state_, X, names)
        if self.detector_ == "fusion":
            return fused_score(self.fusion_, scores)
        return scores[self.detector_]

    def _decide(self, X):
        proba = self.estimator_.predict_proba(X)
        if self.detector_ is None:
            return legacy.decide(self, X, proba)
        labels = self.classes_[np.argmax(proba, axis=1)]
        out = labels.astype(_label_dtype(self.classes_, self.unknown_label))
        out[self._unknown_score(X) > self.unknown_threshold_] = self.unknown_label
        return out

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

    def unknown_score(self, X):
        """How unlike every known class each sample is (higher = less like).

        ``predict`` answers ``unknown_label`` where it is above
        ``unknown_threshold_``. With ``detector=None`` it is ``1 - max
        predict_proba`` (the distance rule is then a second test).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings.

        Returns
        -------
        scores : ndarray of shape (n_samples,)
        """
        X = _validate_for_predict(self, X)
        return self._unknown_score(X)

    def open_set_scores(self, X):
        """The scores of the two-threshold rule (``detector=None``).

        Returns a Bunch of ``max_proba`` and ``distance`` (None when unused),
        each of shape (n_samples,), for embeddings ``X``.
        """
        X = _validate_for_predict(self, X)
        return legacy.scores(self, X)
