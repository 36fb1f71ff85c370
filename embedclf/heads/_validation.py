"""Input checks shared by the classifiers.

Embedding matrices come from :class:`~embedclf.ImageEmbedder`; with
``on_error="nan"`` it writes a row of NaN for every image it could not read.
The helpers here turn such rows, and label vectors that are not class labels,
into errors that say what is wrong and how to fix it.
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
from sklearn.model_selection import check_cv
from sklearn.utils import assert_all_finite
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_is_fitted, validate_data

__all__ = [
    "_check_class_counts",
    "_check_class_labels",
    "_check_cv_splits",
    "_check_n_classes",
    "_check_nan_rows",
    "_label_repr",
    "_validate_embeddings",
]


def _label_repr(value) -> str:
    """``repr`` of a label without numpy's scalar wrapper: 2, not np.int64(2)."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def _check_nan_rows(X: np.ndarray, estimator_name: str, action: str = "fit") -> None:
    """Raise a ValueError naming the rows of ``X`` that contain NaN.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Embedding matrix.
    estimator_name : str
        Class name used in the message.
    action : str, default="fit"
        Method being called, used in the message.

    Raises
    ------
    ValueError
        If any row contains NaN. The message gives how many rows, the first row
        indices, where such rows come from (``ImageEmbedder(on_error="nan")``
        and its ``failed_paths_``) and how to drop them.
    """
    if X.dtype.kind not in "fc":
        return
    nan_rows = np.flatnonzero(np.isnan(X).any(axis=1))
    if nan_rows.size == 0:
        return
    shown = ", ".join(str(i) for i in nan_rows[:5])
    if nan_rows.size > 5:
        shown += ", ..."
    raise ValueError(
        f"Input X contains NaN in {nan_rows.size} of {X.shape[0]} rows "
        f"(row indices {shown}); {estimator_name} cannot {action} on rows "
        "without an embedding. Such rows come from ImageEmbedder(on_error='nan') "
        "for images it could not read; their paths are in the embedder's "
        "failed_paths_ attribute. Drop those rows first, e.g. "
        "keep = ~np.isnan(X).any(axis=1); X, y = X[keep], y[keep]."
    )


def _validate_embeddings(estimator, X, y="no_validation", *, reset, action="fit"):
    """``validate_data`` plus a clear error for NaN rows.

    Parameters
    ----------
    estimator : estimator instance
        The estimator calling, as for ``validate_data``.
    X : array-like of shape (n_samples, n_features)
        Embeddings.
    y : array-like of shape (n_samples,) or "no_validation"
        Labels, or "no_validation" when there are none (predict time).
    reset : bool
        Whether to set ``n_features_in_`` (True in ``fit``).
    action : str, default="fit"
        Method name for the error message.

    Returns
    -------
    X or (X, y)
        As returned by ``validate_data``; X is float64 or float32.
    """
    out = validate_data(
        estimator,
        X,
        y,
        reset=reset,
        dtype=[np.float64, np.float32],
        ensure_all_finite=False,
    )
    X_checked = out if isinstance(y, str) else out[0]
    name = type(estimator).__name__
    _check_nan_rows(X_checked, name, action)
    assert_all_finite(X_checked, input_name="X", estimator_name=name)
    return out


def _validate_for_predict(estimator, X):
    """``check_is_fitted`` then :func:`_validate_embeddings` at predict time."""
    check_is_fitted(estimator)
    return _validate_embeddings(estimator, X, reset=False, action="predict")


def _check_class_labels(y: np.ndarray, estimator_name: str) -> np.ndarray:
    """Check that ``y`` holds class labels that are all strings or all integers.

    Integral floats (``1.0``) count as integers, as in scikit-learn.

    Parameters
    ----------
    y : ndarray of shape (n_samples,)
        Labels, already made 1-d by ``validate_data``.
    estimator_name : str
        Class name used in the messages.

    Returns
    -------
    y : ndarray of shape (n_samples,)
        The same labels.

    Raises
    ------
    TypeError
        If an object array mixes strings and numbers or holds other objects
        (None, floats, tuples).
    ValueError
        If the labels are continuous floats ("Unknown label type: ...", as
        scikit-learn words it) or not a classification target.
    """
    if y.dtype == object:
        is_str = np.array([isinstance(v, str) for v in y], dtype=bool)
        is_int = np.array(
            [isinstance(v, Integral) and not isinstance(v, bool) for v in y],
            dtype=bool,
        )
        if not (is_str.all() or is_int.all()):
            bad = y[~is_str][0] if is_str.any() else y[~is_int][0]
            kinds = sorted({type(v).__name__ for v in y})
            raise TypeError(
                f"{estimator_name} needs class labels that are all strings or all "
                f"integers; got labels of types {kinds}, e.g. {_label_repr(bad)}. "
                "Convert them to one type, e.g. y = np.asarray(y).astype(str)."
            )
    elif y.dtype.kind == "f" and type_of_target(y) == "continuous":
        example = y[np.flatnonzero(y != np.round(y))[0]] if len(y) else None
        raise ValueError(
            f"Unknown label type: 'continuous'. {estimator_name} needs class "
            f"labels that are strings or integers; got float values such as "
            f"{_label_repr(example)}. A classifier cannot fit a continuous target; if "
            "these are class ids, convert them with y.astype(int)."
        )
    check_classification_targets(y)
    return y


def _check_n_classes(classes: np.ndarray, y: np.ndarray, estimator_name: str) -> None:
    """Raise a ValueError when fewer than two classes remain to fit on."""
    if len(classes) >= 2:
        return
    if len(classes) == 0:
        found = "no samples of any class"
    else:
        found = f"only class {_label_repr(classes[0])} ({len(y)} samples)"
    raise ValueError(
        f"{estimator_name} needs samples of at least 2 classes to fit; got "
        f"{found}. Add samples (images) of another class; to flag images unlike "
        "a single class, use an outlier detector instead."
    )


def _check_class_counts(
    y: np.ndarray, classes: np.ndarray, n_splits: int, *, what: str, fix: str
) -> None:
    """Raise a ValueError if a class has fewer than ``n_splits`` samples.

    Parameters
    ----------
    y : ndarray of shape (n_samples,)
        Labels.
    classes : ndarray of shape (n_classes,)
        Classes to count.
    n_splits : int
        Folds of the stratified cross-validation.
    what : str
        Start of the message: who runs the cross-validation and why, e.g.
        "SVMClassifier calibrates its probabilities with".
    fix : str
        Alternatives offered after "Add images of that class, ".
    """
    counts = [(c, int(np.sum(y == c))) for c in classes]
    small = [(c, n) for c, n in counts if n < n_splits]
    if not small:
        return
    label, count = small[0]
    others = f" ({len(small)} classes are too small)" if len(small) > 1 else ""
    raise ValueError(
        f"{what} {n_splits}-fold stratified cross-validation (cv={n_splits}), which "
        f"needs at least {n_splits} samples of every class; class "
        f"{_label_repr(label)} has {count}{others}. Add images of that class, {fix}."
    )


def _check_cv_splits(
    cv,
    y: np.ndarray,
    classes: np.ndarray,
    *,
    name: str,
    purpose: str,
    alternative: str,
    rows: str = "training rows",
):
    """Materialised stratified splits, or a clear error.

    Every class must appear in the training part of every split, or the
    out-of-fold predictions for its samples mean nothing. For an int (or None)
    ``cv`` each class needs at least ``cv`` samples.

    Parameters
    ----------
    cv : int, splitter, iterable or None
        As for ``check_cv``; an int means stratified k-fold.
    y : ndarray of shape (n_samples,)
        Labels.
    classes : ndarray of shape (n_classes,)
        Classes that must be in every training part.
    name : str
        Estimator name for the messages.
    purpose : str
        What the splits are for, e.g. "tune its thresholds".
    alternative : str
        A way to avoid cross-validation, offered last in the messages.
    rows : str, default="training rows"
        What the rows of ``y`` are, for the message about splits that index
        past them.

    Returns
    -------
    splits : list of (train, test) index arrays
    """
    splitter = check_cv(cv, y, classifier=True)
    if cv is None or isinstance(cv, Integral):
        n_splits = splitter.get_n_splits(None, y)
        _check_class_counts(
            y,
            classes,
            n_splits,
            what=f"{name} needs to {purpose} with",
            fix=f"lower cv (at least 2), or {alternative}",
        )
    splits = list(splitter.split(np.zeros((len(y), 1)), y))
    for i, (train, test) in enumerate(splits):
        top = max((int(np.max(p)) for p in (train, test) if len(p)), default=-1)
        if top >= len(y):
            raise ValueError(
                f"{name} cannot {purpose} with the given cv: split {i} indexes row "
                f"{top}, but it cross-validates over the {len(y)} {rows} only. "
                f"Build the splits over those rows, pass an int cv, or {alternative}."
            )
        missing = np.setdiff1d(classes, y[train])
        if missing.size:
            raise ValueError(
                f"{name} cannot {purpose} with cv={cv!r}: the training part of "
                f"split {i} has no sample of class {_label_repr(missing[0])}. Use a "
                f"stratified splitter (e.g. an int cv) or {alternative}."
            )
    return splits


def _validate_training_data(estimator, X, y):
    """The start of every head's ``fit``: checked X and y, known rows only.

    Validates X and y (:func:`_validate_embeddings`, setting
    ``n_features_in_``), checks the labels, drops the rows labelled
    ``estimator.unknown_label``, sets ``estimator.classes_`` and checks that
    at least two classes remain.

    Returns
    -------
    X, y : ndarray
        The rows of the known classes.
    """
    from embedclf.heads._open_set_rules import _known_rows

    X, y = _validate_embeddings(estimator, X, y, reset=True, action="fit")
    name = type(estimator).__name__
    y = _check_class_labels(y, name)
    known = _known_rows(y, estimator.unknown_label, name)
    X, y = X[known], y[known]
    estimator.classes_ = np.unique(y)
    _check_n_classes(estimator.classes_, y, name)
    return X, y


def _standardized(X: np.ndarray, standardize: bool):
    """(X scaled to zero mean and unit variance, mean, scale), as float64.

    With ``standardize=False``, X unchanged with mean 0 and scale 1, so a
    caller can always fold ``(x - mean) / scale`` into its first layer.
    """
    from sklearn.preprocessing import StandardScaler

    X = X.astype(np.float64, copy=False)
    if not standardize:
        return X, np.zeros(X.shape[1]), np.ones(X.shape[1])
    scaler = StandardScaler().fit(X)
    return scaler.transform(X), scaler.mean_, scaler.scale_
