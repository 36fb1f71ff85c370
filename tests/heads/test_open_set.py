"""OpenSetClassifier and the shared "unknown" rule, on Gaussian-cluster embeddings.

Two known classes sit at +-4 on the first axis of a 32-d space (unit noise).
Three kinds of unknown samples probe the two scores:

- "other": a third class off to the side, unlike both (both scores catch it);
- "between": halfway between the known classes, where the classifier is unsure
  (only the probability score catches it);
- "beyond": past class "a", where the classifier is very sure but no training
  sample lives (only the distance score catches it).
"""

import re
import warnings

import numpy as np
import pytest
from sklearn.model_selection import KFold, StratifiedKFold

from embedclf import OpenSetClassifier, SoftmaxClassifier, SVMClassifier
from embedclf.heads._open_set_rules import _open_set_decision, _tune_thresholds

# The 0.1.0 rule these tests pin is deprecated (FutureWarning in fit, removed
# in 0.3.0); test_the_legacy_rule_is_deprecated checks the warning itself.
pytestmark = pytest.mark.filterwarnings(
    "ignore:OpenSetClassifier.detector=None.:FutureWarning"
)

DIM = 32


def cluster(center, n, seed):
    c = np.zeros(DIM)
    c[: len(center)] = center
    return np.random.default_rng(seed).normal(c, 1.0, (n, DIM))


@pytest.fixture(scope="module")
def data():
    X_train = np.r_[cluster([4], 300, 0), cluster([-4], 300, 1)]
    y_train = np.repeat(["a", "b"], 300)
    X_known = np.r_[cluster([4], 2000, 2), cluster([-4], 2000, 3)]
    y_known = np.repeat(["a", "b"], 2000)
    unknown = {
        "other": cluster([0, 8], 1000, 4),
        "between": cluster([0], 1000, 5),
        "beyond": cluster([14], 1000, 6),
    }
    return X_train, y_train, X_known, y_known, unknown


def _legacy(*args, **kwargs):
    """The two-threshold rule of 0.1.0, which these tests pin."""
    return OpenSetClassifier(*args, detector=None, **kwargs)


def unknown_rate(clf, X):
    return np.mean(clf.predict(X) == "unknown")


@pytest.mark.parametrize("target_recall", [0.9, 0.95])
def test_third_class_is_unknown_and_tuned_recall_holds(data, target_recall):
    X_train, y_train, X_known, y_known, unknown = data
    clf = _legacy(target_recall=target_recall).fit(X_train, y_train)
    assert clf.classes_.tolist() == ["a", "b"]
    assert clf.known_recall_ >= target_recall

    pred = clf.predict(X_known)
    held_out_recall = np.mean(pred != "unknown")
    assert abs(held_out_recall - target_recall) <= 0.03
    # accepted known samples get the right class; unknown counts as wrong here
    assert np.mean(pred == y_known) >= target_recall - 0.03
    assert unknown_rate(clf, unknown["other"]) >= 0.95
    assert clf.predict_proba(unknown["other"]).shape == (1000, 2)


def test_each_score_catches_what_the_other_misses(data):
    X_train, y_train, _, _, unknown = data
    both = _legacy().fit(X_train, y_train)
    proba_only = _legacy(distance_threshold=None).fit(X_train, y_train)
    dist_only = _legacy(probability_threshold=None).fit(X_train, y_train)

    # past class "a" the classifier is sure: only the distance notices
    assert unknown_rate(proba_only, unknown["beyond"]) < 0.1
    assert unknown_rate(both, unknown["beyond"]) >= 0.95
    # halfway between, the distance is ordinary: only the probability notices
    assert unknown_rate(dist_only, unknown["between"]) < 0.6
    assert unknown_rate(both, unknown["between"]) >= 0.85

    assert proba_only.distance_model_ is None and proba_only.distance_threshold_ is None
    assert dist_only.probability_threshold_ is None


@pytest.mark.parametrize(
    "params",
    [
        {"distance": "knn", "n_neighbors": 3},
        {"metric": "cosine", "distance": "knn"},
        {"estimator": SVMClassifier(kernel="linear"), "cv": 3},
    ],
)
def test_other_distances_and_estimators(data, params):
    X_train, y_train, X_known, _, unknown = data
    clf = _legacy(**params).fit(X_train, y_train)
    assert abs(np.mean(clf.predict(X_known) != "unknown") - 0.95) <= 0.03
    assert unknown_rate(clf, unknown["other"]) >= 0.95


def test_predict_follows_the_documented_rule(data):
    X_train, y_train, X_known, _, unknown = data
    clf = _legacy().fit(X_train, y_train)
    X = np.r_[X_known[::20], unknown["between"][::10], unknown["beyond"][::10]]
    scores = clf.open_set_scores(X)
    proba = clf.predict_proba(X)
    np.testing.assert_allclose(scores.max_proba, proba.max(axis=1))
    known = (scores.max_proba >= clf.probability_threshold_) & (
        scores.distance <= clf.distance_threshold_
    )
    expected = np.where(known, clf.classes_[proba.argmax(axis=1)], "unknown")
    assert 0 < known.sum() < len(X)
    assert clf.predict(X).tolist() == expected.tolist()


def test_given_thresholds_are_used_as_is(data):
    X_train, y_train, X_known, _, _ = data
    clf = _legacy(probability_threshold=0.999, distance_threshold=6.0)
    clf.fit(X_train, y_train)
    assert (clf.probability_threshold_, clf.distance_threshold_) == (0.999, 6.0)
    assert clf.known_recall_ is None  # nothing tuned
    s = clf.open_set_scores(X_known)
    expected = np.mean((s.max_proba >= 0.999) & (s.distance <= 6.0))
    assert np.mean(clf.predict(X_known) != "unknown") == expected


def test_fixed_threshold_then_auto_one(data):
    X_train, y_train, _, _, _ = data
    clf = _legacy(probability_threshold=0.5, target_recall=0.9)
    clf.fit(X_train, y_train)
    assert clf.probability_threshold_ == 0.5
    assert 0.9 <= clf.known_recall_ < 0.91

    msg = (
        "The fixed threshold alone accepts 0.0% of the known training samples, "
        "below target_recall=0.9; the tuned threshold accepts every sample that "
        "passes it. Lower the fixed threshold or set it to 'auto'."
    )
    with pytest.warns(UserWarning, match=re.escape(msg)):
        _legacy(probability_threshold=1.0, target_recall=0.9).fit(X_train, y_train)


def test_unknown_training_rows_are_background_not_a_class(data):
    X_train, y_train, _, _, unknown = data
    X_bg = unknown["other"][:100]
    X = np.r_[X_train, X_bg]
    y = np.r_[y_train, ["unknown"] * 100]
    clf = _legacy().fit(X, y)
    assert clf.classes_.tolist() == ["a", "b"]
    assert clf.unknown_recall_ >= 0.95
    # they do not move the thresholds, which are tuned on known samples only
    ref = _legacy().fit(X_train, y_train)
    assert clf.probability_threshold_ == ref.probability_threshold_
    assert clf.distance_threshold_ == ref.distance_threshold_
    assert ref.unknown_recall_ is None
    # score() counts a background sample as right when predicted "unknown"
    assert clf.score(X, y) > 0.9


def test_integer_labels_and_integer_unknown_label(data):
    X_train, y_train, X_known, _, unknown = data
    y_int = (y_train == "b").astype(int)
    clf = _legacy(unknown_label=-1).fit(X_train, y_int)
    pred = clf.predict(np.r_[X_known[:50], unknown["other"][:50]])
    assert pred.dtype.kind == "i"
    assert set(pred[50:]) == {-1} and -1 not in clf.classes_


def test_decision_rule_keeps_the_full_unknown_label():
    classes = np.array(["a", "b"])
    proba = np.array([[0.9, 0.1], [0.4, 0.6], [0.55, 0.45]])
    out = _open_set_decision(classes, proba, "unknown", probability_threshold=0.58)
    assert out.tolist() == ["a", "b", "unknown"]
    dist = np.array([1.0, 5.0, 0.5])
    out = _open_set_decision(
        classes, proba, "unknown", distances=dist, distance_threshold=2.0
    )
    assert out.tolist() == ["a", "unknown", "a"]
    assert _open_set_decision(classes, proba, None).tolist() == ["a", "b", "a"]


@pytest.mark.parametrize("k", [1, 2, 3])
def test_tune_thresholds_reaches_target_recall_tightly(k):
    scores = np.random.default_rng(k).normal(size=(500, k))
    for target in (0.5, 0.9, 0.95, 1.0):
        thresholds, recall = _tune_thresholds(scores, target)
        accepted = (scores >= thresholds).all(axis=1)
        assert recall == accepted.mean()
        assert target <= recall <= target + k / 500
        # all columns are cut at the same quantile level
        levels = [np.mean(scores[:, j] < thresholds[j]) for j in range(k)]
        assert np.ptp(levels) <= 1 / 500


def test_class_with_one_image_under_stratified_cv(data):
    X_train, y_train, _, _, _ = data
    X = np.r_[X_train, cluster([0, 0, 9], 1, 7)]
    y = np.r_[y_train, ["lonely"]]
    msg = (
        "OpenSetClassifier needs to tune its thresholds with 5-fold stratified "
        "cross-validation (cv=5), which needs at least 5 samples of every class; "
        "class 'lonely' has 1. Add images of that class, lower cv (at least 2), "
        "or give probability_threshold and distance_threshold as numbers so that "
        "nothing is tuned."
    )
    with pytest.raises(ValueError, match=re.escape(msg)):
        _legacy().fit(X, y)
    # the suggested way out: fixed thresholds need no cross-validation
    clf = _legacy(probability_threshold=0.5, distance_threshold=8.0)
    assert clf.fit(X, y).classes_.tolist() == ["a", "b", "lonely"]


def test_non_stratified_cv_that_drops_a_class(data):
    X_train, y_train, _, _, _ = data  # sorted by class: KFold holds out a class
    msg = (
        "OpenSetClassifier cannot tune its thresholds with cv=KFold(n_splits=2, "
        "random_state=None, shuffle=False): the training part of split 0 has no "
        "sample of class 'a'. Use a stratified splitter (e.g. an int cv) or give "
        "probability_threshold and distance_threshold as numbers so that nothing "
        "is tuned."
    )
    with pytest.raises(ValueError, match=re.escape(msg)):
        _legacy(cv=KFold(2)).fit(X_train, y_train)


@pytest.mark.parametrize(
    "detector, purpose, alternative",
    [
        (
            None,
            "tune its thresholds",
            "give probability_threshold and distance_threshold as numbers",
        ),
        ("fusion", "tune its unknown threshold", "give score_threshold as a number"),
    ],
)
def test_given_splits_over_all_rows_get_a_clear_error(
    data, detector, purpose, alternative
):
    # Folds built over every row, "unknown" ones included, index past the
    # known rows that OpenSetClassifier cross-validates over.
    X_train, y_train, _, _, unknown = data
    X = np.r_[X_train, unknown["other"][:60]]
    y = np.r_[y_train, ["unknown"] * 60]
    splits = list(StratifiedKFold(3, shuffle=True, random_state=0).split(X, y))
    msg = f"OpenSetClassifier cannot {purpose} with the given cv: split 0 indexes row 6"
    with pytest.raises(ValueError, match=re.escape(msg)) as info:
        OpenSetClassifier(detector=detector, cv=splits).fit(X, y)
    assert (
        "but it cross-validates over the 600 training rows not labelled "
        "'unknown' only. Build the splits over those rows, pass an int cv, or "
        f"{alternative}"
    ) in str(info.value)
    known = y != "unknown"
    splits = list(StratifiedKFold(3).split(X[known], y[known]))
    fitted = OpenSetClassifier(detector=detector, cv=splits).fit(X, y)
    assert fitted.classes_.tolist() == ["a", "b"]


def test_single_known_class_error(data):
    X_train, y_train, _, _, _ = data
    y = np.where(y_train == "a", "a", "unknown")
    msg = (
        "OpenSetClassifier needs samples of at least 2 classes to fit; got only "
        "class 'a' (300 samples)."
    )
    with pytest.raises(ValueError, match=re.escape(msg)):
        _legacy().fit(X_train, y)


def test_estimator_without_predict_proba():
    from sklearn.svm import LinearSVC

    X = cluster([0], 20, 0)
    y = np.repeat(["a", "b"], 10)
    msg = (
        "OpenSetClassifier needs an estimator with predict_proba; got LinearSVC(). "
        "Use SoftmaxClassifier, SVMClassifier or wrap the model in "
        "sklearn.calibration.CalibratedClassifierCV."
    )
    with pytest.raises(TypeError, match=re.escape(msg)):
        _legacy(LinearSVC()).fit(X, y)


def test_default_estimator_is_a_fresh_softmax(data):
    X_train, y_train, _, _, _ = data
    clf = _legacy().fit(X_train, y_train)
    assert isinstance(clf.estimator_, SoftmaxClassifier) and clf.estimator is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings(
            "ignore", r"OpenSetClassifier\(detector=None\)", FutureWarning
        )
        _legacy(SoftmaxClassifier(C=0.1), cv=3).fit(X_train, y_train)


@pytest.mark.tf
def test_images_of_other_classes_come_back_unknown(tiny_model_dir, tmp_path):
    from conftest import make_image_folder
    from sklearn.pipeline import make_pipeline

    from embedclf import ImageEmbedder, load_image_folder

    # an "unknown" background folder, as the retrain tutorial suggests
    train = load_image_folder(
        make_image_folder(tmp_path / "train", ("red", "green", "unknown"), 30)
    )
    test = load_image_folder(
        make_image_folder(tmp_path / "test", ("red", "green", "blue", "yellow"), 20, 1)
    )
    pipe = make_pipeline(ImageEmbedder(model=str(tiny_model_dir)), OpenSetClassifier())
    pipe.fit(train.paths, train.target_names[train.target])
    clf = pipe[-1]
    assert clf.classes_.tolist() == ["green", "red"]
    assert clf.unknown_recall_ >= 0.9

    pred = pipe.predict(test.paths)
    truth = test.target_names[test.target]
    new = np.isin(truth, ["blue", "yellow"])
    assert np.mean(pred[new] == "unknown") >= 0.9
    assert np.mean(pred[~new] == truth[~new]) >= 0.85


@pytest.mark.filterwarnings("error::FutureWarning")
def test_the_legacy_rule_is_deprecated(data):
    X_train, y_train, *_ = data
    with pytest.warns(FutureWarning, match=r"removed in 0\.3\.0") as caught:
        _legacy().fit(X_train, y_train)
    assert caught[0].filename == __file__  # points at the caller of fit
    msg = "distance apply only to the deprecated detector=None rule"
    with pytest.warns(FutureWarning, match=re.escape(msg)):
        OpenSetClassifier(distance="knn").fit(X_train, y_train)
    OpenSetClassifier(detector="max_proba", score_threshold=0.5).fit(X_train, y_train)
