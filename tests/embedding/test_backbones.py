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


@pytest.fixture(scope="module")
def multi_output_dir(tmp_path_factory):
    """A SavedModel whose call returns two outputs and that has two signatures."""
    tf = pytest.importorskip("tensorflow")

    class TwoHeads(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.Variable(np.arange(12, dtype=np.float32).reshape(3, 4))

        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
        def __call__(self, images):
            mean = tf.reduce_mean(images, axis=[1, 2])
            return {"pooled": mean @ self.w, "colour": mean}

        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
        def brightest(self, images):
            return {"peak": tf.reduce_max(images, axis=[1, 2])}

    module = TwoHeads()
    path = tmp_path_factory.mktemp("multi") / "two_heads"
    tf.saved_model.save(
        module,
        str(path),
        signatures={
            "serving_default": module.__call__,
            "brightest": module.brightest,
        },
    )
    return path


def test_pick_an_output_or_a_signature(multi_output_dir):
    images = np.random.default_rng(0).random((2, 8, 8, 3)).astype(np.float32)
    mean, peak = images.mean(axis=(1, 2)), images.max(axis=(1, 2))
    w = np.arange(12, dtype=np.float32).reshape(3, 4)
    base = str(multi_output_dir)
    with pytest.raises(BackboneLoadError, match=r"several outputs \(colour, pooled\)"):
        load_backbone(resolve_backbone(base))(images)
    cases = {
        "?output=pooled": mean @ w,
        "?output=colour": mean,
        "?signature=brightest": peak,
        "?signature=serving_default&output=colour": mean,
    }
    identities = set()
    for query, expected in cases.items():
        spec = resolve_backbone(base + query)
        identities.add(spec.identity)
        np.testing.assert_allclose(load_backbone(spec)(images), expected, rtol=1e-6)
    # Each choice is its own cache namespace; no choice keeps the old identity.
    assert len(identities | {resolve_backbone(base).identity}) == len(cases) + 1
    assert "?" not in resolve_backbone(base).identity


@pytest.mark.parametrize(
    "query, message",
    [
        ("?output=logits", "has no output 'logits'; its outputs are colour, pooled"),
        ("?signature=nope", "has no signature 'nope'; its signatures are brightest"),
        ("?layer=x", "is not understood"),
        ("?signature=brightest&output=x", "has no output 'x'; its outputs are peak"),
    ],
)
def test_bad_output_or_signature_is_named(multi_output_dir, query, message):
    images = np.zeros((1, 8, 8, 3), np.float32)
    with pytest.raises(BackboneLoadError, match=re.escape(message)):
        load_backbone(resolve_backbone(str(multi_output_dir) + query))(images)
