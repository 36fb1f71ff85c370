"""Inputs that used to crash the CLI or give a silently wrong answer.

The real ``embedclf`` runs in a subprocess at least once per verb here
(``train``, ``embed``, ``predict``); the rest call ``main([...])``.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

import pytest
from _subprocess_cli import run_cli
from conftest import make_image_folder, write_image

from embedclf.cli import list_images, main
from embedclf.model_selection._split import retrain_split

pytestmark = pytest.mark.tf


# -- --unknown auto with an "unknown" background folder ------------------------------
@pytest.mark.slow
def test_train_unknown_auto_with_unknown_folder(tmp_path, tiny_model_dir):
    data = make_image_folder(
        tmp_path / "images", ("red", "green", "blue", "unknown"), n_per_class=9
    )
    out = tmp_path / "model"
    done = run_cli(
        "train", data, "--output", out, "--model", tiny_model_dir, "--unknown",
        "auto", "--validation-percentage", "0", "--testing-percentage", "0",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["unknown"]["mode"] == "auto"
    assert manifest["unknown"]["threshold"] is not None  # the tuned score rule
    assert manifest["labels"] == ["blue", "green", "red"]


def test_train_unknown_auto_with_unknown_folder_and_views(tmp_path, tiny_model_dir):
    """Augmented views too: the threshold folds keep an image's views together."""
    data = make_image_folder(
        tmp_path / "images", ("red", "green", "unknown"), n_per_class=8
    )
    status = main(
        ["train", str(data), "--output", str(tmp_path / "m"), "--model",
         str(tiny_model_dir), "--unknown", "auto", "--flip-left-right",
         "--augment-copies", "1", "--validation-percentage", "0",
         "--testing-percentage", "0", "--no-progress", "--C", "1"]
    )  # fmt: skip
    assert status == 0
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["unknown"]["mode"] == "auto"


# -- legal file names that are not UTF-8 ---------------------------------------------
@pytest.mark.slow
def test_train_on_file_names_that_are_not_utf8(tmp_path, tiny_model_dir):
    data = make_image_folder(tmp_path / "images", n_per_class=12)
    for cls in ("red", "green"):
        folder = os.fsencode(data / cls)
        for i, path in enumerate(sorted((data / cls).iterdir())[:6]):
            new = folder + b"/caf\xe9_%d" % i + os.fsencode(path.suffix)  # Latin-1
            os.rename(os.fsencode(path), new)
    out = tmp_path / "model"
    done = run_cli(
        "train", data, "--output", out, "--model", tiny_model_dir, "--C", "1",
        "--validation-percentage", "25", "--testing-percentage", "25",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    # the split is retrain.py's hash of each name's bytes
    names = [os.fsdecode(p) for p in (data / "red").iterdir()]
    names += [os.fsdecode(p) for p in (data / "green").iterdir()]
    split = retrain_split(names, 25, 25)
    assert manifest["metrics"]["n_training"] == int((split == "training").sum())
    assert manifest["metrics"]["n_testing"] == int((split == "testing").sum())
    assert manifest["data"]["unreadable"] == []
    assert manifest["data"]["excluded"] is None  # no --exclude


# -- a folder symlink loop ---------------------------------------------------------
@pytest.fixture
def looped_folder(tmp_path):
    root = tmp_path / "photos"
    write_image(root / "a" / "one.png", seed=1, colour=(220, 30, 30))
    write_image(root / "a" / "b" / "two.jpg", seed=2, colour=(30, 200, 40))
    (root / "a" / "b" / "up").symlink_to("..")  # a/b/up -> a: a loop
    (root / "b_again").symlink_to("a/b")  # the same folder under two names
    return root


def test_list_images_walks_each_folder_once(looped_folder):
    names = [Path(p).name for p in list_images([looped_folder])]
    assert sorted(names) == ["one.png", "two.jpg"]


@pytest.mark.slow
def test_embed_and_predict_list_each_image_once(looped_folder, tmp_path):
    model_dir = _train_small(tmp_path)
    embed = run_cli("embed", looped_folder, "--cache", tmp_path / "c.h5",
                    "--model", tmp_path / "backbone")  # fmt: skip
    assert embed.returncode == 0, embed.stderr
    assert "Embedded 2 images" in embed.stdout
    predict = run_cli("predict", model_dir, looped_folder, "--json")
    assert predict.returncode == 0, predict.stderr
    paths = [Path(r["path"]).name for r in json.loads(predict.stdout)]
    assert sorted(paths) == ["one.png", "two.jpg"]


def _train_small(tmp_path):
    from conftest import build_tiny_savedmodel

    backbone = build_tiny_savedmodel(tmp_path / "backbone")
    data = make_image_folder(tmp_path / "train", n_per_class=4)
    out = tmp_path / "model"
    status = main(
        ["train", str(data), "--output", str(out), "--model", str(backbone),
         "--C", "1", "--validation-percentage", "0", "--testing-percentage", "0",
         "--no-progress"]
    )  # fmt: skip
    assert status == 0
    return out


# -- a class that vanishes from training -------------------------------------------
def _name_hashed_into(part, stem, ext=".png"):
    for i in range(10_000):
        name = f"{stem}_{i}{ext}"
        if retrain_split([name])[0] == part:
            return name
    raise AssertionError("no such name")  # pragma: no cover


def test_class_hashed_out_of_training_is_an_error(tmp_path, tiny_model_dir, capsys):
    data = make_image_folder(tmp_path / "images", n_per_class=10)
    write_image(data / "lonely" / _name_hashed_into("testing", "lonely"), seed=5)
    status = main(
        ["train", str(data), "--output", str(tmp_path / "m"), "--model",
         str(tiny_model_dir), "--C", "1", "--no-progress"]
    )  # fmt: skip
    assert status == 1
    msg = (
        "embedclf: error: The hash split puts every image of class 'lonely' "
        "(1 image) in the validation or testing part, so the model would be "
        "trained without it. Add images of that class, lower "
        "--validation-percentage and --testing-percentage, or give the parts as "
        "folders with --val-dir and --test-dir."
    )
    assert capsys.readouterr().err.strip() == msg
    assert not (tmp_path / "m").exists()


def test_class_only_in_test_folder_is_a_warning(tmp_path, tiny_model_dir, caplog):
    train = make_image_folder(tmp_path / "train", n_per_class=6)
    test = make_image_folder(tmp_path / "test", ("red", "green", "blue"), 2, seed=3)
    with caplog.at_level(logging.WARNING, logger="embedclf"):
        status = main(
            ["train", str(train), "--test-dir", str(test), "--output",
             str(tmp_path / "m"), "--model", str(tiny_model_dir), "--C", "1",
             "--no-progress"]
        )  # fmt: skip
    assert status == 0
    assert re.search(
        r"Class 'blue' \(2 images\) has validation or testing images but no "
        r"training images: the model cannot predict it",
        caplog.text,
    )
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["labels"] == ["green", "red"]
    assert manifest["metrics"]["n_testing"] == 6


# -- labels in messages read as the user typed them ------------------------------
def test_errors_quote_class_names_without_numpy_wrappers(
    tmp_path, tiny_model_dir, capsys
):
    train = make_image_folder(tmp_path / "train", n_per_class=6)
    write_image(train / "Banana" / "only.png", seed=9)
    argv = ["train", str(train), "--output", str(tmp_path / "m"), "--model",
            str(tiny_model_dir), "--validation-percentage", "0",
            "--testing-percentage", "0", "--no-progress"]  # fmt: skip
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "Class 'Banana' has only 1 training image;" in err
    one = make_image_folder(tmp_path / "one", ("Banana",), n_per_class=3)
    argv[1] = str(one)
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "have only class 'Banana';" in err
    assert "np.str_" not in err
