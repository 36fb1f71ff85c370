"""``embedclf export --tflite``: four variants, run with LiteRT, agree with predict."""

from __future__ import annotations

import contextlib
import io
import json
import re

import numpy as np
import pytest
from _cli_helpers import noise_images, predict_json, trained

from embedclf.cli import list_images, main

pytestmark = pytest.mark.tf
pytest.importorskip("ai_edge_litert")


@pytest.fixture(scope="module")
def session(tmp_path_factory, tiny_model_dir):
    return trained(tmp_path_factory, tiny_model_dir)


def _export(model_dir, out, capsys, *extra):
    capsys.readouterr()
    assert main(["export", str(model_dir), "--tflite", str(out), *extra]) == 0
    return capsys.readouterr().out


def _train(session, tiny_model_dir, out, *extra):
    argv = ["train", str(session["data"]), "--output", str(out), "--model",
            str(tiny_model_dir), "--cache", str(session["cache"]), "--no-progress",
            *extra, *([] if "mlp" in extra else ["--C", "1"])]  # fmt: skip
    assert main(argv) == 0
    return out


@pytest.fixture(scope="module")
def exports(session, tmp_path_factory):
    """The four variants of the session's softmax model, with their stdout."""
    base = tmp_path_factory.mktemp("tflite")
    out = {}
    for q in ("none", "dynamic", "int8", "mixed"):
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            argv = ["export", str(session["output"]), "--tflite", str(base / q),
                    "--quantize", q]  # fmt: skip
            assert main(argv) == 0
        out[q] = (base / q, buf.getvalue())
    return out


def test_three_variants_agree_with_predict(session, exports, capsys):
    paths = list_images([str(session["data"] / "test"), str(session["data"] / "val")])
    expected = predict_json(session["output"], paths, capsys)
    labels = [r["label"] for r in expected]
    sizes = {}
    for q, (folder, _) in exports.items():
        assert (folder / "labels.txt").read_text().split() == ["blue", "green", "red"]
        info = json.loads((folder / "preprocessing.json").read_text())
        assert info["quantization"] == q
        assert (
            info["inputs"][0]["shape"][0] == 1 and info["inputs"][0]["dtype"] == "uint8"
        )
        assert info["resize"] == {**info["resize"], "filter": "bilinear",
                                  "crop_fraction": 0.875}  # fmt: skip
        assert info["unknown_rule_included"] is False
        sizes[q] = (folder / "model.tflite").stat().st_size
        got = predict_json(folder, paths, capsys)
        assert [r["path"] for r in got] == [r["path"] for r in expected]
        if q == "none":  # float32 throughout: the same answers and scores
            assert [r["label"] for r in got] == labels
            np.testing.assert_allclose(
                [s["score"] for r in got for s in r["top_k"]],
                [s["score"] for r in expected for s in r["top_k"]],
                atol=1e-4,
            )
        else:  # colour-biased classes: quantization keeps every answer
            agree = np.mean([r["label"] == e for r, e in zip(got, labels)])
            assert agree >= 0.9, (q, agree)
    assert sizes["dynamic"] < sizes["none"] and sizes["int8"] < sizes["none"]
    # (the tiny backbone's weights weigh less than mixed's quantize ops: see
    # test_mixed_variant_is_smaller_than_float32 for the sizes)


def test_export_prints_the_size_of_each_variant(exports):
    for q, (folder, printed) in exports.items():
        size = (folder / "model.tflite").stat().st_size / 1e6
        assert f"model.tflite {size:.2f} MB" in printed, printed
    assert "calibrated on 36 photos" in exports["int8"][1]  # the 36 training photos


def test_int8_variant_is_full_integer(exports):
    from ai_edge_litert.interpreter import Interpreter

    folder = exports["int8"][0]
    interpreter = Interpreter(model_path=str(folder / "model.tflite"))
    ops = interpreter._get_ops_details()
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    # Every convolution and matrix product runs on int8 tensors.
    heavy = [op for op in ops if op["op_name"] in ("CONV_2D", "FULLY_CONNECTED")]
    assert heavy
    for op in heavy:
        assert tensors[op["inputs"][0]]["dtype"] == np.int8, op
    (inp,) = interpreter.get_input_details()
    (out,) = interpreter.get_output_details()
    assert inp["dtype"] == np.uint8 and out["dtype"] == np.float32


def _ops_by_output(folder):
    """{output tensor name: (op name, output dtype)} of an exported model."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(folder / "model.tflite"))
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    return {
        tensors[op["outputs"][0]]["name"]: (
            op["op_name"],
            tensors[op["outputs"][0]]["dtype"],
        )
        for op in interpreter._get_ops_details()
        if len(op["outputs"])
    }


def test_mixed_variant_keeps_the_listed_ops_in_float(exports):
    folder, printed = exports["mixed"]
    info = json.loads((folder / "preprocessing.json").read_text())
    float_ops = info["float_ops"]
    # the default share, rounded up, of the ops the debugger ranked
    assert len(float_ops) == -(-3 * info["n_ops_checked"] // 10) >= 1
    assert info["float_fraction"] == 0.3 and "float_ops" in info["activations"]
    scores = [op["rmse_per_scale"] for op in float_ops]
    assert scores == sorted(scores, reverse=True)
    assert f"{len(float_ops)} of {info['n_ops_checked']} ops in float" in printed
    ops = _ops_by_output(folder)
    for op in float_ops:  # each named op is in the model and computes in float
        assert ops[op["tensor"]] == (op["op"], np.float32), op
    listed = {op["tensor"] for op in float_ops}
    int8 = [n for n, (name, dtype) in ops.items() if dtype == np.int8]
    assert int8 and not listed & set(int8)  # the others stay int8
    assert "float_ops" not in json.loads(
        (exports["int8"][0] / "preprocessing.json").read_text()
    )


def _wide_backbone(path, n_convs=8, width=32):
    """A feature-vector SavedModel whose convolutions' weights dominate its size."""
    import tensorflow as tf

    rng = np.random.default_rng(3)
    shapes = [(3, 3, 3, width)] + [(3, 3, width, width)] * (n_convs - 1)

    class Wide(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = [
                tf.Variable(rng.normal(0, 0.3, s).astype("float32")) for s in shapes
            ]

        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
        def __call__(self, images):
            h = tf.image.resize(images, (16, 16))
            for w in self.w:
                h = tf.nn.relu6(tf.nn.conv2d(h, w, 1, "SAME"))
            return tf.concat(
                [tf.reduce_mean(h, [1, 2]), tf.reduce_mean(images, [1, 2])], 1
            )

    tf.saved_model.save(Wide(), str(path))
    return path


def test_mixed_variant_is_smaller_than_float32(tmp_path_factory, capsys):
    backbone = _wide_backbone(tmp_path_factory.mktemp("wide") / "wide")
    session = trained(tmp_path_factory, backbone)
    base = tmp_path_factory.mktemp("wide_lite")
    _export(session["output"], base / "none", capsys)
    printed = _export(session["output"], base / "mixed", capsys, "--quantize", "mixed")
    info = json.loads((base / "mixed" / "preprocessing.json").read_text())
    assert 1 <= len(info["float_ops"]) < info["n_ops_checked"], printed
    size = {q: (base / q / "model.tflite").stat().st_size for q in ("none", "mixed")}
    assert size["mixed"] < 0.8 * size["none"], size
    paths = list_images([str(session["data"] / "test")])
    expected = [r["label"] for r in predict_json(session["output"], paths, capsys)]
    got = [r["label"] for r in predict_json(base / "mixed", paths, capsys)]
    assert np.mean(np.asarray(got) == expected) >= 0.8


def test_float_fraction_is_checked(session, tmp_path, capsys):
    model = str(session["output"])
    capsys.readouterr()
    assert main(["export", model, "--tflite", str(tmp_path / "a"), "--quantize",
                 "int8", "--float-fraction", "0.5"]) == 2  # fmt: skip
    assert "--float-fraction applies to --quantize mixed only" in (
        capsys.readouterr().err
    )
    assert main(["export", model, "--tflite", str(tmp_path / "b"), "--quantize",
                 "mixed", "--float-fraction", "1.5"]) == 1  # fmt: skip
    assert "float_fraction (--float-fraction)" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_float_fraction_one_keeps_every_checked_op_in_float(session, tmp_path, capsys):
    # Every checked op denylisted: the debugger could not rebuild its debug
    # model ("Please check if the quantized model is in debug mode").
    out = tmp_path / "all_float"
    _export(session["output"], out, capsys, "--quantize", "mixed",
            "--float-fraction", "1")  # fmt: skip
    info = json.loads((out / "preprocessing.json").read_text())
    assert len(info["float_ops"]) == info["n_ops_checked"] >= 3
    paths = list_images([str(session["data"] / "test")])
    expected = predict_json(session["output"], paths, capsys)
    got = predict_json(out, paths, capsys)
    assert [r["label"] for r in got] == [r["label"] for r in expected]


def test_int8_calibration_finds_photos_trained_from_another_folder(
    session, tiny_model_dir, tmp_path, monkeypatch, capsys
):
    # The manifest records the training folders absolute: a relative
    # `train DATA` followed by an export from elsewhere still calibrates.
    import os

    monkeypatch.chdir(tmp_path)
    data = os.path.relpath(session["data"], tmp_path)
    argv = ["train", data, "--output", "m", "--model", str(tiny_model_dir),
            "--cache", str(session["cache"]), "--no-progress", "--C", "1"]  # fmt: skip
    assert main(argv) == 0
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert all(os.path.isabs(p) for p in manifest["data"]["sources"].values())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    printed = _export(tmp_path / "m", "lite", capsys, "--quantize", "int8")
    assert "calibrated on" in printed and (elsewhere / "lite" / "model.tflite").exists()


def test_evaluate_runs_the_export(session, exports, tmp_path, capsys):
    capsys.readouterr()
    folder = exports["none"][0]
    argv = ["evaluate", str(folder), str(session["data"] / "test"), "--report-dir",
            str(tmp_path / "report")]  # fmt: skip
    assert main(argv) == 0
    lite = capsys.readouterr().out
    assert main(["evaluate", str(session["output"]), str(session["data"] / "test"),
                 "--report-dir", str(tmp_path / "report_md")]) == 0  # fmt: skip
    reference = capsys.readouterr().out
    pattern = r"Accuracy on .*: ([0-9.]+) \((\d+) images\)"
    assert re.search(pattern, lite).groups() == re.search(pattern, reference).groups()
    assert json.loads((tmp_path / "report" / "metrics.json").read_text())["n_samples"]


def test_flags_that_do_not_apply_are_refused(session, exports, capsys):
    folder = exports["none"][0]
    image = list_images([str(session["data"] / "test")])[0]
    capsys.readouterr()
    assert main(["predict", str(folder), image, "--test-views", "flip"]) == 1
    assert "--test-views does not apply to the TensorFlow Lite export" in (
        capsys.readouterr().err
    )
    assert main(["export", str(session["output"]), "--savedmodel", "x",
                 "--quantize", "int8"]) == 2  # fmt: skip
    assert "apply to --tflite only" in capsys.readouterr().err


def test_mlp_head_with_test_time_flip(session, tiny_model_dir, tmp_path, capsys):
    model_dir = _train(session, tiny_model_dir, tmp_path / "mlp", "--classifier",
                       "mlp", "--test-views", "flip")  # fmt: skip
    _export(model_dir, tmp_path / "lite", capsys)
    info = json.loads((tmp_path / "lite" / "preprocessing.json").read_text())
    assert info["test_time_flip_included"] is True
    paths = list_images([str(session["data"] / "test")])
    expected = predict_json(model_dir, paths, capsys)
    got = predict_json(tmp_path / "lite", paths, capsys)
    assert [r["label"] for r in got] == [r["label"] for r in expected]
    np.testing.assert_allclose(
        [r["top_k"][0]["score"] for r in got],
        [r["top_k"][0]["score"] for r in expected],
        atol=1e-4,
    )


def test_open_set_rule_is_included(session, tiny_model_dir, tmp_path, capsys, caplog):
    model_dir = _train(session, tiny_model_dir, tmp_path / "open", "--unknown",
                       "auto", "--crop-fraction", "1")  # fmt: skip
    _export(model_dir, tmp_path / "lite", capsys)
    info = json.loads((tmp_path / "lite" / "preprocessing.json").read_text())
    assert info["unknown_rule_included"] is True
    assert info["unknown_label"] == "unknown"
    noise = noise_images(tmp_path)  # photos of none of the classes
    paths = list_images([str(session["data"] / "test")]) + noise
    expected = [r["label"] for r in predict_json(model_dir, paths, capsys)]
    assert "unknown" in expected
    assert [
        r["label"] for r in predict_json(tmp_path / "lite", paths, capsys)
    ] == expected
    # Index-based APIs (docs/export.md): output 0 is probabilities, 1 known.
    from ai_edge_litert.interpreter import Interpreter

    details = Interpreter(
        model_path=str(tmp_path / "lite" / "model.tflite")
    ).get_output_details()
    assert [list(d["shape"]) for d in details] == [[1, 3], [1]]
    # mixed keeps the rule in float: no warning (test_export_tflite_open_set.py
    # checks its decisions)
    with caplog.at_level("WARNING", logger="embedclf"):
        _export(model_dir, tmp_path / "lite8", capsys, "--quantize", "mixed")
    assert "open-set" not in caplog.text


def test_two_backbones(session, tiny_model_dir, tiny_model_dir_b, tmp_path, capsys):
    model_dir = _train(session, tiny_model_dir, tmp_path / "two", "--model",
                       str(tiny_model_dir_b))  # fmt: skip
    _export(model_dir, tmp_path / "lite", capsys)
    paths = list_images([str(session["data"] / "test")])
    expected = predict_json(model_dir, paths, capsys)
    got = predict_json(tmp_path / "lite", paths, capsys)
    assert [r["label"] for r in got] == [r["label"] for r in expected]


def test_svm_head_is_refused_by_name(session, tiny_model_dir, tmp_path, capsys):
    model_dir = _train(session, tiny_model_dir, tmp_path / "svm", "--classifier",
                       "svm")  # fmt: skip
    capsys.readouterr()
    assert main(["export", str(model_dir), "--tflite", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err
    assert "this model's head is SVMClassifier" in err, err
    assert "--classifier softmax or mlp" in err
    assert not (tmp_path / "x").exists()


def test_calibration_photos_take_each_class_in_turn(session):
    from embedclf.workflow._export._tflite import calibration_paths
    from embedclf.workflow._model_dir import load_model_dir

    paths = calibration_paths(load_model_dir(session["output"]), 6)
    classes = [p.split("/")[-2] for p in paths]
    assert classes == ["blue", "green", "red"] * 2
    assert paths == calibration_paths(load_model_dir(session["output"]), 6)
    assert len(set(paths)) == 6


def test_missing_litert_names_the_extra(exports, monkeypatch):
    import sys

    from embedclf.workflow._export._litert import LiteRTClassifier

    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    with pytest.raises(ImportError, match=re.escape('pip install "embedclf[lite]"')):
        LiteRTClassifier(exports["none"][0])
