"""Several backbones at once: ``ImageEmbedder(model=[A, B])``.

Each file is read and hashed once; each backbone then embeds it through its
own cache namespace (backbone identity, its image size and preprocessing), as
a single-backbone embedder would, and the vectors are concatenated in the
order of ``model``. ``normalize_each=True`` scales each backbone's part to
unit L2 norm first.
"""

from __future__ import annotations

import os

import numpy as np

__all__ = ["backbone_handles", "normalize_blocks", "transform_several"]


def backbone_handles(model) -> list:
    """The list of backbone handles of a ``model`` parameter (one or several).

    Raises
    ------
    ValueError
        An empty list, or the same handle twice.
    """
    if isinstance(model, (str, os.PathLike)):
        return [os.fspath(model)]
    handles = [os.fspath(m) if isinstance(m, os.PathLike) else m for m in model]
    if not handles:
        raise ValueError(
            "The 'model' parameter of ImageEmbedder is an empty list. Pass one "
            "backbone handle, or a list of at least one."
        )
    seen = set()
    for handle in handles:
        if handle in seen:
            raise ValueError(
                f"The 'model' parameter of ImageEmbedder names {handle!r} twice; "
                "each backbone can be used once. Remove the duplicate."
            )
        seen.add(handle)
    return handles


def normalize_blocks(X: np.ndarray, slices) -> np.ndarray:
    """Scale each column block of ``X`` to unit L2 norm per row, in place.

    Rows that are all zero (or NaN) in a block stay so.
    """
    for part in slices:
        block = X[:, part]
        norms = np.linalg.norm(block, axis=1, keepdims=True)
        np.divide(block, norms, out=block, where=norms > 0)
        X[:, part] = block
    return X


def transform_several(embedder, paths):
    """``embedder.transform`` for a list-valued ``model`` (see the module doc).

    Parameters
    ----------
    embedder : ImageEmbedder
        Its ``model`` is a list or tuple of handles.
    paths : ndarray of str
        Already checked by ``ImageEmbedder.transform``.

    Returns
    -------
    X : ndarray of shape (n_samples, sum of the backbones' dims), float32
    """
    handles = backbone_handles(embedder.model)
    keys, errors = embedder._hash_all(paths)
    parts, failed, slices, runtimes = [], {}, [], set()
    n_computed = n_cached = 0
    start = 0
    for handle in handles:
        # normalised below, once the rows of failed files are filled; built
        # from the parameters rather than cloned: a distributed.Client
        # ``scheduler`` cannot be deep-copied
        params = dict(embedder.get_params(deep=False), model=handle)
        sub = type(embedder)(**dict(params, normalize_each=False))
        part = sub._transform_hashed(paths, keys, list(errors))
        parts.append(part)
        for path, reason in zip(sub.failed_paths_, sub.failure_reasons_):
            failed.setdefault(str(path), str(reason))  # the first backbone's
        n_computed += sub.n_computed_
        n_cached += sub.n_cached_
        runtimes.add((sub.runtime_, sub.precision_))
        slices.append(slice(start, start + part.shape[1]))
        start += part.shape[1]
    X = np.hstack(parts)
    if failed:
        # A file one backbone could not embed is filled in every part.
        bad = np.isin(paths, list(failed))
        X[bad] = 0.0 if embedder.on_error == "zero" else np.nan
    if embedder.normalize_each:
        normalize_blocks(X, slices)
    embedder.failed_paths_ = np.array([p for p in paths if p in failed], dtype=str)
    embedder.failure_reasons_ = np.array(
        [failed[p] for p in paths if p in failed], dtype=str
    )
    embedder.n_computed_ = n_computed
    embedder.n_cached_ = n_cached
    embedder.embedding_slices_ = slices
    embedder.runtime_, embedder.precision_ = (
        runtimes.pop() if len(runtimes) == 1 else (embedder.runtime, embedder.precision)
    )
    return X
