"""`embedclf train --classifier mlp --model "keras:...?layer=..."`, then export."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _cli_helpers import grocery_like

from embedclf.cli import list_images, main

pytestmark = [pytest.mark.tf, pytest.mark.slow]


@pytest.fixture(scope="module")
def keras_handle(tmp_path_factory):
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNet(
        include_top=False,
        weights=None,
        pooling="avg",
        input_shape=(64, 64, 3),
        alpha=0.25,
    )
    path = tmp_path_factory.mktemp("keras") / "mobilenet_025.weights.h5"
    model.save_weights(str(path))
    return f"keras:MobileNet?alpha=0.25&layer=conv_pw_6_relu&weights={path}"


def test_mlp_head_on_a_cut_keras_model_trains_reports_and_exports(
    keras_handle, tmp_path, capsys
):
    import tensorflow as tf

    data = grocery_like(tmp_path / "data")
    out = tmp_path / "model"
    argv = [
        "train",
        str(data),
        "--output",
        str(out),
        "--model",
        keras_handle,
        "--classifier",
        "mlp",
        "--image-size",
        "64",
        "--cache",
        str(tmp_path / "c.h5"),
        "--summaries-dir",
        str(tmp_path / "tb"),
        "--no-progress",
    ]
    assert main(argv) == 0
    stdout = capsys.readouterr().out
    assert "MLP head: " in stdout and "Final test accuracy" in stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["classifier"]["type"] == "mlp"
    identity = json.loads(manifest["backbone"]["identity"])
    assert identity["layer"] == "conv_pw_6_relu"
    assert identity["weights"].startswith("sha256:")
    assert manifest["embedding_dim"] == 128
    png = out / "report" / "training_curves.png"
    assert png.stat().st_size > 10_000
    for run in ("train", "validation"):
        assert list((tmp_path / "tb" / run).glob("events.out.tfevents*"))

    exported = tmp_path / "exported"
    assert main(["export", str(out), "--savedmodel", str(exported)]) == 0
    paths = list_images([str(data / "test"), str(data / "val")])
    capsys.readouterr()
    assert main(["predict", str(out), *map(str, paths), "--json"]) == 0
    expected = json.loads(capsys.readouterr().out)
    loaded = tf.saved_model.load(str(exported))
    got = loaded.signatures["serving_default"](
        image_bytes=tf.constant([open(p, "rb").read() for p in paths])
    )
    assert [s.decode() for s in got["label"].numpy()] == [r["label"] for r in expected]
    np.testing.assert_allclose(
        got["probabilities"].numpy().max(axis=1),
        [r["top_k"][0]["score"] for r in expected],
        atol=1e-3,
    )


def test_c_does_not_apply_to_mlp(tmp_path, capsys):
    data = grocery_like(tmp_path / "data")
    argv = [
        "train",
        str(data),
        "--output",
        str(tmp_path / "m"),
        "--classifier",
        "mlp",
        "--C",
        "0.1,1",
    ]
    assert main(argv) == 1
    assert "--C does not apply to --classifier mlp" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()
