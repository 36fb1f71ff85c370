"""Export a model directory as one TensorFlow SavedModel (backbone + head).

The SavedModel maps images to class probabilities with no Python embedclf
code: it holds the backbone (or each of several, whose vectors are
concatenated, normalised per backbone when the model was trained so), the head
as dense layers built from ``coef_`` and ``intercept_`` (or an MLP head's
``coefs_`` and ``intercepts_``), the open-set rule when the head has one, the
mirrored test view when the model predicts with ``--test-views flip``, and
``labels.txt`` as an asset. Two signatures:

``serving_default(image_bytes)``
    ``tf.string [batch]`` of encoded JPEG/PNG/GIF/BMP files, decoded, cropped
    and resized bit for bit as ``embedclf predict`` does with Pillow (the
    recorded resize filter and crop fraction; see ``_tf_images.py``; EXIF
    orientation of non-JPEG files and transparency are not applied). An
    element that is not a JPEG/PNG/GIF/BMP/WebP file fails the call with an
    error naming it (``image_bytes[3] is not a JPEG, PNG, GIF, BMP or WebP
    file``).
``predict_images(images)``
    ``tf.float32 [batch, H, W, 3]`` in [0, 1]; images of another size than
    ``image_size`` are resized with ``tf.image.resize`` (bilinear,
    antialiased).

The module's ``image_size`` variable holds the (height, width) that images
are resized to before the (first) backbone, as in ``embedclf predict``;
``image_sizes`` holds one row per backbone. Both
signatures return ``probabilities`` (``[batch, n_classes]``, columns in the order
of labels.txt), ``class_index`` (argmax), ``label`` (the class name, or the
unknown label when the open-set rule rejects the image) and ``known``.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from embedclf.exceptions import ModelDirError
from embedclf.workflow._export_unknown import tf_unknown_score

__all__ = ["export_savedmodel", "head_arrays"]

logger = logging.getLogger("embedclf")


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
                    "which cannot be exported to a SavedModel. Train with the "
                    "default centroid distance to export it."
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


def _build_module(backbones, sizes, params, labels_path, prep):
    """The tf.Module: per backbone decode + embed, concatenate, head.

    ``prep`` holds ``resample``, ``crop_fraction``, ``normalize_each`` and
    ``mirror`` (average with the mirrored image: ``--test-views flip``).
    """
    import tensorflow as tf

    from embedclf.embedding._tf_images import decode_like_pillow

    sizes = [(int(h), int(w)) for h, w in sizes]
    layers = [(tf.constant(W), tf.constant(b)) for W, b in params["layers"]]
    binary = params["layers"][-1][0].shape[1] == 1
    class_names = tf.constant(params["classes"])
    unknown = params["unknown_label"]
    p_thr = params["probability_threshold"]
    centroids = params["centroids"]
    d_thr = params["distance_threshold"]
    cosine = params["metric"] == "cosine"
    score = params.get("score")

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
        if prep["mirror"]:  # the test-time flip view, as workflow._views
            mirrored = [x[:, :, ::-1] for x in per_backbone]
            proba = (proba + probabilities(logits_of(embed(mirrored)))) / 2.0
        index = tf.argmax(proba, axis=1, output_type=tf.int32)
        label = tf.gather(class_names, index)
        known = tf.ones_like(index, dtype=tf.bool)
        if score is not None:
            logits2 = tf.concat([-logits / 2, logits / 2], 1) if binary else logits
            s = tf_unknown_score(
                tf,
                score,
                features,
                logits2,
                proba,
                lambda f: probabilities(logits_of(f)),
            )
            known = s <= score["threshold"]
            label = tf.where(known, label, tf.constant(unknown))
        elif unknown is not None:
            if p_thr is not None:
                known &= tf.reduce_max(proba, axis=1) >= p_thr
            if centroids is not None:
                cent = tf.constant(centroids, tf.float32)
                if cosine:
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
                known &= tf.reduce_min(dist, axis=1) <= d_thr
            label = tf.where(known, label, tf.constant(unknown))
        return {
            "probabilities": proba,
            "class_index": index,
            "label": label,
            "known": known,
        }

    def resized(images):
        return [
            tf.image.resize(images, (h, w), method="bilinear", antialias=True)
            for h, w in sizes
        ]

    def checked(index, data):
        """``data``, after checking it is an image format the decoder reads."""
        # The first 12 bytes, zero-padded so that short strings compare too.
        start = tf.strings.join([tf.strings.substr(data, 0, 12), b"\0" * 12])

        def starts(at, magic):
            return tf.equal(tf.strings.substr(start, at, len(magic)), magic)

        supported = tf.reduce_any(
            [
                starts(0, b"\xff\xd8\xff"),  # JPEG
                starts(0, b"\x89PNG"),
                starts(0, b"GIF8"),
                starts(0, b"BM"),
                starts(0, b"RIFF") & starts(8, b"WEBP"),
            ]
        )
        # A graph cannot catch the decoder's own error, which does not say
        # which element of the batch failed: check the format first and name
        # the element. (Damaged files of a known format still fail in the
        # decoder, without the index.)
        message = tf.strings.format(
            "image_bytes[{}] is not a JPEG, PNG, GIF, BMP or WebP file (its first "
            "bytes: {}). Pass the encoded bytes of image files; `embedclf "
            "predict FILE` says what is wrong with a file.",
            (index, tf.strings.substr(data, 0, 8)),
        )
        check = tf.debugging.Assert(supported, [message])
        with tf.control_dependencies([check]):
            return tf.identity(data)

    def decoded(image_bytes):
        index = tf.range(tf.shape(image_bytes)[0])
        out = []
        for h, w in sizes:

            def decode_one(args, h=h, w=w):
                i, data = args
                return decode_like_pillow(
                    checked(i, data),
                    h,
                    w,
                    resample=prep["resample"],
                    crop_fraction=prep["crop_fraction"],
                )

            out.append(
                tf.map_fn(
                    decode_one,
                    (index, image_bytes),
                    fn_output_signature=tf.TensorSpec([h, w, 3], tf.float32),
                )
            )
        return out

    class ExportedClassifier(tf.Module):
        def __init__(self):
            super().__init__(name="embedclf_classifier")
            self.backbones = [b._owner for b in backbones]
            self.labels_file = tf.saved_model.Asset(str(labels_path))
            self.image_size = tf.Variable(
                list(sizes[0]), trainable=False, name="image_size"
            )
            self.image_sizes = tf.Variable(
                [list(s) for s in sizes], trainable=False, name="image_sizes"
            )

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def predict_bytes(self, image_bytes):
            return head(decoded(image_bytes))

        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
        def predict_images(self, images):
            return head(resized(images))

    return ExportedClassifier()


def export_savedmodel(model_dir, out_dir, *, model=None) -> Path:
    """Write the SavedModel for a model directory.

    Parameters
    ----------
    model_dir : ModelDir
        A loaded model directory (see ``embedclf.workflow._model_dir.load_model_dir``).
    out_dir : str or os.PathLike
        Where to write the SavedModel; replaced atomically if it exists.
    model : str or None
        Backbone handle to load instead of the manifest's (must be the same
        backbone).

    Returns
    -------
    out_dir : pathlib.Path
    """
    import tensorflow as tf

    from embedclf.embedding._backbones import load_backbone, resolve_backbone
    from embedclf.embedding._multi import backbone_handles
    from embedclf.embedding._runtime import export_caveat
    from embedclf.workflow._model_dir import check_backbone, embedder_settings

    params = head_arrays(model_dir.head)
    handles = backbone_handles(check_backbone(model_dir, model))
    settings = embedder_settings(model_dir.manifest)
    caveat = export_caveat(settings["runtime"], settings["precision"])
    if caveat is not None:
        logger.warning("%s", caveat)
    test_views = model_dir.manifest.get("test_views", "none")
    if test_views not in ("none", "flip"):
        raise ModelDirError(
            f"Model directory {str(model_dir.path)!r} predicts with "
            f"--test-views {test_views}, whose random distortions cannot be "
            "reproduced in a SavedModel. Train it with --test-views flip or "
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
    out_dir = Path(out_dir)
    parent = out_dir.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out_dir.name + ".tmp-", dir=parent))
    try:
        labels_path = tmp / "labels.txt"
        labels_path.write_text("".join(c + "\n" for c in params["classes"]))
        module = _build_module(backbones, sizes, params, labels_path, prep)
        export_dir = tmp / "savedmodel"
        tf.saved_model.save(
            module,
            str(export_dir),
            signatures={
                "serving_default": module.predict_bytes,
                "predict_images": module.predict_images,
            },
        )
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(export_dir, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("exported %s to %s", model_dir.path, out_dir)
    return out_dir
