"""``embedclf train --model A --model B``, preprocessing options, test views.

Train, predict, evaluate and export a model directory trained on two
backbones with a non-default resize filter and crop and the flip test view;
the export must give predict's top-1 and refuse a wrong backbone.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from _cli_helpers import grocery_like

from embedclf.cli import list_images, main

pytestmark = pytest.mark.tf


@pytest.fixture(scope="module")
def two(tmp_path_factory, tiny_model_dir, tiny_model_dir_b):
    base = tmp_path_factory.mktemp("two")
    data = grocery_like(base / "data")
    out = base / "model"
    args = ["train", str(data), "--output", str(out), "--cache", str(base / "c.h5")]
    args += ["--model", str(tiny_model_dir), "--model", str(tiny_model_dir_b)]
    args += ["--resample", "bicubic", "--crop-fraction", "0.9", "--C", "1"]
    args += ["--test-views", "flip", "--normalize-each", "--no-progress"]
    assert main(args) == 0
    return {"data": data, "out": out, "cache": base / "c.h5"}


def _predict(model_dir, paths, capsys, *extra):
    capsys.readouterr()
    status = main(["predict", str(model_dir), *map(str, paths), "--json", *extra])
    return status, capsys.readouterr()


def test_manifest_records_backbones_and_preprocessing(two, tiny_model_dir_b):
    manifest = json.loads((two["out"] / "manifest.json").read_text())
    assert manifest["format_version"] == 2
    assert [b["handle"] for b in manifest["backbone"]][1] == str(tiny_model_dir_b)
    assert manifest["embedding_dim"] == 16 + 8
    assert manifest["resample"] == "bicubic" and manifest["crop_fraction"] == 0.9
    assert manifest["normalize_each"] is True and manifest["test_views"] == "flip"
    assert manifest["preprocessing"].endswith("-bicubic-float01-v1-crop0.9")


def test_predict_evaluate_and_export_agree(two, tmp_path, capsys):
    import tensorflow as tf

    paths = list_images([str(two["data"] / "test"), str(two["data"] / "val")])
    status, res = _predict(two["out"], paths, capsys, "--cache", str(two["cache"]))
    assert status == 0
    expected = json.loads(res.out)
    # without the flip view the answers are the plain image's
    _, plain = _predict(two["out"], paths, capsys, "--test-views", "none")
    plain = json.loads(plain.out)
    scores = [r["top_k"][0]["score"] for r in expected]
    assert scores != [r["top_k"][0]["score"] for r in plain]

    assert main(["evaluate", str(two["out"]), str(two["data"] / "test")]) == 0
    assert "Accuracy on" in capsys.readouterr().out

    out = tmp_path / "exported"
    assert main(["export", str(two["out"]), "--savedmodel", str(out)]) == 0
    loaded = tf.saved_model.load(str(out))
    assert loaded.image_sizes.numpy().shape == (2, 2)
    got = loaded.signatures["serving_default"](
        image_bytes=tf.constant([open(p, "rb").read() for p in paths])
    )
    assert [s.decode() for s in got["label"].numpy()] == [r["label"] for r in expected]
    np.testing.assert_allclose(
        got["probabilities"].numpy().max(axis=1), scores, atol=1e-4
    )


def test_a_wrong_backbone_or_count_is_refused(
    two, tiny_model_dir, tiny_model_dir_b, capsys
):
    paths = list_images([str(two["data"] / "test")])[:2]
    status, res = _predict(two["out"], paths, capsys, "--model", str(tiny_model_dir))
    assert status == 1 and "trained on 2 backbone(s)" in res.err
    swapped = ["--model", str(tiny_model_dir_b), "--model", str(tiny_model_dir)]
    status, res = _predict(two["out"], paths, capsys, *swapped)
    assert status == 1 and "different model" in res.err


def test_train_views_without_distortions_are_refused(
    two, tmp_path, tiny_model_dir, capsys
):
    status = main(
        ["train", str(two["data"]), "-o", str(tmp_path / "m"), "--model",
         str(tiny_model_dir), "--C", "1", "--test-views", "train", "--no-progress"]
    )  # fmt: skip
    assert status == 1
    assert "trained without distortions" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_manifests_without_the_options_keep_the_old_preprocessing(two):
    """Model directories written before crop_fraction existed saw whole images."""
    from embedclf.workflow._model_dir import embedder_settings

    assert embedder_settings({"image_size": [32, 32]}) == {
        "image_size": [32, 32],
        "resample": "bilinear",
        "crop_fraction": 1.0,
        "normalize_each": False,
        "runtime": "tensorflow",  # written before runtimes existed
        "precision": "fp32",
        "calibration_images": None,
    }
    manifest = json.loads((two["out"] / "manifest.json").read_text())
    assert embedder_settings(manifest)["crop_fraction"] == 0.9
