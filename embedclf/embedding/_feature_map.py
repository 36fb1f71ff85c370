"""The last convolutional feature map of a backbone, where it exposes one.

Class activation maps (``workflow/_explain``) need the ``[batch, H, W, C]``
map whose global average is the backbone's vector. Two kinds of backbone
expose it:

* ``keras:<Application>`` handles with average pooling (the default): the
  input of the final ``GlobalAveragePooling2D``, or the cut layer's output
  for ``?layer=...`` (``_keras_backbone.keras_feature_map``);
* a SavedModel (or TF Hub model) with a ``feature_map`` function or
  signature, such as ``../shared/models/efficientnet_lite0_feature_map``.

Any other backbone has none: :func:`feature_map_function` says why instead of
approximating one. The caller checks that the map averages to the vector.
"""

from __future__ import annotations

import numpy as np

__all__ = ["feature_map_function", "feature_maps"]


def feature_map_function(backbone):
    """``(fn, None)`` with fn: float32 images in [0, 1] -> ``[n, H, W, C]``,
    or ``(None, reason)``."""
    spec = backbone.spec
    owner = getattr(backbone, "_owner", None)
    if spec.kind == "keras":
        from embedclf.embedding._keras_backbone import keras_feature_map

        options = {k: v for k, v in spec.options.items() if k != "name"}
        return keras_feature_map(owner, spec.options["name"], options)
    fn = getattr(owner, "feature_map", None)
    if callable(fn):
        return fn, None
    signature = getattr(owner, "signatures", {}).get("feature_map")
    if signature is not None:
        (name,) = list(signature.structured_input_signature[1])

        def call(images):
            out = signature(**{name: images})
            return next(iter(out.values())) if isinstance(out, dict) else out

        return call, None
    return None, (
        f"the backbone {spec.handle!r} exposes no feature map (a keras: "
        "application with average pooling, or a SavedModel with a "
        "'feature_map' function or signature, has one)"
    )


def feature_maps(embedder, paths):
    """Feature maps of image files, decoded exactly as ``embedder`` decodes them.

    Returns
    -------
    maps : ndarray of shape (n, H, W, C) or None
    reason : str or None
        Why there is no map (then ``maps`` is None).
    """
    import os

    from embedclf.embedding._backbones import load_backbone, resolve_backbone
    from embedclf.embedding._images import load_image
    from embedclf.embedding._inputs import normalize_size

    if not isinstance(embedder.model, (str, os.PathLike)):
        return None, "the model has several backbones (their vectors are concatenated)"
    if embedder.normalize_each:
        return None, "the vectors are L2-normalised (--normalize-each), not averages"
    requested = normalize_size(embedder.image_size)
    backbone = load_backbone(
        resolve_backbone(embedder.model), requested[0] if requested else None
    )
    fn, reason = feature_map_function(backbone)
    if fn is None:
        return None, reason
    size = embedder._resolved_size(backbone)
    images = np.stack(
        [
            load_image(
                p,
                size,
                max_image_pixels=embedder.max_image_pixels,
                resample=embedder.resample,
                crop_fraction=embedder.crop_fraction,
            )[1]
            for p in paths
        ]
    )
    import tensorflow as tf

    out = np.asarray(fn(tf.convert_to_tensor(images, dtype=tf.float32)))
    if out.ndim != 4:
        return (
            None,
            f"the backbone's feature map has shape {out.shape}, not [n, H, W, C]",
        )
    return out.astype(np.float32), None
