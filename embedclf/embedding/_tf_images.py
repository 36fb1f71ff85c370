"""TensorFlow ops that decode and resize images exactly as ``_images.py`` does.

The exported SavedModel must give the same answers as ``embedclf predict``,
which decodes with Pillow. TensorFlow's own ``tf.image.resize`` differs from
Pillow by one grey level on about one pixel in six (Pillow resizes in two
8-bit passes with 22-bit fixed-point weights), and that is enough to flip the
top-1 class of borderline images. The ops below reproduce Pillow's
``Image.resize`` with its convolution filters (bilinear, bicubic, lanczos,
hamming, box) and an optional float crop ``box`` (``Resample.c``: ``precompute_coeffs``,
``normalize_coeffs_8bpc``, two passes each rounded to 8 bits, in the order
Pillow 13 picks), its JPEG draft mode (DCT scaling by
1/2, 1/4 or 1/8 when the image is at least twice the target size) and its
accurate integer DCT.

JPEG EXIF orientation is applied as ``ImageOps.exif_transpose`` does. Not
reproduced: the orientation of non-JPEG files, and compositing transparent
pixels on white (TensorFlow drops the alpha channel).
"""

from __future__ import annotations

__all__ = [
    "apply_orientation",
    "decode_like_pillow",
    "exif_orientation",
    "pillow_bilinear_weights",
    "pillow_resize",
    "pillow_weights",
]

_PRECISION_BITS = 32 - 8 - 2  # Pillow's PRECISION_BITS for 8-bit images
_JPEG_DRAFT_FACTOR = 2  # as in _images.py


def _filter(name: str, t):
    """Pillow's filter ``name`` (``Resample.c``) at offsets ``t``; its support."""
    import math

    import numpy as np
    import tensorflow as tf

    a = tf.abs(t)
    zero = tf.zeros_like(t)
    if name == "bilinear":
        return tf.where(a < 1.0, 1.0 - a, zero), 1.0
    if name == "box":
        return tf.where((t > -0.5) & (t <= 0.5), tf.ones_like(t), zero), 0.5
    if name == "bicubic":  # a = -0.5
        near = (1.5 * a - 2.5) * a * a + 1.0
        far = (((a - 5.0) * a + 8.0) * a - 4.0) * -0.5
        return tf.where(a < 1.0, near, tf.where(a < 2.0, far, zero)), 2.0

    def sinc(x):
        safe = tf.where(x == 0.0, tf.ones_like(x), x * math.pi)
        return tf.where(x == 0.0, tf.ones_like(x), tf.sin(safe) / safe)

    if name == "lanczos":
        inside = (t >= -3.0) & (t < 3.0)
        return tf.where(inside, sinc(t) * sinc(t / 3.0), zero), 3.0
    if name == "hamming":
        # Pillow writes 0.54f and 0.46f: float32 constants promoted to double.
        c0, c1 = float(np.float32(0.54)), float(np.float32(0.46))
        x = a * math.pi
        safe = tf.where(a == 0.0, tf.ones_like(x), x)
        w = tf.sin(safe) / safe * (c0 + c1 * tf.cos(safe))
        return tf.where(a == 0.0, tf.ones_like(t), tf.where(a >= 1.0, zero, w)), 1.0
    raise ValueError(f"Unknown resample filter {name!r}.")  # pragma: no cover


def pillow_weights(in_size, out_size: int, resample: str = "bilinear", box=None):
    """Pillow's fixed-point resize weights, shape ``(out_size, in_size)``.

    Parameters
    ----------
    in_size : int or scalar int tensor
    out_size : int
    resample : {"bilinear", "bicubic", "lanczos", "hamming", "box"}
    box : pair of float32 scalar tensors or None
        ``(start, end)`` of the source interval (Pillow's ``resize(box=...)``
        along this axis); None is the whole axis.

    Returns
    -------
    tf.Tensor of float64
        Integer-valued weights; each row sums to about ``2**22``.
    """
    import tensorflow as tf

    in_f = tf.cast(in_size, tf.float64)
    if box is None:
        in0 = tf.constant(0.0, tf.float64)
        span = in_f
    else:  # Pillow's box is C float: the width is a float32 subtraction
        in0 = tf.cast(box[0], tf.float64)
        span = tf.cast(box[1] - box[0], tf.float64)
    scale = span / tf.constant(out_size, tf.float64)
    filterscale = tf.maximum(scale, 1.0)
    _, support = _filter(resample, tf.zeros([1], tf.float64))
    support = support * filterscale
    xx = tf.range(out_size, dtype=tf.float64)[:, None]
    center = in0 + (xx + 0.5) * scale
    # (int) casts: truncation, then clamped to the image
    xmin = tf.maximum(tf.math.floor(center - support + 0.5), 0.0)
    xmax = tf.minimum(tf.floor(center + support + 0.5), in_f)
    x = tf.range(tf.cast(in_size, tf.int32), dtype=tf.float64)[None, :]
    ss = 1.0 / filterscale  # multiply by ss, as Pillow does (not divide)
    w, _ = _filter(resample, (x - center + 0.5) * ss)
    w = tf.where((x >= xmin) & (x < xmax), w, tf.zeros_like(w))
    total = tf.reduce_sum(w, axis=1, keepdims=True)
    w = tf.where(total != 0.0, w / tf.where(total != 0.0, total, 1.0), w)
    scaled = w * float(1 << _PRECISION_BITS)
    # normalize_coeffs_8bpc: (int)(v -/+ 0.5), a truncation towards zero
    return tf.where(scaled < 0.0, tf.math.ceil(scaled - 0.5), tf.floor(0.5 + scaled))


def pillow_bilinear_weights(in_size, out_size: int):
    """Pillow's fixed-point bilinear weights, shape ``(out_size, in_size)``."""
    return pillow_weights(in_size, out_size, "bilinear")


def _round_8bit(values):
    import tensorflow as tf

    half = float(1 << (_PRECISION_BITS - 1))
    out = tf.floor((values + half) / float(1 << _PRECISION_BITS))
    return tf.clip_by_value(out, 0.0, 255.0)


def pillow_resize(
    image,
    height: int,
    width: int,
    *,
    resample: str = "bilinear",
    crop_fraction: float = 1.0,
):
    """Resize a ``[H, W, 3]`` uint8 image as Pillow's ``Image.resize`` does.

    ``crop_fraction`` below 1 resizes the centred box that
    ``_images.crop_box`` gives, as ``Image.resize(..., box=box)``.

    Returns
    -------
    tf.Tensor of shape (height, width, 3), float64 with integer values
    """
    import tensorflow as tf

    x = tf.cast(image, tf.float64)
    shape = tf.shape(x)
    box_h = box_w = None
    if crop_fraction != 1.0:
        f = float(crop_fraction)

        def side(n):  # as _images.crop_box, then Python float -> C float
            n = tf.cast(n, tf.float64)
            lo = tf.cast(n * (1.0 - f) / 2.0, tf.float32)
            hi = tf.cast(n * (1.0 + f) / 2.0, tf.float32)
            return lo, hi

        box_h, box_w = side(shape[0]), side(shape[1])
    kh = pillow_weights(shape[1], width, resample, box_w)
    kv = pillow_weights(shape[0], height, resample, box_h)

    def horizontal_first():
        tmp = _round_8bit(tf.einsum("ow,hwc->hoc", kh, x))
        return _round_8bit(tf.einsum("oh,hwc->owc", kv, tmp))

    def vertical_first():
        tmp = _round_8bit(tf.einsum("oh,hwc->owc", kv, x))
        return _round_8bit(tf.einsum("ow,hwc->hoc", kh, tmp))

    # Pillow 13 runs the vertical pass first when it removes more than twice
    # as many rows as the horizontal pass removes columns (found by comparing
    # with Image.resize on hundreds of random sizes); the 8-bit rounding in
    # between makes the order matter.
    in_h = tf.cast(shape[0], tf.int64)
    in_w = tf.cast(shape[1], tf.int64)
    rows_removed = tf.maximum(in_h, height) - height
    cols_removed = tf.maximum(in_w, width) - width
    return tf.cond(rows_removed > 2 * cols_removed, vertical_first, horizontal_first)


def _decode_jpeg(data, height: int, width: int):
    import tensorflow as tf

    shape = tf.io.extract_jpeg_shape(data)
    side = _JPEG_DRAFT_FACTOR * max(height, width)
    scale = tf.minimum(shape[1] // side, shape[0] // side)
    index = (
        tf.cast(scale >= 2, tf.int32)
        + tf.cast(scale >= 4, tf.int32)
        + tf.cast(scale >= 8, tf.int32)
    )
    branches = [
        (lambda r=r: tf.io.decode_jpeg(
            data, channels=3, ratio=r, dct_method="INTEGER_ACCURATE"
        ))
        for r in (1, 2, 4, 8)
    ]  # fmt: skip
    return tf.switch_case(index, branches)


_EXIF_MARKER = b"Exif\x00\x00"
_ORIENTATION_TAG = 0x0112
_MAX_IFD_ENTRIES = 128


def exif_orientation(data):
    """The EXIF orientation (1-8) of JPEG bytes; 1 when absent or unreadable.

    Reads the first ``Exif`` APP1 segment as Pillow's ``getexif`` does: the
    TIFF header's byte order, IFD0, and tag 0x0112. Every read is clamped to
    the data, so damaged EXIF gives 1 rather than an error.

    Parameters
    ----------
    data : scalar tf.string tensor

    Returns
    -------
    tf.Tensor of int32, scalar
    """
    import tensorflow as tf

    parts = tf.strings.split(data, sep=_EXIF_MARKER, maxsplit=1)
    found = tf.size(parts) > 1
    start = tf.strings.length(parts[0]) + len(_EXIF_MARKER)
    rest = tf.strings.length(data) - start
    tiff = tf.cond(
        found,
        lambda: tf.strings.substr(data, start, tf.maximum(rest, 0)),
        lambda: tf.constant(b""),
    )
    tiff = tf.strings.join([tiff, tf.constant(b"\x00" * 8)])  # room for reads
    size = tf.strings.length(tiff)
    little = tf.equal(tf.strings.substr(tiff, 0, 2), b"II")

    def read(pos, n):
        pos = tf.clip_by_value(tf.cast(pos, tf.int32), 0, size - n)
        raw = tf.io.decode_raw(tf.strings.substr(tiff, pos, n), tf.uint8)
        raw = tf.cast(raw, tf.int64)
        le = tf.constant([256**i for i in range(n)], tf.int64)
        return tf.where(little, tf.reduce_sum(raw * le), tf.reduce_sum(raw * le[::-1]))

    ifd = read(4, 4)
    count = tf.minimum(read(ifd, 2), _MAX_IFD_ENTRIES)
    entries = ifd + 2 + 12 * tf.range(count, dtype=tf.int64)
    tags = tf.map_fn(lambda e: read(e, 2), entries)
    values = tf.map_fn(lambda e: read(e + 8, 2), entries)
    hit = tf.equal(tags, _ORIENTATION_TAG)
    value = tf.cond(
        tf.reduce_any(hit),
        lambda: tf.boolean_mask(values, hit)[0],
        lambda: tf.constant(1, tf.int64),
    )
    valid = found & (value >= 1) & (value <= 8)
    return tf.cast(tf.where(valid, value, 1), tf.int32)


def apply_orientation(image, orientation):
    """Transpose ``[H, W, C]`` as Pillow's ``ImageOps.exif_transpose``."""
    import tensorflow as tf

    branches = [
        lambda: image,  # 1
        lambda: image[:, ::-1],  # 2: FLIP_LEFT_RIGHT
        lambda: image[::-1, ::-1],  # 3: ROTATE_180
        lambda: image[::-1],  # 4: FLIP_TOP_BOTTOM
        lambda: tf.transpose(image, [1, 0, 2]),  # 5: TRANSPOSE
        lambda: tf.image.rot90(image, k=3),  # 6: ROTATE_270
        lambda: tf.transpose(image[::-1, ::-1], [1, 0, 2]),  # 7: TRANSVERSE
        lambda: tf.image.rot90(image, k=1),  # 8: ROTATE_90
    ]
    return tf.switch_case(orientation - 1, branches)


def decode_like_pillow(
    data, height: int, width: int, *, resample="bilinear", crop_fraction=1.0
):
    """Encoded image bytes -> ``[height, width, 3]`` float32 in [0, 1].

    Parameters
    ----------
    data : scalar tf.string tensor
    height, width : int
    resample, crop_fraction
        As ``ImageEmbedder``'s parameters of the same names.

    Returns
    -------
    tf.Tensor of float32
    """
    import tensorflow as tf

    img = tf.cond(
        tf.io.is_jpeg(data),
        lambda: apply_orientation(
            _decode_jpeg(data, height, width), exif_orientation(data)
        ),
        lambda: tf.io.decode_image(data, channels=3, expand_animations=False),
    )
    img.set_shape([None, None, 3])
    resized = pillow_resize(
        img, height, width, resample=resample, crop_fraction=crop_fraction
    )
    return tf.cast(resized / 255.0, tf.float32)
