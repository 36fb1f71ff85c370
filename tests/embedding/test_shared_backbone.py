"""Integration tests on the real EfficientNet-Lite0 backbone and real photos.

They use ../shared (read-only) and are skipped where it is absent.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SHARED_DATA, SHARED_MODEL, SHARED_MODEL_LITE2

from embedclf import EmbeddingCache, ImageEmbedder, load_image_folder
from embedclf.embedding._backbones import (
    backbone_image_count,
    load_backbone,
    resolve_backbone,
)
from embedclf.embedding._images import load_image

pytestmark = [
    pytest.mark.tf,
    pytest.mark.shared,
    pytest.mark.skipif(not SHARED_MODEL.exists(), reason="../shared is not present"),
]


@pytest.fixture(scope="module")
def photos():
    data = load_image_folder(SHARED_DATA / "test")
    rng = np.random.default_rng(0)
    return data.paths[rng.choice(len(data.paths), 12, replace=False)]


def test_vectors_equal_direct_savedmodel_call(photos):
    import tensorflow as tf

    est = ImageEmbedder(model=str(SHARED_MODEL), batch_size=5)
    X = est.transform(photos)
    assert X.shape == (12, 1280)
    spec = resolve_backbone(str(SHARED_MODEL))
    size = load_backbone(spec).default_image_size
    assert size == 224  # read from the handle: EfficientNet-Lite0
    module = tf.saved_model.load(str(SHARED_MODEL))
    images = np.stack(
        [load_image(p, (size, size), crop_fraction=0.875)[1] for p in photos]
    )
    direct = module(tf.constant(images)).numpy()
    np.testing.assert_allclose(X, direct, atol=1e-4)


def test_same_class_photos_are_neighbours():
    """The vectors carry class information: leave-one-out 1-NN over 4 grocery
    classes (6 photos each) is far above chance (25%)."""
    data = load_image_folder(SHARED_DATA / "train")
    wanted = ["Banana", "Red-Bell-Pepper", "Oatly-Natural-Oatghurt", "Cabbage"]
    idx = np.concatenate(
        [np.flatnonzero(data.target_names[data.target] == c)[:6] for c in wanted]
    )
    X = ImageEmbedder(model=str(SHARED_MODEL)).transform(data.paths[idx])
    y = data.target[idx]
    X = X / np.linalg.norm(X, axis=1, keepdims=True)
    sim = X @ X.T
    np.fill_diagonal(sim, -np.inf)
    accuracy = np.mean(y[sim.argmax(1)] == y)
    assert accuracy >= 0.8


def test_two_real_backbones_share_one_cache_file(photos, tmp_path):
    cache = str(tmp_path / "c.h5")
    a = ImageEmbedder(model=str(SHARED_MODEL), cache=cache).transform(photos[:4])
    b = ImageEmbedder(model=str(SHARED_MODEL_LITE2), cache=cache).transform(photos[:4])
    assert a.shape == b.shape == (4, 1280)
    assert not np.allclose(a, b)
    assert {ns["image_size"] for ns in EmbeddingCache(cache).info()} == {"default"}
    assert len(EmbeddingCache(cache).info()) == 2
    before = backbone_image_count()
    again = ImageEmbedder(model=str(SHARED_MODEL_LITE2), cache=cache)
    np.testing.assert_array_equal(again.transform(photos[:4]), b)
    assert backbone_image_count() == before
