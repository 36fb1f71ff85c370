"""The search's state and bookkeeping; its steps (``_run._steps``), in order:

1. Plain vectors of each backbone, cheapest first (cached ones cost nothing;
   the first is always embedded, the others only if they fit).
2. On those vectors: each backbone alone, then all concatenated (each
   L2-normalised), ``C`` over decades 1e-3..1e3 crossed with scaling on and
   off, then the two half-decades around the best.
3. Test-time ``flip`` views of the best configuration so far.
4. Training views (2, then 4 copies of the training distortions) on the best
   backbones, with test-time views ``none``, ``flip`` and ``train``, ``C``
   around the best so far.
5. The MLP head on the best configuration (validation mode only).

A step runs only if its estimated cost (embedding: rows missing from the
cache / measured images per second; fitting: measured seconds per unit of
work) plus the cost of the final training of the best candidate fits in what
is left of the budget; otherwise it is listed as skipped. The choice and its
estimate follow ``_estimate`` (the rule is picked in ``_run``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from embedclf.workflow._search._budget import FINAL_OVERHEAD_S, fit_units
from embedclf.workflow._search._estimate import (
    choose,
    row_scores,
)
from embedclf.workflow._search._heldout import Config, evaluate
from embedclf.workflow._search._table import row_line

__all__ = ["SearchResult"]

C_DECADES = tuple(10.0**k for k in range(-3, 4))
#: An MLP fit costs this many softmax fits of the same data: one MLP on
#: grocery's 2640 x 2560 vectors took 203 s where a softmax fit took 2.5 s
#: (train --budget 10, busy machine), so about 80; kept cautious.
MLP_FIT_FACTOR = 80.0
VIEW_COPIES = (2, 4)


@dataclass
class SearchResult:
    """What the search chose, what it tried, and how good it expects it to be.

    Attributes
    ----------
    chosen : dict
        Keyword arguments of ``train`` (the CLI flags' dest names).
    table : list of dict
        One row per candidate tried or step skipped.
    estimate : float or None
        Cross-fitted accuracy of the choice (see ``_estimate``).
    estimate_rule : str
    why : str
    estimate_spread : float or None
        Standard deviation of the estimate over the random halvings.
    estimate_stderr : float or None
        Its binomial standard error over the held-out images (see
        ``_estimate.binomial_stderr``).
    hint : str or None
        A stronger backbone to try, when one is known.
    """

    chosen: dict
    table: list
    estimate: float | None
    estimate_rule: str
    why: str
    hint: str | None = None
    selected_score: float | None = None
    estimate_spread: float | None = None
    estimate_stderr: float | None = None
    mode: str = "validation"
    seconds: float = 0.0
    budget_s: float = 0.0
    throughput: dict = field(default_factory=dict)

    def to_manifest(self) -> dict:
        """JSON-ready summary for the model directory's manifest."""
        keys = (
            "chosen",
            "estimate",
            "estimate_rule",
            "why",
            "hint",
            "selected_score",
            "estimate_spread",
            "estimate_stderr",
            "mode",
            "seconds",
            "budget_s",
            "throughput",
            "table",
        )
        return {k: getattr(self, k) for k in keys}


class _Search:
    """The state of one search (see ``_run.search_vectors`` for the options)."""

    def __init__(self, source, handles, y, split, budget, **options):
        self.source, self.handles, self.budget = source, list(handles), budget
        self.y, self.split = np.asarray(y).astype(str), np.asarray(split)
        self.names = options["names"]
        self.n_jobs = options.get("n_jobs")
        self.class_weight = options.get("class_weight")
        self.reuse = options.get("cache_reused", True)
        self.random_state = options.get("random_state", 0)
        self.say = options.get("progress") or (lambda line: None)
        self.rule = "min"  # set by the caller once the plan is known
        self.table, self.cands = [], []  # cands: (config, params, ce, ok, row)
        self.available = []

    # --- bookkeeping ------------------------------------------------------
    def skip(self, step, what, cost, reserve):
        row = {
            "step": step,
            "candidate": what,
            "status": "skipped: budget",
            "estimated_s": round(cost, 1),
            "reserved_s": round(reserve, 1),
            "seconds": 0.0,
            "left_s": round(self.budget.left, 1),
        }
        self.table.append(row)
        self.say(row_line(row))

    def final_cost(self, config) -> float:
        """Seconds the final training of ``config`` will add."""
        te = np.flatnonzero(self.split == "testing")
        cost = FINAL_OVERHEAD_S
        n_fit = int(np.sum(self.split != "testing")) * (1 + config.copies)
        dim = sum(self.dims[h] for h in config.backbones)
        cost += self.budget.fit_cost(fit_units(n_fit, dim, self.n_classes, 2))
        k = {"none": 0, "flip": 1, "train": config.copies}[config.test_views]
        kind = "flip" if config.test_views == "flip" else "train"
        for h in config.backbones:
            if k:
                cost += self.source.views_cost(h, te, kind, k)
            if not self.reuse:  # nothing cached: the final run embeds again
                cost += self.source.plain_cost(h) + self.embed_s.get(h, 0.0)
        return cost

    def reserve(self, *configs) -> float:
        best = self.best_config()
        pool = [c for c in (best, *configs) if c is not None]
        return max((self.final_cost(c) for c in pool), default=FINAL_OVERHEAD_S)

    # --- steps --------------------------------------------------------------
    def plain_vectors(self):
        self.embed_s = {}
        costs = {h: self.source.plain_cost(h) for h in self.handles}
        for i, h in enumerate(sorted(self.handles, key=lambda h: costs[h])):
            cost = self.source.plain_cost(h)
            if i and not self.budget.fits(cost, FINAL_OVERHEAD_S):
                self.skip("vectors", self.names[h], cost, FINAL_OVERHEAD_S)
                continue
            t = self.budget.clock()
            X = self.source.plain(h)
            self.embed_s[h] = self.budget.clock() - t
            self.available.append(h)
            row = {
                "step": "vectors",
                "candidate": self.names[h],
                "status": "embedded",
                "estimated_s": round(cost, 1),
                "seconds": round(self.embed_s[h], 1),
                "dim": int(X.shape[1]),
            }
            self.table.append(row)
            self.say(row_line(row))
        self.dims = {h: self.source.plain(h).shape[1] for h in self.available}
        self.dims.update({h: 0 for h in self.handles if h not in self.dims})

    def run_config(
        self, step, config, candidates, tvs=("none",), first=False, extra_cost=0.0
    ):
        plan = self.plan
        n_fit = sum(len(f) for f, _ in plan.folds) * (1 + config.copies)
        dim = sum(self.dims[h] for h in config.backbones)
        factor = [MLP_FIT_FACTOR if p.get("head") == "mlp" else 1.0 for p in candidates]
        units = fit_units(n_fit, dim, self.n_classes, sum(factor))
        cost = self.budget.fit_cost(units) + extra_cost
        reserve = self.reserve(Config(config.backbones, config.copies, tvs[-1]))
        if not first and not self.budget.fits(cost, reserve):
            what = config.label(self.names) + _params_text(candidates)
            self.skip(step, what, cost, reserve)
            return False
        t = self.budget.clock()
        out = evaluate(
            self.source,
            plan,
            config,
            candidates,
            test_views=tvs,
            class_weight=self.class_weight,
            n_jobs=self.n_jobs,
        )
        seconds = self.budget.clock() - t
        if all(p.get("head") != "mlp" for p in candidates):
            self.budget.record_fit(units, seconds)
        first_row = len(self.table)
        for tv, c in sorted(out, key=lambda key: (tvs.index(key[0]), key[1])):
            P = out[(tv, c)]
            cfg = Config(config.backbones, config.copies, tv)
            ce, ok = row_scores(P, self.y[plan.rows], plan.classes)
            self.cands.append((cfg, candidates[c], ce, ok, len(self.table)))
            self.table.append(
                {
                    "step": step,
                    "candidate": cfg.label(self.names) + _params_text([candidates[c]]),
                    "status": "tried",
                    "validation_accuracy": round(float(ok.mean()), 4),
                    "validation_cross_entropy": round(float(ce.mean()), 4),
                    "estimated_s": round(cost, 1),
                    "seconds": round(seconds / max(1, len(out)), 1),
                }
            )
        mine = self.table[first_row:]
        best = min(mine, key=lambda r: r["validation_cross_entropy"])
        self.say(row_line(best, n=len(mine), seconds=seconds))
        return True

    def best_index(self, rows=None, pool=None):
        if not self.cands:
            return None
        idx = list(range(len(self.cands))) if pool is None else pool
        ce = np.array([self.cands[i][2] for i in idx])
        fam = [_family(self.cands[i]) for i in idx]
        Cs = [self.cands[i][1].get("C") for i in idx]
        return idx[choose(ce, fam, Cs, rows=rows, **self.rule_kwargs(idx))]

    def rule_kwargs(self, idx) -> dict:
        """``choose``'s rule arguments for the candidates ``idx``."""
        if self.rule == "one-se":
            return {"one_se": True}
        if self.rule != "prior":
            return {}
        cands = [self.cands[i] for i in idx]
        priors = {
            c[0]: j
            for j, c in enumerate(cands)
            if c[1] == {"C": 1.0, "standardize": False}
        }
        return {"prior_of": [priors.get(c[0]) for c in cands]}

    def best_config(self):
        i = self.best_index()
        return None if i is None else self.cands[i][0]

    def best_params(self, config):
        pool = [i for i, c in enumerate(self.cands) if c[0] == config]
        return self.cands[self.best_index(pool=pool)][1]


def _family(cand):
    config, params = cand[0], cand[1]
    return (config, params.get("head", "softmax"), params.get("standardize"))


def _params_text(candidates) -> str:
    if len(candidates) != 1:
        return f" ({len(candidates)} fits)"
    p = candidates[0]
    if p.get("head") == "mlp":
        return ", MLP head"
    return f", C={p['C']:g}, {'standardised' if p['standardize'] else 'unscaled'}"
