"""Item 4: GridSearchCV over image paths, cached embeddings vs recomputed per fold.

``Pipeline([("embed", ImageEmbedder(cache=...)), ("clf", SoftmaxClassifier())])``
searched by 5-fold stratified GridSearchCV over 5 values of C on 500
training images (20 classes x 25 images), once with a fresh cache file and
once with ``cache=None``, where every fit and every score re-embeds its
images as a hand-written pipeline without a cache would. Backbone images are
counted with ``backbone_image_count()`` around each search. Issue 3 target:
the cached search under 30 s with exactly 500 backbone images.
"""

from __future__ import annotations

import numpy as np
from _common import Context, Timer

C_GRID = [0.01, 0.1, 1.0, 10.0, 100.0]


def _subset(ctx: Context, n_classes: int, per_class: int):
    paths, y = ctx.split("train")
    classes, counts = np.unique(y, return_counts=True)
    keep = [c for c, k in zip(classes, counts) if k >= per_class][:n_classes]
    idx = np.concatenate([np.flatnonzero(y == c)[:per_class] for c in keep])
    return paths[idx], y[idx]


def _search(ctx, cache, paths, y, folds, grid):
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import Pipeline

    from embedclf import SoftmaxClassifier
    from embedclf.embedding._backbones import backbone_image_count

    pipe = Pipeline(
        [("embed", ctx.embedder(cache=cache)), ("clf", SoftmaxClassifier())]
    )
    search = GridSearchCV(
        pipe,
        {"clf__C": grid},
        cv=StratifiedKFold(folds, shuffle=True, random_state=0),
        n_jobs=1,
    )
    before = backbone_image_count()
    with Timer() as t:
        search.fit(paths, y)
    res = search.cv_results_
    return {
        "seconds": t.seconds,
        "backbone_images": backbone_image_count() - before,
        "mean_fit_s_per_C": [float(x) for x in res["mean_fit_time"]],
        "mean_score_s_per_C": [float(x) for x in res["mean_score_time"]],
        "refit_s": float(search.refit_time_),
        "best_C": float(search.best_params_["clf__C"]),
        "best_cv_accuracy": float(search.best_score_),
    }


def run(ctx: Context) -> dict:
    if ctx.quick:
        paths, y = _subset(ctx, 3, 6)  # 18 images
        folds, grid = 3, C_GRID[1:4]
    else:
        paths, y = _subset(ctx, 20, 25)
        folds, grid = 5, C_GRID
    # Load the backbone outside the timings (both searches share it).
    ctx.embedder(cache=None).transform(paths[:2])
    cache = ctx.fresh_dir("tuning") / "cache.h5"
    cached = _search(ctx, cache, paths, y, folds, grid)
    uncached = _search(ctx, None, paths, y, folds, grid)
    speedup = uncached["seconds"] / cached["seconds"]
    n = len(paths)
    return {
        "title": f"GridSearchCV {folds}-fold x {len(grid)} C on {n} images",
        "ratios": [
            {
                "name": "recomputing / cached search time",
                "value": speedup,
                "target": "report",
                "met": None,
            },
            {
                "name": "cached search seconds (backbone images)",
                "value": cached["seconds"],
                "target": f"< 30 s ({n})",
                "met": cached["seconds"] < 30 and cached["backbone_images"] == n,
            },
            {
                "name": "backbone images, recomputing / cached",
                "value": uncached["backbone_images"]
                / max(cached["backbone_images"], 1),
                "target": "report",
                "met": None,
            },
        ],
        "metrics": {
            "n_images": n,
            "n_classes": int(len(np.unique(y))),
            "folds": folds,
            "C_grid": grid,
            "cached": cached,
            "recomputing": uncached,
        },
    }
