"""Leaving listed files out of a run: ``train --exclude FILE``.

The audit writes ``exclude.txt`` (one image path a line, ``#`` comments);
:func:`read_exclude_list` reads such a file and :func:`drop_excluded`
removes the listed images from what ``collect_images`` found.
"""

from __future__ import annotations

import logging
import os

import numpy as np

__all__ = ["drop_excluded", "read_exclude_list"]

logger = logging.getLogger("embedclf")


def _norm(path) -> str:
    return os.path.normcase(os.path.realpath(os.fspath(path)))


def read_exclude_list(file) -> set:
    """The image paths listed in ``file``, resolved.

    Blank lines, lines starting with ``#``, and text after two spaces and a
    ``#`` (the audit's reasons) are ignored, as are surrounding spaces;
    relative paths are relative to the current folder (the audit writes
    absolute ones).
    """
    try:
        with open(file, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise FileNotFoundError(
            f"Exclude list {str(file)!r} does not exist. Pass a text file with "
            "one image path a line, such as the exclude.txt `embedclf audit` "
            "writes."
        ) from None
    paths = set()
    for line in lines:
        text = line.split("  # ", 1)[0].strip()
        if text and not text.startswith("#"):
            paths.add(_norm(text))
    return paths


def drop_excluded(data, exclude):
    """``data`` (a ``LabelledImages``) without the images listed in ``exclude``.

    Parameters
    ----------
    data : LabelledImages
    exclude : str, os.PathLike or None
        A list file (:func:`read_exclude_list`); None keeps everything.

    Returns
    -------
    LabelledImages
        ``data`` itself, its arrays filtered; ``data.excluded`` records the
        list file, how many paths it listed and the paths left out (the
        model directory's manifest keeps it under ``data.excluded``).
    """
    if exclude is None:
        return data
    listed = read_exclude_list(exclude)
    keep = np.array([_norm(p) not in listed for p in data.paths], dtype=bool)
    logger.info(
        "left out %d image(s) listed in %s (%d listed)",
        int((~keep).sum()),
        exclude,
        len(listed),
    )
    data.excluded = {
        "file": os.path.abspath(os.fspath(exclude)),
        "n_listed": len(listed),
        "left_out": sorted(str(p) for p in data.paths[~keep]),
    }
    data.paths, data.labels, data.split = (
        data.paths[keep],
        data.labels[keep],
        data.split[keep],
    )
    return data
