"""scikit-learn's estimator checks on every classifier of the package."""

import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from embedclf import (
    MLPHeadClassifier,
    OpenSetClassifier,
    SoftmaxClassifier,
    SVMClassifier,
)

ESTIMATORS = [
    SoftmaxClassifier(),
    SoftmaxClassifier(standardize=False, C=10.0),
    SoftmaxClassifier(unknown_label=-1, unknown_threshold=0.0),
    SVMClassifier(),
    MLPHeadClassifier(hidden_layer_sizes=32, learning_rate_init=0.01, random_state=0),
    MLPHeadClassifier(
        hidden_layer_sizes=(32, 16),
        early_stopping=False,
        random_state=0,
        unknown_label=-1,
        unknown_threshold=0.0,
    ),
    SVMClassifier(kernel="linear", calibration="isotonic", cv=3),
    OpenSetClassifier(unknown_label=-1),
    OpenSetClassifier(unknown_label=-1, detector=None),
    OpenSetClassifier(unknown_label=-1, detector="mahalanobis", cv=3),
    OpenSetClassifier(
        SoftmaxClassifier(C=0.1),
        detector=None,
        unknown_label=-1,
        probability_threshold=0.2,
        distance="knn",
        metric="cosine",
        cv=3,
    ),
]


def _expected_failed_checks(estimator):
    failures = {}
    if getattr(estimator, "unknown_label", None) is not None:
        failures["check_classifiers_classes"] = (
            "unknown_label is an int here, and fit raises a TypeError on the "
            "check's string labels by design: predictions must not mix strings "
            "and ints."
        )
    if isinstance(estimator, OpenSetClassifier) and estimator.detector is None:
        # The score detectors (the default fusion, Mahalanobis) pass this
        # check on the check's data (Mahalanobis since the threshold folds
        # group near-duplicates within each class; both XPASSed until this
        # was narrowed); the legacy rule rejects enough training points to
        # fail it.
        reason = (
            "predicting unknown_label for training points whose out-of-fold "
            "scores fall under the tuned thresholds is the point of the "
            "estimator (target_recall=0.95), so predict differs from the argmax "
            "of predict_proba there."
        )
        for suffix in [
            "",
            "(readonly_memmap=True)",
            "(readonly_memmap=True,X_dtype=float32)",
        ]:
            failures[f"check_classifiers_train{suffix}"] = reason
    if isinstance(estimator, MLPHeadClassifier) and estimator.early_stopping:
        failures["check_class_weight_classifiers"] = (
            "early stopping holds out 5 of the check's 50 noisy rows; with class "
            "weights 1000 : 0.0001 their weighted accuracy does not improve for "
            "n_iter_no_change epochs, so training stops before the weighted "
            "class is learnt. The early_stopping=False instance passes it."
        )
    if getattr(estimator, "cv", 0) > 3:
        failures["check_fit2d_1feature"] = (
            "the check fits 10 samples in 3 classes (3 per class), fewer than the "
            "cv folds used for calibration / threshold tuning; fit raises a clear "
            "ValueError asking for more images or a lower cv."
        )
    return failures


# detector=None is deprecated (removed in 0.3.0) but still checked until then.
@pytest.mark.filterwarnings("ignore:OpenSetClassifier.detector=None.:FutureWarning")
@parametrize_with_checks(ESTIMATORS, expected_failed_checks=_expected_failed_checks)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
