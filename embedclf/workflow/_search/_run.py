"""The search's entry points: :func:`search_vectors` and :func:`search_training`."""

from __future__ import annotations

import os
import time

import numpy as np

from embedclf.workflow._search._budget import Budget
from embedclf.workflow._search._estimate import (
    SMALL_PER_CLASS,
    binomial_stderr,
    cross_fitted_accuracy,
)
from embedclf.workflow._search._heldout import Config, make_plan
from embedclf.workflow._search._search import (
    C_DECADES,
    VIEW_COPIES,
    SearchResult,
    _family,
    _Search,
)
from embedclf.workflow._search._sources import AUGMENT

__all__ = ["search_training", "search_vectors"]

_RULE_TEXT = {
    "min": "",
    "one-se": "one-standard-error rule toward smaller C, ",
    "prior": "the plain probe (unscaled, C=1) on the best vectors unless beaten "
    "by more than one standard error, ",
}

_NO_AUGMENT = {
    "random_crop": 0.0,
    "random_scale": 0.0,
    "random_brightness": 0.0,
    "flip_left_right": False,
}


def short_name(handle) -> str:
    """A readable name of a backbone handle (the list's, or its last path part)."""
    from embedclf.workflow._search._recommend import find_recommended

    entry = find_recommended(handle)
    if entry is not None:
        return entry["name"].split(" (")[0]
    return os.path.basename(os.fspath(handle).rstrip("/")) or os.fspath(handle)


def train_kwargs(config: Config, params: dict) -> dict:
    """``train`` keyword arguments (CLI dest names) of a candidate."""
    several = len(config.backbones) > 1
    kw = {
        "model": list(config.backbones) if several else config.backbones[0],
        "normalize_each": several,
        "augment_copies": int(config.copies),
        **(AUGMENT if config.copies else _NO_AUGMENT),
        "test_views": config.test_views,
    }
    if params.get("head") == "mlp":
        return kw | {"classifier": "mlp"}
    return kw | {
        "classifier": "softmax",
        "C_grid": [float(f"{params['C']:.4g}")],
        "scaling": "standardize" if params["standardize"] else "none",
    }


def _steps(s, *, allow_test_views, allow_views, mlp):
    grid = [{"C": c, "standardize": st} for st in (False, True) for c in C_DECADES]
    configs = [Config((h,)) for h in sorted(s.available, key=s.dims.get)]
    if len(s.available) > 1:
        configs.append(Config(tuple(s.available)))
    for i, cfg in enumerate(configs):
        if s.run_config("C, scaling", cfg, grid, first=i == 0):
            best = s.best_params(cfg)
            finer = [
                {"C": best["C"] * f, "standardize": best["standardize"]}
                for f in (10**-0.5, 10**0.5)
            ]
            s.run_config("C refined", cfg, finer)
    base = s.best_config()
    held, fit_rows = s.plan.rows, s.plan.fit_rows
    if allow_test_views:
        cost = sum(s.source.views_cost(h, held, "flip", 1) for h in base.backbones)
        s.run_config(
            "test views", base, [s.best_params(base)], tvs=("flip",), extra_cost=cost
        )
    flip_done = any(c[0].test_views == "flip" for c in s.cands)
    for k in VIEW_COPIES if allow_views else ():
        cfg = Config(base.backbones, k)
        cost = sum(s.source.views_cost(h, fit_rows, "train", k) for h in cfg.backbones)
        tvs = ("none",)
        if allow_test_views:
            tvs += ("flip",) * flip_done + ("train",)
            cost += sum(s.source.views_cost(h, held, "train", k) for h in cfg.backbones)
        p = s.best_params(s.best_config())
        if p.get("head") == "mlp":
            break
        cands = [
            {"C": p["C"] * f, "standardize": p["standardize"]}
            for f in (0.1, 10**-0.5, 1.0, 10**0.5)
        ]
        if not s.run_config(
            f"{k} training views", cfg, cands, tvs=tvs, extra_cost=cost
        ):
            break
    if mlp and s.plan.mode == "validation":
        best = s.best_config()
        s.run_config(
            "MLP head",
            Config(best.backbones, best.copies),
            [{"head": "mlp"}],
            tvs=(best.test_views,),
        )


def search_vectors(
    source,
    handles,
    y,
    split,
    *,
    budget_s,
    clock=time.perf_counter,
    n_jobs=None,
    class_weight=None,
    allow_test_views=True,
    allow_views=True,
    mlp=True,
    cache_reused=True,
    pooled=None,
    random_state=0,
    progress=None,
    rule=None,
) -> SearchResult:
    """Search the levers on vectors from ``source`` (see ``_sources``).

    Parameters
    ----------
    source : EmbedderSource or ArraySource
        Vectors of every row of ``y`` (training, validation and testing).
    handles : sequence of str
        Backbones to consider.
    y, split : ndarray of shape (n_rows,)
        Labels, and the part of each row ("training", "validation",
        "testing"). Testing rows are never scored, only priced.
    budget_s : float
        Seconds for the search and the final training together.
    clock : callable returning seconds
    allow_test_views, allow_views, mlp : bool
        Levers that may be tried.
    cache_reused : bool
        Whether the final training finds the vectors in a cache.
    pooled : bool or None
        Force or forbid pooled cross-validation (None: by validation size).
    progress : callable or None
        Called with one line of text per step done or skipped.
    rule : {"min", "prior", "one-se"} or None
        How to choose among candidates (``_estimate.choose``): the lowest
        cross-entropy; or the plain probe (unscaled, C=1) of the best
        candidate's vectors unless the best beats it by more than one
        standard error; or the smallest C within one standard error. None:
        "prior" on small pooled data (few held-out rows per class,
        ``_estimate.SMALL_PER_CLASS``), else "min".
    """
    budget = Budget(budget_s, clock)
    names = {h: short_name(h) for h in handles}
    s = _Search(
        source,
        handles,
        y,
        split,
        budget,
        names=names,
        n_jobs=n_jobs,
        class_weight=class_weight,
        cache_reused=cache_reused,
        random_state=random_state,
        progress=progress,
    )
    s.plain_vectors()
    s.split = np.where(source.failed, "failed", s.split)
    s.plan = make_plan(
        s.y,
        s.split,
        source.plain(s.available[0]),
        pooled=pooled,
        random_state=random_state,
    )
    s.n_classes = len(s.plan.classes)
    small = len(s.plan.rows) / s.n_classes < SMALL_PER_CLASS
    if rule is None:  # measured: docs/budget.md
        rule = "prior" if small and s.plan.mode == "pooled-cv" else "min"
    s.rule = rule
    _steps(s, allow_test_views=allow_test_views, allow_views=allow_views, mlp=mlp)
    return _result(s, budget)


def _result(s, budget) -> SearchResult:
    i = s.best_index()
    config, params, _, ok, row = s.cands[i]
    s.table[row]["chosen"] = True
    ce = np.array([c[2] for c in s.cands])
    correct = np.array([c[3] for c in s.cands])
    fam = [_family(c) for c in s.cands]
    Cs = [c[1].get("C") for c in s.cands]
    estimate, spread = cross_fitted_accuracy(
        ce,
        correct,
        fam,
        Cs,
        s.y[s.plan.rows],
        s.plan.halves_groups,
        random_state=s.random_state,
        **s.rule_kwargs(list(range(len(s.cands)))),
    )
    rule = _RULE_TEXT[s.rule] + (
        "lowest validation cross-entropy"
        if s.plan.mode == "validation"
        else "lowest cross-validated cross-entropy over training + validation, "
        "near-duplicate groups kept in one fold"
    )
    estimate_rule = (
        "cross-fitted: the same choice made on one half of the held-out images "
        "and scored on the other, both ways, averaged over 10 random halvings; "
        "models fitted on the training part, before train's refit on training "
        "+ validation"
    )
    skipped = [r for r in s.table if r["status"].startswith("skipped")]
    label = config.label(s.names) + _params(params)
    why = (
        f"{label}: {rule} among {len(s.cands)} candidates ({s.plan.mode}, "
        f"{len(s.plan.rows)} held-out images); held-out accuracy "
        f"{ok.mean():.1%}, cross-fitted estimate "
        + (f"{estimate:.1%}." if estimate is not None else "unavailable.")
    )
    if skipped:
        why += (
            " Skipped for the budget: "
            + "; ".join(
                f"{r['candidate']} (~{r['estimated_s']:.0f} s + "
                f"{r['reserved_s']:.0f} s for the final training, "
                f"{r['left_s']:.0f} s left)"
                for r in skipped
            )
            + "."
        )
    return SearchResult(
        chosen=train_kwargs(config, params),
        table=s.table,
        estimate=estimate,
        estimate_rule=estimate_rule,
        why=why,
        selected_score=float(ok.mean()),
        estimate_spread=spread,
        estimate_stderr=binomial_stderr(estimate, len(s.plan.rows)),
        mode=s.plan.mode,
        seconds=budget.spent,
        budget_s=budget.seconds,
        throughput=dict(getattr(s.source, "throughput", {})),
    )


def _params(p) -> str:
    if p.get("head") == "mlp":
        return ", MLP head"
    return f", C={p['C']:.3g}, {'standardised' if p['standardize'] else 'unscaled'}"


def search_training(
    data,
    models,
    *,
    cache,
    budget_s,
    image_size=None,
    resample="bilinear",
    crop_fraction=0.875,
    batch_size=32,
    progress=False,
    unknown="off",
    class_weight=None,
    n_jobs=None,
    runtime="auto",
    precision="auto",
    clock=time.perf_counter,
    on_step=None,
) -> SearchResult:
    """Search the training levers for the collected images ``data``.

    Parameters
    ----------
    data : LabelledImages
        From ``collect_images`` (training, validation, testing parts).
    models : str or list of str
        The backbones given; subsets and their concatenation are tried.
    cache : str, os.PathLike or None
        The embedding cache (views computed here are kept in it, so the
        final training reuses them).
    budget_s : float
        Seconds for the search and the final training together.
    unknown : str
        ``--unknown``: anything but "off" rules out test-time views.
    runtime, precision : str, default="auto"
        What runs the backbones, as for ``ImageEmbedder`` (the throughput
        that prices each step is measured on it).
    on_step : callable or None
        Called with one line of text per step done or skipped.

    Returns
    -------
    SearchResult
    """
    from embedclf.embedding._multi import backbone_handles
    from embedclf.workflow._search._recommend import stronger_backbone_hint
    from embedclf.workflow._search._sources import EmbedderSource

    handles = backbone_handles(models)
    source = EmbedderSource(
        data.paths,
        cache=cache,
        clock=clock,
        image_size=image_size,
        resample=resample,
        crop_fraction=crop_fraction,
        batch_size=batch_size,
        progress=progress,
        runtime=runtime,
        precision=precision,
    )
    result = search_vectors(
        source,
        handles,
        data.labels,
        data.split,
        budget_s=budget_s,
        clock=clock,
        n_jobs=n_jobs,
        class_weight=class_weight,
        allow_test_views=unknown == "off",
        cache_reused=cache is not None,
        pooled=True if data.layout == "hash-split" else None,
        progress=on_step,
    )
    result.hint = stronger_backbone_hint(handles)
    return result
