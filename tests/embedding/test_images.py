"""Adversarial inputs: every bad or unusual image gives a correct vector, a clear
error naming the file, or the documented ``on_error`` row, and never a wrong
vector or a damaged cache (issue 6).

Reference vectors come from the same pixels written as a plain 8-bit RGB PNG,
so a format-specific decoding bug cannot hide behind a shared code path.
"""

from __future__ import annotations

import io
import os
import re
import struct
import subprocess
import sys
import tempfile
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import write_image

from embedclf import EmbeddingCache, ImageEmbedder, load_image_folder
from embedclf.embedding._backbones import backbone_image_count
from embedclf.embedding._images import decode_image, read_image_bytes
from embedclf.exceptions import ImageDecodeError

PIL = pytest.importorskip("PIL")
from PIL import Image  # noqa: E402

SIZE = (24, 32)  # (height, width) for decode_image tests


def _pixels(h=30, w=40, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (h, w, 3)).astype(np.uint8)


def _encode(img, fmt, **kw):
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _write(path, data):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _png_header_only(width, height):
    """A valid PNG signature and IHDR declaring ``width`` x ``height`` (grey)
    followed by a short IDAT: Pillow opens it, decoding it would need
    ``width * height`` bytes."""

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * (width + 1) * 4)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", idat)
        + chunk(b"IEND", b"")
    )


@pytest.fixture
def embed(tiny_model_dir):
    """Embed paths with the tiny real model, without a cache by default."""

    def run(paths, **kw):
        kw.setdefault("image_size", 32)
        kw.setdefault("batch_size", 4)
        est = ImageEmbedder(model=str(tiny_model_dir), **kw)
        return est.transform([str(p) for p in paths]), est

    return run


def _reference(embed, tmp_path, pixels, name="ref.png"):
    """The vector of ``pixels`` (uint8 RGB) written as a plain PNG."""
    path = _write(tmp_path / "ref" / name, _encode(Image.fromarray(pixels), "PNG"))
    return embed([path])[0][0]


# -- unreadable and undecodable files --------------------------------------------


@pytest.mark.parametrize(
    "name, data, msg",
    [
        ("empty.jpg", b"", "the file is empty (0 bytes)."),
        ("noise.jpg", bytes(range(256)) * 4, "is not a recognised image format"),
        ("notes.png", b"just some text\n" * 20, "is not a recognised image format"),
    ],
)
def test_garbage_files_name_the_file(tmp_path, name, data, msg):
    path = _write(tmp_path / name, data)
    with pytest.raises(ImageDecodeError, match=re.escape(msg)) as info:
        decode_image(read_image_bytes(path), SIZE, path=str(path))
    assert repr(str(path)) in str(info.value)
    assert info.value.path == str(path)


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.05])
def test_truncated_jpeg_is_refused(tmp_path, keep):
    data = _encode(Image.fromarray(_pixels()), "JPEG", quality=90)
    path = _write(tmp_path / "cut.jpg", data[: int(len(data) * keep)])
    with pytest.raises(ImageDecodeError, match="truncated or corrupt") as info:
        decode_image(read_image_bytes(path), SIZE, path=str(path))
    assert str(path) in str(info.value)


def test_missing_path_and_directory_name_the_path(tmp_path):
    missing = tmp_path / "nope" / "gone.jpg"
    with pytest.raises(FileNotFoundError, match=re.escape(f"{str(missing)!r} does")):
        read_image_bytes(missing)
    with pytest.raises(IsADirectoryError, match=re.escape(f"{str(tmp_path)!r} is a")):
        read_image_bytes(tmp_path)


def test_symlinks_loops_and_special_files(tmp_path):
    target = _write(tmp_path / "real.png", _encode(Image.fromarray(_pixels()), "PNG"))
    link = tmp_path / "link.jpg"
    link.symlink_to(target)
    assert read_image_bytes(link) == target.read_bytes()
    dangling = tmp_path / "dangling.png"
    dangling.symlink_to(tmp_path / "deleted.png")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_image_bytes(dangling)
    loop = tmp_path / "loop.png"
    loop.symlink_to(loop)
    with pytest.raises(ImageDecodeError, match="cannot be read .*symbolic links"):
        read_image_bytes(loop)
    # A FIFO must neither block open() nor be read; /dev/zero never ends.
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(ImageDecodeError, match="not a regular file"):
        read_image_bytes(fifo)
    if os.path.exists("/dev/zero"):
        with pytest.raises(ImageDecodeError, match="not a regular file"):
            read_image_bytes("/dev/zero")
    with pytest.raises(ImageDecodeError, match="cannot be read .*Not a directory"):
        read_image_bytes(target / "child.png")


_UNREADABLE_SCRIPT = textwrap.dedent(
    """
    import os, sys
    from embedclf.embedding._images import read_image_bytes  # import while still root
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)
    try:
        read_image_bytes(sys.argv[1])
    except PermissionError as exc:
        print("PermissionError:", exc)
    """
)


def test_unreadable_file_permission_denied(tmp_path):
    """chmod 000 stops reads for anyone but root. As root, check the real thing
    in a child process that drops to the unprivileged user ``nobody``."""
    if os.geteuid() != 0:
        path = write_image(tmp_path / "secret.png")
        path.chmod(0)
        try:
            with pytest.raises(PermissionError, match="permission denied"):
                read_image_bytes(path)
        finally:
            path.chmod(0o644)
        return
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)
        path = write_image(Path(tmp) / "secret.png")
        path.chmod(0)
        proc = subprocess.run(
            [sys.executable, "-c", _UNREADABLE_SCRIPT, str(path)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    if proc.returncode != 0 and "Operation not permitted" in proc.stderr:
        pytest.skip("this root cannot switch to user nobody (no CAP_SETUID)")
    assert proc.returncode == 0, proc.stderr
    assert "PermissionError: Image file" in proc.stdout
    assert "permission denied. Fix its permissions" in proc.stdout
    assert str(path) in proc.stdout


# -- formats, modes and lying extensions -----------------------------------------


@pytest.mark.parametrize(
    "fmt, kw", [("PNG", {}), ("BMP", {}), ("WEBP", {"lossless": True}), ("GIF", {})]
)
@pytest.mark.parametrize("name", ["photo.jpg", "photo.png", "photo.txt", "photo"])
def test_format_is_detected_from_content(tmp_path, fmt, kw, name):
    # GIF holds <= 256 colours: use a 4-colour image so every format is lossless.
    base = _pixels() // 64 * 85 if fmt == "GIF" else _pixels()
    data = _encode(Image.fromarray(base), fmt, **kw)
    path = _write(tmp_path / name, data)
    got = decode_image(read_image_bytes(path), (30, 40), path=str(path))
    np.testing.assert_array_equal(got, base.astype(np.float32) / 255.0)


def test_lying_extension_gives_the_true_vector(embed, tmp_path):
    pixels = _pixels()
    ref = _reference(embed, tmp_path, pixels)
    liars = [
        _write(tmp_path / "bmp.jpg", _encode(Image.fromarray(pixels), "BMP")),
        _write(
            tmp_path / "webp.png",
            _encode(Image.fromarray(pixels), "WEBP", lossless=True),
        ),
        _write(tmp_path / "png.gif", _encode(Image.fromarray(pixels), "PNG")),
    ]
    X, _ = embed(liars)
    for row in X:
        np.testing.assert_allclose(row, ref, rtol=1e-5, atol=1e-6)


def test_cmyk_jpeg_decodes_to_rgb_colours(tmp_path):
    red = np.zeros((32, 32, 3), np.uint8)
    red[..., 0] = 220
    data = _encode(Image.fromarray(red).convert("CMYK"), "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    got = decode_image(data, (16, 16))
    np.testing.assert_allclose(got.mean(axis=(0, 1)), [220 / 255, 0, 0], atol=0.03)


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16_bit_greyscale_is_scaled_not_clipped(fmt):
    ramp = np.linspace(0, 65535, 30 * 40).reshape(30, 40).astype(np.uint16)
    data = _encode(Image.fromarray(ramp), fmt)
    assert Image.open(io.BytesIO(data)).mode.startswith("I;16")
    got = decode_image(data, (30, 40))
    expected = np.round(ramp / 65535 * 255) / 255
    for c in range(3):  # grey replicated, full range kept (no white-out at 255)
        np.testing.assert_allclose(got[..., c], expected, atol=1e-6)
    assert got.min() == 0.0 and got.max() == 1.0


def test_greyscale_rgba_and_palette(tmp_path):
    pixels = _pixels()
    grey = Image.fromarray(pixels).convert("L")
    got = decode_image(_encode(grey, "PNG"), (30, 40))
    for c in range(3):
        np.testing.assert_array_equal(got[..., c], np.asarray(grey) / np.float32(255))

    rgba = np.dstack([pixels, np.full((30, 40), 255, np.uint8)])
    rgba[:15, :, 3] = 0  # the top half fully transparent -> white
    got = decode_image(_encode(Image.fromarray(rgba, "RGBA"), "PNG"), (30, 40))
    np.testing.assert_array_equal(got[:15], 1.0)
    np.testing.assert_array_equal(got[15:], pixels[15:] / np.float32(255))

    pal = Image.fromarray(pixels).quantize(16)
    got = decode_image(_encode(pal, "PNG"), (30, 40))
    np.testing.assert_array_equal(got, np.asarray(pal.convert("RGB")) / np.float32(255))
    pal.info["transparency"] = 0  # palette index 0 transparent -> white
    got = decode_image(_encode(pal, "PNG", transparency=0), (30, 40))
    index = np.asarray(pal)
    assert (index == 0).any()
    np.testing.assert_array_equal(got[index == 0], 1.0)


def test_modes_give_the_vector_of_their_rgb_pixels(embed, tmp_path):
    """Grey, RGBA (opaque), palette and CMYK inputs embed like the RGB image of
    what they show (for the CMYK JPEG: of its pixels as Pillow decodes them)."""
    pixels = _pixels()
    grey = np.repeat(np.asarray(Image.fromarray(pixels).convert("L"))[..., None], 3, 2)
    pal = Image.fromarray(pixels).quantize(32)
    cmyk = _encode(Image.fromarray(pixels).convert("CMYK"), "JPEG", quality=95)
    cases = {
        "cmyk.jpg": (cmyk, np.asarray(Image.open(io.BytesIO(cmyk)).convert("RGB"))),
        "grey.png": (_encode(Image.fromarray(pixels).convert("L"), "PNG"), grey),
        "rgba.png": (_encode(Image.fromarray(pixels).convert("RGBA"), "PNG"), pixels),
        "pal.png": (_encode(pal, "PNG"), np.asarray(pal.convert("RGB"))),
    }
    for name, (data, expected) in cases.items():
        X, _ = embed([_write(tmp_path / name, data)])
        np.testing.assert_allclose(
            X[0], _reference(embed, tmp_path, expected), rtol=1e-5, atol=1e-6
        )


def test_animated_gif_uses_the_first_frame(embed, tmp_path):
    first = np.zeros((30, 40, 3), np.uint8)
    first[..., 2] = 255
    second = np.zeros((30, 40, 3), np.uint8)
    second[..., 0] = 255
    frames = [Image.fromarray(first), Image.fromarray(second)]
    data = _encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 2
    np.testing.assert_array_equal(decode_image(data, (30, 40)), first / 255.0)
    X, _ = embed([_write(tmp_path / "anim.gif", data)])
    np.testing.assert_allclose(
        X[0], _reference(embed, tmp_path, first), rtol=1e-5, atol=1e-6
    )


# How to store an upright image U so that EXIF orientation o shows U again:
# stored = inverse of the transpose that exif_transpose applies.
_STORE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def _exif_png(upright, orientation):
    stored = Image.fromarray(upright).transpose(_STORE[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _encode(stored, "PNG", exif=exif)


@pytest.mark.parametrize("orientation", sorted(_STORE))
def test_exif_orientation_is_honoured(orientation):
    upright = _pixels(30, 40)
    data = _exif_png(upright, orientation)
    assert Image.open(io.BytesIO(data)).getexif()[0x0112] == orientation
    got = decode_image(data, (30, 40))
    np.testing.assert_array_equal(got, upright / np.float32(255))


def test_exif_rotated_photo_embeds_like_the_upright_one(embed, tmp_path):
    upright = _pixels(30, 40, seed=3)
    ref = _reference(embed, tmp_path, upright)
    paths = [_write(tmp_path / f"rot{o}.png", _exif_png(upright, o)) for o in (3, 6, 8)]
    X, _ = embed(paths)
    for row in X:
        np.testing.assert_allclose(row, ref, rtol=1e-5, atol=1e-6)
    # ... and not like the stored (sideways) pixels.
    sideways = np.asarray(Image.fromarray(upright).transpose(_STORE[6]))
    assert not np.allclose(X[1], _reference(embed, tmp_path, sideways, "side.png"))


def test_tiny_images(embed, tmp_path):
    paths = [
        write_image(tmp_path / "one.png", size=(1, 1)),
        write_image(tmp_path / "one.jpg", size=(1, 1)),
        write_image(tmp_path / "line.png", size=(500, 1)),
    ]
    X, est = embed(paths)
    assert X.shape == (3, 16) and np.isfinite(X).all()
    assert len(est.failed_paths_) == 0


# -- very large images -------------------------------------------------------------

_RSS_SCRIPT = textwrap.dedent(
    """
    import resource, sys, numpy as np
    from embedclf.embedding._images import decode_image
    from embedclf.exceptions import ImageDecodeError
    from PIL import Image
    import io
    small = io.BytesIO()
    Image.new("RGB", (64, 64)).save(small, "JPEG")
    decode_image(small.getvalue(), (32, 32))  # warm up every import
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    data = open(sys.argv[1], "rb").read()
    try:
        arr = decode_image(data, (32, 32))
        outcome = "decoded %s %.4f" % (arr.shape, arr.mean())
    except ImageDecodeError as exc:
        outcome = "refused " + str(exc)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print((after - before) // 1024)  # ru_maxrss is in KiB on Linux
    print(outcome)
    """
)


def _peak_rss_mib(path):
    proc = subprocess.run(
        [sys.executable, "-c", _RSS_SCRIPT, str(path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    delta, outcome = proc.stdout.strip().split("\n", 1)
    return int(delta), outcome


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss units are Linux's")
def test_huge_png_is_refused_as_a_bomb_without_decoding(tmp_path):
    path = _write(tmp_path / "huge.png", _png_header_only(12000, 12000))
    with pytest.raises(
        ImageDecodeError,
        match=re.escape(
            "the image is 12000x12000 pixels, more than max_image_pixels=89478485 "
            "(it could be a decompression bomb). Pass a larger max_image_pixels"
        ),
    ):
        decode_image(path.read_bytes(), (32, 32), path=str(path))
    delta, outcome = _peak_rss_mib(path)
    assert outcome.startswith("refused"), outcome
    assert delta < 32, f"refusing a bomb used {delta} MiB"


def test_beyond_pillows_own_limit_the_message_gives_the_real_fix():
    data = _png_header_only(15000, 15000)  # 225 MP > 2 * PIL.Image.MAX_IMAGE_PIXELS
    with pytest.raises(ImageDecodeError, match=r"raise PIL\.Image\.MAX_IMAGE_PIXELS"):
        decode_image(data, (32, 32), max_image_pixels=None)


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss units are Linux's")
def test_huge_jpeg_is_decoded_under_a_memory_bound(tmp_path, embed):
    """A 12000x12000 JPEG (144 MP; 432 MiB as full RGB) is DCT-downscaled while
    decoding: it is embedded, and decoding it costs far less than one full
    greyscale plane (137 MiB)."""
    img = Image.linear_gradient("L").resize((12000, 12000))
    path = tmp_path / "huge.jpg"
    img.save(path, "JPEG", quality=50)
    del img
    delta, outcome = _peak_rss_mib(path)
    assert outcome.startswith("decoded (32, 32, 3)"), outcome
    assert delta < 64, f"decoding used {delta} MiB"
    X, est = embed([path])
    assert np.isfinite(X).all() and len(est.failed_paths_) == 0


# -- the embedder: on_error, cache safety, names -------------------------------------


def _bad_inputs(tmp_path):
    jpg = _encode(Image.fromarray(_pixels()), "JPEG")
    d = tmp_path / "bad"
    (d / "a folder.jpg").mkdir(parents=True)
    return [
        _write(d / "empty.jpg", b""),
        _write(d / "cut.jpg", jpg[: len(jpg) // 2]),
        _write(d / "noise.jpg", np.random.default_rng(1).bytes(2000)),
        _write(d / "text.png", b"hello\n"),
        d / "missing.png",
        d / "a folder.jpg",
        _write(d / "bomb.png", _png_header_only(12000, 12000)),
    ]


@pytest.mark.parametrize("on_error, fill", [("zero", 0.0), ("nan", np.nan)])
def test_bad_files_fill_rows_and_never_reach_the_cache(embed, tmp_path, on_error, fill):
    good = [write_image(tmp_path / f"good{i}.png", seed=i) for i in range(3)]
    bad = _bad_inputs(tmp_path)
    paths = [good[0], *bad[:4], good[1], *bad[4:], good[2]]
    ref, _ = embed(good)
    cache = tmp_path / "cache.h5"
    X, est = embed(paths, on_error=on_error, cache=cache)
    is_bad = np.array([p in bad for p in paths])
    np.testing.assert_array_equal(X[is_bad], np.full((len(bad), 16), fill))
    np.testing.assert_allclose(X[~is_bad], ref, rtol=1e-5, atol=1e-6)
    assert sorted(est.failed_paths_) == sorted(str(p) for p in bad)
    assert est.n_computed_ == 3
    [ns] = EmbeddingCache(cache).info()
    assert ns["n_rows"] == 3  # only good rows are stored
    before = backbone_image_count()
    X2, est2 = embed(paths, on_error=on_error, cache=cache)
    np.testing.assert_array_equal(X2, X)
    assert est2.n_computed_ == 0 and backbone_image_count() == before


@pytest.mark.parametrize(
    "index, exc, msg",
    [
        (0, ImageDecodeError, "the file is empty"),
        (1, ImageDecodeError, "truncated or corrupt"),
        (2, ImageDecodeError, "not a recognised image format"),
        (3, ImageDecodeError, "not a recognised image format"),
        (4, FileNotFoundError, "does not exist"),
        (5, IsADirectoryError, "is a directory, not an image file"),
        (6, ImageDecodeError, "decompression bomb"),
    ],
)
def test_raise_names_the_bad_file_and_keeps_the_cache(embed, tmp_path, index, exc, msg):
    good = [write_image(tmp_path / f"good{i}.png", seed=i) for i in range(6)]
    bad = _bad_inputs(tmp_path)[index]
    cache = tmp_path / "cache.h5"
    embed(good[:3], cache=cache)
    with pytest.raises(exc, match=re.escape(msg)) as info:
        embed([*good, bad], cache=cache, batch_size=2)
    assert str(bad) in str(info.value)
    X, est = embed(good, cache=cache)  # nothing committed was lost
    assert est.n_cached_ >= 3
    ref, _ = embed(good)
    np.testing.assert_allclose(X, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("on_error", ["zero", "nan"])
def test_copies_of_a_bad_file_are_all_reported(embed, tmp_path, on_error):
    """Identical bytes are decoded once; the failure is reported for every
    path holding them (found by test_property.py)."""
    data = b"\x00 not an image"
    a = _write(tmp_path / "a.jpg", data)
    b = _write(tmp_path / "copy of a.jpg", data)
    good = write_image(tmp_path / "good.png")
    X, est = embed([a, good, b], on_error=on_error)
    assert sorted(est.failed_paths_) == sorted([str(a), str(b)])


def test_raise_counts_the_other_bad_files(embed, tmp_path):
    bad = _bad_inputs(tmp_path)
    with pytest.raises(ImageDecodeError, match="the file is empty") as info:
        embed(bad)
    notes = "\n".join(getattr(info.value, "__notes__", []))
    # Unreadable files are found while hashing, before any decoding starts.
    assert "2 more file(s) failed" in notes
    assert str(bad[4]) in notes and str(bad[5]) in notes
    assert "on_error='zero' or 'nan'" in notes


def test_unicode_spaces_and_symlinks_end_to_end(embed, tmp_path):
    root = tmp_path / "données photos"
    paths = {
        "chat noir": write_image(root / "chat noir" / "été 2024 ☀.png", seed=1),
        "犬": write_image(root / "犬" / "写真 1.jpg", seed=2),
        "émoji 🐍": write_image(root / "émoji 🐍" / "a b.bmp", seed=3, fmt="BMP"),
    }
    elsewhere = write_image(tmp_path / "outside" / "x.png", seed=4)
    (root / "犬" / "link to x.png").symlink_to(elsewhere)
    (root / "犬" / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    (root / "linked class").symlink_to(root / "chat noir", target_is_directory=True)
    data = load_image_folder(root)
    assert sorted(data.target_names) == sorted([*paths, "linked class"])
    X, est = embed(data.paths, on_error="nan", cache=tmp_path / "ç a.h5")
    assert [Path(p).name for p in est.failed_paths_] == ["dangling.png"]
    ok = np.isfinite(X).all(axis=1)
    assert ok.sum() == len(data.paths) - 1
    by_name = dict(zip(data.paths, X))
    np.testing.assert_array_equal(
        by_name[str(root / "linked class" / "été 2024 ☀.png")],
        by_name[str(paths["chat noir"])],
    )
    ref, _ = embed([elsewhere])
    np.testing.assert_allclose(
        by_name[str(root / "犬" / "link to x.png")], ref[0], rtol=1e-5, atol=1e-6
    )


def test_hidden_files_ds_store_and_empty_class_folders(tmp_path):
    root = tmp_path / "root"
    write_image(root / "cat" / "a.png")
    write_image(root / "cat" / ".hidden.png")
    write_image(root / "cat" / "._a.png")  # macOS AppleDouble companion
    (root / "cat" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1" + b"\0" * 100)
    (root / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    write_image(root / ".Trash" / "b.png")
    write_image(root / "dog" / "b.jpg")
    (root / "empty class").mkdir()
    with pytest.warns(UserWarning) as record:
        data = load_image_folder(root)
    messages = [str(w.message) for w in record]
    assert messages == [
        f"Skipped 1 class folder(s) with no images in {str(root)!r}: empty class"
    ]
    assert data.target_names.tolist() == ["cat", "dog"]
    assert [Path(p).name for p in data.paths] == ["a.png", "b.jpg"]


def test_symlink_loop_in_a_class_folder_lists_each_image_once(tmp_path):
    root = tmp_path / "root"
    write_image(root / "cat" / "a.png")
    write_image(root / "dog" / "b.png")
    (root / "cat" / "sub").mkdir()
    (root / "cat" / "sub" / "up").symlink_to("..", target_is_directory=True)
    data = load_image_folder(root)
    assert sorted(Path(p).name for p in data.paths) == ["a.png", "b.png"]
