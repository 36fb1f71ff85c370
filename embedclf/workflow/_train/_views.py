"""Test-time views: average a head's predictions over cached views of each image.

Each image is predicted from its plain vector and from extra *views*, and the
class probabilities are averaged (the usual test-time augmentation of image
classifiers, e.g. the ten-crop evaluation of AlexNet and Inception). The views
are embedded through ``embedding._augment`` exactly as training views are, so
they are cached and a second prediction of the same images costs no backbone
time:

``"flip"``
    the image mirrored left-right (one extra view);
``"train"``
    the training distortions' views (``copies`` of them, the settings recorded
    at training time);
``"none"``
    the plain image only.
"""

from __future__ import annotations

import numpy as np

__all__ = ["predict_with_views", "TEST_VIEWS", "predict_proba_views", "view_plan"]

TEST_VIEWS = ("none", "flip", "train")


def view_plan(test_views: str, augmentation: dict | None = None):
    """The distortion settings and number of extra views of ``test_views``.

    Parameters
    ----------
    test_views : {"none", "flip", "train"}
    augmentation : dict or None
        The training distortions, as in the manifest's ``augmentation``
        (``copies``, ``random_crop``, ...); needed for ``"train"``.

    Returns
    -------
    settings : Distortions or None
    copies : int
    """
    from embedclf.embedding._augment import MIRROR, Distortions

    if test_views not in TEST_VIEWS:
        raise ValueError(
            f"test_views must be one of {list(TEST_VIEWS)}; got {test_views!r}."
        )
    if test_views == "none":
        return None, 0
    if test_views == "flip":
        return MIRROR, 1
    aug = augmentation or {}
    copies = int(aug.get("copies", 0) or 0)
    if copies == 0:
        raise ValueError(
            "test_views='train' averages over the training distortions' views, "
            "but this model was trained without distortions. Use 'flip', or "
            "train with --random-crop/--random-scale/--random-brightness/"
            "--flip-left-right."
        )
    settings = Distortions(
        float(aug.get("random_crop", 0.0)),
        float(aug.get("random_scale", 0.0)),
        float(aug.get("random_brightness", 0.0)),
        bool(aug.get("flip_left_right", False)),
    )
    return settings, copies


def predict_proba_views(
    head, X, paths, embedder, *, test_views="flip", augmentation=None
):
    """Class probabilities averaged over the plain image and its views.

    Parameters
    ----------
    head : fitted classifier with ``predict_proba``
        Not an open-set classifier (its rejection rule is defined on one
        vector, not on averaged probabilities).
    X : ndarray of shape (n_samples, n_features)
        ``embedder.transform(paths)``: the plain vectors.
    paths : sequence of str
        The image files of the rows of ``X`` (all readable).
    embedder : ImageEmbedder
        The embedder that produced ``X``; views use all its settings
        (backbones, cache, size, filter, crop, normalisation).
    test_views : {"none", "flip", "train"}, default="flip"
    augmentation : dict or None
        The training distortions, for ``"train"`` (see :func:`view_plan`).

    Returns
    -------
    proba : ndarray of shape (n_samples, n_classes)
        Columns follow ``head.classes_``; ``head.classes_[proba.argmax(1)]``
        is the averaged prediction.
    n_computed : int
        Views that went through the backbone (0 when all were cached).

    Examples
    --------
    >>> from embedclf.workflow import predict_proba_views
    >>> proba, _ = predict_proba_views(
    ...     clf, X, paths, embedder, test_views="flip"
    ... )  # doctest: +SKIP
    >>> labels = clf.classes_[proba.argmax(axis=1)]  # doctest: +SKIP
    """
    from embedclf.embedding._augment import embed_views_like

    if getattr(head, "unknown_label", None) is not None:
        raise ValueError(
            "Test-time views are not available for a model with an 'unknown' "
            "rule (its thresholds apply to one image's vector). Use "
            "test_views='none', or train without --unknown."
        )
    proba = head.predict_proba(X)
    settings, copies = view_plan(test_views, augmentation)
    if copies == 0 or len(paths) == 0:
        return proba, 0
    views, source, n_computed = embed_views_like(
        embedder, list(paths), settings=settings, copies=copies
    )
    total = proba.copy()
    np.add.at(total, source, head.predict_proba(views))
    return total / (1 + copies), n_computed


def predict_with_views(head, X, paths, embedder, *, test_views, augmentation):
    """(labels, probabilities) of the rows of ``X``, averaged over test views.

    Labels are strings; with ``test_views="none"`` they are the head's own
    ``predict`` (which may answer "unknown"), else the most probable class of
    the averaged probabilities.
    """
    if len(X) == 0:
        return np.array([], dtype=str), np.zeros((0, len(head.classes_)))
    if test_views == "none":
        return head.predict(X).astype(str), head.predict_proba(X)
    proba, _ = predict_proba_views(
        head, X, paths, embedder, test_views=test_views, augmentation=augmentation
    )
    return np.asarray(head.classes_)[proba.argmax(axis=1)].astype(str), proba
