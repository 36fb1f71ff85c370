"""Softmax (multinomial logistic regression) head on image embeddings."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from scipy.special import expit, log_softmax, softmax
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from embedclf._compat import Interval, StrOptions, _fit_context
from embedclf.heads._open_set_rules import _UnknownThresholdMixin
from embedclf.heads._validation import (
    _standardized,
    _validate_for_predict,
    _validate_training_data,
)

__all__ = ["SoftmaxClassifier"]


class SoftmaxClassifier(_UnknownThresholdMixin, ClassifierMixin, BaseEstimator):
    """Multinomial logistic regression on embeddings, as retrain.py's final layer.

    scikit-learn's :class:`~sklearn.linear_model.LogisticRegression` (L2
    penalty, ``lbfgs`` solver) on the embeddings, optionally standardised
    first. Any standardisation is folded into ``coef_`` and
    ``intercept_``, so the fitted head is one affine map of the raw embeddings,
    ready to export as a dense layer: ``decision_function(X) == X @ coef_.T +
    intercept_``.

    Parameters
    ----------
    C : float, default=1.0
        Inverse of the L2 regularisation strength (on standardised features
        when ``standardize=True``). Smaller values regularise more.

    standardize : bool, default=False
        Scale each embedding feature to zero mean and unit variance before
        fitting. Off by default, so that ``SoftmaxClassifier()`` is plain
        ``LogisticRegression()`` on the vectors: on the Grocery Store photos
        standardising cost 2 points with EfficientNet-Lite0 (66.2 % against
        68.0 % test accuracy at C=1) and made no difference with Lite2.
        Whether it helps depends on the backbone and on C; ``embedclf train``
        tries both (``--scaling auto``). Heads fitted by 0.1.0 (default True)
        keep their fitted ``coef_`` and predict as before.

    class_weight : dict, "balanced" or None, default=None
        Weights of the classes, as in LogisticRegression. "balanced" weights
        each class inversely to its frequency.

    max_iter : int, default=1000
        Maximum number of lbfgs iterations.

    tol : float, default=1e-4
        Tolerance of the stopping criterion.

    unknown_label : str, int or None, default=None
        If not None, ``predict`` returns this label for samples whose highest
        class probability is below ``unknown_threshold``, and training rows
        with this label are left out of the fit. None keeps exact
        scikit-learn behaviour. See :class:`~embedclf.OpenSetClassifier` for
        a tuned threshold and an embedding-distance score.

    unknown_threshold : float, default=0.5
        Lowest max class probability accepted as a known class when
        ``unknown_label`` is set.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Known class labels (never ``unknown_label``).

    coef_ : ndarray of shape (1, n_features) or (n_classes, n_features)
        Weights in the original (unstandardised) feature space. One row for a
        binary problem (the weights of ``classes_[1]``), as in
        LogisticRegression.

    intercept_ : ndarray of shape (1,) or (n_classes,)
        Biases in the original feature space.

    n_iter_ : ndarray of shape (1,)
        Number of solver iterations.

    n_features_in_ : int
        Number of features seen during fit.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit, when X has string column names.

    See Also
    --------
    SVMClassifier : SVM head with calibrated probabilities.
    OpenSetClassifier : Adds an "unknown" answer with a tuned threshold.

    Notes
    -----
    ``predict_proba`` is the softmax of ``decision_function`` (the logistic
    sigmoid in the binary case), and ``predict`` is its argmax, so all three
    agree. With ``unknown_label`` set, ``predict`` follows the rule in
    ``embedclf.heads._open_set_rules._open_set_decision``: a sample is known when
    its max probability is at least ``unknown_threshold``.

    ``fit`` runs BLAS on one thread (scoped to the call, as scikit-learn's
    KMeans does). The solver's iterations are small matrix products for which
    more BLAS threads cost more than they give, and on a busy machine spinning
    threads made fits 10-50 times slower. Use ``n_jobs`` of GridSearchCV or
    ``cross_val_score`` to spread work over cores instead.

    Examples
    --------
    >>> import numpy as np
    >>> from embedclf import SoftmaxClassifier
    >>> rng = np.random.default_rng(0)
    >>> X = np.r_[rng.normal(0, 1, (20, 4)), rng.normal(3, 1, (20, 4))]
    >>> y = np.array(["cat"] * 20 + ["dog"] * 20)
    >>> clf = SoftmaxClassifier().fit(X, y)
    >>> clf.predict([[0, 0, 0, 0], [3, 3, 3, 3]])
    array(['cat', 'dog'], dtype='<U3')
    >>> np.allclose(clf.decision_function(X), X @ clf.coef_[0] + clf.intercept_)
    True
    """

    _parameter_constraints: dict = {
        "C": [Interval(Real, 0, None, closed="neither")],
        "standardize": ["boolean"],
        "class_weight": [dict, StrOptions({"balanced"}), None],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="neither")],
        "unknown_label": [str, Integral, None],
        "unknown_threshold": [Interval(Real, 0, 1, closed="both")],
    }

    def __init__(
        self,
        C=1.0,
        *,
        standardize=False,
        class_weight=None,
        max_iter=1000,
        tol=1e-4,
        unknown_label=None,
        unknown_threshold=0.5,
    ):
        self.C = C
        self.standardize = standardize
        self.class_weight = class_weight
        self.max_iter = max_iter
        self.tol = tol
        self.unknown_label = unknown_label
        self.unknown_threshold = unknown_threshold

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Fit the head on embeddings.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings, e.g. the output of ImageEmbedder.

        y : array-like of shape (n_samples,)
            Class labels, all strings or all integers.

        Returns
        -------
        self : object
            Fitted classifier.

        Raises
        ------
        ValueError
            If X has NaN rows, y is continuous, or fewer than 2 classes.
        TypeError
            If the labels mix types or are not strings/integers.
        """
        X, y = _validate_training_data(self, X, y)
        X, mean, scale = _standardized(X, self.standardize)
        lr = LogisticRegression(
            C=self.C,
            class_weight=self.class_weight,
            max_iter=self.max_iter,
            tol=self.tol,
        )
        # One BLAS thread, as KMeans does: see Notes.
        with threadpool_limits(limits=1, user_api="blas"):
            lr.fit(X, y)
        # Fold the scaler into the affine map: w.(x - m)/s + b = (w/s).x + b - (w/s).m
        self.coef_ = lr.coef_ / scale
        self.intercept_ = lr.intercept_ - self.coef_ @ mean
        self.n_iter_ = lr.n_iter_
        return self

    def decision_function(self, X):
        """Class scores (logits) ``X @ coef_.T + intercept_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings.

        Returns
        -------
        scores : ndarray of shape (n_samples,) or (n_samples, n_classes)
            Logits; 1-d for a binary problem (positive means ``classes_[1]``).
        """
        X = _validate_for_predict(self, X)
        scores = X @ self.coef_.T + self.intercept_
        return scores.ravel() if scores.shape[1] == 1 else scores

    def predict_proba(self, X):
        """Class probabilities, columns in the order of ``classes_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Softmax of the logits; rows sum to one.
        """
        scores = self.decision_function(X)
        if scores.ndim == 1:
            p = expit(scores)
            return np.column_stack([1 - p, p])
        return softmax(scores, axis=1)

    def predict_log_proba(self, X):
        """Log of ``predict_proba``, computed stably.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings.

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
            Log-probabilities, columns in the order of ``classes_``.
        """
        scores = self.decision_function(X)
        if scores.ndim == 1:
            scores = np.column_stack([np.zeros_like(scores), scores])
        return log_softmax(scores, axis=1)
