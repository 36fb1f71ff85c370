"""SoftmaxClassifier: folded standardisation, probabilities, labels and errors."""

import pickle
import re

import numpy as np
import pytest
import skops.io as sio
from scipy.special import softmax
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import InvalidParameterError

from embedclf import SoftmaxClassifier


def blobs(n_classes=3, n_per_class=40, dim=8, seed=0, spread=1.0, labels=None):
    """Gaussian clusters with very unequal feature scales, like CNN features."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 3, (n_classes, dim))
    X = np.concatenate([rng.normal(c, spread, (n_per_class, dim)) for c in centers])
    X *= np.logspace(-2, 2, dim)  # feature scales from 0.01 to 100
    y = np.repeat(np.arange(n_classes), n_per_class)
    if labels is not None:
        y = np.asarray(labels)[y]
    return X, y


@pytest.mark.parametrize("n_classes", [2, 4])
def test_coef_intercept_are_in_the_original_feature_space(n_classes):
    X, y = blobs(n_classes, spread=3.0)
    clf = SoftmaxClassifier(C=0.5, standardize=True).fit(X, y)
    X_new, _ = blobs(n_classes, seed=1, spread=3.0)
    logits = X_new @ clf.coef_.T + clf.intercept_
    expected_shape = (len(X_new),) if n_classes == 2 else (len(X_new), n_classes)
    assert clf.decision_function(X_new).shape == expected_shape
    np.testing.assert_allclose(clf.decision_function(X_new), logits.squeeze())

    # the same model as scaler + LogisticRegression, just folded together
    ref = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=1000))
    ref.fit(X, y)
    np.testing.assert_allclose(
        clf.decision_function(X_new), ref.decision_function(X_new), rtol=1e-6, atol=1e-8
    )
    np.testing.assert_allclose(
        clf.predict_proba(X_new), ref.predict_proba(X_new), rtol=1e-6, atol=1e-10
    )


def test_standardisation_makes_the_fit_scale_invariant():
    X, y = blobs(3, spread=3.0)
    X /= np.logspace(-2, 2, X.shape[1])  # undo the built-in feature scales
    scales = np.logspace(-1, 1, X.shape[1])
    std = SoftmaxClassifier(standardize=True)
    p = std.fit(X, y).predict_proba(X)
    p_scaled = std.fit(X * scales, y).predict_proba(X * scales)
    np.testing.assert_allclose(p, p_scaled, rtol=1e-5, atol=1e-8)
    # without it, the same rescaling changes the model
    q = SoftmaxClassifier(standardize=False).fit(X, y).predict_proba(X)
    q_scaled = SoftmaxClassifier(standardize=False).fit(X * scales, y)
    assert np.abs(q - q_scaled.predict_proba(X * scales)).max() > 1e-3


def test_default_head_is_plain_logistic_regression():
    # issue 13: the default head is never beaten by the plain scikit-learn
    # probe on the same vectors, because it is that probe (standardisation off)
    X, y = blobs(3, spread=3.0)
    X /= np.logspace(-2, 2, X.shape[1])
    ref = LogisticRegression(max_iter=1000).fit(X, y)
    clf = SoftmaxClassifier().fit(X, y)
    np.testing.assert_allclose(
        clf.predict_proba(X), ref.predict_proba(X), rtol=1e-6, atol=1e-10
    )


def test_probabilities_are_softmax_of_logits_and_predict_is_argmax():
    X, y = blobs(4, spread=4.0, labels=["ant", "bee", "cat", "dog"])
    clf = SoftmaxClassifier(C=0.1, standardize=True).fit(X, y)
    proba = clf.predict_proba(X)
    np.testing.assert_allclose(proba, softmax(clf.decision_function(X), axis=1))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_allclose(np.exp(clf.predict_log_proba(X)), proba)
    assert clf.classes_.tolist() == ["ant", "bee", "cat", "dog"]
    assert (clf.predict(X) == clf.classes_[proba.argmax(axis=1)]).all()
    assert 0.6 < clf.score(X, y) < 1.0  # noisy enough that some are wrong


def test_binary_probabilities_follow_classes_order():
    X, y = blobs(2, spread=4.0, labels=["no", "yes"])
    clf = SoftmaxClassifier().fit(X, y)
    proba = clf.predict_proba(X)
    np.testing.assert_allclose(proba[:, 1], 1 / (1 + np.exp(-clf.decision_function(X))))
    np.testing.assert_allclose(np.exp(clf.predict_log_proba(X)), proba)
    assert (clf.predict(X) == np.where(clf.decision_function(X) > 0, "yes", "no")).all()


def test_smaller_C_regularises_more():
    X, y = blobs(3, spread=3.0)
    norms = [
        np.linalg.norm(
            SoftmaxClassifier(C=C, standardize=True).fit(X, y).coef_ * X.std(axis=0)
        )
        for C in (0.001, 0.1, 10.0)
    ]
    assert norms[0] < norms[1] < norms[2]


def test_class_weight_balanced_raises_minority_recall():
    rng = np.random.default_rng(0)
    X = np.r_[rng.normal(0, 1, (300, 4)), rng.normal(1.0, 1, (20, 4))]
    y = np.r_[np.zeros(300, int), np.ones(20, int)]
    recall = {
        cw: np.mean(
            SoftmaxClassifier(class_weight=cw).fit(X, y).predict(X)[y == 1] == 1
        )
        for cw in (None, "balanced")
    }
    assert recall["balanced"] > recall[None] + 0.3


def test_unknown_label_rows_are_not_a_class_and_low_confidence_is_unknown():
    X, y = blobs(2, spread=2.0, labels=["cat", "dog"])
    rng = np.random.default_rng(3)
    X_bg = rng.normal(0, 1, (15, X.shape[1])) * X.std(axis=0)
    X_all = np.r_[X, X_bg]
    y_all = np.r_[y, ["unknown"] * 15]

    clf = SoftmaxClassifier(
        unknown_label="unknown", unknown_threshold=0.9, standardize=True
    )
    clf.fit(X_all, y_all)
    assert clf.classes_.tolist() == ["cat", "dog"]
    assert clf.predict_proba(X_all).shape == (len(X_all), 2)
    # same fit as without the background rows
    ref = SoftmaxClassifier(standardize=True).fit(X, y)
    np.testing.assert_allclose(clf.coef_, ref.coef_)

    pred = clf.predict(X_all)
    low = clf.predict_proba(X_all).max(axis=1) < 0.9
    assert 0 < low.sum() < len(X_all)
    assert (pred[low] == "unknown").all()
    assert (pred[~low] == clf.classes_[clf.predict_proba(X_all[~low]).argmax(1)]).all()
    assert pred.dtype == np.dtype("<U7")  # "unknown" is not cut to "unk"

    never = SoftmaxClassifier(unknown_label="unknown", unknown_threshold=0.0)
    assert "unknown" not in never.fit(X_all, y_all).predict(X_all)


def test_int_unknown_label_with_int_classes():
    X, y = blobs(3, spread=4.0)
    clf = SoftmaxClassifier(unknown_label=-1, unknown_threshold=0.8, standardize=True)
    clf.fit(X, y)
    pred = clf.predict(X)
    assert pred.dtype.kind == "i" and -1 in pred
    assert clf.score(X, y) < SoftmaxClassifier(standardize=True).fit(X, y).score(X, y)


def test_pickle_and_skops_round_trip():
    X, y = blobs(3, labels=["a", "b", "c"])
    clf = SoftmaxClassifier().fit(X, y)
    data = sio.dumps(clf)
    # fitted state is plain numpy: skops has only our class to ask about
    assert sio.get_untrusted_types(data=data) == [
        "embedclf.heads._linear.SoftmaxClassifier"
    ]
    for restored in (
        pickle.loads(pickle.dumps(clf)),
        sio.loads(data, trusted=["embedclf.heads._linear.SoftmaxClassifier"]),
    ):
        np.testing.assert_array_equal(restored.predict_proba(X), clf.predict_proba(X))
        np.testing.assert_array_equal(restored.predict(X), clf.predict(X))


def test_single_class_error():
    X, y = blobs(1)
    msg = (
        "SoftmaxClassifier needs samples of at least 2 classes to fit; got only "
        "class 0 (40 samples). Add samples (images) of another class; to flag "
        "images unlike a single class, use an outlier detector instead."
    )
    with pytest.raises(ValueError, match=re.escape(msg)):
        SoftmaxClassifier().fit(X, y)
    # a single class left once the unknown rows are set aside
    y_mixed = np.where(np.arange(len(y)) < 10, "unknown", "cat")
    msg = "got only class 'cat' (30 samples)."
    with pytest.raises(ValueError, match=re.escape(msg)):
        SoftmaxClassifier(unknown_label="unknown").fit(X, y_mixed)


def test_nan_rows_error_names_rows_and_failed_paths():
    X, y = blobs(2)
    X[[3, 17, 41], 2] = np.nan
    msg = (
        "Input X contains NaN in 3 of 80 rows (row indices 3, 17, 41); "
        "SoftmaxClassifier cannot fit on rows without an embedding. Such rows "
        "come from ImageEmbedder(on_error='nan') for images it could not read; "
        "their paths are in the embedder's failed_paths_ attribute. Drop those "
        "rows first, e.g. keep = ~np.isnan(X).any(axis=1); X, y = X[keep], y[keep]."
    )
    with pytest.raises(ValueError, match=re.escape(msg)):
        SoftmaxClassifier().fit(X, y)

    clf = SoftmaxClassifier().fit(*blobs(2))
    X_many = np.full((9, X.shape[1]), np.nan)
    msg = "Input X contains NaN in 9 of 9 rows (row indices 0, 1, 2, 3, 4, ...); "
    with pytest.raises(
        ValueError, match=re.escape(msg + "SoftmaxClassifier cannot predict")
    ):
        clf.predict(X_many)


def test_inf_keeps_scikit_learn_message():
    X, y = blobs(2)
    X[0, 0] = np.inf
    with pytest.raises(ValueError, match=re.escape("Input X contains infinity")):
        SoftmaxClassifier().fit(X, y)


@pytest.mark.parametrize(
    "y, error, msg",
    [
        (
            np.linspace(0, 1, 80),
            ValueError,
            "Unknown label type: 'continuous'. SoftmaxClassifier needs class labels "
            "that are strings or integers; got float values such as 0.0126582278481",
        ),
        (
            np.array(["a", 1] * 40, dtype=object),
            TypeError,
            "SoftmaxClassifier needs class labels that are all strings or all "
            "integers; got labels of types ['int', 'str'], e.g. 1. Convert them to "
            "one type, e.g. y = np.asarray(y).astype(str).",
        ),
        (
            np.array([None, "a"] * 40, dtype=object),
            TypeError,
            "got labels of types ['NoneType', 'str'], e.g. None.",
        ),
        (
            np.array([(1, 2), (3, 4)] * 40 + [None], dtype=object)[:-1],
            TypeError,
            "got labels of types ['tuple'], e.g. (1, 2).",
        ),
    ],
)
def test_labels_that_are_not_strings_or_ints(y, error, msg):
    X, _ = blobs(2)
    with pytest.raises(error, match=re.escape(msg)):
        SoftmaxClassifier().fit(X, y)


def test_integral_float_labels_are_accepted():
    X, y = blobs(2)
    clf = SoftmaxClassifier().fit(X, y.astype(float))
    assert clf.classes_.tolist() == [0.0, 1.0]


def test_unknown_label_type_must_match_labels():
    X, y = blobs(2)
    msg = (
        "SoftmaxClassifier got unknown_label='unknown' but the class labels in y are "
        "integers; predictions would mix the two types. Use an integer "
        "unknown_label such as -1, or string class labels (e.g. y = "
        "data.target_names[data.target])."
    )
    with pytest.raises(TypeError, match=re.escape(msg)):
        SoftmaxClassifier(unknown_label="unknown").fit(X, y)
    msg = "got unknown_label=-1 but the class labels in y are strings;"
    with pytest.raises(TypeError, match=re.escape(msg)):
        SoftmaxClassifier(unknown_label=-1).fit(X, np.array(["a", "b"])[y])


def test_invalid_parameters_are_rejected_by_the_constraints():
    X, y = blobs(2)
    with pytest.raises(InvalidParameterError, match=re.escape("The 'C' parameter")):
        SoftmaxClassifier(C=0).fit(X, y)
    with pytest.raises(InvalidParameterError, match="'unknown_threshold' parameter"):
        SoftmaxClassifier(unknown_threshold=1.5).fit(X, y)


def test_fit_limits_blas_threads_only_while_fitting():
    from threadpoolctl import threadpool_info, threadpool_limits

    X, y = blobs(3)
    with threadpool_limits(limits=2, user_api="blas"):
        before = [
            p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"
        ]
        SoftmaxClassifier().fit(X, y)
        after = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
    assert after == before
