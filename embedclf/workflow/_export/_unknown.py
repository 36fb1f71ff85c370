"""OpenSetClassifier's unknown score as TensorFlow ops, for the exported SavedModel.

Mirrors :func:`embedclf.heads._unknown_scores.compute_scores` and
:func:`embedclf.heads._unknown_fusion.fused_score` in float32 TensorFlow
ops, from the arrays ``head_arrays`` extracts (tested against
``OpenSetClassifier.unknown_score`` in ``tests/workflow/test_export.py``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["KNN_SIMILARITY_SCOPE", "fusion_caps", "react_clipped", "tf_unknown_score"]

#: The name scope of the ``knn`` detector's product with the training vectors.
KNN_SIMILARITY_SCOPE = "knn_similarity"


def fusion_caps(fusion, threshold) -> dict | None:
    """{detector: cap} on each fused column's extension above its reference
    that keeps every decision ``score <= threshold`` (None if none does).

    A column with an extension ``a > 0`` is ``1 + a`` (its value is above
    the whole reference: CDF 1), and the columns are >= 0, so one column
    whose extension exceeds the cap puts the fused score above the threshold
    whatever the others: the mean of ``k`` columns when ``1 + a > k *
    threshold``, the logistic fusion (weights >= 0) when ``coef * (1 + a) +
    intercept > threshold``. The caps add half a column to that bound.
    The int8 TensorFlow Lite export needs them: the extension of an unknown
    photo reaches thousands, and an int8 tensor that holds thousands has no
    steps left near the threshold.
    """
    names = list(fusion["names"])
    if fusion["kind"] != "logistic":
        bound = len(names) * threshold - 1.0
        return {n: max(bound, 0.0) + 0.5 for n in names}
    coef = np.asarray(fusion["coef"], dtype=np.float64)
    if (coef < 0).any():
        return None
    room = threshold - float(fusion["intercept"])
    return {
        n: max(room / c - 1.0, 0.0) + 0.5 if c > 0 else 0.5  # weight 0: no matter
        for n, c in zip(names, coef)
    }


def react_clipped(tf, features, clip: float):
    """ReAct's ``min(features, clip)``, as ``features - relu(features - clip)``.

    TensorFlow Lite's int8 quantizer gives a MINIMUM's input the scale of
    its output, so with ``tf.minimum`` the head's own features were clipped
    at ReAct's clip too: on grocery the int8 export's top-1 agreement with
    the model directory fell from 93.6 % to 83.9 %
    (benchmarks/probes/tflite_open_set_probe.py, ``int8_react_minimum``).
    """
    return features - tf.nn.relu(features - clip)


def tf_unknown_score(tf, score, features, logits, proba, proba_of, bounded=False):
    """OpenSetClassifier.unknown_score in TensorFlow ops (float32).

    ``proba_of`` maps features to class probabilities (for ReAct's clipped
    features). ``bounded``: cap the fused columns (:func:`fusion_caps`), which
    changes the score of far-off photos but no decision.
    """
    state, fusion = score["state"], score["fusion"]
    names = [score["detector"]] if fusion is None else list(fusion["names"])
    const = lambda a: tf.constant(np.asarray(a), tf.float32)  # noqa: E731
    out = {}
    unit = tf.math.l2_normalize(features, axis=1)
    for name in names:
        if name == "max_proba":
            out[name] = 1.0 - tf.reduce_max(proba, axis=1)
        elif name == "react_max_proba":
            clipped = react_clipped(tf, features, float(state["react_clip"]))
            out[name] = 1.0 - tf.reduce_max(proba_of(clipped), axis=1)
        elif name == "max_logit":
            out[name] = -tf.reduce_max(logits, axis=1)
        elif name == "energy":
            out[name] = -tf.reduce_logsumexp(logits, axis=1)
        elif name == "knn":
            k = int(state["knn_k"])
            with tf.name_scope(KNN_SIMILARITY_SCOPE):  # int8 in "mixed"
                sims = tf.matmul(unit, const(state["knn_train"]), transpose_b=True)
            out[name] = 1.0 - tf.math.top_k(sims, k).values[:, k - 1]
        else:
            Z = tf.matmul(unit, const(state["maha_whitening"]))
            means = const(state["maha_means"])
            sq = (
                tf.reduce_sum(Z**2, axis=1, keepdims=True)
                - 2.0 * tf.matmul(Z, means, transpose_b=True)
                + tf.reduce_sum(means**2, axis=1)[None, :]
            )
            out[name] = tf.reduce_min(sq, axis=1)
            if name == "relative_mahalanobis":
                G = tf.matmul(unit, const(state["maha_global_whitening"]))
                G -= const(state["maha_global_mean"])[None, :]
                out[name] -= tf.reduce_sum(G**2, axis=1)
    if fusion is None:
        return out[names[0]]
    caps = fusion_caps(fusion, score["threshold"]) if bounded else None
    cols = []
    for name in names:
        ref, scale = fusion["reference"][name], fusion["scale"][name]
        v = out[name]
        # searchsorted(ref, v, side="right") as a count: TensorFlow Lite has
        # no builtin for searchsorted (UpperBound)
        # (a select, not a cast of the booleans: the int8 export quantizes a
        # select of two constants, a cast from bool is a float op)
        below = tf.where(const(ref)[None, :] <= v[:, None], 1.0, 0.0)
        cdf = tf.reduce_sum(below, axis=1) / len(ref)
        above = tf.maximum(v - float(ref[-1]), 0.0) / scale
        if caps is not None:
            above = tf.minimum(above, caps[name])
        cols.append(cdf + above)  # no extension below: heads/_unknown_fusion.py
    Z = tf.stack(cols, axis=1)
    if fusion["kind"] == "logistic":
        return tf.linalg.matvec(Z, const(fusion["coef"])) + fusion["intercept"]
    return tf.reduce_mean(Z, axis=1)
