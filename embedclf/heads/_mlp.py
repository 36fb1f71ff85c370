"""A small neural head: one (or more) ReLU dense layers, then softmax."""

from __future__ import annotations

import warnings
from numbers import Integral, Real

import numpy as np
from scipy.special import expit, softmax
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.neural_network import MLPClassifier
from sklearn.utils.class_weight import compute_sample_weight

from embedclf._compat import Interval, StrOptions, _fit_context
from embedclf.heads._open_set_rules import _UnknownThresholdMixin
from embedclf.heads._validation import (
    _label_repr,
    _standardized,
    _validate_for_predict,
    _validate_training_data,
)

__all__ = ["MLPHeadClassifier"]


def _check_hidden_layer_sizes(sizes) -> tuple[int, ...]:
    sizes = (sizes,) if isinstance(sizes, Integral) else tuple(sizes)
    if not sizes or any(not isinstance(s, Integral) or s < 1 for s in sizes):
        raise ValueError(
            "The 'hidden_layer_sizes' parameter of MLPHeadClassifier must be a "
            f"positive int or a non-empty tuple of positive ints. Got {sizes!r} "
            "instead."
        )
    return tuple(int(s) for s in sizes)


def _early_stopping_possible(y, validation_fraction) -> str | None:
    """Why the stratified validation split cannot be made, or None."""
    classes, counts = np.unique(y, return_counts=True)
    n_val = int(np.ceil(validation_fraction * len(y)))
    if counts.min() < 2:
        return (
            f"class {_label_repr(classes[counts.argmin()])} has a single training "
            "sample, "
            "and the validation split is stratified"
        )
    if n_val < len(classes) or len(y) - n_val < len(classes):
        return (
            f"validation_fraction={validation_fraction} of {len(y)} samples "
            f"cannot hold all {len(classes)} classes"
        )
    return None


class MLPHeadClassifier(_UnknownThresholdMixin, ClassifierMixin, BaseEstimator):
    """Dense ReLU layer(s) and a softmax on embeddings, trained with early stopping.

    The Keras recipe "frozen backbone, then ``Dense(1024, relu) -> Dropout ->
    Dense(n, softmax)``" as a scikit-learn classifier. Features are
    standardised, then scikit-learn's
    :class:`~sklearn.neural_network.MLPClassifier` (Adam, L2 penalty
    ``alpha``) is trained, stopping when the accuracy on a held-out
    ``validation_fraction`` of the training rows stops improving, and keeping
    the best epoch's weights. The standardisation is folded into the first
    layer, so the fitted head is a plain stack of dense layers
    (``coefs_``, ``intercepts_``) on the raw embeddings, ready to export.

    Parameters
    ----------
    hidden_layer_sizes : int or tuple of int, default=(1024,)
        Units of each hidden ReLU layer.

    alpha : float, default=1e-4
        L2 penalty strength, as in MLPClassifier (the loss is the mean
        cross-entropy plus ``alpha / (2 * n_samples)`` times the squared
        weights; ``alpha = 1 / C`` is the same penalty as LogisticRegression's
        ``C``).

    early_stopping : bool, default=True
        Hold out ``validation_fraction`` of the training rows (stratified)
        and stop when their accuracy has not improved by ``tol`` for
        ``n_iter_no_change`` epochs. Turned off, with a warning, when the
        split cannot hold every class.

    validation_fraction : float, default=0.1
        Share of the training rows held out for early stopping.

    n_iter_no_change : int, default=10
        Epochs without improvement before stopping.

    max_iter : int, default=200
        Largest number of epochs.

    learning_rate_init : float, default=1e-3
        Adam's step size.

    batch_size : int or "auto", default="auto"
        Minibatch size; "auto" is ``min(200, n_samples)``.

    tol : float, default=1e-4
        Smallest improvement that counts.

    standardize : bool, default=True
        Scale each feature to zero mean and unit variance before training.

    class_weight : dict, "balanced" or None, default=None
        Weights of the classes, applied as sample weights.

    random_state : int, RandomState instance or None, default=None
        Seeds the weight initialisation, the minibatch order and the
        validation split.

    unknown_label : str, int or None, default=None
        If not None, ``predict`` returns this label for samples whose highest
        class probability is below ``unknown_threshold``, and training rows
        with this label are left out of the fit.

    unknown_threshold : float, default=0.5
        Lowest max class probability accepted as a known class when
        ``unknown_label`` is set.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Known class labels (never ``unknown_label``).

    coefs_ : list of ndarray
        Weight matrices, ``coefs_[i]`` of shape (n_in, n_out), the first one
        in the original (unstandardised) feature space.

    intercepts_ : list of ndarray
        Bias vectors of the layers.

    n_iter_ : int
        Epochs run.

    loss_curve_ : ndarray of shape (n_iter_,)
        Training loss (cross-entropy plus the L2 term) after each epoch.

    validation_scores_ : ndarray of shape (n_iter_,) or None
        Accuracy on the held-out rows after each epoch (None without early
        stopping).

    best_validation_score_ : float or None
        Best of ``validation_scores_``; its epoch's weights are kept.

    n_features_in_ : int
        Number of features seen during fit.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit, when X has string column names.

    See Also
    --------
    SoftmaxClassifier : The linear head (retrain.py's final layer).
    OpenSetClassifier : Adds an "unknown" answer with a tuned threshold.

    Notes
    -----
    MLPClassifier has no Dropout; L2 weight decay (``alpha``) and early
    stopping on held-out rows regularise instead. Dropout fights
    co-adaptation of units in a network trained end to end on few images; on
    frozen embeddings a single hidden layer is a small model, and early
    stopping at the best held-out accuracy is what keeps it from
    overfitting, which is the job Dropout does in the recipe. Both leave an
    ordinary dense network at prediction time (Keras' Dropout is the identity
    at inference), so the exported layers are the same kind. We did not
    write a TensorFlow training loop to get Dropout: MLPClassifier already
    has minibatch Adam, early stopping and ``partial_fit``.

    ``predict_proba`` is computed from ``coefs_`` and ``intercepts_`` (ReLU
    layers, then softmax, or the logistic sigmoid for two classes, as in
    MLPClassifier), and ``predict`` is its argmax (with the open-set rule of
    ``embedclf.heads._open_set_rules._open_set_decision`` when
    ``unknown_label`` is set). The fitted head keeps only arrays, no
    MLPClassifier object, so it loads with skops trusting nothing but this
    class and NumPy.

    Examples
    --------
    >>> import numpy as np
    >>> from embedclf import MLPHeadClassifier
    >>> rng = np.random.default_rng(0)
    >>> X = np.r_[rng.normal(0, 1, (40, 4)), rng.normal(3, 1, (40, 4))]
    >>> y = np.array(["cat"] * 40 + ["dog"] * 40)
    >>> clf = MLPHeadClassifier(hidden_layer_sizes=16, random_state=0).fit(X, y)
    >>> clf.predict([[0, 0, 0, 0], [3, 3, 3, 3]])
    array(['cat', 'dog'], dtype='<U3')
    >>> len(clf.loss_curve_) == clf.n_iter_
    True
    """

    _parameter_constraints: dict = {
        "hidden_layer_sizes": [
            Interval(Integral, 1, None, closed="left"),
            "array-like",
        ],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "batch_size": [
            Interval(Integral, 1, None, closed="left"),
            StrOptions({"auto"}),
        ],
        "tol": [Interval(Real, 0, None, closed="left")],
        "standardize": ["boolean"],
        "class_weight": [dict, StrOptions({"balanced"}), None],
        "random_state": ["random_state"],
        "unknown_label": [str, Integral, None],
        "unknown_threshold": [Interval(Real, 0, 1, closed="both")],
    }

    def __init__(
        self,
        hidden_layer_sizes=(1024,),
        *,
        alpha=1e-4,
        early_stopping=True,
        validation_fraction=0.1,
        n_iter_no_change=10,
        max_iter=200,
        learning_rate_init=1e-3,
        batch_size="auto",
        tol=1e-4,
        standardize=True,
        class_weight=None,
        random_state=None,
        unknown_label=None,
        unknown_threshold=0.5,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.alpha = alpha
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.max_iter = max_iter
        self.learning_rate_init = learning_rate_init
        self.batch_size = batch_size
        self.tol = tol
        self.standardize = standardize
        self.class_weight = class_weight
        self.random_state = random_state
        self.unknown_label = unknown_label
        self.unknown_threshold = unknown_threshold

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Train the head on embeddings.

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
            If X has NaN rows, y is continuous, fewer than 2 classes, or
            ``hidden_layer_sizes`` holds a non-positive size.
        TypeError
            If the labels mix types or are not strings/integers.
        """
        sizes = _check_hidden_layer_sizes(self.hidden_layer_sizes)
        X, y = _validate_training_data(self, X, y)
        name = type(self).__name__

        early_stopping = self.early_stopping
        if early_stopping:
            why = _early_stopping_possible(y, self.validation_fraction)
            if why is not None:
                warnings.warn(
                    f"{name} trains without early stopping ({why}); it runs "
                    f"max_iter={self.max_iter} epochs. Add training images or "
                    "raise validation_fraction to hold out every class.",
                    UserWarning,
                    stacklevel=2,
                )
                early_stopping = False
        X, mean, scale = _standardized(X, self.standardize)
        mlp = MLPClassifier(
            hidden_layer_sizes=sizes,
            activation="relu",
            solver="adam",
            alpha=self.alpha,
            batch_size=self.batch_size,
            learning_rate_init=self.learning_rate_init,
            max_iter=self.max_iter,
            tol=self.tol,
            early_stopping=early_stopping,
            validation_fraction=self.validation_fraction,
            n_iter_no_change=self.n_iter_no_change,
            random_state=self.random_state,
        )
        sample_weight = (
            None
            if self.class_weight is None
            else compute_sample_weight(self.class_weight, y)
        )
        mlp.fit(X, y, sample_weight=sample_weight)
        # Fold the scaler into the first layer: ((x - m) / s) W + b = x (W / s) + b'
        first = mlp.coefs_[0] / scale[:, None]
        self.coefs_ = [first] + [np.asarray(c) for c in mlp.coefs_[1:]]
        self.intercepts_ = [mlp.intercepts_[0] - mean @ first] + [
            np.asarray(b) for b in mlp.intercepts_[1:]
        ]
        self.n_iter_ = int(mlp.n_iter_)
        self.loss_curve_ = np.asarray(mlp.loss_curve_, dtype=np.float64)
        if early_stopping:
            self.validation_scores_ = np.asarray(
                mlp.validation_scores_, dtype=np.float64
            )
            self.best_validation_score_ = float(mlp.best_validation_score_)
        else:
            self.validation_scores_ = None
            self.best_validation_score_ = None
        return self

    def _logits(self, X) -> np.ndarray:
        h = _validate_for_predict(self, X)
        for W, b in zip(self.coefs_[:-1], self.intercepts_[:-1]):
            h = np.maximum(h @ W + b, 0.0)
        return h @ self.coefs_[-1] + self.intercepts_[-1]

    def predict_proba(self, X):
        """Class probabilities, columns in the order of ``classes_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Softmax of the output layer; rows sum to one.
        """
        logits = self._logits(X)
        if logits.shape[1] == 1:
            p = expit(logits[:, 0])
            return np.column_stack([1 - p, p])
        return softmax(logits, axis=1)
