"""Listing a folder of class subfolders as (paths, target) for the estimators."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from sklearn.utils import Bunch

from embedclf.embedding._images import IMAGE_EXTENSIONS

__all__ = ["load_image_folder", "walk_files"]


def walk_files(folder):
    """Yield every file under ``folder``, sorted, skipping hidden names.

    Symbolic links to folders are followed, each folder once (by device and
    inode), so a link back up the tree ends instead of listing its files over
    and over.

    Parameters
    ----------
    folder : str or os.PathLike

    Yields
    ------
    path : str
        ``os.path.join`` of the folder walked and the file name.
    """
    visited = set()  # (st_dev, st_ino) of walked folders: symlink loops end
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        st = os.stat(dirpath)
        if (st.st_dev, st.st_ino) in visited:
            dirnames[:] = []
            continue
        visited.add((st.st_dev, st.st_ino))
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith("."):
                yield os.path.join(dirpath, name)


def load_image_folder(root, *, extensions=None):
    """List the images of a folder laid out as ``root/<class name>/<image>``.

    The layout retrain.py expects: one subfolder per class, named for it.
    Hidden files and folders (``.DS_Store``, ``._photo.jpg``) are skipped
    silently; other files whose extension is not an image extension are
    skipped with a warning that lists them. Symbolic links are followed.

    Parameters
    ----------
    root : str or os.PathLike
        The folder holding one subfolder per class.
    extensions : set of str, default=None
        Lower-case extensions (with the dot) counted as images; None means
        ``.jpg .jpeg .png .gif .bmp .webp .tif .tiff .ppm``.

    Returns
    -------
    data : Bunch
        ``paths`` (ndarray of str, sorted by class then file name), ``target``
        (ndarray of int, indices into ``target_names``), ``target_names``
        (ndarray of str, sorted class names).

    Raises
    ------
    FileNotFoundError
        If ``root`` does not exist.
    NotADirectoryError
        If ``root`` is a file.
    ValueError
        If ``root`` has no class subfolders, or no images at all.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from PIL import Image
    >>> from embedclf import load_image_folder
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> for name in ["cat", "dog"]:
    ...     (root / name).mkdir()
    ...     Image.new("RGB", (8, 8)).save(root / name / "a.png")
    >>> data = load_image_folder(root)
    >>> data.target_names.tolist(), data.target.tolist()
    (['cat', 'dog'], [0, 1])
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(
            f"Image folder {str(root)!r} does not exist. Pass a folder holding "
            "one subfolder per class."
        )
    if not root.is_dir():
        raise NotADirectoryError(
            f"Image folder {str(root)!r} is a file. Pass a folder holding one "
            "subfolder per class."
        )
    exts = IMAGE_EXTENSIONS if extensions is None else frozenset(extensions)
    class_dirs = sorted(
        d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")
    )
    if not class_dirs:
        raise ValueError(
            f"Image folder {str(root)!r} has no class subfolders. Lay it out as "
            f"{str(root)}/<class name>/<image files>, one subfolder per class."
        )
    paths, target, names, skipped, empty = [], [], [], [], []
    for class_dir in class_dirs:
        files = []
        for full in walk_files(class_dir):
            if os.path.splitext(full)[1].lower() in exts:
                files.append(full)
            else:
                skipped.append(full)
        if not files:
            empty.append(class_dir.name)
            continue
        names.append(class_dir.name)
        paths.extend(files)
        target.extend([len(names) - 1] * len(files))
    if skipped:
        shown = ", ".join(skipped[:10]) + (" ..." if len(skipped) > 10 else "")
        warnings.warn(
            f"Skipped {len(skipped)} non-image file(s) in {str(root)!r}: {shown}",
            UserWarning,
            stacklevel=2,
        )
    if empty:
        warnings.warn(
            f"Skipped {len(empty)} class folder(s) with no images in "
            f"{str(root)!r}: {', '.join(empty)}",
            UserWarning,
            stacklevel=2,
        )
    if not paths:
        raise ValueError(
            f"Image folder {str(root)!r} holds no image files (extensions "
            f"{sorted(exts)}) in its class subfolders."
        )
    return Bunch(
        paths=np.array(paths, dtype=str),
        target=np.array(target, dtype=int),
        target_names=np.array(names, dtype=str),
    )
