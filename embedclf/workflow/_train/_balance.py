"""Class balancing by extra distorted views (``embedclf train --balance views``).

The grocery recipe this library replaces balanced its classes by generating
more augmented images for the small ones. Here every class with fewer
training images than the median class gets extra cached distorted views of
its images (``embedding/_augment.embed_views``), round-robin over the images,
until its row count reaches the median class's. The views come after the
``--augment-copies`` ones (view indices ``copies``, ``copies + 1``, ...), so
they never repeat them, and they are cached like them.
"""

from __future__ import annotations

import numpy as np

from embedclf.embedding._augment import STANDARD_DISTORTIONS

__all__ = ["BALANCE_DISTORTIONS", "balance_plan", "add_balance_views"]

#: Distortions used when none is set on the command line.
BALANCE_DISTORTIONS = STANDARD_DISTORTIONS


def balance_plan(labels) -> np.ndarray:
    """Extra views per image so that each class reaches the median class size.

    Parameters
    ----------
    labels : array-like of shape (n_images,)
        Label of each training image (one row per image, no views).

    Returns
    -------
    extra : ndarray of shape (n_images,), int
        Number of extra views of each image; a class of ``n`` images below
        the median size ``m`` gets ``m - n`` views, spread as evenly as
        possible (the first images get one more when it does not divide).

    Examples
    --------
    >>> balance_plan(["a", "a", "a", "a", "b", "c", "c", "c"]).tolist()
    [0, 0, 0, 0, 2, 0, 0, 0]
    """
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    median = int(np.floor(np.median(counts)))
    extra = np.zeros(len(labels), dtype=int)
    for label, n in zip(classes, counts):
        if n >= median:
            continue
        rows = np.flatnonzero(labels == label)
        need = median - n
        extra[rows] = need // n
        extra[rows[: need % n]] += 1
    return extra


def add_balance_views(
    X,
    y,
    groups,
    paths,
    *,
    embedder,
    settings,
    copies: int,
):
    """Append balancing views to the training rows.

    Parameters
    ----------
    X, y : training rows so far: one per image of ``paths`` first (in order),
        then any ``--augment-copies`` views.
    groups : ndarray or None
        Source image of each row (None when there are no views yet).
    paths : sequence of str
        The training images, in the order of the first rows of X.
    embedder : ImageEmbedder
        The one that embedded ``X`` (its backbones, cache and preprocessing
        embed the views, see ``embed_views_like``).
    settings : Distortions
        The command line's; when inactive, ``BALANCE_DISTORTIONS``.
    copies : int
        ``--augment-copies`` (views already present per image).

    Returns
    -------
    X, y, groups : with the new rows appended (groups: source image index)
    n_added : int
    n_computed : int
        Views run through the backbone (0 when all were cached).
    """
    from embedclf.embedding._augment import Distortions, embed_views_like

    n = len(paths)
    labels = np.asarray(y[:n])
    extra = balance_plan(labels)
    if groups is None:
        groups = np.arange(len(y))
    if not settings.active:
        settings = Distortions(**BALANCE_DISTORTIONS)
        copies = 0
    rows, sources, n_computed = [], [], 0
    for k in np.unique(extra[extra > 0]):
        idx = np.flatnonzero(extra == k)
        views, source, computed = embed_views_like(
            embedder,
            [paths[i] for i in idx],
            settings=settings,
            copies=int(copies + k),
        )
        view_index = np.tile(np.arange(copies + k), len(idx))
        keep = view_index >= copies  # the --augment-copies views are there
        rows.append(views[keep])
        sources.append(idx[source[keep]])
        n_computed += computed
    if not rows:
        return X, y, groups, 0, 0
    new, source = np.vstack(rows), np.concatenate(sources)
    return (
        np.vstack([X, new]),
        np.concatenate([y, labels[source]]),
        np.concatenate([groups, source]),
        len(new),
        n_computed,
    )
