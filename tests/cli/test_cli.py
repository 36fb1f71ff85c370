"""The ``embedclf`` command, driven through ``main([...])`` on generated data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _cli_helpers import CLASSES, grocery_like, trained
from conftest import heavy_modules_loaded, make_image_folder, write_image

from embedclf.cli import list_images, main

pytestmark = pytest.mark.tf


@pytest.fixture(scope="module")
def session(tmp_path_factory, tiny_model_dir):
    return trained(tmp_path_factory, tiny_model_dir)


def _err_lines(capsys):
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


# -- help -----------------------------------------------------------------------
def test_help_does_not_import_tensorflow():
    code = (
        "from embedclf.cli import main\n"
        "for argv in (['--help'], ['train', '--help'], ['predict', '--help'],\n"
        "             ['export', '--help'], ['cache', 'info', '--help']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit as exc:\n"
        "        assert exc.code == 0, exc.code\n"
    )
    heavy, out = heavy_modules_loaded(
        code, ("tensorflow", "h5py", "sklearn", "matplotlib")
    )
    assert heavy == []
    assert "Default: softmax." in out  # help text states its defaults


def test_no_command_exits_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 2


# -- train ------------------------------------------------------------------------
def test_train_writes_model_dir(session):
    assert session["status"] == 0
    out = session["output"]
    manifest = json.loads((out / "manifest.json").read_text())
    labels_file = out / manifest["files"]["labels"]["path"]
    assert labels_file.read_text().split() == sorted(CLASSES)
    assert manifest["format"] == "embedclf-model-dir"
    assert manifest["format_version"] == 2
    assert manifest["backbone"]["identity"].startswith("savedmodel:")
    assert manifest["labels"] == sorted(CLASSES)
    assert manifest["data"]["layout"] == "official-subfolders"
    assert manifest["metrics"]["n_training"] == 36
    assert manifest["metrics"]["n_validation"] == 9
    assert manifest["metrics"]["n_testing"] == 12
    assert 0 <= manifest["metrics"]["test_accuracy"] <= 1
    assert manifest["classifier"]["C"] in (0.1, 1.0)
    assert "scikit-learn" in manifest["library_versions"]
    for name in ("metrics.json", "per_class.tsv", "misclassified.html"):
        assert (out / "report" / name).is_file()
    png = (out / "report" / "confusion_matrix.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Final test accuracy = " in session["stdout"]
    assert "Validation accuracy = " in session["stdout"]


def test_train_summaries(session):
    from tensorboard.backend.event_processing.event_accumulator import (
        EventAccumulator,
    )

    root = session["summaries"]
    for run in ("train", "validation"):
        acc = EventAccumulator(str(root / run), size_guidance={"tensors": 0})
        acc.Reload()
        tags = set(acc.Tags()["tensors"])
        assert {"accuracy", "cross_entropy", "log10_C"} <= tags
        assert len(acc.Tensors("accuracy")) == 2  # one point per C
    config = (root / "projector_config.pbtxt").read_text()
    assert 'tensor_path: "projector/vectors.tsv"' in config
    vectors = np.loadtxt(root / "projector" / "vectors.tsv", delimiter="\t")
    assert vectors.shape == (57, 16)
    meta = (root / "projector" / "metadata.tsv").read_text().splitlines()
    assert meta[0] == "label\tsplit\tpath" and len(meta) == 58
    from PIL import Image

    with Image.open(root / "projector" / "sprite.png") as sprite:
        assert sprite.size[0] == sprite.size[1] >= 8 * 8


def test_train_warm_cache_computes_nothing(session, tmp_path, tiny_model_dir, capsys):
    from embedclf.embedding._backbones import backbone_image_count

    before = backbone_image_count()
    status = main(
        [
            "train",
            str(session["data"]),
            "--output",
            str(tmp_path / "m"),
            "--model",
            str(tiny_model_dir),
            "--cache",
            str(session["cache"]),
            "--C",
            "1",
            "--no-progress",
        ]
    )
    assert status == 0
    assert backbone_image_count() == before
    assert "(0 by the backbone, 57 from the cache)" in capsys.readouterr().out


def test_train_hash_split_and_svm(tmp_path, tiny_model_dir, capsys):
    data = make_image_folder(tmp_path / "flat", ("red", "blue"), n_per_class=15)
    status = main(
        [
            "train",
            str(data),
            "--output",
            str(tmp_path / "m"),
            "--model",
            str(tiny_model_dir),
            "--classifier",
            "svm",
            "--C",
            "1",
            "--validation-percentage",
            "20",
            "--testing_percentage",
            "20",
            "--no-progress",
        ]
    )
    assert status == 0, capsys.readouterr().err
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["data"]["layout"] == "hash-split"
    assert manifest["classifier"]["type"] == "svm"
    from embedclf import load_image_folder
    from embedclf.model_selection._split import retrain_split

    split = retrain_split(load_image_folder(data).paths, 20, 20)
    assert manifest["metrics"]["n_testing"] == int((split == "testing").sum())
    # An SVM head is not a dense layer: export refuses it in one line.
    status = main(["export", str(tmp_path / "m"), "--savedmodel", str(tmp_path / "e")])
    assert status == 1
    assert "--classifier softmax" in capsys.readouterr().err


def test_train_val_and_test_dir_options(tmp_path, tiny_model_dir, capsys):
    data = grocery_like(tmp_path / "g")
    status = main(
        [
            "train",
            str(data / "train"),
            "--val-dir",
            str(data / "val"),
            "--test-dir",
            str(data / "test"),
            "--output",
            str(tmp_path / "m"),
            "--model",
            str(tiny_model_dir),
            "--C",
            "1",
            "--no-progress",
        ]
    )
    assert status == 0
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["data"]["layout"] == "folders"
    assert manifest["metrics"]["n_validation"] == 9


@pytest.mark.parametrize(
    "case, expected",
    [
        ("missing", "does not exist"),
        ("one_class", "needs at least 2 classes"),
        ("hub_offline", "offline"),
        ("bad_unknown", "--unknown must be 'auto', 'off' or"),
    ],
)
def test_train_user_errors_are_one_line(
    case, expected, tmp_path, tiny_model_dir, capsys
):
    model = str(tiny_model_dir)
    image_dir = make_image_folder(tmp_path / "d", ("red", "blue"), n_per_class=3)
    extra = []
    if case == "missing":
        image_dir = tmp_path / "nope"
    elif case == "one_class":
        image_dir = make_image_folder(tmp_path / "one", ("red",), n_per_class=4)
    elif case == "hub_offline":
        model = "http://127.0.0.1:9/google/imagenet/nothing/1"
    elif case == "bad_unknown":
        extra = ["--unknown", "1.5"]
    status = main(
        [
            "train",
            str(image_dir),
            "--output",
            str(tmp_path / "m"),
            "--model",
            model,
            "--no-progress",
            *extra,
        ]
    )
    lines = _err_lines(capsys)
    assert status == 1
    assert len(lines) == 1 and lines[0].startswith("embedclf: error: ")
    assert expected in lines[0]
    assert not (tmp_path / "m").exists()


def test_train_bad_percentage_is_argparse_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "train",
                str(tmp_path),
                "-o",
                str(tmp_path / "m"),
                "--validation-percentage",
                "150",
            ]
        )
    assert exc.value.code == 2
    assert "must be in [0, 100)" in capsys.readouterr().err


# -- predict -----------------------------------------------------------------------
def test_predict_text_and_json(session, capsys):
    test_dir = session["data"] / "test"
    status = main(
        [
            "predict",
            str(session["output"]),
            str(test_dir / "red"),
            "--top-k",
            "2",
            "--no-progress",
        ]
    )
    out = capsys.readouterr().out.splitlines()
    assert status == 0
    assert len(out) == 4 * 3  # 4 images, a label line and 2 score lines each
    assert out[0].startswith(str(test_dir / "red" / "red_000.jpg") + ": ")
    assert out[1].strip().split()[0] in CLASSES and "score = " in out[1]
    status = main(
        [
            "predict",
            str(session["output"]),
            str(test_dir),
            "--json",
            "--cache",
            str(session["cache"]),
        ]
    )
    results = json.loads(capsys.readouterr().out)
    assert status == 0 and len(results) == 12
    assert all(len(r["top_k"]) == 3 for r in results)
    accuracy = np.mean([r["label"] == Path(r["path"]).parent.name for r in results])
    manifest = json.loads((session["output"] / "manifest.json").read_text())
    assert accuracy == pytest.approx(manifest["metrics"]["test_accuracy"])


def test_predict_bad_file_reports_and_continues(session, tmp_path, capsys):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image at all")
    good = session["data"] / "test" / "blue" / "blue_001.png"
    status = main(
        [
            "predict",
            str(session["output"]),
            str(bad),
            str(good),
            str(tmp_path / "missing.png"),
        ]
    )
    captured = capsys.readouterr()
    assert status == 1
    err = captured.err.strip().splitlines()
    assert len(err) == 2
    assert "broken.jpg" in err[0] and "not a recognised image format" in err[0]
    assert "missing.png" in err[1] and "does not exist" in err[1]
    assert captured.out.startswith(f"{good}: ")


def test_predict_missing_folder_is_not_called_a_file(session, tmp_path, capsys):
    missing = tmp_path / "photos"  # meant as a folder; it does not exist
    status = main(["predict", str(session["output"]), str(missing)])
    err = capsys.readouterr().err
    assert status == 1
    assert f"No file or folder {str(missing)!r}: it does not exist." in err
    assert "Image file" not in err


def test_predict_refuses_other_backbone(session, tiny_model_dir_b, capsys):
    img = session["data"] / "test" / "red" / "red_000.jpg"
    status = main(
        ["predict", str(session["output"]), str(img), "--model", str(tiny_model_dir_b)]
    )
    lines = _err_lines(capsys)
    assert status == 1 and len(lines) == 1
    assert "was trained on backbone" in lines[0] and "different model" in lines[0]


def test_predict_refuses_newer_model_dir(session, tmp_path, capsys):
    import shutil

    copy = tmp_path / "newer"
    shutil.copytree(session["output"], copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["format_version"] = 99
    (copy / "manifest.json").write_text(json.dumps(manifest))
    status = main(["predict", str(copy), str(session["data"] / "test")])
    lines = _err_lines(capsys)
    assert status == 1 and len(lines) == 1
    assert "format version 99" in lines[0] and "Upgrade embedclf" in lines[0]


def test_predict_not_a_model_dir(tmp_path, capsys):
    status = main(["predict", str(tmp_path), str(tmp_path)])
    assert status == 1
    assert "not an embedclf model directory" in capsys.readouterr().err


def test_open_set_threshold_answers_unknown(session, tmp_path, tiny_model_dir, capsys):
    out = tmp_path / "m"
    status = main(
        [
            "train",
            str(session["data"]),
            "--output",
            str(out),
            "--model",
            str(tiny_model_dir),
            "--cache",
            str(session["cache"]),
            "--C",
            "1",
            "--unknown",
            "0.999",
            "--no-progress",
        ]
    )
    assert status == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["unknown"]["probability_threshold"] == 0.999
    capsys.readouterr()
    main(["predict", str(out), str(session["data"] / "test"), "--json"])
    results = json.loads(capsys.readouterr().out)
    for r in results:  # "unknown" exactly when the top score is under 0.999
        assert (r["label"] == "unknown") == (r["top_k"][0]["score"] < 0.999)
    assert any(r["label"] == "unknown" for r in results)


# -- evaluate ------------------------------------------------------------------------
def test_evaluate_writes_report(session, tmp_path, capsys):
    report = tmp_path / "rep"
    status = main(
        [
            "evaluate",
            str(session["output"]),
            str(session["data"] / "test"),
            "--cache",
            str(session["cache"]),
            "--report-dir",
            str(report),
        ]
    )
    out = capsys.readouterr().out
    assert status == 0
    metrics = json.loads((report / "metrics.json").read_text())
    manifest = json.loads((session["output"] / "manifest.json").read_text())
    assert metrics["accuracy"] == pytest.approx(manifest["metrics"]["test_accuracy"])
    assert metrics["n_samples"] == 12
    assert f"Accuracy on {session['data'] / 'test'}: {metrics['accuracy']:.4f}" in out
    assert (report / "confusion_matrix.png").is_file()
    assert "Misclassified images" in (report / "misclassified.html").read_text()


def test_evaluate_missing_dir(session, tmp_path, capsys):
    status = main(["evaluate", str(session["output"]), str(tmp_path / "none")])
    lines = _err_lines(capsys)
    assert status == 1 and len(lines) == 1 and "does not exist" in lines[0]


# -- embed and cache -------------------------------------------------------------------
def test_embed_fills_cache_and_resumes(tmp_path, tiny_model_dir, capsys):
    folder = make_image_folder(tmp_path / "imgs", ("red", "blue"), n_per_class=4)
    cache = tmp_path / "c.h5"
    # A first, "interrupted" run that only got through the red images.
    assert (
        main(
            [
                "embed",
                str(folder / "red"),
                "--cache",
                str(cache),
                "--model",
                str(tiny_model_dir),
            ]
        )
        == 0
    )
    assert "4 computed by the backbone, 0 from the cache" in capsys.readouterr().out
    assert (
        main(
            [
                "embed",
                str(folder),
                "--cache",
                str(cache),
                "--model",
                str(tiny_model_dir),
            ]
        )
        == 0
    )
    assert "4 computed by the backbone, 4 from the cache" in capsys.readouterr().out
    assert main(["cache", "info", str(cache)]) == 0
    out = capsys.readouterr().out
    assert "1 namespace(s)" in out and "8 vectors" in out and "dim=16" in out
    assert main(["cache", "repair", str(cache)]) == 0
    assert "kept 8 vectors, dropped 0" in capsys.readouterr().out


def test_embed_reports_bad_files(tmp_path, tiny_model_dir, capsys):
    folder = make_image_folder(tmp_path / "imgs", ("red",), n_per_class=2)
    (folder / "red" / "zzz.png").write_bytes(b"")
    status = main(
        [
            "embed",
            str(folder),
            "--cache",
            str(tmp_path / "c.h5"),
            "--model",
            str(tiny_model_dir),
        ]
    )
    captured = capsys.readouterr()
    assert status == 1
    assert "zzz.png" in captured.err and "empty" in captured.err
    assert "2 computed by the backbone" in captured.out


def test_embed_needs_cache_and_folder(tmp_path, capsys):
    assert main(["embed", str(tmp_path)]) == 2
    assert "needs --cache" in capsys.readouterr().err
    assert main(["embed", str(tmp_path / "x"), "--cache", str(tmp_path / "c")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_cache_commands_on_bad_files(tmp_path, capsys):
    assert main(["cache", "info", str(tmp_path / "none.h5")]) == 1
    assert "does not exist" in capsys.readouterr().err
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"definitely not hdf5")
    assert main(["cache", "info", str(junk)]) == 1
    lines = _err_lines(capsys)
    assert len(lines) == 1 and "embedclf cache repair" in lines[0]


def test_list_images(tmp_path):
    write_image(tmp_path / "a" / "x.png")
    write_image(tmp_path / "a" / "b" / "y.jpg")
    (tmp_path / "a" / "notes.txt").write_text("hi")
    (tmp_path / "a" / ".hidden.png").write_bytes(b"")
    found = list_images([str(tmp_path / "a"), "loose.jpg"])
    assert found == [
        str(tmp_path / "a" / "x.png"),
        str(tmp_path / "a" / "b" / "y.jpg"),
        "loose.jpg",
    ]


def test_train_reuses_the_fit_memo(session, tmp_path, tiny_model_dir, capsys):
    from embedclf.workflow._model_dir import load_model_dir

    argv = ["train", str(session["data"]), "--output", str(tmp_path / "m"),
            "--model", str(tiny_model_dir), "--cache", str(session["cache"]),
            "--C", "0.1,1", "--no-progress"]  # fmt: skip
    assert main(argv) == 0  # the session's own settings: a memo hit
    out = capsys.readouterr().out
    assert "Reusing the head fitted on exactly these vectors" in out
    assert "Tuning C" not in out
    a, b = load_model_dir(tmp_path / "m"), load_model_dir(session["output"])
    np.testing.assert_array_equal(a.head.coef_, b.head.coef_)
    assert main([*argv[:-3], "--C", "0.3,1", "--no-progress"]) == 0  # other grid
    assert "Tuning C over [0.3, 1]" in capsys.readouterr().out
