"""MLPHeadClassifier: built on MLPClassifier, curves, open set, skops."""

from __future__ import annotations

import re

import numpy as np
import pytest
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler

from embedclf import MLPHeadClassifier, OpenSetClassifier


@pytest.fixture
def blobs():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 4, (4, 6))
    X = np.vstack(
        [rng.normal(c, 1.0, (40, 6)) * [1, 10, 100, 1, 1, 0.1] for c in centres]
    )
    y = np.repeat(np.array(["a", "b", "c", "d"], dtype="<U8"), 40)
    return X, y


def test_probabilities_are_those_of_sklearns_mlp_on_standardised_features(blobs):
    X, y = blobs
    head = MLPHeadClassifier(hidden_layer_sizes=(16, 8), random_state=3).fit(X, y)
    reference = MLPClassifier(
        hidden_layer_sizes=(16, 8),
        early_stopping=True,
        validation_fraction=0.1,
        n_iter_no_change=10,
        random_state=3,
    )
    scaler = StandardScaler().fit(X)
    reference.fit(scaler.transform(X), y)
    np.testing.assert_allclose(
        head.predict_proba(X), reference.predict_proba(scaler.transform(X)), atol=1e-9
    )
    np.testing.assert_array_equal(
        head.predict(X), reference.predict(scaler.transform(X))
    )
    # The curves are MLPClassifier's, one value per epoch.
    np.testing.assert_allclose(head.loss_curve_, reference.loss_curve_)
    np.testing.assert_allclose(head.validation_scores_, reference.validation_scores_)
    assert len(head.loss_curve_) == head.n_iter_ == reference.n_iter_
    assert head.best_validation_score_ == max(head.validation_scores_)
    assert [c.shape for c in head.coefs_] == [(6, 16), (16, 8), (8, 4)]


def test_binary_uses_one_logistic_unit(blobs):
    X, y = blobs
    keep = np.isin(y, ["a", "b"])
    head = MLPHeadClassifier(
        hidden_layer_sizes=8, early_stopping=False, random_state=0
    ).fit(X[keep], y[keep])
    assert head.coefs_[-1].shape == (8, 1)
    proba = head.predict_proba(X[keep])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert (head.predict(X[keep]) == y[keep]).mean() > 0.9


def test_without_early_stopping_there_is_no_validation_curve(blobs):
    X, y = blobs
    head = MLPHeadClassifier(
        hidden_layer_sizes=8, early_stopping=False, max_iter=30, random_state=0
    )
    with pytest.warns(UserWarning, match="Maximum iterations"):
        head.fit(X, y)
    assert head.validation_scores_ is None and head.n_iter_ == 30


def test_early_stopping_that_cannot_hold_every_class_warns(blobs):
    X, y = blobs
    y = y.copy()
    y[0] = "lonely"
    msg = (
        "MLPHeadClassifier trains without early stopping (class 'lonely' has a "
        "single training sample"
    )
    with pytest.warns(UserWarning, match=re.escape(msg)):
        head = MLPHeadClassifier(hidden_layer_sizes=8, random_state=0).fit(X, y)
    assert "lonely" in head.classes_ and head.validation_scores_ is None


def test_unknown_label_rows_stay_out_and_low_confidence_is_unknown(blobs):
    X, y = blobs
    y = y.copy()
    y[:40] = "unknown"
    head = MLPHeadClassifier(
        hidden_layer_sizes=16,
        random_state=0,
        unknown_label="unknown",
        unknown_threshold=0.99,
    ).fit(X, y)
    assert list(head.classes_) == ["b", "c", "d"]
    pred = head.predict(X)
    low = head.predict_proba(X).max(axis=1) < 0.99
    assert low.any() and (pred[low] == "unknown").all()
    assert (pred[~low] != "unknown").all()


def test_open_set_wrapper_accepts_it(blobs):
    X, y = blobs
    model = OpenSetClassifier(
        MLPHeadClassifier(hidden_layer_sizes=8, random_state=0),
        unknown_label="unknown",
        cv=3,
    ).fit(X, y)
    far = np.full((1, X.shape[1]), 1e4)
    assert model.predict(far)[0] == "unknown"


def test_bad_hidden_layer_sizes():
    X, y = np.zeros((4, 2)), np.array([0, 1, 0, 1])
    with pytest.raises(
        ValueError, match=re.escape("must be a positive int or a non-empty")
    ):
        MLPHeadClassifier(hidden_layer_sizes=(4, 0)).fit(X, y)


def test_skops_round_trip_trusts_only_this_class(blobs, tmp_path):
    import skops.io as sio

    X, y = blobs
    head = MLPHeadClassifier(hidden_layer_sizes=8, random_state=0).fit(X, y)
    sio.dump(head, tmp_path / "head.skops")
    untrusted = sio.get_untrusted_types(file=tmp_path / "head.skops")
    assert untrusted == ["embedclf.heads._mlp.MLPHeadClassifier"]
    loaded = sio.load(tmp_path / "head.skops", trusted=untrusted)
    np.testing.assert_array_equal(loaded.predict_proba(X), head.predict_proba(X))
