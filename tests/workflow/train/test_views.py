"""Test-time views: probabilities averaged over cached views of each image."""

from __future__ import annotations

import re

import numpy as np
import pytest
from conftest import make_image_folder

from embedclf import (
    ImageEmbedder,
    OpenSetClassifier,
    SoftmaxClassifier,
    load_image_folder,
)
from embedclf.embedding._backbones import load_backbone, resolve_backbone
from embedclf.embedding._images import decode_image
from embedclf.workflow import predict_proba_views
from embedclf.workflow._train._views import view_plan

pytestmark = pytest.mark.tf


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("views") / "images"
    folder = load_image_folder(
        make_image_folder(root, classes=("red", "green", "blue"), n_per_class=5)
    )
    embedder = ImageEmbedder(
        model=str(tiny_model_dir), cache=str(root.parent / "c.h5"), resample="box"
    )
    X = embedder.transform(folder.paths)
    head = SoftmaxClassifier(C=1.0).fit(X, folder.target)
    return folder, embedder, X, head


def test_flip_averages_the_plain_and_the_mirrored_image(fitted, tiny_model_dir):
    folder, embedder, X, head = fitted
    proba, n_computed = predict_proba_views(
        head, X, folder.paths, embedder, test_views="flip"
    )
    assert n_computed == len(folder.paths)
    backbone = load_backbone(resolve_backbone(str(tiny_model_dir)))
    side = backbone.default_image_size
    mirrored = np.stack(
        [
            decode_image(
                open(p, "rb").read(), (side, side), resample="box", crop_fraction=0.875
            )[:, ::-1]
            for p in folder.paths
        ]
    )
    expected = (head.predict_proba(X) + head.predict_proba(backbone(mirrored))) / 2
    np.testing.assert_allclose(proba, expected, atol=1e-5)
    assert not np.allclose(proba, head.predict_proba(X))
    # the views are cached: a second call runs no backbone
    again, n_again = predict_proba_views(
        head, X, folder.paths, embedder, test_views="flip"
    )
    assert n_again == 0
    np.testing.assert_allclose(again, proba, atol=1e-6)


def test_train_views_use_the_recorded_distortions(fitted):
    folder, embedder, X, head = fitted
    aug = {"copies": 3, "random_crop": 20, "random_brightness": 10}
    settings, copies = view_plan("train", aug)
    assert copies == 3 and settings.random_crop == 20
    proba, n = predict_proba_views(
        head, X, folder.paths, embedder, test_views="train", augmentation=aug
    )
    assert n == 3 * len(folder.paths)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    none, n_none = predict_proba_views(
        head, X, folder.paths, embedder, test_views="none"
    )
    assert n_none == 0
    np.testing.assert_array_equal(none, head.predict_proba(X))


def test_views_refused_where_they_cannot_apply(fitted):
    folder, embedder, X, head = fitted
    with pytest.raises(ValueError, match="trained without distortions"):
        predict_proba_views(head, X, folder.paths, embedder, test_views="train")
    with pytest.raises(ValueError, match=re.escape("test_views must be one of")):
        view_plan("ten-crop")
    open_set = OpenSetClassifier(SoftmaxClassifier(), unknown_label=-1).fit(
        X, folder.target
    )
    with pytest.raises(ValueError, match="'unknown' rule"):
        predict_proba_views(open_set, X, folder.paths, embedder)


def test_views_of_several_backbones_line_up_with_transform(
    fitted, tiny_model_dir, tiny_model_dir_b
):
    from embedclf.embedding._augment import MIRROR, embed_views_like

    folder, *_ = fitted
    models = [str(tiny_model_dir), str(tiny_model_dir_b)]
    embedder = ImageEmbedder(model=models, normalize_each=True)
    views, source, _ = embed_views_like(
        embedder, folder.paths[:3], settings=MIRROR, copies=1
    )
    assert views.shape == (3, 24) and source.tolist() == [0, 1, 2]
    single, _, _ = embed_views_like(
        ImageEmbedder(model=models[1], normalize_each=True),
        folder.paths[:3],
        settings=MIRROR,
        copies=1,
    )
    np.testing.assert_allclose(views[:, 16:], single, rtol=1e-5)
