"""The audit on real Grocery Store photos with planted problems.

Needs ../shared (the EfficientNet-Lite0 backbone and the photos). The
vectors come from a cache in the test's temporary folder; set
``EMBEDCLF_GROCERY_CACHE`` to a cache already holding them (it is copied,
never written) to skip the backbone, e.g. ``/work/cache/grocery.h5``.
Otherwise the first test embeds the training and testing photos (about
2-3 minutes on 2 cores).
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from conftest import SHARED_DATA, SHARED_MODEL

from embedclf.workflow._audit._run import audit_images, audit_vectors
from embedclf.workflow._train import collect_images

pytestmark = [
    pytest.mark.shared,
    pytest.mark.slow,
    pytest.mark.tf,
    pytest.mark.skipif(
        not (SHARED_MODEL.is_dir() and SHARED_DATA.is_dir()),
        reason="../shared (backbone and grocery photos) is absent",
    ),
]


@pytest.fixture(scope="module")
def grocery(tmp_path_factory):
    """Training and testing photos, their vectors and a private cache."""
    from embedclf import ImageEmbedder

    base = tmp_path_factory.mktemp("grocery_audit")
    cache = base / "cache.h5"
    given = os.environ.get("EMBEDCLF_GROCERY_CACHE")
    if given and os.path.isfile(given):
        shutil.copyfile(given, cache)
    data = collect_images(SHARED_DATA)
    keep = data.split != "validation"
    paths, labels, split = data.paths[keep], data.labels[keep], data.split[keep]
    X = ImageEmbedder(model=str(SHARED_MODEL), cache=str(cache), progress=False)
    X = X.transform(paths)
    return {
        "base": base,
        "cache": cache,
        "paths": paths,
        "labels": labels,
        "split": split,
        "X": X,
    }


def test_flipped_training_labels_are_found(grocery):
    train = grocery["split"] == "training"
    X, y = grocery["X"][train], grocery["labels"][train].copy()
    rng = np.random.default_rng(0)
    flipped = rng.choice(len(y), int(round(0.05 * len(y))), replace=False)
    classes = np.unique(y)
    for i in flipped:
        y[i] = rng.choice(classes[classes != y[i]])
    result = audit_vectors(X, y)
    flagged = np.array([r["index"] for r in result.label_issues])
    hit = np.isin(flagged, flipped)
    recall = hit.sum() / len(flipped)
    precision = hit.sum() / len(flagged)
    # The curve over cleanlab's ranking of all images by label quality.
    # (cleanlab's self-confidence: the out-of-fold probability of the given
    # label.)
    quality = result.proba[np.arange(len(y)), np.searchsorted(result.classes, y)]
    order = np.argsort(quality)
    is_flip = np.isin(order, flipped)
    print(f"\nflagged {len(flagged)}: recall {recall:.3f}, precision {precision:.3f}")
    for k in (25, 50, 100, 132, 150, 200, 300):
        tp = is_flip[:k].sum()
        print(f"  top {k:4d}: precision {tp / k:.3f}, recall {tp / len(flipped):.3f}")
    assert recall >= 0.60
    assert precision >= 0.50


def _plant(kind, src, dst):
    from PIL import Image

    if kind == "exact":
        shutil.copyfile(src, dst)
        return
    with Image.open(src) as img:
        img = img.convert("RGB")
        w, h = img.size
        if kind == "jpeg":
            img.save(dst, quality=60)
        elif kind == "resized":
            img.resize((int(w * 0.6), int(h * 0.6)), Image.BILINEAR).save(
                dst, quality=90
            )
        elif kind == "cropped":  # 5 % of each side cut off, 2.5 % per border
            dx, dy = round(w * 0.025), round(h * 0.025)
            img.crop((dx, dy, w - dx, h - dy)).save(dst, quality=90)


def test_planted_copies_across_splits_are_found(grocery):
    paths, labels, split = grocery["paths"], grocery["labels"], grocery["split"]
    test = np.flatnonzero(split == "testing")
    rng = np.random.default_rng(1)
    picked = rng.choice(test, 20, replace=False)
    kinds = ["exact", "jpeg", "resized", "cropped"]
    folder = grocery["base"] / "planted"
    folder.mkdir(exist_ok=True)
    new_paths = []
    for n, i in enumerate(picked):
        kind = kinds[n % 4]
        dst = folder / f"{kind}_{n}_{os.path.basename(paths[i])}"
        _plant(kind, paths[i], dst)
        new_paths.append(str(dst))
    all_paths = np.concatenate([paths, new_paths])
    all_labels = np.concatenate([labels, labels[picked]])
    all_split = np.concatenate([split, ["training"] * len(picked)])
    result = audit_images(
        all_paths,
        all_labels,
        all_split,
        model=str(SHARED_MODEL),
        cache=str(grocery["cache"]),
        progress=False,
    )
    n_real = len(paths)
    cross = [p for p in result.duplicates if p["splits"] == "testing/training"]
    found = {(p["i"], p["j"]): p for p in cross}
    for n, i in enumerate(picked):
        pair = (int(i), n_real + n) if i < n_real + n else (n_real + n, int(i))
        assert pair in found, f"planted {kinds[n % 4]} copy of {paths[i]} missed"
        expected = "exact" if kinds[n % 4] == "exact" else "near"
        assert found[pair]["kind"] == expected
    false = [p for p in cross if p["i"] < n_real and p["j"] < n_real]
    print(f"\n{len(false)} cross-split pairs among the real photos")
    assert len(false) <= 6
    tw = result.twins
    assert tw["n_with_twin"] >= len(picked)
