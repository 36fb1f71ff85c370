"""Several backbones at once: ``ImageEmbedder(model=[A, B])``."""

from __future__ import annotations

import re

import joblib
import numpy as np
import pytest
from conftest import make_image_folder
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline

from embedclf import EmbeddingCache, ImageEmbedder, SoftmaxClassifier, load_image_folder
from embedclf.embedding._backbones import backbone_image_count

pytestmark = pytest.mark.tf


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("multi") / "images"
    return load_image_folder(
        make_image_folder(root, classes=("red", "green", "blue"), n_per_class=6)
    )


def test_columns_are_each_backbone_in_order(
    tiny_model_dir, tiny_model_dir_b, folder, tmp_path
):
    a = ImageEmbedder(model=str(tiny_model_dir)).transform(folder.paths)
    b = ImageEmbedder(model=str(tiny_model_dir_b)).transform(folder.paths)
    cache = tmp_path / "c.h5"
    est = ImageEmbedder(model=[str(tiny_model_dir), tiny_model_dir_b], cache=cache)
    X = est.transform(folder.paths)
    assert X.shape == (len(folder.paths), 16 + 8)
    np.testing.assert_allclose(X[:, :16], a, atol=1e-6)
    np.testing.assert_allclose(X[:, 16:], b, atol=1e-6)
    assert est.embedding_slices_ == [slice(0, 16), slice(16, 24)]
    assert est.n_computed_ == 2 * len(folder.paths) and est.n_cached_ == 0
    # one namespace per backbone in the one file; a second call computes nothing
    assert sorted(ns["dim"] for ns in EmbeddingCache(cache).info()) == [8, 16]
    again = clone(est)
    np.testing.assert_array_equal(again.transform(folder.paths), X)
    assert again.n_computed_ == 0 and again.n_cached_ == 2 * len(folder.paths)


def test_normalize_each_scales_every_block_to_unit_norm(
    tiny_model_dir, tiny_model_dir_b, folder
):
    models = [str(tiny_model_dir), str(tiny_model_dir_b)]
    raw = ImageEmbedder(model=models).transform(folder.paths)
    est = ImageEmbedder(model=models, normalize_each=True)
    X = est.transform(folder.paths)
    for part in est.embedding_slices_:
        np.testing.assert_allclose(np.linalg.norm(X[:, part], axis=1), 1.0, rtol=1e-5)
        norms = np.linalg.norm(raw[:, part], axis=1, keepdims=True)
        np.testing.assert_allclose(X[:, part], raw[:, part] / norms, rtol=1e-5)
    single = ImageEmbedder(model=models[0], normalize_each=True).transform(folder.paths)
    np.testing.assert_allclose(single, X[:, :16], rtol=1e-5)


def test_a_bad_file_fills_the_whole_row(
    tiny_model_dir, tiny_model_dir_b, folder, tmp_path
):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    paths = [folder.paths[0], str(bad), folder.paths[1]]
    est = ImageEmbedder(
        model=[str(tiny_model_dir), str(tiny_model_dir_b)],
        on_error="nan",
        normalize_each=True,
    )
    X = est.transform(paths)
    assert np.isnan(X[1]).all() and np.isfinite(X[[0, 2]]).all()
    assert est.failed_paths_.tolist() == [str(bad)]
    assert len(est.failure_reasons_) == 1
    assert est.failure_reasons_[0].startswith(f"Could not read image {str(bad)!r}")


@pytest.mark.parametrize(
    "model, message",
    [
        ([], "is an empty list"),
        (["same", "same"], "names 'same' twice"),
    ],
)
def test_bad_model_lists_are_refused(model, message, folder):
    with pytest.raises(ValueError, match=re.escape(message)):
        ImageEmbedder(model=model).transform(folder.paths[:1])


def test_list_model_clones_and_reprs_without_loading(tiny_model_dir):
    est = ImageEmbedder(model=[str(tiny_model_dir), "keras:MobileNetV2"])
    assert clone(est).get_params()["model"] == est.model
    assert "keras:MobileNetV2" in repr(est)


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_grid_search_runs_each_backbone_once_per_image(
    tiny_model_dir, tiny_model_dir_b, folder, tmp_path, n_jobs
):
    pipe = Pipeline(
        [
            (
                "embed",
                ImageEmbedder(
                    model=[str(tiny_model_dir), str(tiny_model_dir_b)],
                    cache=str(tmp_path / "cache.h5"),
                ),
            ),
            ("clf", SoftmaxClassifier()),
        ]
    )
    search = GridSearchCV(pipe, {"clf__C": [0.1, 1.0]}, cv=3, n_jobs=n_jobs)
    before = backbone_image_count()
    with joblib.parallel_backend("threading"):
        search.fit(folder.paths, folder.target)
    # each image met each of the two backbones exactly once
    assert backbone_image_count() - before == 2 * len(folder.paths)
    assert search.predict(folder.paths[:2]).shape == (2,)
