"""A model directory finds its backbone and cache from any working directory."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from test_model_dir import head  # noqa: F401  (the fixture: a fitted head, X)

from embedclf.exceptions import ModelDirError
from embedclf.workflow._model_dir import (
    check_backbone,
    check_output_dir,
    load_model_dir,
    save_model_dir,
)
from embedclf.workflow._model_dir._locations import remembered_cache


@pytest.fixture
def project(tmp_path, tiny_model_dir, head, monkeypatch):  # noqa: F811
    """tmp/work/{backbones/tiny, models/md, emb.h5}, trained with relative paths."""
    from embedclf.embedding._backbones import resolve_backbone

    work = tmp_path / "work"
    shutil.copytree(tiny_model_dir, work / "backbones" / "tiny")
    (work / "emb.h5").write_bytes(b"stands for a cache file")
    monkeypatch.chdir(work)
    spec = resolve_backbone("backbones/tiny")
    backbone = {"handle": spec.handle, "identity": spec.identity, "kind": spec.kind}
    save_model_dir("models/md", head[0], {"backbone": backbone, "cache": "emb.h5"})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    return work


@pytest.mark.tf
def test_backbone_and_cache_found_from_another_folder(project):
    md = load_model_dir(project / "models" / "md")
    assert md.manifest["backbone"]["handle"] == "backbones/tiny"  # as typed
    assert md.manifest["backbone"]["relative_path"] == os.path.join(
        "..", "..", "backbones", "tiny"
    )
    assert check_backbone(md) == str(project / "backbones" / "tiny")
    assert remembered_cache(md) == str(project / "emb.h5")


@pytest.mark.tf
def test_model_dir_moved_with_its_backbone(project, tmp_path):
    moved = tmp_path / "moved"
    project.rename(moved)
    md = load_model_dir(moved / "models" / "md")
    assert check_backbone(md) == str(moved / "backbones" / "tiny")  # relative path
    assert remembered_cache(md) == str(moved / "emb.h5")


@pytest.mark.tf
def test_moved_backbone_is_passed_and_still_checked(
    project, tmp_path, tiny_model_dir_b
):
    new_home = tmp_path / "new_home"
    (project / "backbones" / "tiny").rename(new_home)
    (project / "emb.h5").unlink()
    md = load_model_dir(project / "models" / "md")
    with pytest.raises(ModelDirError, match="pass its new folder with --model DIR"):
        check_backbone(md)
    assert check_backbone(md, str(new_home)) == str(new_home)
    with pytest.raises(ModelDirError, match="is a different model"):
        check_backbone(md, str(tiny_model_dir_b))
    assert remembered_cache(md) is None  # gone: predict runs without a cache


@pytest.mark.tf
def test_other_model_at_the_recorded_path_is_not_used(project, tiny_model_dir_b):
    shutil.rmtree(project / "backbones" / "tiny")
    shutil.copytree(tiny_model_dir_b, project / "backbones" / "tiny")
    md = load_model_dir(project / "models" / "md")
    with pytest.raises(ModelDirError, match="is a different model"):
        check_backbone(md)


@pytest.mark.tf
def test_0_1_0_manifest_resolves_from_where_it_was_written(
    tmp_path,
    tiny_model_dir,
    head,  # noqa: F811
    monkeypatch,
):
    """Version 1 recorded only the handle as typed (relative to the cwd)."""
    from embedclf.embedding._backbones import resolve_backbone

    shutil.copytree(tiny_model_dir, tmp_path / "tiny")
    monkeypatch.chdir(tmp_path)
    spec = resolve_backbone("tiny")
    md = save_model_dir("md", head[0], {"backbone": {"handle": "tiny",
                        "identity": spec.identity, "kind": "savedmodel"}})  # fmt: skip
    manifest = json.loads((md / "manifest.json").read_text())
    for key in ("path", "relative_path"):
        del manifest["backbone"][key]
    (md / "manifest.json").write_text(json.dumps(manifest))
    assert check_backbone(load_model_dir(md)) == str(tmp_path / "tiny")


def test_0_1_0_manifest_finds_its_backbone_by_the_handle_as_typed(
    tmp_path, tiny_model_dir
):
    """A 0.1.0 manifest records only the handle (no absolute or relative path).

    The 0.1.0 fixture copied, its backbone pointed at a SavedModel built here
    (a version-1 manifest has no digests to break), so nothing outside the
    test's folders is needed.
    """
    from pathlib import Path

    from embedclf.embedding._backbones import resolve_backbone

    fixture = Path(__file__).resolve().parents[2] / "fixtures" / "model_dir_0_1_0"
    md_path = shutil.copytree(fixture / "softmax", tmp_path / "old")
    backbone = shutil.copytree(tiny_model_dir, tmp_path / "backbone")
    manifest = json.loads((md_path / "manifest.json").read_text())
    assert manifest["format_version"] == 1 and "path" not in manifest["backbone"]
    manifest["backbone"]["handle"] = str(backbone)
    manifest["backbone"]["identity"] = resolve_backbone(str(backbone)).identity
    (md_path / "manifest.json").write_text(json.dumps(manifest))
    md = load_model_dir(md_path)
    assert os.path.samefile(check_backbone(md), backbone)
    assert remembered_cache(md) is None  # 0.1.0 did not record its cache
    shutil.rmtree(backbone)
    with pytest.raises(ModelDirError, match="cannot be found"):
        check_backbone(md)


def test_check_output_dir(tmp_path, head):  # noqa: F811
    head = head[0]
    check_output_dir(tmp_path / "new")  # missing: fine
    user = tmp_path / "user"
    user.mkdir()
    check_output_dir(user)  # empty: fine
    (user / "labels.txt").write_text("my shopping list\n")
    (user / "report").mkdir()
    with pytest.raises(ModelDirError, match=r"other files \(labels.txt, report\)"):
        check_output_dir(user)
    with pytest.raises(ModelDirError, match="--force"):
        save_model_dir(user, head, {"backbone": {"handle": "m", "identity": "x"}})
    assert (user / "labels.txt").read_text() == "my shopping list\n"
    assert sorted(p.name for p in user.iterdir()) == ["labels.txt", "report"]
    check_output_dir(user, force=True)
    (user / "manifest.json").write_text('{"format": "something else"}')
    with pytest.raises(ModelDirError, match="not an embedclf model directory"):
        check_output_dir(user)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ModelDirError, match="is a file"):
        check_output_dir(tmp_path / "file", force=True)
    md = save_model_dir(tmp_path / "md", head, {"backbone": {"handle": "m",
                        "identity": "x"}})  # fmt: skip
    check_output_dir(md)  # a model directory is replaced
    leftovers = tmp_path / "killed"
    (leftovers / "model-20261202T010203Z-0123abcd").mkdir(parents=True)
    (leftovers / ".embedclf.lock").write_text("")
    check_output_dir(leftovers)  # what a killed first train leaves
