"""Class activation maps (Zhou et al. 2016), exact or not at all.

With a linear head on a globally average-pooled feature map ``F`` (``H x W``
cells of ``C`` channels), the head's score of class ``c`` is
``w_c . mean_ij F_ij + b_c = mean_ij (w_c . F_ij) + b_c``: the map
``M_c[i, j] = w_c . F_ij`` is exact, its mean plus the bias *is* the score
(its sum is ``H * W`` times the score minus the bias). The map is offered
only when that holds: the backbone exposes the map (``embedding/
_feature_map.py``), the map averages to the vector the head saw (checked on
each image), and the head's scores are ``X @ coef_.T + intercept_`` (checked
too). Otherwise :func:`activation_maps` says why, and nothing is drawn.
"""

from __future__ import annotations

import numpy as np

__all__ = ["activation_maps", "linear_head"]

#: Largest relative difference accepted between the map's average and the vector.
POOLING_TOLERANCE = 1e-3
#: Images whose feature maps are held in memory at once.
BATCH = 32


def linear_head(head, n_features: int):
    """``(coef (n_classes, d), intercept (n_classes,)), None`` or ``None, reason``.

    The head's class scores must be an affine map of the vector (softmax
    heads; the estimator inside an OpenSetClassifier). A binary head's single
    row becomes rows ``[0, w]`` and biases ``[0, b]`` (the logits whose
    softmax is its sigmoid).
    """
    inner = getattr(head, "estimator_", head)
    coef = getattr(inner, "coef_", None)
    intercept = getattr(inner, "intercept_", None)
    if coef is None or intercept is None:
        return None, (
            f"the head ({type(inner).__name__}) is not linear on the pooled vector"
        )
    coef = np.asarray(coef, dtype=np.float64)
    intercept = np.asarray(intercept, dtype=np.float64).ravel()
    if coef.ndim != 2 or coef.shape[1] != n_features:
        return None, "the head's weights do not match the vector"
    if coef.shape[0] == 1:
        coef = np.vstack([np.zeros_like(coef), coef])
        intercept = np.r_[0.0, intercept]
    probe = np.random.default_rng(0).normal(size=(2, n_features))
    scores = np.asarray(inner.decision_function(probe), dtype=np.float64)
    if scores.ndim == 1:
        scores = np.column_stack([np.zeros_like(scores), scores])
    if not np.allclose(scores, probe @ coef.T + intercept, rtol=1e-6, atol=1e-6):
        return None, (
            f"the scores of the head ({type(inner).__name__}) are not "
            "X @ coef_.T + intercept_"
        )
    return (coef, intercept), None


def activation_maps(embedder, head, paths, X, class_indices):
    """The exact activation map of one class per image, or why there is none.

    Parameters
    ----------
    embedder : ImageEmbedder
        The one that made ``X`` (same backbone, size and preprocessing).
    head : classifier
    paths : sequence of str
    X : ndarray of shape (n, d)
        The vectors of ``paths`` the head scored.
    class_indices : sequence of int
        The column of ``head.classes_`` to map for each image.

    Returns
    -------
    maps : list of dict
        Per image ``{"available": True, "label", "grid" (H x W list),
        "bias", "logit"}`` where ``mean(grid) + bias == logit`` is the head's
        score of that class; or ``{"available": False, "reason"}``.
    """
    from embedclf.embedding._feature_map import feature_maps

    X = np.asarray(X, dtype=np.float64)
    linear, reason = linear_head(head, X.shape[1])
    if linear is None:
        return [{"available": False, "reason": reason}] * len(paths)
    classes = [str(c) for c in head.classes_]
    out = []
    for start in range(0, len(paths), BATCH):  # bounded memory: 32 maps at a time
        stop = min(start + BATCH, len(paths))
        fmaps, reason = feature_maps(embedder, list(paths[start:stop]))
        if fmaps is None:
            return [{"available": False, "reason": reason}] * len(paths)
        for i in range(start, stop):
            out.append(
                _one_map(fmaps[i - start], X[i], class_indices[i], linear, classes)
            )
    return out


def _one_map(fmap, x, c, linear, classes) -> dict:
    coef, intercept = linear
    fmap = fmap.astype(np.float64)
    error = np.abs(fmap.mean(axis=(0, 1)) - x).max() / max(np.abs(x).max(), 1e-300)
    if error > POOLING_TOLERANCE:
        return {
            "available": False,
            "reason": "the backbone's feature map does not average to its vector "
            f"(relative difference {error:.1e})",
        }
    grid = fmap @ coef[c]
    return {
        "available": True,
        "label": classes[c],
        "grid": grid.tolist(),
        "bias": float(intercept[c]),
        "logit": float(grid.mean() + intercept[c]),
    }
