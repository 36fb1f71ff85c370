"""Distorted training views: deterministic, cached, never crossing splits."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from _cli_helpers import grocery_like
from conftest import write_image

from embedclf.cli import main
from embedclf.embedding._augment import Distortions, distort, embed_views, view_key
from embedclf.embedding._images import content_key, decode_image

SETTINGS = Distortions(
    random_crop=20, random_scale=10, random_brightness=30, flip_left_right=True
)


@pytest.fixture
def image_bytes(tmp_path):
    return write_image(tmp_path / "a.png", size=(50, 40), seed=3).read_bytes()


def test_distort_is_deterministic_per_view(image_bytes):
    key = content_key(image_bytes)
    a = distort(image_bytes, (24, 24), SETTINGS, key, 0)
    b = distort(image_bytes, (24, 24), SETTINGS, key, 0)
    c = distort(image_bytes, (24, 24), SETTINGS, key, 1)
    assert a.shape == (24, 24, 3) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.min() >= 0 and a.max() <= 1


def test_distort_without_distortions_is_plain_decode(image_bytes):
    plain = distort(image_bytes, (24, 24), Distortions(), "k", 0)
    np.testing.assert_allclose(plain, decode_image(image_bytes, (24, 24)))


def test_flip_only_mirrors(image_bytes):
    settings = Distortions(flip_left_right=True)
    plain = decode_image(image_bytes, (16, 16))
    views = [distort(image_bytes, (16, 16), settings, "k", v) for v in range(8)]
    flipped = [np.array_equal(v, plain[:, ::-1]) for v in views]
    kept = [np.array_equal(v, plain) for v in views]
    assert all(f or k for f, k in zip(flipped, kept))
    assert any(flipped) and any(kept)


def test_brightness_stays_in_range(image_bytes):
    settings = Distortions(random_brightness=100)
    for view in range(5):
        arr = distort(image_bytes, (16, 16), settings, "k", view)
        assert 0 <= arr.min() and arr.max() <= 1


def test_settings_are_validated_and_tagged():
    msg = "random_brightness is a percentage and must be between 0 and 100; got 150."
    with pytest.raises(ValueError, match=re.escape(msg)):
        Distortions(random_brightness=150)
    assert not Distortions().active and SETTINGS.active
    assert SETTINGS.tag == "augment-v1:crop=20,scale=10,brightness=30,flip=1"


def test_view_key_depends_on_image_and_view():
    keys = {view_key("a" * 64, 0), view_key("a" * 64, 1), view_key("b" * 64, 0)}
    assert len(keys) == 3 and all(len(k) == 64 for k in keys)


@pytest.mark.tf
def test_embed_views_is_cached(tmp_path, tiny_model_dir):
    from embedclf.cache._store import EmbeddingCache
    from embedclf.embedding._backbones import backbone_image_count

    paths = [write_image(tmp_path / f"{i}.png", seed=i) for i in range(3)]
    cache = tmp_path / "c.h5"
    kw = dict(model=str(tiny_model_dir), settings=SETTINGS, copies=2, cache=cache)
    before = backbone_image_count()
    v1, source, n1 = embed_views(paths, **kw)
    assert n1 == 6 and backbone_image_count() - before == 6
    assert v1.shape == (6, 16) and source.tolist() == [0, 0, 1, 1, 2, 2]
    assert not np.allclose(v1[0], v1[1])  # two different views
    v2, _, n2 = embed_views(paths, **kw)
    assert n2 == 0 and backbone_image_count() - before == 6
    np.testing.assert_array_equal(v1, v2)
    # Other settings are another namespace: computed again, not confused.
    other = dict(kw, settings=Distortions(random_crop=5))
    _, _, n3 = embed_views(paths, **other)
    assert n3 == 6
    namespaces = EmbeddingCache(cache).info()
    assert len(namespaces) == 2
    assert all("augment-v1" in ns["preprocessing"] for ns in namespaces)


@pytest.mark.tf
def test_embed_views_rows_match_their_own_view(tmp_path, tiny_model_dir):
    # 5 images x 3 views in calls of 4, 4, 4 and 3 (threads decode ahead):
    # every row is the backbone's vector of exactly its own distorted view.
    from embedclf.embedding._backbones import load_backbone, resolve_backbone

    paths = [write_image(tmp_path / f"{i}.png", seed=i) for i in range(5)]
    vectors, source, n = embed_views(
        paths, model=str(tiny_model_dir), settings=SETTINGS, copies=3, batch_size=4
    )
    assert n == 15 and source.tolist() == [i for i in range(5) for _ in range(3)]
    backbone = load_backbone(resolve_backbone(str(tiny_model_dir)))
    size = (backbone.default_image_size,) * 2
    views = np.stack(
        [
            distort(p.read_bytes(), size, SETTINGS, content_key(p.read_bytes()), v)
            for p in paths
            for v in range(3)
        ]
    )
    np.testing.assert_allclose(vectors, backbone(views), atol=1e-5)


@pytest.mark.tf
def test_concurrent_embed_views_compute_each_view_once(tmp_path, tiny_model_dir):
    import threading

    from embedclf.embedding._backbones import backbone_image_count

    paths = [write_image(tmp_path / f"{i}.png", seed=i) for i in range(6)]
    kw = dict(
        model=str(tiny_model_dir),
        settings=SETTINGS,
        copies=2,
        cache=tmp_path / "c.h5",
        batch_size=4,
    )
    embed_views(paths[:1], **dict(kw, cache=None))  # load the model first
    before = backbone_image_count()
    start, results = threading.Barrier(2), []

    def worker():
        start.wait()
        results.append(embed_views(paths, **kw))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert backbone_image_count() - before == 12
    assert sum(n for _, _, n in results) == 12
    np.testing.assert_array_equal(results[0][0], results[1][0])


@pytest.mark.tf
def test_embed_views_refuses_a_file_edited_after_hashing(
    tmp_path, tiny_model_dir, monkeypatch
):
    import embedclf.embedding._augment as augment
    from embedclf.exceptions import ImageDecodeError

    paths = [write_image(tmp_path / f"{i}.png", seed=i) for i in range(2)]
    real_read = augment.read_image_bytes
    reads = []

    def read_then_edit(path):
        # The second read of image 1 (when its views are decoded) sees new
        # content, as if the file were replaced between hashing and decoding.
        reads.append(path)
        if reads.count(path) > 1 and path == str(paths[1]):
            write_image(paths[1], seed=99)
        return real_read(path)

    monkeypatch.setattr(augment, "read_image_bytes", read_then_edit)
    cache = tmp_path / "c.h5"
    with pytest.raises(ImageDecodeError, match=re.escape(str(paths[1]))):
        embed_views(
            paths, model=str(tiny_model_dir), settings=SETTINGS, copies=2, cache=cache
        )
    monkeypatch.setattr(augment, "read_image_bytes", real_read)
    # Nothing was stored under the old content's key: rerunning on the
    # original image computes its views again.
    write_image(paths[1], seed=1)
    _, _, n = embed_views(
        paths, model=str(tiny_model_dir), settings=SETTINGS, copies=2, cache=cache
    )
    assert n == 2 * len(paths)


@pytest.mark.tf
def test_train_with_augmentation_caches_views(tmp_path, tiny_model_dir, capsys):
    data = grocery_like(tmp_path / "g")
    cache = tmp_path / "c.h5"
    argv = [
        "train",
        str(data),
        "--output",
        str(tmp_path / "m"),
        "--model",
        str(tiny_model_dir),
        "--cache",
        str(cache),
        "--C",
        "0.1,1",
        "--random-crop",
        "10",
        "--flip-left-right",
        "--augment-copies",
        "2",
        "--no-progress",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "Added 72 distorted views (2 per training image)" in out
    assert "(72 by the backbone)" in out
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["metrics"]["n_augmented_views"] == 72
    assert manifest["augmentation"]["random_crop"] == 10
    # Views exist for training images only: validation and test images keep
    # their plain vectors, so no view of one crosses a split boundary.
    assert manifest["metrics"]["n_validation"] == 9
    assert manifest["metrics"]["n_testing"] == 12
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "(0 by the backbone)" in out


def test_augment_copies_need_a_distortion(tmp_path, capsys):
    data = grocery_like(tmp_path / "g")
    status = main(
        ["train", str(data), "-o", str(tmp_path / "m"), "--augment-copies", "3"]
    )
    assert status == 1
    assert "needs at least one distortion" in capsys.readouterr().err


def test_cv_folds_keep_views_of_one_image_together():
    from embedclf.workflow._train import cv_splits

    n_images, copies = 30, 3
    y_images = np.array(["a", "b", "c"] * 10)
    groups = np.concatenate(
        [np.arange(n_images), np.repeat(np.arange(n_images), copies)]
    )
    y = y_images[groups]
    splits = cv_splits(y, groups)
    assert len(splits) == 3
    for train, test in splits:
        assert not set(groups[train]) & set(groups[test])
        assert set(y[test]) == {"a", "b", "c"}  # still stratified
