"""keras:<Application>?weights=FILE&layer=NAME on a small real Keras application."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from embedclf.embedding._backbones import load_backbone, resolve_backbone
from embedclf.exceptions import BackboneLoadError

pytestmark = pytest.mark.tf

SIZE = 64
#: MobileNet v1 at width 0.25: 0.2 M parameters, built in about a second.
APP = "MobileNet"
OPTIONS = "alpha=0.25"
LAYER = "conv_pw_6_relu"  # 4x4x128 at 64x64 input


def _build(seed):
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(seed)
    return keras.applications.MobileNet(
        include_top=False,
        weights=None,
        pooling="avg",
        input_shape=(SIZE, SIZE, 3),
        alpha=0.25,
    )


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """A weights file of the application with random (seeded) weights."""
    path = tmp_path_factory.mktemp("keras_weights") / "mobilenet.weights.h5"
    _build(seed=1).save_weights(str(path))
    return path


@pytest.fixture(scope="module")
def other_weights_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("keras_weights_b") / "other.weights.h5"
    _build(seed=2).save_weights(str(path))
    return path


@pytest.fixture
def images(tmp_path):
    from conftest import write_image

    return [str(write_image(tmp_path / f"im{i}.png", seed=i)) for i in range(4)]


def _direct(weights, images, layer=LAYER, pool=np.mean):
    """What the handle must give: the Keras model cut at ``layer``, pooled."""
    import keras

    from embedclf.embedding._images import DEFAULT_CROP_FRACTION, load_image

    model = _build(seed=99)  # other random weights, then overwritten
    model.load_weights(str(weights))
    cut = keras.Model(model.inputs, model.get_layer(layer).output)
    crop = DEFAULT_CROP_FRACTION  # ImageEmbedder's default preprocessing
    pixels = np.stack(
        [
            load_image(p, (SIZE, SIZE), as_uint8=True, crop_fraction=crop)[1]
            for p in images
        ]
    )
    pixels = pixels.astype(np.float32) / np.float32(255.0)
    x = keras.applications.mobilenet.preprocess_input(pixels * 255.0)
    out = np.asarray(cut(x, training=False))
    return pool(out, axis=(1, 2)) if pool is not None else out.reshape(len(out), -1)


def _handle(weights, **extra):
    query = {"weights": str(weights), "layer": LAYER, "alpha": "0.25", **extra}
    return f"keras:{APP}?" + "&".join(f"{k}={v}" for k, v in query.items())


def test_layer_and_weights_file_equal_the_cut_keras_model(weights_file, images):
    from embedclf import ImageEmbedder

    X = ImageEmbedder(model=_handle(weights_file), image_size=SIZE).transform(images)
    expected = _direct(weights_file, images)
    assert X.shape == (4, 128)
    np.testing.assert_allclose(
        X, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max()
    )


def test_max_and_flatten_pooling(weights_file, images):
    from embedclf import ImageEmbedder

    X = ImageEmbedder(
        model=_handle(weights_file, pooling="max"), image_size=SIZE
    ).transform(images)
    expected = _direct(weights_file, images, pool=np.max)
    # The random-weight activations are ~1e-6: a tolerance relative to their
    # scale, so that a wrong crop or layer cannot pass.
    np.testing.assert_allclose(
        X, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max()
    )
    X = ImageEmbedder(
        model=_handle(weights_file, pooling="flatten"), image_size=SIZE
    ).transform(images)
    assert X.shape == (4, 4 * 4 * 128)
    np.testing.assert_allclose(
        X, _direct(weights_file, images, pool=None), rtol=1e-5, atol=1e-6
    )


def test_flatten_size_guard(weights_file):
    handle = _handle(weights_file, pooling="flatten").replace(LAYER, "conv_pw_1_relu")
    with pytest.raises(BackboneLoadError, match=r"64x64x16 = 65536 features"):
        load_backbone(resolve_backbone(handle), 128)


def test_weights_replaced_in_place_miss_the_cache(
    weights_file, other_weights_file, images, tmp_path
):
    import shutil

    from embedclf import ImageEmbedder

    path = tmp_path / "w.weights.h5"
    shutil.copyfile(weights_file, path)
    cache = tmp_path / "cache.h5"
    est = ImageEmbedder(model=_handle(path), image_size=SIZE, cache=str(cache))
    first = est.transform(images)
    with open(path, "wb") as fh:  # replaced in place: same path, same handle
        fh.write(other_weights_file.read_bytes())
    est = ImageEmbedder(model=_handle(path), image_size=SIZE, cache=str(cache))
    second = est.transform(images)
    assert est.n_computed_ == len(images) and est.n_cached_ == 0
    np.testing.assert_allclose(
        second, _direct(other_weights_file, images), rtol=1e-5, atol=1e-6
    )
    assert not np.allclose(first, second)


def test_identity_covers_every_option(weights_file, other_weights_file):
    base = resolve_backbone(_handle(weights_file)).identity
    assert json.loads(base)["weights"].startswith("sha256:")
    others = [
        _handle(other_weights_file),
        _handle(weights_file, pooling="max"),
        _handle(weights_file).replace(LAYER, "conv_pw_5_relu"),
        _handle(weights_file).replace("alpha=0.25", "alpha=0.5"),
    ]
    identities = {resolve_backbone(h).identity for h in others}
    assert base not in identities and len(identities) == len(others)
    # The path itself is not part of it: a copy elsewhere is the same backbone.
    assert str(weights_file) not in base


def test_plain_handles_keep_their_identity():
    # Caches and model directories written before the options existed still hit.
    assert resolve_backbone("keras:InceptionV3").identity == json.dumps(
        {"keras": "InceptionV3", "weights": "imagenet"}, sort_keys=True
    )
    # weights=none gets a new identity: its weights used to differ per process.
    assert json.loads(resolve_backbone("keras:MobileNetV2?weights=none").identity) == {
        "keras": "MobileNetV2",
        "weights": "none",
        "random_weights": "seeded-initializers-0",
    }


@pytest.mark.slow
def test_random_weights_are_the_same_in_every_process(tmp_path):
    from conftest import write_image

    image = str(write_image(tmp_path / "a.png"))
    code = (
        "import sys, numpy as np\n"
        "from embedclf import ImageEmbedder\n"
        "X = ImageEmbedder(model='keras:MobileNet?weights=none&alpha=0.25&layer="
        f"{LAYER}', image_size={SIZE}).transform([sys.argv[1]])\n"
        "np.save(sys.argv[2], X)\n"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    for i in range(2):
        subprocess.run(
            [sys.executable, "-c", code, image, str(tmp_path / f"{i}.npy")],
            env=env,
            check=True,
            capture_output=True,
        )
    first, second = (np.load(tmp_path / f"{i}.npy") for i in range(2))
    assert np.abs(first).max() > 0
    np.testing.assert_array_equal(first, second)


def test_default_size_comes_from_the_name_not_the_weights_path(tmp_path):
    path = tmp_path / "inceptionv3_299.weights.h5"
    path.write_bytes(b"x")
    assert (
        resolve_backbone(f"keras:MobileNet?weights={path}").default_image_size() is None
    )
    assert (
        resolve_backbone("keras:InceptionV3?layer=mixed7").default_image_size() == 299
    )


@pytest.mark.parametrize(
    "handle, message",
    [
        ("keras:MobileNet?weights=/no/such/file.weights.h5", "does not exist"),
        ("keras:MobileNet?layer", "is not of the form name=value"),
        ("keras:MobileNet?layer=a&layer=b", "is given twice"),
        ("keras:MobileNet?pooling=mean", "is not one of avg, max, flatten"),
    ],
)
def test_bad_handles_are_refused_before_loading(handle, message):
    with pytest.raises(BackboneLoadError, match=re.escape(message)):
        resolve_backbone(handle)


def test_unknown_layer_and_option_are_named(weights_file):
    spec = resolve_backbone(_handle(weights_file).replace(LAYER, "mixed7"))
    with pytest.raises(BackboneLoadError, match="has no layer named 'mixed7'"):
        load_backbone(spec, SIZE)
    spec = resolve_backbone(_handle(weights_file, colour="blue"))
    with pytest.raises(
        BackboneLoadError, match=re.escape("options ['alpha', 'colour']")
    ):
        load_backbone(spec, SIZE)


def test_weights_of_another_application_say_so(weights_file):
    spec = resolve_backbone(f"keras:MobileNetV2?weights={weights_file}")
    with pytest.raises(BackboneLoadError, match="same application built with"):
        load_backbone(spec, SIZE)


@pytest.mark.slow
def test_offline_imagenet_names_the_file_and_the_keras_folder(tmp_path):
    # A proxy that refuses connections makes the download fail deterministically.
    env = {
        **os.environ,
        "KERAS_HOME": str(tmp_path / "keras_home"),
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
        "https_proxy": "http://127.0.0.1:9",
        "http_proxy": "http://127.0.0.1:9",
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    code = (
        "from embedclf.embedding._backbones import load_backbone, resolve_backbone\n"
        "try:\n"
        "    load_backbone(resolve_backbone('keras:MobileNet?alpha=0.25'), 128)\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True
    ).stdout
    assert "BackboneLoadError" in out, out
    assert "~/.keras/models/mobilenet_2_5_128_tf_no_top.h5" in out
    assert "keras:MobileNet?weights=/path/to/mobilenet_2_5_128_tf_no_top.h5" in out
