"""The open-set rule in the int8 and mixed TensorFlow Lite exports: same
decisions as ``embedclf predict`` on photos of none of the classes and on
photos of the classes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _cli_helpers import noise_images, predict_json

from embedclf.cli import list_images, main

pytestmark = pytest.mark.tf
pytest.importorskip("ai_edge_litert")


def _signed_backbone(path):
    """A 27-d feature-vector SavedModel whose vectors point in all directions.

    Colour means around grey, and tanh convolution features pooled per image
    quarter: the colour classes, the photos within a class (their patches
    differ) and the noise photos point different ways. (With the conftest's
    tiny backbones and photos, the vectors of a class are nearly parallel:
    cosine distances 1e-4 apart, which no 8-bit tensor resolves.)
    """
    import tensorflow as tf

    rng = np.random.default_rng(5)
    w = rng.normal(0, 0.5, (3, 3, 3, 6)).astype("float32")

    class Signed(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.Variable(w)

        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
        def __call__(self, images):
            x = tf.image.resize(images, (32, 32))
            h = tf.tanh(tf.nn.conv2d(x - 0.5, self.w, 1, "SAME"))
            quarters = [
                tf.reduce_mean(h[:, i : i + 16, j : j + 16], axis=[1, 2])
                for i in (0, 16)
                for j in (0, 16)
            ]
            colour = 4.0 * (tf.reduce_mean(x, axis=[1, 2]) - 0.45)
            return tf.concat([colour, *quarters], axis=1)

    tf.saved_model.save(Signed(), str(path))
    return path


def _patchy_photos(root, seed):
    """root/{train,val,test}/<class>/: each photo its class colour with three
    patches of random colours at random places (photos of a class differ)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    colours = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}
    for split, n in (("train", 12), ("val", 3), ("test", 4)):
        for name, colour in colours.items():
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                a = np.empty((48, 48, 3))
                a[:] = colour
                a += rng.normal(0, 20, a.shape)
                for _ in range(3):
                    y, x = rng.integers(0, 36, 2)
                    a[y : y + 12, x : x + 12] = rng.integers(0, 256, 3)
                path = root / split / name / f"{name}_{i:02d}.png"
                Image.fromarray(a.clip(0, 255).astype(np.uint8)).save(path)
    return root


@pytest.fixture(scope="module")
def open_set(tmp_path_factory):
    """An open-set model (--unknown auto), its photos and predict's answers."""
    import contextlib
    import io

    base = tmp_path_factory.mktemp("open_set_lite")
    backbone = _signed_backbone(base / "signed")
    data = _patchy_photos(base / "data", seed=0)
    model_dir = base / "model"
    argv = ["train", str(data), "--output", str(model_dir), "--model", str(backbone),
            "--cache", str(base / "cache.h5"), "--no-progress", "--unknown", "auto",
            "--crop-fraction", "1", "--C", "1"]  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(argv) == 0
    (base / "noise").mkdir()
    return {
        "base": base,
        "model_dir": model_dir,
        "known": list_images([str(data / "test"), str(data / "val")]),
        "noise": noise_images(base / "noise", n=8),
    }


def _known(folder, paths, capsys):
    return np.asarray(
        [r["label"] != "unknown" for r in predict_json(folder, paths, capsys)]
    )


@pytest.mark.parametrize("quantize", ["int8", "mixed"])
def test_quantized_export_keeps_the_open_set_decisions(
    open_set, quantize, capsys, caplog
):
    model_dir, known, noise = (
        open_set["model_dir"],
        open_set["known"],
        open_set["noise"],
    )
    expected_known = _known(model_dir, known, capsys)
    expected_noise = _known(model_dir, noise, capsys)
    # what there is to keep: predict accepts the class photos, rejects noise
    assert expected_known.mean() >= 0.9 and not expected_noise.any()
    out = open_set["base"] / quantize
    capsys.readouterr()
    with caplog.at_level("WARNING", logger="embedclf"):
        assert main(["export", str(model_dir), "--tflite", str(out), "--quantize",
                     quantize]) == 0  # fmt: skip
    info = json.loads((out / "preprocessing.json").read_text())
    assert info["unknown_rule_included"] is True
    # int8 says what it cannot keep (8-bit steps near the threshold); mixed
    # computes the rule in float
    warned = "the open-set rule in 8-bit steps" in caplog.text
    assert warned == (quantize == "int8"), caplog.text
    assert info["unknown_rule_precision"].startswith(
        "int8" if quantize == "int8" else "float32"
    )
    got_noise = _known(out, noise, capsys)
    got_known = _known(out, known, capsys)
    np.testing.assert_array_equal(got_noise, expected_noise)  # every noise photo
    agreement = np.mean(got_known == expected_known)
    assert agreement >= 0.9, (quantize, agreement, got_known, expected_known)


def _exported(open_set, quantize, capsys):
    """(interpreter, tensors by index) of the open-set model exported so."""
    from ai_edge_litert.interpreter import Interpreter

    out = open_set["base"] / f"{quantize}_ops"
    capsys.readouterr()
    assert main(["export", str(open_set["model_dir"]), "--tflite", str(out),
                 "--quantize", quantize]) == 0  # fmt: skip
    interpreter = Interpreter(model_path=str(out / "model.tflite"))
    return interpreter, {t["index"]: t for t in interpreter.get_tensor_details()}


def test_mixed_export_keeps_the_rule_in_float(open_set, capsys):
    interpreter, tensors = _exported(open_set, "mixed", capsys)
    rule = [
        tensors[op["outputs"][0]]
        for op in interpreter._get_ops_details()
        if tensors[op["outputs"][0]]["name"].startswith("open_set/")
    ]
    assert rule and all(t["dtype"] != np.int8 for t in rule), rule


@pytest.mark.parametrize("background", [False, True])  # rank / logistic fusion
def test_capped_fusion_keeps_every_decision(background):
    # The int8 graph caps the fused columns (fusion_caps): far-off scores
    # shrink to a few units, and no photo changes side of the threshold.
    import tensorflow as tf

    from embedclf import OpenSetClassifier
    from embedclf.workflow._export._graph import head_arrays
    from embedclf.workflow._export._unknown import tf_unknown_score

    rng = np.random.default_rng(1)
    centres = rng.uniform(0, 2, size=(3, 16))
    y = np.repeat(["a", "b", "c"], 60)
    X = np.abs(centres[np.repeat([0, 1, 2], 60)] + rng.normal(0, 0.5, (180, 16)))
    if background:  # background rows: the logistic fusion
        X = np.vstack([X, np.abs(rng.normal(1, 1.5, (40, 16)))])
        y = np.r_[y, ["unknown"] * 40]
    clf = OpenSetClassifier(detector="fusion").fit(
        X[::2], y[::2], X_val=X[1::2], y_val=y[1::2]
    )
    score = head_arrays(clf)["score"]
    assert score["fusion"]["kind"] == ("logistic" if background else "rank")
    # near the classes, between them, and far off (other signs: other ways)
    Q = np.vstack([X[1::2], np.abs(rng.normal(1, 1.5, (200, 16))),
                   rng.normal(0, 3, (100, 16))])  # fmt: skip
    (W, b), f = head_arrays(clf)["layers"][0], tf.constant(Q, tf.float32)

    def proba_of(features):
        return tf.nn.softmax(tf.matmul(features, W) + b, axis=1)

    logits = tf.matmul(f, W) + b
    scores = [
        tf_unknown_score(tf, score, f, logits, proba_of(f), proba_of, bounded).numpy()
        for bounded in (False, True)
    ]
    threshold = score["threshold"]
    np.testing.assert_array_equal(scores[1] <= threshold, scores[0] <= threshold)
    assert 0 < (scores[0] <= threshold).mean() < 1  # both sides are there
    capped = scores[1] < scores[0] - 1e-4
    assert capped.sum() >= 50 and scores[1].max() < scores[0].max() / 3


def test_int8_export_of_the_rule_is_integer_only(open_set, capsys):
    # Float only where the model meets the app: the uint8 input's cast, the
    # probabilities' dequantize and the `known` output's cast.
    interpreter, tensors = _exported(open_set, "int8", capsys)
    outputs = {d["index"] for d in interpreter.get_output_details()}
    floats = []
    for op in interpreter._get_ops_details():
        produced = [tensors[i] for i in op["outputs"]]
        if any(t["dtype"] == np.float32 for t in produced):
            floats.append((op["op_name"], op["outputs"][0] in outputs))
    assert sorted(floats) == [("CAST", False), ("CAST", True), ("DEQUANTIZE", True)]
