"""Property-based tests (hypothesis): random bytes, random valid images of random
sizes, modes and formats, and damaged copies of them (issue 6).

Promises checked: nothing escapes but the documented error types; one row
per input; a row is NaN exactly when its path is in ``failed_paths_``; every
valid image embeds; identical bytes give identical vectors, within a call and
across calls, with or without the cache.
"""

from __future__ import annotations

import io
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from PIL import Image  # noqa: E402

from embedclf import ImageEmbedder  # noqa: E402
from embedclf.embedding._images import decode_image  # noqa: E402
from embedclf.exceptions import ImageDecodeError  # noqa: E402

#: What ``transform`` may raise for a bad file with on_error="raise".
DOCUMENTED = (ImageDecodeError, FileNotFoundError, IsADirectoryError, PermissionError)

#: Pillow modes each format can write (checked with Pillow 10-13).
MODES = {
    "PNG": ["1", "L", "LA", "P", "RGB", "RGBA", "I;16"],
    "JPEG": ["L", "RGB", "CMYK"],
    "GIF": ["P", "L", "RGB"],
    "BMP": ["1", "L", "P", "RGB"],
    "WEBP": ["RGB", "RGBA"],
    "TIFF": ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16", "I", "F"],
}
EXTENSIONS = [".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ""]

SETTINGS = dict(
    deadline=None,
    database=None,
    derandomize=True,  # CI sees the same examples every run
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _make_image(fmt, mode, width, height, seed, orientation):
    rng = np.random.default_rng(seed)
    if mode == "I;16":
        img = Image.fromarray(rng.integers(0, 65536, (height, width), dtype=np.uint16))
    elif mode == "I":
        arr = rng.integers(0, 65536, (height, width)).astype(np.int32)
        img = Image.fromarray(arr, "I")
    elif mode == "F":
        img = Image.fromarray(rng.random((height, width)).astype(np.float32), "F")
    else:
        rgba = rng.integers(0, 256, (height, width, 4), dtype=np.uint8)
        img = Image.fromarray(rgba, "RGBA").convert(mode)
    kw = {}
    if orientation and fmt in ("PNG", "JPEG", "WEBP", "TIFF"):
        exif = Image.Exif()
        exif[0x0112] = orientation
        kw["exif"] = exif
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


@st.composite
def valid_images(draw):
    fmt = draw(st.sampled_from(sorted(MODES)))
    return _make_image(
        fmt,
        draw(st.sampled_from(MODES[fmt])),
        draw(st.integers(1, 48)),
        draw(st.integers(1, 48)),
        draw(st.integers(0, 2**31)),
        draw(st.sampled_from([None, None, 1, 3, 6, 8])),
    )


@st.composite
def damaged_images(draw):
    data = bytearray(draw(valid_images()))
    how = draw(st.sampled_from(["truncate", "flip", "zero_tail"]))
    if how == "truncate":
        return bytes(data[: draw(st.integers(0, len(data) - 1))])
    if how == "flip":
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= draw(st.integers(1, 255))
        return bytes(data)
    cut = draw(st.integers(0, len(data) - 1))
    return bytes(data[:cut]) + b"\0" * (len(data) - cut)


inputs = st.one_of(
    st.tuples(st.just("valid"), valid_images()),
    st.tuples(st.just("bytes"), st.binary(max_size=600)),
    st.tuples(st.just("damaged"), damaged_images()),
)


@pytest.mark.filterwarnings("ignore::UserWarning:PIL")  # damaged TIFF metadata
@settings(max_examples=200, **SETTINGS)
@given(st.one_of(valid_images(), damaged_images(), st.binary(max_size=600)))
def test_decode_never_raises_anything_else(data):
    try:
        arr = decode_image(data, (8, 10), path="fuzz.bin")
    except ImageDecodeError as exc:
        assert "'fuzz.bin'" in str(exc)
        return
    assert arr.shape == (8, 10, 3) and arr.dtype == np.float32
    assert np.isfinite(arr).all() and arr.min() >= 0.0 and arr.max() <= 1.0


@settings(max_examples=100, **SETTINGS)
@given(valid_images())
def test_every_valid_image_decodes(data):
    arr = decode_image(data, (8, 10))
    assert arr.shape == (8, 10, 3)
    np.testing.assert_array_equal(decode_image(data, (8, 10)), arr)


def _write_all(root, items, extensions):
    paths = []
    for i, ((_, data), ext) in enumerate(zip(items, extensions)):
        path = Path(root) / f"in {i}{ext}"
        path.write_bytes(data)
        paths.append(str(path))
    return paths


@settings(max_examples=40, **SETTINGS)
@given(
    items=st.lists(inputs, min_size=1, max_size=6),
    extensions=st.lists(st.sampled_from(EXTENSIONS), min_size=12, max_size=12),
    duplicate=st.booleans(),
)
def test_embedder_rows_failures_and_determinism(
    tiny_model_dir, items, extensions, duplicate
):
    if duplicate:  # the same bytes again, under another name
        items = [*items, items[0]]
    with tempfile.TemporaryDirectory() as root:
        paths = _write_all(root, items, extensions)
        est = ImageEmbedder(
            model=str(tiny_model_dir), image_size=32, on_error="nan", batch_size=4
        )
        X = est.transform(paths)
        assert X.shape == (len(paths), 16) and X.dtype == np.float32
        failed = set(est.failed_paths_.tolist())
        # Failure is a property of the bytes, reported for every path.
        bad_bytes = {data for path, (_, data) in zip(paths, items) if path in failed}
        for path, (kind, data), row in zip(paths, items, X):
            if kind == "valid":
                assert path not in failed
            assert (path in failed) == (data in bad_bytes)
            if path in failed:
                assert np.isnan(row).all()
            else:
                assert np.isfinite(row).all()
        if duplicate:
            np.testing.assert_array_equal(X[-1], X[0])

        again = ImageEmbedder(
            model=str(tiny_model_dir), image_size=32, on_error="nan", batch_size=4
        )
        np.testing.assert_array_equal(again.transform(paths), X)

        cache = Path(root) / "cache.h5"
        for _ in range(2):  # computed, then read back
            cached = ImageEmbedder(
                model=str(tiny_model_dir), image_size=32, on_error="nan", cache=cache
            )
            Xc = cached.transform(paths)
            np.testing.assert_allclose(Xc, X, rtol=1e-5, atol=1e-5)
            assert set(cached.failed_paths_.tolist()) == failed

        strict = ImageEmbedder(model=str(tiny_model_dir), image_size=32)
        if not failed:
            np.testing.assert_array_equal(strict.transform(paths), X)
            return
        with pytest.raises(DOCUMENTED) as info:
            strict.transform(paths)
        named = re.findall(r"'([^']*in \d+[^']*)'", str(info.value))
        assert named and named[0] in failed
