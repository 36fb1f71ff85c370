"""Export a model directory as one TensorFlow SavedModel (backbone + head).

The SavedModel maps images to class probabilities with no Python embedclf
code: it holds the backbone (or each of several, whose vectors are
concatenated, normalised per backbone when the model was trained so), the head
as dense layers built from ``coef_`` and ``intercept_`` (or an MLP head's
``coefs_`` and ``intercepts_``), the open-set rule when the head has one, the
mirrored test view when the model predicts with ``--test-views flip``, and
``labels.txt`` as an asset. Two signatures:

``serving_default(image_bytes)``
    ``tf.string [batch]`` of encoded JPEG/PNG/GIF/BMP files (a scalar string,
    one file, is taken as a batch of one; a higher rank fails with an error
    that says what to pass), decoded, cropped
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

from embedclf.workflow._export._graph import head_arrays, make_head, prepare_export

__all__ = ["export_savedmodel", "head_arrays"]

logger = logging.getLogger("embedclf")


def _labelled(scores, params):
    """``scores`` (see :func:`make_head`) plus each row's ``label``.

    The label is the class name, or the unknown label where the open-set rule
    rejects the image.
    """
    import tensorflow as tf

    class_names = tf.constant(params["classes"])
    unknown = params["unknown_label"]

    def head(per_backbone):
        out = scores(per_backbone)
        label = tf.gather(class_names, out["class_index"])
        if unknown is not None:
            label = tf.where(out["known"], label, tf.constant(unknown))
        return {**out, "label": label}

    return head


def _resized(images, sizes):
    """``images`` resized to each backbone's (height, width), one per size."""
    import tensorflow as tf

    return [
        tf.image.resize(images, (h, w), method="bilinear", antialias=True)
        for h, w in sizes
    ]


def _checked(index, data):
    """``data``, after checking it is an image format the decoder reads."""
    import tensorflow as tf

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


def _as_batch(image_bytes):
    """A scalar as a batch of one; a 1-D batch as is; else a clear error."""
    import tensorflow as tf

    check = tf.debugging.assert_less(
        tf.rank(image_bytes),
        2,
        message=(
            "image_bytes must be the encoded bytes of image files, as a "
            "1-D tf.string tensor (one element per file, e.g. "
            "tf.constant([open(path, 'rb').read()])) or one scalar string."
        ),
    )
    with tf.control_dependencies([check]):
        return tf.reshape(image_bytes, [-1])


def _decoded(image_bytes, sizes, prep):
    """Each file decoded as Pillow would, once per backbone's size."""
    import tensorflow as tf

    from embedclf.embedding._tf_images import decode_like_pillow

    index = tf.range(tf.shape(image_bytes)[0])
    out = []
    for h, w in sizes:

        def decode_one(args, h=h, w=w):
            i, data = args
            return decode_like_pillow(
                _checked(i, data),
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


def _build_module(backbones, sizes, params, labels_path, prep):
    """The tf.Module: per backbone decode + embed, concatenate, head.

    ``prep`` holds ``resample``, ``crop_fraction``, ``normalize_each`` and
    ``mirror`` (see :func:`make_head`).
    """
    import tensorflow as tf

    sizes = [(int(h), int(w)) for h, w in sizes]
    head = _labelled(make_head(backbones, params, prep), params)

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

        # Unknown rank, not [None]: a scalar (one file's bytes, the first
        # thing people try) then works instead of failing in TensorFlow's
        # signature binding with a message about TensorSpecs.
        @tf.function(input_signature=[tf.TensorSpec(None, tf.string)])
        def predict_bytes(self, image_bytes):
            return head(_decoded(_as_batch(image_bytes), sizes, prep))

        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
        def predict_images(self, images):
            return head(_resized(images, sizes))

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

    params, backbones, sizes, prep = prepare_export(
        model_dir, model, target="a SavedModel"
    )
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
