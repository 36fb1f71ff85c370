"""Checking and normalising what ImageEmbedder is given: paths, image sizes."""

from __future__ import annotations

import os

import numpy as np

__all__ = ["check_paths", "normalize_size"]


def check_paths(X) -> np.ndarray:
    """Validate a 1-D array-like of image paths; returns an object ndarray of str."""
    if isinstance(X, (str, bytes, os.PathLike)):
        raise TypeError(
            f"ImageEmbedder expects a 1-D array-like of image paths, got a single "
            f"path {X!r}. Wrap it in a list: [path]."
        )
    arr = np.asarray(X, dtype=object)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(
            "ImageEmbedder expects a 1-D array-like of image paths; got an array "
            f"of shape {arr.shape}. Pass one path per sample."
        )
    out = np.empty(len(arr), dtype=object)
    for i, p in enumerate(arr):
        if not isinstance(p, (str, os.PathLike)):
            raise TypeError(
                f"ImageEmbedder expects image paths (str or os.PathLike); element "
                f"{i} is {p!r} of type {type(p).__name__}."
            )
        out[i] = os.fspath(p)
    return out


def normalize_size(image_size) -> tuple[int, int] | None:
    """``image_size`` as (height, width) of int, or None."""
    if image_size is None:
        return None
    if isinstance(image_size, (int, np.integer)):
        return (int(image_size), int(image_size))
    h, w = image_size
    return (int(h), int(w))
