"""The audit's image checks, perceptual-hash pairs, list files and --exclude.

Fast: small images written to tmp_path, real CleanVision and imagehash, a
real cache file. The planted test on real grocery photos is marked shared.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from conftest import SHARED_DATA, write_image

from embedclf.workflow._audit._duplicates import audit_command, leak_hint
from embedclf.workflow._audit._hash_pairs import merge_pairs, phash_pairs
from embedclf.workflow._audit._images import (
    PROPERTY_COLUMNS,
    _odd_size,
    find_image_issues,
    image_properties,
    phash_bits,
)
from embedclf.workflow._audit._run import audit_vectors, write_audit
from embedclf.workflow._exclude import drop_excluded, read_exclude_list

pytest.importorskip("cleanvision")


def _keys(paths):
    from embedclf.embedding._images import content_key, read_image_bytes

    return [content_key(read_image_bytes(p)) for p in paths]


def _smooth(path, seed, size=(96, 72), factor=1.0):
    """A photo-like image: colour gradients, stripes and texture."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w] / max(w, h)
    arr = np.zeros((h, w, 3))
    for c in range(3):
        a, b, f = rng.uniform(0.3, 1.0, 3)
        arr[..., c] = 127 + 90 * np.sin(8 * f * xx + a * 6) * np.cos(6 * b * yy)
    arr[(xx * 7).astype(int) % 2 == 0] *= 0.7  # stripes: edges
    arr += rng.normal(0, 30, arr.shape)  # texture: not blurry
    arr = np.clip(arr * factor, 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, quality=95)
    return str(path)


def test_properties_flag_dark_and_blank_and_are_cached(tmp_path):
    from PIL import Image

    paths = [_smooth(tmp_path / f"ok{i}.jpg", i) for i in range(12)]
    paths.append(_smooth(tmp_path / "dark.jpg", 0, factor=0.15))
    blank = tmp_path / "blank.jpg"
    Image.new("RGB", (96, 72), (200, 200, 200)).save(blank)
    paths.append(str(blank))
    keys = _keys(paths)
    cache = tmp_path / "cache.h5"
    props = image_properties(paths, keys, cache=cache)
    assert props.shape == (14, len(PROPERTY_COLUMNS))
    issues = find_image_issues(props)
    assert np.flatnonzero(issues["dark"][1]).tolist() == [12]
    assert 13 in np.flatnonzero(issues["low_information"][1])
    clean = np.zeros(14, dtype=bool)
    for _, flags in issues.values():
        clean |= flags
    assert not clean[:12].any()
    # A second run reads the cache: it works with the files gone.
    for p in paths:
        (tmp_path / p).unlink()
    again = image_properties(paths, keys, cache=cache)
    np.testing.assert_array_equal(again, props)
    # Without a cache the (missing) files give NaN rows, never flagged.
    missing = image_properties(paths[:2], keys[:2])
    assert np.isnan(missing).all()
    assert not any(f.any() for _, f in find_image_issues(missing).values())


def test_odd_size_floor_and_cleanvision_rule():
    # One size for most images: CleanVision's spread is 0 and it would flag
    # every other size; the floor keeps a 348x464 photo, flags a 100 px one.
    sizes = np.array([348.0] * 40 + [401.8] * 5 + [100.0])
    score, flags = _odd_size(sizes)
    assert flags.tolist() == [False] * 45 + [True]
    assert score[-1] < 0.5 <= score[:45].min()


def test_phash_pairs_and_merge_signals(tmp_path):
    from PIL import Image

    a = _smooth(tmp_path / "a.jpg", 1, size=(200, 150))
    b = _smooth(tmp_path / "b.jpg", 2, size=(200, 150))
    with Image.open(a) as img:
        img.resize((140, 105)).save(tmp_path / "a_small.jpg", quality=65)
    paths = [a, b, str(tmp_path / "a_small.jpg")]
    props = image_properties(paths, _keys(paths))
    bits = phash_bits(props)
    assert bits.shape == (3, 64)
    split = np.array(["testing", "training", "training"])
    pairs = phash_pairs(bits, split)
    assert [(p["i"], p["j"], p["splits"]) for p in pairs] == [
        (0, 2, "testing/training")
    ]
    X = np.eye(3, 4, dtype=np.float32)
    emb = [{"i": 0, "j": 1, "similarity": 0.95, "kind": "near", "splits": "x"}]
    emb[0]["signal"] = "embedding"
    merged = merge_pairs(emb, pairs, X)
    signals = {(p["i"], p["j"]): p["signal"] for p in merged}
    assert signals == {(0, 1): "embedding", (0, 2): "phash"}
    both = merge_pairs([dict(emb[0], j=2)], pairs, X)
    assert both[0]["signal"] == "embedding+phash"
    assert both[0]["phash_distance"] == pairs[0]["distance"]


def test_audit_writes_image_section_lists_and_next_steps(tmp_path):
    paths, labels = [], []
    for k, name in enumerate(("a", "b", "c")):
        for i in range(10):
            paths.append(_smooth(tmp_path / name / f"{i}.jpg", 100 * k + i))
            labels.append(name)
    paths.append(_smooth(tmp_path / "a" / "dark.jpg", 3, factor=0.15))
    labels.append("a")
    paths, labels = np.array(paths), np.array(labels)
    split = np.array(["training"] * len(paths))
    split[[5, 15]] = "testing"
    rng = np.random.default_rng(0)
    X = np.eye(3, 8)[np.searchsorted(["a", "b", "c"], labels)] * 5
    X = (X + rng.normal(0, 1, X.shape)).astype(np.float32)
    props = image_properties(paths, _keys(paths))
    result = audit_vectors(X, labels, split, paths=paths, props=props, n_folds=3)
    assert result.summary["n_image_issues"]["dark"] == 1
    out = tmp_path / "audit"
    files = write_audit(result, out, train_command="embedclf train D --output M")
    excluded = read_exclude_list(files["exclude.txt"])
    assert excluded == {str((tmp_path / "a" / "dark.jpg").resolve())}
    page = files["html"].read_text()
    for heading in ("Image issues", "What to do next", "dark (1)"):
        assert heading in page
    assert f"embedclf train D --output M --exclude {out / 'exclude.txt'}" in page
    steps = {s["kind"]: s for s in result.summary["next_steps"]}
    assert steps["image"]["count"] == 1
    assert "dark" in {r["issue"] for r in result.image_issues}
    csv_text = files["csv"].read_text()
    assert re.search(r"^dark,30,.*dark\.jpg,training,a", csv_text, re.M)


def test_exclude_list_and_collect_images(tmp_path):
    from embedclf.workflow._train import collect_images

    for name in ("a", "b"):
        for i in range(4):
            write_image(tmp_path / "data" / name / f"{i}.png", seed=i)
    listing = tmp_path / "exclude.txt"
    listing.write_text(
        "# a comment\n"
        f"{tmp_path / 'data' / 'a' / '0.png'}  # blurry\n"
        "\n"
        f"  {tmp_path / 'data' / 'b' / '3.png'}\n"
    )
    assert len(read_exclude_list(listing)) == 2
    data = collect_images(tmp_path / "data", exclude=listing)
    names = sorted(p.split("/")[-2] + p.split("/")[-1] for p in data.paths)
    assert len(names) == 6 and "a0.png" not in names and "b3.png" not in names
    assert len(collect_images(tmp_path / "data").paths) == 8
    assert drop_excluded(data, None) is data
    msg = f"Exclude list {str(tmp_path / 'nope.txt')!r} does not exist."
    with pytest.raises(FileNotFoundError, match=re.escape(msg)):
        collect_images(tmp_path / "data", exclude=tmp_path / "nope.txt")


def test_audit_command_names_the_root_folder_and_real_values(tmp_path):
    root = tmp_path / "g"
    for s in ("train", "test"):
        (root / s).mkdir(parents=True)
    cmd = audit_command(
        root / "train", test_dir=root / "test", cache="c.h5", model=["m1", "m2"]
    )
    assert (
        cmd
        == f"embedclf audit {root} --output audit --cache c.h5 --model m1 --model m2"
    )
    other = audit_command("photos", val_dir=tmp_path / "elsewhere")
    assert (
        other
        == f"embedclf audit photos --val-dir {tmp_path / 'elsewhere'} --output audit"
    )
    X = np.array([[1.0, 0], [1.0, 0]], dtype=np.float32)
    hint = leak_hint(
        X,
        np.array(["training", "testing"]),
        root / "train",
        test_dir=root / "test",
        cache="c.h5",
        model=["m1"],
    )
    assert f"`embedclf audit {root} --output audit --cache c.h5 --model m1`" in hint
    assert "..." not in hint


@pytest.mark.shared
@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared photos absent")
def test_planted_problems_on_real_grocery_photos(tmp_path):
    """A few real photos (348 px and 240 px): copies paired, problems flagged."""
    from PIL import Image, ImageEnhance, ImageFilter

    src = sorted((SHARED_DATA / "train" / "Banana").glob("*.jpg"))[:6]
    src += sorted((SHARED_DATA / "train" / "Red-Bell-Pepper").glob("*.jpg"))[:6]
    for side in (None, 240):
        d = tmp_path / str(side)
        d.mkdir()
        paths = []
        for k, p in enumerate(src):
            with Image.open(p) as img:
                img = img.convert("RGB")
            if side:
                s = side / max(img.size)
                img = img.resize((round(img.width * s), round(img.height * s)))
            img.save(d / f"{k}.jpg", quality=90)
            paths.append(str(d / f"{k}.jpg"))
        with Image.open(paths[0]) as img:
            img.resize((round(img.width * 0.6), round(img.height * 0.6))).save(
                d / "copy.jpg", quality=60
            )
            img.filter(ImageFilter.GaussianBlur(3)).save(d / "blur.jpg")
            ImageEnhance.Brightness(img).enhance(0.15).save(d / "dark.jpg")
            ImageEnhance.Brightness(img).enhance(3.0).save(d / "over.jpg")
            Image.new("RGB", img.size, (200, 200, 200)).save(d / "blank.jpg")
        planted = ["copy", "blur", "dark", "over", "blank"]
        paths += [str(d / f"{n}.jpg") for n in planted]
        props = image_properties(paths, _keys(paths))
        issues = find_image_issues(props)
        flagged = {k: set(np.flatnonzero(f)) for k, (_, f) in issues.items()}
        n = len(src)
        assert n + 1 in flagged["blurry"], side
        assert n + 2 in flagged["dark"], side
        assert n + 3 in flagged["light"], side
        assert n + 4 in flagged["low_information"], side
        assert not set().union(*flagged.values()) & set(range(n)), side
        pairs = phash_pairs(phash_bits(props))
        assert (0, n) in {(p["i"], p["j"]) for p in pairs}, side
