"""Vectors of files whose content keys are already known (a model directory's
training photos): looked up by key in the cache, so photos that moved or
were deleted still have their vectors; only rows missing from the cache are
embedded from the files (and refused when a file's bytes changed)."""

from __future__ import annotations

import os

import numpy as np

from embedclf.embedding._inputs import check_paths

__all__ = ["transform_keys"]


def transform_keys(embedder, paths, keys) -> np.ndarray:
    """``embedder.transform(paths)`` with the content keys given.

    Parameters
    ----------
    embedder : ImageEmbedder
        With ``on_error="nan"`` (or ``"zero"``) so that a photo neither in
        the cache nor readable gives a NaN (zero) row instead of an error.
    paths : sequence of str
    keys : sequence of str
        The SHA-256 content key recorded for each path.

    Returns
    -------
    X : ndarray of shape (n_samples, dim), float32
    """
    from embedclf.embedding._multi import backbone_handles, normalize_blocks

    embedder._validate_params()
    paths = check_paths(paths)
    keys = [str(k) for k in keys]
    if len(keys) != len(paths):
        raise ValueError(
            f"{len(paths)} paths but {len(keys)} content keys; pass one key per path."
        )
    if isinstance(embedder.model, (str, os.PathLike)):
        return embedder._transform_hashed(paths, keys, [None] * len(paths))
    parts, slices, start = [], [], 0
    for handle in backbone_handles(embedder.model):
        params = dict(embedder.get_params(deep=False), model=handle)
        sub = type(embedder)(**dict(params, normalize_each=False))
        parts.append(sub._transform_hashed(paths, keys, [None] * len(paths)))
        slices.append(slice(start, start + parts[-1].shape[1]))
        start += parts[-1].shape[1]
    X = np.hstack(parts)
    bad = ~np.isfinite(X).all(axis=1)
    X[bad] = np.nan if embedder.on_error == "nan" else 0.0
    if embedder.normalize_each:
        normalize_blocks(X, slices)
    embedder.embedding_slices_ = slices
    return X
