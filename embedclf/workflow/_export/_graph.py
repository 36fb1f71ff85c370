"""What the SavedModel and TensorFlow Lite exports share: the graph after the pixels.

:func:`head_arrays` takes the exportable arrays out of a fitted head (or says
why it cannot be exported), :func:`prepare_export` checks the model
directory and loads its backbones, :func:`make_head` builds the TensorFlow
ops from the backbone(s) to the probabilities and the open-set decision.
"""

from __future__ import annotations

import logging

import numpy as np

from embedclf.exceptions import ModelDirError
from embedclf.workflow._export._unknown import tf_unknown_score

__all__ = [
    "OPEN_SET_SCOPE",
    "head_arrays",
    "known_from_margin",
    "make_head",
    "open_set_rule",
    "prepare_export",
]

#: The name scope of the open-set rule's ops in the exported graph.
OPEN_SET_SCOPE = "open_set"


def head_arrays(head) -> dict:
    """The exportable parameters of a fitted head, or a clear error.

    Returns
    -------
    params : dict
        ``layers`` (a list of (weights (n_in, n_out), biases (n_out,)): ReLU
        between them, softmax or sigmoid after the last), ``classes``, and for an
        open-set head ``unknown_label``, ``probability_threshold``,
        ``centroids``, ``metric`` and ``distance_threshold`` (None when unused).
    """
    params = {
        "unknown_label": None,
        "probability_threshold": None,
        "centroids": None,
        "metric": "euclidean",
        "distance_threshold": None,
    }
    inner = head
    params["score"] = None
    if getattr(head, "detector_", None) is not None:
        inner = head.estimator_
        params["unknown_label"] = str(head.unknown_label)
        params["score"] = {
            "detector": head.detector_,
            "threshold": float(head.unknown_threshold_),
            "state": head.score_state_,
            "fusion": head.fusion_,
        }
    elif hasattr(head, "estimator_") and hasattr(head, "probability_threshold_"):
        inner = head.estimator_
        params["unknown_label"] = str(head.unknown_label)
        params["probability_threshold"] = head.probability_threshold_
        if head.distance_model_ is not None:
            if not hasattr(head.distance_model_, "centroids_"):
                raise ModelDirError(
                    "The open-set rule of this model uses the 'knn' distance, "
                    "which cannot be exported (SavedModel or TensorFlow Lite). "
                    "Train with the default centroid distance to export it."
                )
            params["centroids"] = np.asarray(head.distance_model_.centroids_)
            params["metric"] = head.metric
            params["distance_threshold"] = head.distance_threshold_
    elif getattr(head, "unknown_label", None) is not None:
        params["unknown_label"] = str(head.unknown_label)
        params["probability_threshold"] = head.unknown_threshold
    if hasattr(inner, "coefs_"):  # MLPHeadClassifier: ReLU layers, then the output
        params["layers"] = [
            (np.asarray(W, dtype=np.float32), np.asarray(b, dtype=np.float32))
            for W, b in zip(inner.coefs_, inner.intercepts_)
        ]
    elif hasattr(inner, "coef_"):
        params["layers"] = [
            (
                np.asarray(inner.coef_, dtype=np.float32).T,
                np.asarray(inner.intercept_, dtype=np.float32),
            )
        ]
    else:
        raise ModelDirError(
            f"Only linear and MLP heads can be exported as dense layers; this "
            f"model's head is {type(inner).__name__}. Train with --classifier "
            "softmax or mlp to export it."
        )
    params["classes"] = [str(c) for c in head.classes_]
    return params


def prepare_export(model_dir, model=None, *, target: str):
    """Check what an export needs and load it.

    Parameters
    ----------
    model_dir : ModelDir
    model : str, list of str or None
        Backbone handle(s) to load instead of the manifest's.
    target : str
        What is exported to, for error messages ("a SavedModel").

    Returns
    -------
    params, backbones, sizes, prep
        :func:`head_arrays`, the loaded backbones, each one's (height, width),
        and ``resample``, ``crop_fraction``, ``normalize_each``, ``mirror``.

    Raises
    ------
    ModelDirError
        The head, its open-set rule or the test-time views cannot be exported.
    """
    from embedclf.embedding._backbones import load_backbone, resolve_backbone
    from embedclf.embedding._multi import backbone_handles
    from embedclf.embedding._runtime import export_caveat
    from embedclf.workflow._model_dir import check_backbone, embedder_settings

    params = head_arrays(model_dir.head)
    handles = backbone_handles(check_backbone(model_dir, model))
    settings = embedder_settings(model_dir.manifest)
    # The export runs the backbone's TensorFlow ops: it reproduces a model
    # trained on OpenVINO bf16/int8 vectors only approximately; say how much.
    caveat = export_caveat(settings["runtime"], settings["precision"], target)
    if caveat is not None:
        logging.getLogger("embedclf").warning("%s", caveat)
    test_views = model_dir.manifest.get("test_views", "none")
    if test_views not in ("none", "flip"):
        raise ModelDirError(
            f"Model directory {str(model_dir.path)!r} predicts with "
            f"--test-views {test_views}, whose random distortions cannot be "
            f"reproduced in {target}. Train it with --test-views flip or "
            "none to export it."
        )
    image_size = settings["image_size"]
    backbones, sizes = [], []
    for handle in handles:
        backbone = load_backbone(
            resolve_backbone(handle), image_size[0] if image_size else None
        )
        backbones.append(backbone)
        sizes.append(
            tuple(image_size) if image_size else (backbone.default_image_size,) * 2
        )
    prep = {
        "resample": settings["resample"],
        "crop_fraction": settings["crop_fraction"],
        "normalize_each": settings["normalize_each"],
        "mirror": test_views == "flip",
    }
    return params, backbones, sizes, prep


def known_from_margin(margin):
    """``margin <= 0``, ``predict``'s rule.

    A comparison with 0, exact in any int8 scale, instead of the score with
    the threshold, whose scale can be thousands of times finer than the
    score's (on a small test model TensorFlow Lite's int8 LESS_EQUAL then
    answered True for a score of 1207 against 0.91). Not strict in the int8
    export either: TensorFlow Lite's ranges always hold 0, so ``< 0`` would
    reject a margin saturated at the top of a range calibrated on known
    photos only (all <= 0), but the synthetic images' ranges already reach
    above 0, and on grocery ``< 0`` gave ``predict``'s decision on fewer
    left-out photos (benchmarks/probes/tflite_open_set_probe.py,
    ``int8_strict``).
    """
    return margin <= 0.0


def open_set_rule(tf, params, features, logits, proba, proba_of, bounded=False):
    """``known`` (bool, one per photo) of the head's open-set rule.

    All True without a rule. ``logits``: the last dense layer's output (one
    column for a binary head); ``proba_of`` maps features to class
    probabilities (ReAct); ``bounded``: see :func:`tf_unknown_score`.
    """
    score = params.get("score")
    known = tf.ones_like(proba[:, 0], dtype=tf.bool)
    if score is not None:
        if logits.shape[1] == 1:  # binary: the two-column logits of the scores
            logits = tf.concat([-logits / 2, logits / 2], 1)
        s = tf_unknown_score(tf, score, features, logits, proba, proba_of, bounded)
        return known_from_margin(s - score["threshold"])
    if params["unknown_label"] is None:
        return known
    if params["probability_threshold"] is not None:
        known &= tf.reduce_max(proba, axis=1) >= params["probability_threshold"]
    centroids = params["centroids"]
    if centroids is not None:
        cent = tf.constant(centroids, tf.float32)
        if params["metric"] == "cosine":
            a = tf.math.l2_normalize(features, axis=1)
            b = tf.math.l2_normalize(cent, axis=1)
            dist = 1.0 - tf.matmul(a, b, transpose_b=True)
        else:
            sq = (
                tf.reduce_sum(features**2, axis=1, keepdims=True)
                - 2.0 * tf.matmul(features, cent, transpose_b=True)
                + tf.reduce_sum(cent**2, axis=1)[None, :]
            )
            dist = tf.sqrt(tf.maximum(sq, 0.0))
        known &= tf.reduce_min(dist, axis=1) <= params["distance_threshold"]
    return known


def make_head(backbones, params, prep, *, bounded=False):
    """The graph after the pixels: embed, concatenate, head, open-set rule.

    Returns a function of the per-backbone float32 image batches (in [0, 1])
    returning ``probabilities``, ``class_index`` and ``known`` tensors (no
    string ops, so that the TensorFlow Lite export can use it too).
    ``prep`` holds ``normalize_each`` and ``mirror`` (average with the
    mirrored image: ``--test-views flip``).
    """
    import tensorflow as tf

    layers = [(tf.constant(W), tf.constant(b)) for W, b in params["layers"]]
    binary = params["layers"][-1][0].shape[1] == 1

    def embed_one(backbone, images):
        out = tf.cast(backbone.features(images), tf.float32)
        if prep["normalize_each"]:  # as embedding._multi.normalize_blocks
            norm = tf.norm(out, axis=1, keepdims=True)
            out = tf.where(norm > 0, out / tf.where(norm > 0, norm, 1.0), out)
        return out

    def embed(per_backbone):
        parts = [embed_one(b, x) for b, x in zip(backbones, per_backbone)]
        return parts[0] if len(parts) == 1 else tf.concat(parts, axis=1)

    def logits_of(features):
        h = features
        for W, b in layers[:-1]:
            h = tf.nn.relu(tf.matmul(h, W) + b)
        return tf.matmul(h, layers[-1][0]) + layers[-1][1]

    def probabilities(logits):
        if binary:
            p = tf.sigmoid(logits)
            return tf.concat([1.0 - p, p], axis=1)
        return tf.nn.softmax(logits, axis=1)

    def head(per_backbone):
        features = embed(per_backbone)
        logits = logits_of(features)
        proba = probabilities(logits)
        if prep["mirror"]:  # the test-time flip view, as workflow._train._views
            mirrored = [x[:, :, ::-1] for x in per_backbone]
            proba = (proba + probabilities(logits_of(embed(mirrored)))) / 2.0
        index = tf.argmax(proba, axis=1, output_type=tf.int32)
        # One name scope for every op of the rule, so that the TensorFlow
        # Lite export finds them by name (_open_set_lite).
        with tf.name_scope(OPEN_SET_SCOPE):
            known = open_set_rule(
                tf, params, features, logits, proba,
                lambda f: probabilities(logits_of(f)), bounded,
            )  # fmt: skip
        return {"probabilities": proba, "class_index": index, "known": known}

    return head
