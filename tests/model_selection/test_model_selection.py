"""Model selection over image paths runs the backbone once per image in total.

A Pipeline of ImageEmbedder (with an HDF5 cache) and a classifier is cloned and
refitted for every fold and candidate; the cache must make every image after
the first pass a cache hit, whatever the number of folds, candidates and jobs.
"""

from __future__ import annotations

import logging
import re

import joblib
import numpy as np
import pytest
from conftest import make_image_folder, write_image
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import Pipeline

from embedclf import (
    HashSplit,
    ImageEmbedder,
    SoftmaxClassifier,
    load_image_folder,
    retrain_split,
)
from embedclf.embedding._backbones import backbone_image_count

pytestmark = pytest.mark.tf

LOG_LINE = re.compile(r"(\d+) images: (\d+) computed by the backbone, (\d+) from cache")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("ms") / "images"
    return load_image_folder(
        make_image_folder(root, classes=("red", "green", "blue"), n_per_class=10)
    )


def _pipeline(model_dir, cache):
    return Pipeline(
        [
            ("embed", ImageEmbedder(model=str(model_dir), cache=str(cache))),
            ("clf", SoftmaxClassifier()),
        ]
    )


def _log_counts(caplog):
    """(images, computed, cached) summed over ImageEmbedder's INFO lines."""
    rows = [tuple(map(int, m.groups())) for m in LOG_LINE.finditer(caplog.text)]
    return len(rows), np.sum(rows, axis=0) if rows else np.zeros(3, dtype=int)


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_grid_search_embeds_each_image_once(
    tiny_model_dir, folder, tmp_path, caplog, n_jobs
):
    n = len(folder.paths)
    search = GridSearchCV(
        _pipeline(tiny_model_dir, tmp_path / "cache.h5"),
        {"clf__C": [0.1, 1.0, 10.0]},
        cv=5,
        n_jobs=n_jobs,
    )
    before = backbone_image_count()
    # threading keeps the workers in this process, so the counter sees them
    with (
        joblib.parallel_backend("threading"),
        caplog.at_level(logging.INFO, "embedclf"),
    ):
        search.fit(folder.paths, folder.target)
    assert backbone_image_count() - before == n

    n_transforms, (images, computed, cached) = _log_counts(caplog)
    # 5 folds x 3 candidates x (fit + score) + the refit: many passes over the
    # images, yet only the first sight of each image reached the backbone
    assert n_transforms >= 5 * 3 * 2 + 1
    assert computed == n
    assert cached > 10 * n
    if n_jobs == 1:
        assert cached == images - n
    assert search.best_score_ > 0.8


def test_cross_val_score_cold_then_warm_cache(tiny_model_dir, folder, tmp_path):
    n = len(folder.paths)
    pipe = _pipeline(tiny_model_dir, tmp_path / "cache.h5")
    before = backbone_image_count()
    cold = cross_val_score(pipe, folder.paths, folder.target, cv=5)
    assert backbone_image_count() - before == n

    before = backbone_image_count()
    warm = cross_val_score(pipe, folder.paths, folder.target, cv=5)
    assert backbone_image_count() - before == 0
    np.testing.assert_allclose(warm, cold)


def test_grid_search_over_hash_split_on_paths(tiny_model_dir, folder, tmp_path):
    search = GridSearchCV(
        _pipeline(tiny_model_dir, tmp_path / "cache.h5"),
        {"clf__C": [0.1, 10.0]},
        cv=HashSplit(validation_percentage=20, testing_percentage=20),
        refit=False,
    )
    before = backbone_image_count()
    search.fit(folder.paths, folder.target)
    # the testing images are never looked at while tuning
    expected = np.sum(retrain_split(folder.paths, 20, 20) != "testing")
    assert backbone_image_count() - before == expected < len(folder.paths)
    assert search.n_splits_ == 1


def test_nan_rows_from_unreadable_images_get_a_clear_error(tiny_model_dir, tmp_path):
    root = make_image_folder(tmp_path / "images", n_per_class=4)
    broken = root / "red" / "zz_broken.jpg"
    broken.write_bytes(b"not a jpeg")
    write_image(root / "green" / "zz_ok.png", seed=7)
    data = load_image_folder(root)
    embedder = ImageEmbedder(model=str(tiny_model_dir), on_error="nan")
    X = embedder.transform(data.paths)
    assert embedder.failed_paths_.tolist() == [str(broken)]

    row = data.paths.tolist().index(str(broken))
    msg = (
        f"Input X contains NaN in 1 of {len(data.paths)} rows (row indices {row}); "
        "SoftmaxClassifier cannot fit on rows without an embedding. Such rows come "
        "from ImageEmbedder(on_error='nan') for images it could not read; their "
        "paths are in the embedder's failed_paths_ attribute. Drop those rows "
        "first, e.g. keep = ~np.isnan(X).any(axis=1); X, y = X[keep], y[keep]."
    )
    with pytest.raises(ValueError, match=re.escape(msg)):
        SoftmaxClassifier().fit(X, data.target)

    pipe = Pipeline([("embed", embedder), ("clf", SoftmaxClassifier())])
    with pytest.raises(ValueError, match=re.escape(msg)):
        pipe.fit(data.paths, data.target)

    # the fix the message suggests works
    keep = ~np.isnan(X).any(axis=1)
    clf = SoftmaxClassifier().fit(X[keep], data.target[keep])
    assert clf.score(X[keep], data.target[keep]) > 0.8
