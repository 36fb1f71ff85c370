"""SVM head on image embeddings, with calibrated probabilities."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.utils.class_weight import compute_sample_weight

from embedclf._compat import Interval, StrOptions, _fit_context
from embedclf.heads._open_set_rules import _UnknownThresholdMixin
from embedclf.heads._validation import (
    _check_class_counts,
    _validate_for_predict,
    _validate_training_data,
)

__all__ = ["SVMClassifier"]

_EPS = 1e-15  # probability floor before taking logs


class SVMClassifier(_UnknownThresholdMixin, ClassifierMixin, BaseEstimator):
    """Support vector machine on embeddings, for comparison with the softmax head.

    A :class:`~sklearn.svm.SVC` (linear or RBF kernel) on standardised
    features, wrapped in ``CalibratedClassifierCV(..., ensemble=False)`` for
    probabilities: the SVC is fitted once on all the data and a calibrator is
    fitted on its out-of-fold decision values (SVC's own ``probability``
    option is deprecated in scikit-learn 1.9).

    Parameters
    ----------
    C : float, default=1.0
        Inverse regularisation strength of the SVC.

    kernel : {"rbf", "linear"}, default="rbf"
        SVC kernel.

    gamma : {"scale", "auto"} or float, default="scale"
        RBF kernel coefficient, as in SVC; ignored by the linear kernel.

    standardize : bool, default=True
        Scale features to zero mean and unit variance before the SVC.

    class_weight : dict, "balanced" or None, default=None
        Class weights, as in SVC. They are applied as sample weights to both
        the SVC and the calibrator, so calibration keeps them.

    calibration : {"sigmoid", "isotonic"}, default="sigmoid"
        Calibration method ("sigmoid" is Platt scaling). Isotonic needs
        many samples per class.

    cv : int, default=5
        Folds of the stratified cross-validation giving the out-of-fold
        decision values for calibration. Every class needs at least ``cv``
        samples.

    unknown_label : str, int or None, default=None
        If not None, ``predict`` returns this label for samples whose max
        calibrated probability is below ``unknown_threshold``, and training
        rows with this label are left out of the fit.

    unknown_threshold : float, default=0.5
        Lowest max probability accepted as a known class when
        ``unknown_label`` is set.

    Attributes
    ----------
    estimator_ : CalibratedClassifierCV
        The fitted calibrated SVC, on standardised features when
        ``standardize``.

    scaler_ : StandardScaler or None
        The fitted feature scaler; None when ``standardize=False``.

    classes_ : ndarray of shape (n_classes,)
        Known class labels.

    n_features_in_ : int
        Number of features seen during fit.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit, when X has string column names.

    See Also
    --------
    SoftmaxClassifier : Logistic regression head; exportable as a dense layer.
    OpenSetClassifier : Adds an "unknown" answer with a tuned threshold.

    Notes
    -----
    ``predict`` is the argmax of ``predict_proba`` (the calibrated
    probabilities), and ``decision_function`` is derived from the same
    probabilities (log-odds, or log-probabilities for more than two classes),
    so all three always agree. The SVC's own margins can disagree with them
    near a boundary, because the calibrator moves each class's threshold; they
    are ``estimator_.calibrated_classifiers_[0].estimator.decision_function``
    applied to ``scaler_.transform(X)``.

    Examples
    --------
    >>> import numpy as np
    >>> from embedclf import SVMClassifier
    >>> rng = np.random.default_rng(0)
    >>> X = np.r_[rng.normal(0, 1, (20, 4)), rng.normal(3, 1, (20, 4))]
    >>> y = np.array(["cat"] * 20 + ["dog"] * 20)
    >>> clf = SVMClassifier(kernel="linear").fit(X, y)
    >>> clf.predict([[0, 0, 0, 0], [3, 3, 3, 3]])
    array(['cat', 'dog'], dtype='<U3')
    >>> clf.predict_proba([[3, 3, 3, 3]]).round(1)
    array([[0., 1.]])
    """

    _parameter_constraints: dict = {
        "C": [Interval(Real, 0, None, closed="neither")],
        "kernel": [StrOptions({"rbf", "linear"})],
        "gamma": [
            StrOptions({"scale", "auto"}),
            Interval(Real, 0, None, closed="neither"),
        ],
        "standardize": ["boolean"],
        "class_weight": [dict, StrOptions({"balanced"}), None],
        "calibration": [StrOptions({"sigmoid", "isotonic"})],
        "cv": [Interval(Integral, 2, None, closed="left")],
        "unknown_label": [str, Integral, None],
        "unknown_threshold": [Interval(Real, 0, 1, closed="both")],
    }

    def __init__(
        self,
        C=1.0,
        *,
        kernel="rbf",
        gamma="scale",
        standardize=True,
        class_weight=None,
        calibration="sigmoid",
        cv=5,
        unknown_label=None,
        unknown_threshold=0.5,
    ):
        self.C = C
        self.kernel = kernel
        self.gamma = gamma
        self.standardize = standardize
        self.class_weight = class_weight
        self.calibration = calibration
        self.cv = cv
        self.unknown_label = unknown_label
        self.unknown_threshold = unknown_threshold

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Fit the SVC and its probability calibration.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings.

        y : array-like of shape (n_samples,)
            Class labels, all strings or all integers.

        Returns
        -------
        self : object
            Fitted classifier.

        Raises
        ------
        ValueError
            If fewer than 2 classes, a class with fewer than ``cv`` samples,
            NaN rows or continuous labels.
        TypeError
            If the labels mix types or are not strings/integers.
        """
        X, y = _validate_training_data(self, X, y)
        name = type(self).__name__
        _check_class_counts(
            y,
            self.classes_,
            self.cv,
            what=f"{name} calibrates its probabilities with",
            fix="or lower cv (at least 2)",
        )
        X = X.astype(np.float64, copy=False)
        self.scaler_ = StandardScaler().fit(X) if self.standardize else None
        if self.scaler_ is not None:
            X = self.scaler_.transform(X)
        # Class weights become sample weights so that the calibrator sees them
        # too; as SVC(class_weight=...) they would be undone by calibration.
        sample_weight = None
        if self.class_weight is not None:
            sample_weight = compute_sample_weight(self.class_weight, y)
        svc = SVC(C=self.C, kernel=self.kernel, gamma=self.gamma)
        self.estimator_ = CalibratedClassifierCV(
            svc, method=self.calibration, cv=self.cv, ensemble=False
        ).fit(X, y, sample_weight=sample_weight)
        return self

    def decision_function(self, X):
        """Calibrated log-odds (two classes) or log-probabilities (more).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings.

        Returns
        -------
        scores : ndarray of shape (n_samples,) or (n_samples, n_classes)
            For two classes, ``log p1 - log p0`` (positive means
            ``classes_[1]``); otherwise ``log predict_proba``. Their sign or
            argmax always agrees with ``predict`` (see Notes).
        """
        log_proba = np.log(np.clip(self.predict_proba(X), _EPS, 1.0))
        if log_proba.shape[1] == 2:
            return log_proba[:, 1] - log_proba[:, 0]
        return log_proba

    def predict_proba(self, X):
        """Calibrated class probabilities, columns in the order of ``classes_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Rows sum to one.
        """
        X = self._transform(X)
        return self.estimator_.predict_proba(X)

    def _transform(self, X):
        X = _validate_for_predict(self, X)
        return X if self.scaler_ is None else self.scaler_.transform(X)
