from __future__ import annotations

import re
import shutil

import numpy as np
import pytest

from embedclf.embedding._backbones import (
    DEFAULT_MODEL,
    _known_image_size,
    load_backbone,
    resolve_backbone,
)
from embedclf.exceptions import BackboneLoadError


@pytest.mark.parametrize(
    "handle, size",
    [
        (DEFAULT_MODEL, 299),
        (
            "https://tfhub.dev/google/imagenet/mobilenet_v2_100_192/feature_vector/5",
            192,
        ),
        ("/models/efficientnet_lite0_feature_vector", 224),
        ("/models/efficientnet_lite2_feature_vector", 260),
        ("https://tfhub.dev/tensorflow/efficientnet/b3/feature-vector/1", 300),
        ("/models/my_model", None),
    ],
)
def test_known_image_sizes(handle, size):
    assert _known_image_size(handle) == size


def test_identity_follows_content_not_path(tiny_model_dir, tiny_model_dir_b, tmp_path):
    copy = tmp_path / "copy_of_tiny"
    shutil.copytree(tiny_model_dir, copy)
    a = resolve_backbone(str(tiny_model_dir))
    assert a.kind == "savedmodel"
    assert resolve_backbone(str(copy)).identity == a.identity
    assert resolve_backbone(str(tiny_model_dir_b)).identity != a.identity


def test_hub_and_keras_handles_resolve_without_tensorflow():
    assert resolve_backbone(DEFAULT_MODEL).kind == "hub"
    spec = resolve_backbone("keras:InceptionV3")
    assert spec.kind == "keras" and spec.default_image_size() == 299
    assert resolve_backbone("keras:InceptionV3?weights=none").identity != spec.identity


def test_offline_hub_handle_says_how_to_fix():
    spec = resolve_backbone("https://tfhub.invalid/google/some/model/1")
    with pytest.raises(
        BackboneLoadError, match=re.escape("pass its directory as model=")
    ):
        load_backbone(spec)


def test_unknown_keras_name():
    with pytest.raises(BackboneLoadError, match="has no model named 'NoSuchNet'"):
        load_backbone(resolve_backbone("keras:NoSuchNet"))


def test_backbone_is_shared_and_counts(tiny_model_dir):
    from embedclf.embedding._backbones import backbone_image_count

    spec = resolve_backbone(str(tiny_model_dir))
    b1, b2 = load_backbone(spec), load_backbone(resolve_backbone(str(tiny_model_dir)))
    assert b1 is b2
    before = backbone_image_count()
    out = b1(np.zeros((3, 20, 20, 3), dtype=np.float32))
    assert out.shape == (3, 16) and backbone_image_count() - before == 3


def test_wrong_type_model():
    with pytest.raises(TypeError, match="The 'model' parameter must be"):
        resolve_backbone(42)
