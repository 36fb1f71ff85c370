"""``embedclf export``: one SavedModel whose top-1 agrees with ``predict``."""

from __future__ import annotations

import numpy as np
import pytest
from _cli_helpers import noise_images, predict_json, trained

from embedclf.cli import list_images, main

pytestmark = pytest.mark.tf


@pytest.fixture(scope="module")
def session(tmp_path_factory, tiny_model_dir):
    return trained(tmp_path_factory, tiny_model_dir)


def _exported(tmp_path, model_dir, capsys):
    import tensorflow as tf

    out = tmp_path / "exported"
    assert main(["export", str(model_dir), "--savedmodel", str(out)]) == 0
    assert "SavedModel written to" in capsys.readouterr().out
    return out, tf.saved_model.load(str(out))


def test_export_agrees_with_predict(session, tmp_path, tiny_model_dir, capsys):
    import tensorflow as tf

    from embedclf.embedding._backbones import load_backbone, resolve_backbone

    out, loaded = _exported(tmp_path, session["output"], capsys)
    assert (out / "assets" / "labels.txt").read_text().split() == [
        "blue",
        "green",
        "red",
    ]
    paths = list_images([str(session["data"] / "test"), str(session["data"] / "val")])
    expected = predict_json(session["output"], paths, capsys)
    data = tf.constant([open(p, "rb").read() for p in paths])
    got = loaded.signatures["serving_default"](image_bytes=data)
    labels = [s.decode() for s in got["label"].numpy()]
    assert labels == [r["label"] for r in expected]
    top = [r["top_k"][0]["score"] for r in expected]
    np.testing.assert_allclose(got["probabilities"].numpy().max(axis=1), top, atol=0.02)
    assert got["known"].numpy().all()

    # The float-image signature gives the same answer on decoded images.
    from embedclf.embedding._images import decode_image

    side = load_backbone(resolve_backbone(tiny_model_dir)).default_image_size
    images = [
        decode_image(open(p, "rb").read(), (side, side), crop_fraction=0.875)
        for p in paths
    ]
    assert loaded.image_size.numpy().tolist() == [side, side]
    images = np.stack(images)
    got_f = loaded.signatures["predict_images"](images=tf.constant(images))
    assert got_f["probabilities"].shape == (len(paths), 3)
    assert [s.decode() for s in got_f["label"].numpy()] == labels


def test_export_keeps_open_set_rule(session, tmp_path, tiny_model_dir, capsys):
    import tensorflow as tf

    from embedclf.embedding._backbones import load_backbone, resolve_backbone

    model_dir = tmp_path / "open"
    assert (
        main(
            [
                "train",
                str(session["data"]),
                "--output",
                str(model_dir),
                "--model",
                str(tiny_model_dir),
                "--cache",
                str(session["cache"]),
                "--C",
                "1",
                "--unknown",
                "auto",
                "--crop-fraction",  # whole images: the fixture's rejects
                "1",
                "--no-progress",
            ]
        )
        == 0
    )
    _, loaded = _exported(tmp_path, model_dir, capsys)

    noise = noise_images(tmp_path)  # photos of none of the classes
    paths = list_images([str(session["data"] / "test")]) + noise
    expected = predict_json(model_dir, paths, capsys)
    data = tf.constant([open(p, "rb").read() for p in paths])
    got = loaded.signatures["serving_default"](image_bytes=data)
    # From encoded bytes, the top-1 class and the open-set answer ("unknown"
    # included) are predict's: the SavedModel decodes exactly as Pillow does.
    labels = loaded.labels_file.asset_path.numpy().decode()
    classes = open(labels).read().split()
    top1 = [classes[i] for i in got["class_index"].numpy()]
    assert top1 == [r["top_k"][0]["label"] for r in expected]
    assert [s.decode() for s in got["label"].numpy()] == [r["label"] for r in expected]
    assert "unknown" in [r["label"] for r in expected]  # the rule did reject some
    # The float-image signature applies the same rule to the same pixels.
    from embedclf.embedding._images import decode_image

    side = load_backbone(resolve_backbone(tiny_model_dir)).default_image_size
    images = np.stack([decode_image(open(p, "rb").read(), (side, side)) for p in paths])
    got_f = loaded.signatures["predict_images"](images=tf.constant(images))
    assert [s.decode() for s in got_f["label"].numpy()] == [
        r["label"] for r in expected
    ]
    # An image unlike every class is rejected by the exported distance rule.
    white = np.ones((1, 32, 32, 3), dtype=np.float32)
    far = loaded.signatures["predict_images"](images=tf.constant(white * 50.0))
    assert far["label"].numpy()[0].decode() == "unknown"
    assert not far["known"].numpy()[0]


def test_export_refuses_other_backbone(session, tmp_path, tiny_model_dir_b, capsys):
    status = main(
        [
            "export",
            str(session["output"]),
            "--savedmodel",
            str(tmp_path / "x"),
            "--model",
            str(tiny_model_dir_b),
        ]
    )
    assert status == 1
    assert "different model" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "size, mode, fmt, target",
    [
        ((40, 30), "RGB", "PNG", (224, 224)),  # upscale
        ((348, 348), "RGB", "JPEG", (224, 224)),  # downscale, like the grocery photos
        ((1000, 700), "RGB", "JPEG", (224, 224)),  # JPEG draft mode (DCT 1/2)
        ((900, 1900), "RGB", "JPEG", (100, 120)),  # draft 1/4, non-square
        ((64, 48), "L", "PNG", (32, 32)),  # grayscale
        ((224, 224), "RGB", "BMP", (224, 224)),  # no resize
        ((348, 464), "RGB", "JPEG", (224, 224)),  # portrait grocery photo
        ((300, 400), "RGB", "PNG", (224, 224)),  # Pillow's vertical pass first
        ((250, 300), "RGB", "PNG", (100, 120)),  # ... and horizontal first
        ((100, 700), "RGB", "PNG", (120, 100)),  # mixed up- and downscaling
    ],
)
def test_tf_decoding_matches_pillow_exactly(tmp_path, size, mode, fmt, target):
    import tensorflow as tf
    from conftest import write_image

    from embedclf.embedding._images import decode_image
    from embedclf.embedding._tf_images import decode_like_pillow

    path = write_image(tmp_path / "img", size=size, mode=mode, fmt=fmt, seed=7)
    data = path.read_bytes()
    expected = decode_image(data, target)
    got = decode_like_pillow(tf.constant(data), *target).numpy()
    np.testing.assert_array_equal(got, expected)


@pytest.mark.shared
@pytest.mark.slow
def test_real_backbone_export_agrees_on_grocery_photos(tmp_path, capsys):
    """EfficientNet-Lite0 and real photos (landscape and portrait JPEGs)."""
    import shutil

    import tensorflow as tf
    from conftest import SHARED_DATA, SHARED_MODEL

    if not (SHARED_MODEL.exists() and SHARED_DATA.exists()):
        pytest.skip("../shared is not present")
    data = tmp_path / "grocery"
    for split, n in (("train", 6), ("test", 3)):
        for name in ("Carrots", "Conference", "Lemon", "Yellow-Onion"):
            files = sorted((SHARED_DATA / split / name).glob("*.jpg"))[:n]
            (data / split / name).mkdir(parents=True)
            for f in files:
                shutil.copy(f, data / split / name / f.name)
    model_dir = tmp_path / "model"
    assert main(["train", str(data), "-o", str(model_dir), "--model",
                 str(SHARED_MODEL), "--C", "1", "--no-progress"]) == 0  # fmt: skip
    paths = list_images([str(data / "test")])
    expected = predict_json(model_dir, paths, capsys)
    _, loaded = _exported(tmp_path, model_dir, capsys)
    got = loaded.signatures["serving_default"](
        image_bytes=tf.constant([open(p, "rb").read() for p in paths])
    )
    assert [s.decode() for s in got["label"].numpy()] == [r["label"] for r in expected]
    np.testing.assert_allclose(
        got["probabilities"].numpy().max(axis=1),
        [r["top_k"][0]["score"] for r in expected],
        rtol=1e-4,
    )


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("byte_order", ["<", ">"])
def test_tf_decoding_applies_exif_orientation(orientation, byte_order):
    import io

    import tensorflow as tf
    from PIL import Image

    from embedclf.embedding._images import decode_image
    from embedclf.embedding._tf_images import decode_like_pillow, exif_orientation

    rng = np.random.default_rng(orientation)
    img = Image.fromarray((rng.random((60, 90, 3)) * 255).astype(np.uint8))
    exif = Image.Exif()
    exif.endian = byte_order  # Pillow writes "II" (<) or "MM" (>) TIFF headers
    exif[0x010F] = "camera"
    exif[0x0112] = orientation
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif.tobytes())
    data = buf.getvalue()
    assert (b"Exif\x00\x00MM" in data) == (byte_order == ">")
    assert int(exif_orientation(tf.constant(data))) == orientation
    expected = decode_image(data, (40, 50))
    np.testing.assert_array_equal(
        decode_like_pillow(tf.constant(data), 40, 50), expected
    )


def test_exif_orientation_of_damaged_or_missing_exif():
    import tensorflow as tf

    from embedclf.embedding._tf_images import exif_orientation

    for data in [b"\xff\xd8 no exif here", b"Exif\x00\x00MM\x00*\xff\xff\xff\xff", b""]:
        assert int(exif_orientation(tf.constant(data))) == 1


@pytest.mark.parametrize(
    "detector", ["fusion", "max_proba", "react_max_proba", "energy", "knn"]
)
def test_exported_unknown_score_matches_unknown_score(detector):
    # The graph's score ops against OpenSetClassifier.unknown_score, on
    # non-negative features (as a CNN's pooled ones) some of which exceed
    # ReAct's clip.
    import tensorflow as tf

    from embedclf import OpenSetClassifier
    from embedclf.workflow._export._graph import head_arrays
    from embedclf.workflow._export._unknown import tf_unknown_score

    rng = np.random.default_rng(0)
    centres = rng.uniform(0, 2, size=(3, 16))
    y = np.repeat(["a", "b", "c"], 60)
    X = np.abs(centres[np.repeat([0, 1, 2], 60)] + rng.normal(0, 0.5, (180, 16)))
    Q = np.abs(rng.normal(1, 1.5, (40, 16)))
    # training rows and scaled-up centres: nearer / more confident than every
    # validation row, below the fusion's reference range
    Q = np.vstack([Q, X[:6:2], 4 * centres]).astype(np.float32)
    clf = OpenSetClassifier(detector=detector).fit(
        X[::2], y[::2], X_val=X[1::2], y_val=y[1::2]
    )
    if detector == "fusion":
        from embedclf.heads._unknown_scores import compute_scores

        parts = compute_scores(clf.estimator_, clf.score_state_, Q, ["knn"])
        assert (parts["knn"] < clf.fusion_["reference"]["knn"][0]).sum() >= 3
    params = head_arrays(clf)
    ((W, b),) = params["layers"]
    f = tf.constant(Q)

    def proba_of(features):
        return tf.nn.softmax(tf.matmul(features, W) + b, axis=1)

    logits = tf.matmul(f, W) + b
    got = tf_unknown_score(tf, params["score"], f, logits, proba_of(f), proba_of)
    np.testing.assert_allclose(got.numpy(), clf.unknown_score(Q), rtol=1e-4, atol=1e-5)
