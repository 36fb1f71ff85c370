"""``explain_predictions``: neighbours and activation maps for predicted rows."""

from __future__ import annotations

import logging

import numpy as np

__all__ = ["explain_misclassified", "explain_predictions", "render_explanations"]

logger = logging.getLogger("embedclf")


def explain_predictions(model_dir, embedder, paths, X, proba, *, k=3, maps=True):
    """Why the head of ``model_dir`` gave ``proba`` to ``paths``.

    Parameters
    ----------
    model_dir : ModelDir
    embedder : ImageEmbedder
        The one that embedded ``paths`` (its cache holds the training vectors).
    paths : sequence of str
    X : ndarray of shape (n, d)
        Their vectors.
    proba : ndarray of shape (n, n_classes)
    k : int, default=3
        Training photos shown per class.
    maps : bool, default=True
        Compute activation maps of the predicted class.

    Returns
    -------
    explanations : list of dict
        Per image ``neighbours`` (see :func:`nearest_training`; None with the
        reason under ``neighbours_reason`` when the model directory records
        no training photos) and ``activation_map`` (see
        :func:`activation_maps`).
    """
    from embedclf.workflow._explain._cam import activation_maps
    from embedclf.workflow._explain._neighbours import nearest_training
    from embedclf.workflow._explain._training_index import (
        read_training_index,
        training_vectors,
    )

    head = model_dir.head
    photos = read_training_index(model_dir)
    neighbours, reason = [None] * len(paths), None
    if photos is None:
        reason = (
            "this model directory records no training photos (trained by an "
            "older embedclf); train it again to see neighbours"
        )
    elif len(paths):
        X_train, ok = training_vectors(photos, embedder)
        if not ok.all():
            logger.warning(
                "%d of %d training photos are neither in the cache nor readable; "
                "neighbours are found among the others",
                int((~ok).sum()),
                len(ok),
            )
        neighbours = nearest_training(
            X, proba, head.classes_, X_train, photos.labels, photos.paths, k=k
        )
    if maps and len(paths):
        cams = activation_maps(
            embedder, head, paths, X, np.argmax(np.asarray(proba), axis=1)
        )
    else:
        cams = [None] * len(paths)
    out = []
    for nb, cam in zip(neighbours, cams):
        item = {"neighbours": nb, "activation_map": cam}
        if reason:
            item["neighbours_reason"] = reason
        out.append(item)
    return out


def render_explanations(explanations, paths, folder, folder_name, *, crop_fraction):
    """HTML snippet per explanation (thumbnails and overlays into ``folder``)."""
    from embedclf.workflow._explain._html import explanation_html, write_overlay
    from embedclf.workflow._thumbnails import write_thumbnails

    photos = [
        p["path"]
        for e in explanations
        if e and e.get("neighbours")
        for key in ("predicted", "runner_up")
        if e["neighbours"].get(key)
        for p in e["neighbours"][key]["photos"]
    ]
    thumbs = write_thumbnails(photos, folder, size=80)
    out = []
    for e, path in zip(explanations, paths):
        if not e:
            out.append("")
            continue
        cam = e.get("activation_map")
        overlay = None
        if cam and cam.get("available"):
            overlay = write_overlay(path, cam, folder, crop_fraction=crop_fraction)
        out.append(
            explanation_html(e.get("neighbours"), cam, thumbs, folder_name, overlay)
        )
    return out


def explain_misclassified(model_dir, embedder, paths, X, proba, y_true, y_pred):
    """Explanations of the misclassified rows, for ``write_report``.

    Returns
    -------
    explanations : dict
        ``items`` (one per row: None where the prediction is right) and
        ``crop_fraction`` (to draw the maps on the part the backbone saw).
    """
    wrong = np.flatnonzero(np.asarray(y_true).astype(str) != np.asarray(y_pred))
    found = explain_predictions(
        model_dir, embedder, [str(paths[i]) for i in wrong], X[wrong], proba[wrong]
    )
    items = [None] * len(paths)
    for i, e in zip(wrong, found):
        items[i] = e
    return {
        "items": items,
        "crop_fraction": model_dir.manifest.get("crop_fraction", 1.0),
    }
