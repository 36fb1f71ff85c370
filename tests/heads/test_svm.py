"""SVMClassifier: kernels, calibrated probabilities, agreement, errors."""

import re

import numpy as np
import pytest
from sklearn.datasets import make_blobs, make_circles

from embedclf import SoftmaxClassifier, SVMClassifier


def test_rbf_kernel_separates_what_a_linear_one_cannot():
    X, y = make_circles(300, factor=0.4, noise=0.05, random_state=0)
    X_test, y_test = make_circles(300, factor=0.4, noise=0.05, random_state=1)
    rbf = SVMClassifier(kernel="rbf").fit(X, y).score(X_test, y_test)
    linear = SVMClassifier(kernel="linear").fit(X, y).score(X_test, y_test)
    assert rbf > 0.95
    assert linear < 0.75


@pytest.mark.parametrize("centers", [2, 4])
def test_predict_agrees_with_predict_proba_and_decision_function(centers):
    # overlapping clusters, so that many points sit near a boundary
    X, y = make_blobs(400, n_features=5, centers=centers, cluster_std=4, random_state=0)
    labels = np.array(["ant", "bee", "cat", "dog"])[:centers]
    clf = SVMClassifier(C=0.5).fit(X, labels[y])
    X_new = X + np.random.default_rng(1).normal(0, 2, X.shape)
    proba = clf.predict_proba(X_new)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    pred = clf.predict(X_new)
    assert (pred == clf.classes_[proba.argmax(axis=1)]).all()
    decision = clf.decision_function(X_new)
    if centers == 2:
        assert decision.shape == (400,)
        assert (pred == clf.classes_[(decision > 0).astype(int)]).all()
    else:
        assert (pred == clf.classes_[decision.argmax(axis=1)]).all()
    assert 0.5 < np.max(proba, axis=1).mean() < 0.99  # not saturated: calibrated
    assert clf.score(X, labels[y]) > 0.6


def test_probabilities_are_calibrated():
    X, y = make_blobs(6000, n_features=2, centers=2, cluster_std=2.5, random_state=0)
    X, X_new, y, y_new = X[:2000], X[2000:], y[:2000], y[2000:]
    p = SVMClassifier(kernel="linear").fit(X, y).predict_proba(X_new)[:, 1]
    # in each confidence bin, the observed frequency matches the mean probability
    bins = np.digitize(p, [0.2, 0.4, 0.6, 0.8])
    for b in np.unique(bins):
        in_bin = bins == b
        if in_bin.sum() > 100:
            assert abs(y_new[in_bin].mean() - p[in_bin].mean()) < 0.08


def test_class_weight_survives_calibration():
    X, y = make_blobs(200, n_features=2, centers=2, cluster_std=4, random_state=0)
    plain = SVMClassifier().fit(X, y).predict(X)
    weighted = SVMClassifier(class_weight={0: 20, 1: 1}).fit(X, y).predict(X)
    assert np.mean(weighted == 0) > np.mean(plain == 0) + 0.1


def test_standardize_false_has_no_scaler_and_still_fits():
    X, y = make_blobs(100, n_features=3, centers=2, random_state=0)
    clf = SVMClassifier(standardize=False).fit(X, y)
    assert clf.scaler_ is None and clf.score(X, y) > 0.9
    assert SVMClassifier().fit(X, y).scaler_ is not None


def test_unknown_label_uses_the_shared_rule():
    X, y = make_blobs(300, n_features=4, centers=3, cluster_std=3, random_state=0)
    labels = np.array(["a", "b", "c"])[y]
    clf = SVMClassifier(unknown_label="unknown", unknown_threshold=0.8).fit(X, labels)
    proba = clf.predict_proba(X)
    pred = clf.predict(X)
    low = proba.max(axis=1) < 0.8
    assert 0 < low.sum() < len(X)
    assert (pred[low] == "unknown").all()
    assert (pred[~low] == clf.classes_[proba[~low].argmax(axis=1)]).all()


def test_unknown_label_rows_are_not_a_class():
    X, y = make_blobs(240, n_features=4, centers=3, cluster_std=1.5, random_state=0)
    labels = np.array(["a", "b", "c"])[y]
    X_bg = np.random.default_rng(3).normal(0, 6, (40, 4))
    X_all, y_all = np.r_[X, X_bg], np.r_[labels, ["unknown"] * 40]
    clf = SVMClassifier(unknown_label="unknown").fit(X_all, y_all)
    assert clf.classes_.tolist() == ["a", "b", "c"]
    assert clf.estimator_.classes_.tolist() == ["a", "b", "c"]
    assert clf.predict_proba(X_all).shape == (len(X_all), 3)
    # the same fit as without the background rows (the scaler too)
    ref = SVMClassifier().fit(X, labels)
    np.testing.assert_allclose(clf.scaler_.mean_, ref.scaler_.mean_)
    np.testing.assert_allclose(clf.predict_proba(X_bg), ref.predict_proba(X_bg))


def test_softmax_and_svm_are_comparable_on_the_same_data():
    X, y = make_blobs(600, n_features=16, centers=5, cluster_std=6, random_state=0)
    X, X_new, y, y_new = X[:300], X[300:], y[:300], y[300:]
    scores = [
        c.fit(X, y).score(X_new, y_new) for c in (SVMClassifier(), SoftmaxClassifier())
    ]
    assert min(scores) > 0.9


def test_class_too_small_for_calibration_folds():
    X, y = make_blobs(40, n_features=2, centers=2, random_state=0)
    X, y = np.r_[X, [[0.0, 0.0]] * 3], np.r_[y.astype(str), ["rare"] * 3]
    msg = (
        "SVMClassifier calibrates its probabilities with 5-fold stratified "
        "cross-validation (cv=5), which needs at least 5 samples of every class; "
        "class 'rare' has 3. Add images of that class, or lower cv (at least 2)."
    )
    with pytest.raises(ValueError, match=re.escape(msg)):
        SVMClassifier().fit(X, y)
    assert SVMClassifier(cv=3).fit(X, y).classes_.tolist() == ["0", "1", "rare"]


def test_single_class_and_nan_errors():
    X = np.random.default_rng(0).normal(size=(10, 3))
    msg = "SVMClassifier needs samples of at least 2 classes to fit; got only class 'a'"
    with pytest.raises(ValueError, match=re.escape(msg)):
        SVMClassifier().fit(X, ["a"] * 10)
    X[4] = np.nan
    msg = (
        "Input X contains NaN in 1 of 10 rows (row indices 4); SVMClassifier cannot fit"
    )
    with pytest.raises(ValueError, match=re.escape(msg)):
        SVMClassifier().fit(X, ["a", "b"] * 5)
