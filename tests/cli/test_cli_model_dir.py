"""The model directory through the real ``embedclf`` command (subprocesses).

Trained in one folder with relative paths, it predicts the same labels from
another working directory and, with ``--model``, after its backbone moved;
evaluate and export take ``--model`` too; evaluate and predict reuse the
training cache; a killed re-train leaves the old model predicting; train
refuses a user's folder; a malicious head is refused before it runs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _cli_helpers import grocery_like
from conftest import make_image_folder

from embedclf.cli import main

pytestmark = pytest.mark.tf

_WORKTREE = Path(__file__).resolve().parents[2]


def _cli(*argv, cwd, env=None):
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(_WORKTREE), *filter(None, [env.get("PYTHONPATH")])]
    )
    return subprocess.run(
        [sys.executable, "-m", "embedclf", *map(str, argv)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
    )


def _labels(proc):
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [r["label"] for r in json.loads(proc.stdout)]


@pytest.mark.slow
def test_model_dir_works_from_anywhere_and_after_the_backbone_moved(
    tmp_path, tiny_model_dir
):
    project = tmp_path / "project"
    shutil.copytree(tiny_model_dir, project / "backbones" / "tiny")
    grocery_like(project / "data")
    train = ["train", "data", "--output", "model", "--model", "backbones/tiny",
             "--cache", "emb.h5", "--C", "0.1,1", "--no-progress"]  # fmt: skip
    proc = _cli(*train, cwd=project)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # The selection score is named for what it is: this folder has val/.
    assert "chosen by the lowest validation cross-entropy" in proc.stdout
    assert "(fitted on the training part) is the estimate" in proc.stdout
    manifest = json.loads((project / "model" / "manifest.json").read_text())
    grid = manifest["metrics"]["c_grid"]
    assert all("validation_accuracy" not in row for row in grid)
    assert "validation_part_accuracy" in grid[0]
    assert "image_size" not in manifest and "image_size" in manifest["notes"]
    assert manifest["cache"]["path"] == str(project / "emb.h5")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    model, test = "../project/model", "../project/data/test"
    expected = _labels(_cli("predict", model, test, "--json", cwd=elsewhere))
    assert len(expected) == 12

    # The training cache is reused: -v names it, no backbone call needed.
    proc = _cli("-v", "evaluate", model, test, "--report-dir", "rep", cwd=elsewhere)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"using the cache {project / 'emb.h5'}" in proc.stderr

    # A re-train killed before its switch leaves the old model predicting.
    make_image_folder(project / "other", ("red", "blue"), n_per_class=6)
    killed = dict(os.environ, EMBEDCLF_TEST_KILL_AT="manifest-tmp")
    retrain = ["train", "other", "--output", "model", "--model", "backbones/tiny",
               "--C", "1", "--no-progress"]  # fmt: skip
    proc = _cli(*retrain, cwd=project, env=killed)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert _labels(_cli("predict", model, test, "--json", cwd=elsewhere)) == expected

    # The backbone moves: a clear error, then --model (identity still checked).
    moved = tmp_path / "moved_backbone"
    (project / "backbones" / "tiny").rename(moved)
    proc = _cli("predict", model, test, "--json", cwd=elsewhere)
    assert proc.returncode == 1
    assert "pass its new folder with --model DIR" in proc.stderr
    again = _cli("predict", model, test, "--json", "--model", moved, cwd=elsewhere)
    assert _labels(again) == expected
    proc = _cli("evaluate", model, test, "--model", moved, cwd=elsewhere)
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = _cli("export", model, "--savedmodel", "exp", "--model", moved, cwd=elsewhere)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (elsewhere / "exp" / "saved_model.pb").is_file()


def test_evaluate_and_predict_reuse_the_training_cache(
    tmp_path_factory, tiny_model_dir, capsys
):
    from _cli_helpers import trained

    from embedclf.embedding._backbones import backbone_image_count

    session = trained(tmp_path_factory, tiny_model_dir)
    before = backbone_image_count()
    test_dir = session["data"] / "test"
    report = tmp_path_factory.mktemp("rep")
    assert main(["evaluate", str(session["output"]), str(test_dir),
                 "--report-dir", str(report)]) == 0  # fmt: skip
    assert main(["predict", str(session["output"]), str(test_dir), "--json"]) == 0
    assert backbone_image_count() == before  # every vector came from the cache
    capsys.readouterr()


def test_train_refuses_a_folder_that_is_not_a_model_dir(tmp_path, tiny_model_dir):
    data = make_image_folder(tmp_path / "d", ("red", "blue"), n_per_class=4)
    user = tmp_path / "mine"
    user.mkdir()
    (user / "labels.txt").write_text("keep me\n")
    (user / "manifest.json").write_text('{"my": "notes"}')
    argv = ["train", data, "--output", user, "--model", tiny_model_dir, "--C", "1",
            "--no-progress"]  # fmt: skip
    proc = _cli(*argv, cwd=tmp_path)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "not an embedclf model directory" in lines[0]
    assert "--force" in lines[0]
    assert (user / "labels.txt").read_text() == "keep me\n"
    assert (user / "manifest.json").read_text() == '{"my": "notes"}'
    assert sorted(p.name for p in user.iterdir()) == ["labels.txt", "manifest.json"]
    assert main([*map(str, argv), "--force"]) == 0  # written into it on request
    assert (user / "labels.txt").read_text() == "keep me\n"


def test_offline_hub_error_names_the_flag_in_the_cli_and_the_parameter_in_python(
    tmp_path,
):
    from embedclf import ImageEmbedder
    from embedclf.exceptions import BackboneLoadError

    data = make_image_folder(tmp_path / "d", ("red", "blue"), n_per_class=3)
    hub = "http://127.0.0.1:9/google/imagenet/nothing/1"
    proc = _cli("train", data, "--output", "m", "--model", hub, "--no-progress",
                cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 1
    assert "pass its directory as --model DIR" in proc.stderr
    assert "model=" not in proc.stderr
    with pytest.raises(BackboneLoadError) as exc:
        ImageEmbedder(model=hub).transform([str(data / "red" / "red_000.jpg")])
    assert "pass its directory as model=DIR" in str(exc.value)
    assert "--model" not in str(exc.value)


def test_predict_refuses_a_head_that_would_run_code(tmp_path):
    from _skops_attacks import attacks, head_file, plant, rehash

    from embedclf import SoftmaxClassifier
    from embedclf.workflow._model_dir import save_model_dir

    rng = np.random.default_rng(0)
    X = np.r_[rng.normal(0, 1, (10, 3)), rng.normal(3, 1, (10, 3))]
    head = SoftmaxClassifier().fit(X, np.array(["a"] * 10 + ["b"] * 10))
    backbone = {"handle": "m", "identity": "savedmodel:x", "kind": "savedmodel"}
    md = save_model_dir(tmp_path / "md", head, {"backbone": backbone})
    marker = tmp_path / "ran.txt"
    plant(head_file(md), attacks(marker)["eval"])
    rehash(md)
    image = make_image_folder(tmp_path / "i", ("red",), n_per_class=1) / "red"
    proc = _cli("predict", md, image, cwd=tmp_path)
    assert proc.returncode == 1
    assert "does not trust" in proc.stderr and "builtins.eval" in proc.stderr
    assert not marker.exists()


def test_readme_synopsis_flags_exist():
    """Every flag the command-line guide's synopsis shows is a real option."""
    import re

    from embedclf.cli._entrypoint import build_parser

    guide = (_WORKTREE / "docs" / "cli.md").read_text()
    block = guide.split("# Command line", 1)[1].split("```")[1]
    verbs = build_parser()._subparsers._group_actions[0].choices
    verb = None
    for line in block.splitlines():
        if line.startswith("embedclf "):
            verb = line.split()[1]
        if verb is None:
            continue
        options = verbs[verb]._option_string_actions
        for flag in re.findall(r"(--[a-z][a-z-]*)", line.split("#")[0]):
            assert flag in options, (verb, flag)
