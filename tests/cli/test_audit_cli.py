"""``embedclf audit`` and the leak pointer of ``embedclf train``."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from _cli_helpers import grocery_like
from conftest import write_image

from embedclf.cli import main

pytestmark = pytest.mark.tf

ROOT = Path(__file__).resolve().parents[2]


def _leaky(root):
    """grocery_like data with a training image copied into the test split."""
    data = grocery_like(root)
    src = sorted((data / "train" / "red").iterdir())[0]
    shutil.copyfile(src, data / "test" / "red" / ("copy_" + src.name))
    return data, src


def test_audit_cli_in_a_subprocess(tmp_path, tiny_model_dir):
    data, src = _leaky(tmp_path / "g")
    out = tmp_path / "audit"
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "embedclf",
            "audit",
            str(data),
            "--output",
            str(out),
            "--model",
            str(tiny_model_dir),
            "--cache",
            str(tmp_path / "c.h5"),
            "--folds",
            "3",
            # The tiny test backbone sees every image of a colour as alike.
            "--duplicate-threshold",
            "0.99999",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Audited 58 images in 3 classes" in proc.stdout
    assert "1 exact" in proc.stdout and "across splits" in proc.stdout
    assert re.search(r"on the \d+ images with a near-twin in training", proc.stdout)
    # The accuracy printed says which head it is (not train's tuned head).
    assert "testing accuracy of a plain softmax head (C=1" in proc.stdout
    assert "image issues (CleanVision):" in proc.stdout
    assert "What to do next:" in proc.stdout
    assert "--exclude" in proc.stdout
    payload = json.loads((out / "audit.json").read_text())
    exact = [p for p in payload["duplicates"] if p["kind"] == "exact"]
    assert len(exact) == 1 and exact[0]["splits"] == "testing/training"
    names = {os.path.basename(payload["paths"][exact[0][k]]) for k in "ij"}
    assert names == {src.name, "copy_" + src.name}
    assert (out / "audit.html").is_file() and (out / "issues.csv").is_file()


def test_audit_cli_errors(tmp_path, capsys):
    assert main(["audit", str(tmp_path / "nope"), "--output", str(tmp_path)]) == 1
    assert "does not exist" in capsys.readouterr().err
    status = main(["audit", str(tmp_path), "--output", str(tmp_path), "--folds", "1"])
    assert status == 2
    assert "--folds must be 2 or more; got 1." in capsys.readouterr().err


@pytest.fixture(scope="module")
def pixel_model(tmp_path_factory):
    """A real SavedModel whose vector is the 8x8 image minus grey.

    Unlike the tiny conv net (which sees all noise images as alike), distinct
    noise images get nearly orthogonal vectors here, so only real copies are
    near-duplicates.
    """
    tf = pytest.importorskip("tensorflow")

    class Pixels(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
        def __call__(self, images):
            x = tf.image.resize(images, (8, 8), method="nearest")
            return tf.reshape(x - 0.5, [-1, 192])

    path = tmp_path_factory.mktemp("pixels") / "model"
    tf.saved_model.save(Pixels(), str(path))
    return path


def _noise_splits(root):
    for split, n in (("train", 10), ("test", 3)):
        for k, name in enumerate(("a", "b")):
            for i in range(n):
                seed = 1000 * len(split) + 100 * k + i
                write_image(root / split / name / f"{name}{i}.png", seed=seed)
    return root


@pytest.mark.parametrize("leak", [False, True])
def test_train_points_at_the_audit_when_splits_leak(
    tmp_path, pixel_model, capsys, leak
):
    data = _noise_splits(tmp_path / "g")
    if leak:
        shutil.copyfile(data / "train" / "a" / "a0.png", data / "test" / "a" / "c.png")
    status = main(
        [
            "train",
            str(data),
            "--output",
            str(tmp_path / "m"),
            "--model",
            str(pixel_model),
            "--C",
            "1",
            "--no-progress",
        ]
    )
    assert status == 0
    out = capsys.readouterr().out
    pointer = [line for line in out.splitlines() if "embedclf audit" in line]
    if leak:
        assert len(pointer) == 1
        assert pointer[0].startswith("Note: 1 validation/testing image(s) have")
    else:
        assert pointer == []


def test_train_hint_prints_the_audit_command_that_finds_the_pairs(
    tmp_path, pixel_model, capsys
):
    """The hint names the real cache, backbone and the root folder (issue 24):
    run as printed, the audit finds the cross-split pair it announces."""
    import shlex

    data = _noise_splits(tmp_path / "g")
    shutil.copyfile(data / "train" / "a" / "a0.png", data / "test" / "a" / "c.png")
    cache = tmp_path / "c.h5"
    argv = ["train", str(data / "train"), "--test-dir", str(data / "test")]
    argv += ["--output", str(tmp_path / "m"), "--model", str(pixel_model)]
    argv += ["--cache", str(cache), "--C", "1", "--no-progress"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    (line,) = [x for x in out.splitlines() if "embedclf audit" in x]
    command = line.split("`")[1]
    expected = (
        f"embedclf audit {data} --output audit --cache {cache} --model {pixel_model}"
    )
    assert command == expected
    args = shlex.split(command)[1:]
    args[args.index("--output") + 1] = str(tmp_path / "audit")
    assert main([*args, "--no-progress", "--folds", "3"]) == 0
    audit_out = capsys.readouterr().out
    assert re.search(r"[1-9]\d* across splits", audit_out), audit_out


def test_audit_without_model_uses_trains_default(tmp_path, monkeypatch, capsys):
    """No --model: the default backbone, as for train (issue 24: the
    constraint system's 'model parameter ... Got None' message before)."""
    import embedclf.workflow._audit._run as run
    from embedclf.embedding._backbones import DEFAULT_MODEL

    seen = {}

    def fake_audit_images(*args, **kwargs):
        seen.update(kwargs)
        raise ValueError("stop here")

    monkeypatch.setattr(run, "audit_images", fake_audit_images)
    data = grocery_like(tmp_path / "g")
    status = main(["audit", str(data), "--output", str(tmp_path / "a")])
    assert seen["model"] == DEFAULT_MODEL
    assert status != 0 and "stop here" in capsys.readouterr().err


def test_train_exclude_leaves_the_listed_files_out(tmp_path, pixel_model, capsys):
    data = _noise_splits(tmp_path / "g")
    listing = tmp_path / "exclude.txt"
    listing.write_text(
        "# from embedclf audit\n"
        f"{data / 'train' / 'a' / 'a0.png'}  # blurry\n"
        f"{data / 'train' / 'b' / 'b1.png'}  # twin of a testing/training pair\n"
    )
    argv = ["train", str(data), "--output", str(tmp_path / "m")]
    argv += ["--model", str(pixel_model), "--C", "1", "--no-progress"]
    assert main([*argv, "--exclude", str(listing)]) == 0
    assert "Found 18 training, 0 validation and 6 testing" in capsys.readouterr().out
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    excluded = manifest["data"]["excluded"]
    assert excluded["file"] == str(listing.resolve())
    assert excluded["n_listed"] == 2
    assert excluded["left_out"] == sorted(
        [str(data / "train" / "a" / "a0.png"), str(data / "train" / "b" / "b1.png")]
    )
    missing = tmp_path / "nope.txt"
    assert main([*argv, "--output", str(tmp_path / "m2"), "--exclude", str(missing)])
    assert f"Exclude list {str(missing)!r} does not exist." in capsys.readouterr().err


def test_audit_no_image_checks(tmp_path, pixel_model, capsys):
    data = _noise_splits(tmp_path / "g")
    argv = ["audit", str(data), "--output", str(tmp_path / "a"), "--folds", "3"]
    argv += ["--model", str(pixel_model), "--no-progress"]
    assert main([*argv, "--no-image-checks"]) == 0
    out = capsys.readouterr().out
    assert "image issues" not in out and "perceptual hashes" not in out
    payload = json.loads((tmp_path / "a" / "audit.json").read_text())
    assert payload["image_checks"] is False and payload["image_issues"] == []
    assert main(argv) == 0
    assert "image issues (CleanVision):" in capsys.readouterr().out
    payload = json.loads((tmp_path / "a" / "audit.json").read_text())
    assert payload["image_checks"] is True
