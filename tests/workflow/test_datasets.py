from __future__ import annotations

import re

import numpy as np
import pytest
from conftest import make_image_folder, write_image

from embedclf import load_image_folder


def test_lists_classes_in_order(tmp_path):
    root = make_image_folder(tmp_path, classes=("b", "a", "c"), n_per_class=3)
    data = load_image_folder(root)
    assert data.target_names.tolist() == ["a", "b", "c"]
    assert data.target.tolist() == [0] * 3 + [1] * 3 + [2] * 3
    assert all(
        p.split("/")[-2] == data.target_names[t]
        for p, t in zip(data.paths, data.target)
    )
    assert data.paths.dtype.kind == "U"


def test_skips_hidden_and_warns_on_non_images(tmp_path):
    root = make_image_folder(tmp_path, n_per_class=2)
    (root / "red" / ".DS_Store").write_bytes(b"\x00\x00")
    (root / "red" / "._red_000.jpg").write_bytes(b"apple double")
    (root / "red" / "notes.txt").write_text("hello")
    (root / ".hidden_class").mkdir()
    write_image(root / ".hidden_class" / "x.png")
    with pytest.warns(UserWarning, match=r"Skipped 1 non-image file\(s\).*notes.txt"):
        data = load_image_folder(root)
    assert len(data.paths) == 4
    assert data.target_names.tolist() == ["green", "red"]


def test_empty_class_folder_warns(tmp_path):
    root = make_image_folder(tmp_path, n_per_class=2)
    (root / "empty").mkdir()
    with pytest.warns(UserWarning, match="with no images.*empty"):
        data = load_image_folder(root)
    assert "empty" not in data.target_names


def test_unicode_and_spaces(tmp_path):
    write_image(tmp_path / "crème brûlée" / "photo 1 ✓.jpg")
    write_image(tmp_path / "日本" / "写真.png")
    data = load_image_folder(tmp_path)
    assert sorted(data.target_names.tolist()) == ["crème brûlée", "日本"]


@pytest.mark.parametrize(
    "setup, exc, msg",
    [
        (lambda p: p / "missing", FileNotFoundError, "does not exist"),
        (lambda p: write_image(p / "f.png"), NotADirectoryError, "is a file"),
        (lambda p: p, ValueError, "has no class subfolders"),
    ],
)
def test_clear_errors(tmp_path, setup, exc, msg):
    with pytest.raises(exc, match=re.escape(msg)):
        load_image_folder(setup(tmp_path))


def test_no_images_at_all(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "readme.txt").write_text("x")
    with pytest.warns(UserWarning):
        with pytest.raises(ValueError, match="holds no image files"):
            load_image_folder(tmp_path)


def test_symlinked_class_folder_is_followed(tmp_path):
    real = make_image_folder(tmp_path / "real", classes=("red",), n_per_class=2)
    root = tmp_path / "root"
    root.mkdir()
    (root / "red").symlink_to(real / "red")
    data = load_image_folder(root)
    assert len(data.paths) == 2 and np.all(data.target == 0)
