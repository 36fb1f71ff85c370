"""MODEL_DIR: save and load the head, labels and manifest; refuse mismatches."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from embedclf import SoftmaxClassifier
from embedclf.exceptions import ModelDirError
from embedclf.workflow._model_dir import (
    MANIFEST_VERSION,
    check_backbone,
    load_model_dir,
    read_manifest,
    save_model_dir,
)


@pytest.fixture
def head():
    rng = np.random.default_rng(0)
    X = np.r_[rng.normal(0, 1, (20, 4)), rng.normal(3, 1, (20, 4))]
    return SoftmaxClassifier().fit(X, np.array(["cat"] * 20 + ["dog"] * 20)), X


def _manifest(handle="m", identity="savedmodel:abc", kind="savedmodel"):
    backbone = {"handle": handle, "identity": identity, "kind": kind}
    return {"backbone": backbone, "metrics": {}}


def _member(md_path, what):
    """The file the manifest names for ``what`` ("head" or "labels")."""
    manifest = json.loads((md_path / "manifest.json").read_text())
    if "files" in manifest:  # format version 2
        return md_path / manifest["files"][what]["path"]
    return md_path / {"head": manifest.get("head_file", "head.skops"),
                      "labels": "labels.txt"}[what]  # fmt: skip


def test_round_trip(tmp_path, head):
    clf, X = head
    save_model_dir(tmp_path / "md", clf, _manifest())
    md = load_model_dir(tmp_path / "md")
    assert md.labels == ["cat", "dog"]
    assert _member(tmp_path / "md", "labels").read_text() == "cat\ndog\n"
    np.testing.assert_allclose(md.head.predict_proba(X), clf.predict_proba(X))
    assert md.manifest["format_version"] == 2
    assert md.manifest["library_versions"]["numpy"] == np.__version__
    assert md.backbone_identity == "savedmodel:abc"
    folders = [p.name for p in (tmp_path / "md").iterdir() if p.is_dir()]
    assert len(folders) == 1 and folders[0].startswith("model-")
    assert _member(tmp_path / "md", "head").parent.name == folders[0]


def test_retrain_replaces_the_model_whole(tmp_path, head):
    clf, X = head
    save_model_dir(tmp_path / "md", clf, _manifest())
    flipped = SoftmaxClassifier().fit(X, np.array(["dog"] * 20 + ["cow"] * 20))
    save_model_dir(tmp_path / "md", flipped, _manifest())
    md = load_model_dir(tmp_path / "md")
    assert md.labels == ["cow", "dog"]
    folders = [p for p in (tmp_path / "md").iterdir() if p.is_dir()]
    assert folders == [_member(tmp_path / "md", "head").parent]  # old one removed


def test_retrain_over_a_0_1_0_dir_removes_its_files(tmp_path, head):
    import shutil

    fixture = Path(__file__).resolve().parents[2] / "fixtures" / "model_dir_0_1_0"
    shutil.copytree(fixture / "softmax", tmp_path / "md")
    save_model_dir(tmp_path / "md", head[0], _manifest())
    assert not (tmp_path / "md" / "head.skops").exists()
    assert not (tmp_path / "md" / "labels.txt").exists()
    assert load_model_dir(tmp_path / "md").labels == ["cat", "dog"]


@pytest.mark.parametrize("swap", ["head", "labels"])
def test_files_that_do_not_belong_together_are_refused(tmp_path, head, swap):
    """A head (or labels file) from another training run next to a manifest."""
    import shutil

    clf, X = head
    save_model_dir(tmp_path / "a", clf, _manifest())
    if swap == "head":  # same labels, other weights: predicts, silently wrong
        other = SoftmaxClassifier().fit(X, np.array(["dog"] * 20 + ["cat"] * 20))
    else:
        other = SoftmaxClassifier().fit(X, np.array(["cat"] * 20 + ["eel"] * 20))
    save_model_dir(tmp_path / "b", other, _manifest())
    shutil.copyfile(_member(tmp_path / "b", swap), _member(tmp_path / "a", swap))
    with pytest.raises(ModelDirError, match="do not belong together|do not match"):
        load_model_dir(tmp_path / "a")


def test_newer_format_version_is_refused(tmp_path, head):
    save_model_dir(tmp_path / "md", head[0], _manifest())
    path = tmp_path / "md" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["format_version"] = MANIFEST_VERSION + 1
    path.write_text(json.dumps(manifest))
    msg = (
        f"has format version {MANIFEST_VERSION + 1}, but this embedclf reads "
        f"versions up to {MANIFEST_VERSION}."
    )
    with pytest.raises(ModelDirError, match=re.escape(msg)):
        load_model_dir(tmp_path / "md")


def test_several_backbones_are_a_list_in_the_manifest(tmp_path, head):
    # Version 2 (the versioned head folder) records one backbone as a dict
    # and several as a list, in order.
    one = load_model_dir(save_model_dir(tmp_path / "one", head[0], _manifest()))
    assert one.manifest["format_version"] == 2
    assert one.backbone_identity == _manifest()["backbone"]["identity"]
    two = _manifest()
    two["backbone"] = [two["backbone"], dict(two["backbone"], identity="x")]
    md = load_model_dir(save_model_dir(tmp_path / "two", head[0], two))
    assert md.manifest["format_version"] == 2
    assert md.backbone_identity == [two["backbone"][0]["identity"], "x"]


def test_not_a_model_dir(tmp_path):
    with pytest.raises(ModelDirError, match="does not exist"):
        read_manifest(tmp_path / "none")
    with pytest.raises(ModelDirError, match="has no manifest.json"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ModelDirError, match="is not valid JSON"):
        read_manifest(tmp_path)


def test_edited_labels_are_refused(tmp_path, head):
    save_model_dir(tmp_path / "md", head[0], _manifest())
    path = tmp_path / "md" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["labels"] = ["dog", "cat"]
    path.write_text(json.dumps(manifest))
    with pytest.raises(ModelDirError, match="do not match the classes"):
        load_model_dir(tmp_path / "md")


def test_untrusted_types_are_refused(tmp_path, head):
    from fractions import Fraction

    clf = head[0]
    clf.extra_ = Fraction(1, 3)  # a type outside the trusted libraries
    save_model_dir(tmp_path / "md", clf, _manifest())
    with pytest.raises(ModelDirError, match="names types embedclf does not trust"):
        load_model_dir(tmp_path / "md")


@pytest.mark.tf
def test_check_backbone(tmp_path, head, tiny_model_dir, tiny_model_dir_b):
    from embedclf.embedding._backbones import resolve_backbone

    spec = resolve_backbone(tiny_model_dir)
    save_model_dir(tmp_path / "md", head[0], _manifest(spec.handle, spec.identity))
    md = load_model_dir(tmp_path / "md")
    assert check_backbone(md) == spec.handle
    assert check_backbone(md, str(tiny_model_dir)) == spec.handle
    with pytest.raises(ModelDirError, match="is a different model"):
        check_backbone(md, str(tiny_model_dir_b))
    for key in ("handle", "path"):
        md.manifest["backbone"][key] = str(tmp_path / "moved")
    md.manifest["backbone"]["relative_path"] = "../moved"
    with pytest.raises(ModelDirError, match="pass its new folder with --model DIR"):
        check_backbone(md)


def _top_level(path):
    """(names a module defines, {module: names it imports from there})."""
    import ast

    tree = ast.parse(Path(path).read_text())
    defined, imported = set(), {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            defined.update(t.id for t in targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.ImportFrom):
            imported.setdefault(node.module, set()).update(a.name for a in node.names)
    return defined, imported


@pytest.mark.parametrize("name", ["_io", "_load", "_locations", "_manifest", "_trust"])
def test_each_module_lists_only_its_own_names(name):
    # ``__all__`` says what a module offers: nothing it merely imports, and
    # everything the package takes from it.
    import importlib

    import embedclf.workflow._model_dir as package

    module = importlib.import_module(f"{package.__name__}.{name}")
    defined, _ = _top_level(module.__file__)
    _, taken = _top_level(package.__file__)
    assert set(module.__all__) <= defined
    assert taken[module.__name__] <= set(module.__all__)
