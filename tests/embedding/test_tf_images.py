"""Resize filters and centre crops: the TF twin equals Pillow bit for bit."""

from __future__ import annotations

import re

import numpy as np
import pytest

from embedclf.embedding._images import (
    PREPROCESSING,
    RESAMPLE_FILTERS,
    decode_image,
    preprocessing_tag,
)

pytestmark = pytest.mark.tf


@pytest.mark.parametrize("resample", RESAMPLE_FILTERS)
@pytest.mark.parametrize("crop_fraction", [1.0, 0.875, 0.55])
def test_tf_resize_matches_pillow_for_every_filter_and_crop(resample, crop_fraction):
    from PIL import Image

    from embedclf.embedding._images import _PIL_FILTERS, crop_box
    from embedclf.embedding._tf_images import pillow_resize

    rng = np.random.default_rng(len(resample) * 10 + int(crop_fraction * 8))
    for _ in range(6):
        h, w = (int(v) for v in rng.integers(5, 300, 2))
        oh, ow = (int(v) for v in rng.integers(3, 260, 2))
        arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        box = crop_box(w, h, crop_fraction) if crop_fraction != 1.0 else None
        expected = np.asarray(
            Image.fromarray(arr).resize((ow, oh), _PIL_FILTERS[resample], box=box)
        )
        got = pillow_resize(
            arr, oh, ow, resample=resample, crop_fraction=crop_fraction
        ).numpy()
        np.testing.assert_array_equal(got, expected, err_msg=f"{(h, w)}->{(oh, ow)}")


@pytest.mark.parametrize(
    "resample, crop_fraction", [("bicubic", 1.0), ("lanczos", 0.875), ("box", 0.7)]
)
def test_tf_decoding_matches_pillow_with_options(tmp_path, resample, crop_fraction):
    import tensorflow as tf
    from conftest import write_image

    from embedclf.embedding._tf_images import decode_like_pillow

    for size, fmt in [((348, 348), "JPEG"), ((1000, 700), "JPEG"), ((90, 60), "PNG")]:
        path = write_image(tmp_path / f"i{size[0]}", size=size, fmt=fmt, seed=3)
        data = path.read_bytes()
        kw = {"resample": resample, "crop_fraction": crop_fraction}
        expected = decode_image(data, (64, 80), **kw)
        got = decode_like_pillow(tf.constant(data), 64, 80, **kw).numpy()
        np.testing.assert_array_equal(got, expected)


def test_crop_keeps_the_centre(tmp_path):
    from PIL import Image

    arr = np.zeros((100, 100, 3), dtype=np.uint8)
    arr[25:75, 25:75] = 255  # a white centre half on black
    img = Image.fromarray(arr)
    import io

    buf = io.BytesIO()
    img.save(buf, "PNG")
    whole = decode_image(buf.getvalue(), (50, 50))
    centre = decode_image(buf.getvalue(), (50, 50), crop_fraction=0.5)
    assert centre.min() == 1.0  # only the white centre is left
    assert whole.min() == 0.0


def test_default_tag_is_unchanged_and_options_change_it():
    assert preprocessing_tag() == PREPROCESSING
    tags = {
        preprocessing_tag(r, c) for r in RESAMPLE_FILTERS for c in (1.0, 0.875, 0.9)
    }
    assert len(tags) == len(RESAMPLE_FILTERS) * 3
    with pytest.raises(ValueError, match=re.escape("must be in (0, 1]; got 0")):
        preprocessing_tag("bilinear", 0)
    with pytest.raises(ValueError, match="resample must be one of"):
        decode_image(b"", (4, 4), resample="nearest")


def test_embedder_options_use_their_own_cache_namespace(tiny_model_dir, tmp_path):
    from conftest import make_image_folder

    from embedclf import EmbeddingCache, ImageEmbedder, load_image_folder

    folder = load_image_folder(make_image_folder(tmp_path / "img", n_per_class=3))
    cache = tmp_path / "c.h5"
    plain = ImageEmbedder(model=str(tiny_model_dir), cache=cache)
    X = plain.transform(folder.paths)
    other = ImageEmbedder(
        model=str(tiny_model_dir), cache=cache, resample="bicubic", crop_fraction=0.8
    )
    Y = other.transform(folder.paths)
    assert other.n_computed_ == len(folder.paths)  # not served plain vectors
    assert not np.allclose(X, Y)
    tags = sorted(ns["preprocessing"] for ns in EmbeddingCache(cache).info())
    expected = [preprocessing_tag("bilinear", 0.875), preprocessing_tag("bicubic", 0.8)]
    assert tags == sorted(expected)
    assert plain.crop_fraction == 0.875  # the default crop, not the whole image
    with pytest.raises(ValueError, match="crop_fraction"):
        ImageEmbedder(model=str(tiny_model_dir), crop_fraction=1.5).transform(
            folder.paths
        )
