"""The budgeted search (``workflow/_search``) on small synthetic vectors.

The vectors come from an ``ArraySource`` (precomputed arrays with a declared
cost per image) and time from a ``FakeClock`` that the source advances by
that cost, so the budget logic is exercised without a backbone and without
depending on the speed of the machine.
"""

from __future__ import annotations

import numpy as np
import pytest

from embedclf.workflow._search._budget import Budget, FakeClock
from embedclf.workflow._search._estimate import (
    choose,
    cross_fitted_accuracy,
    row_scores,
)
from embedclf.workflow._search._heldout import Config
from embedclf.workflow._search._recommend import stronger_backbone_hint
from embedclf.workflow._search._run import search_vectors, train_kwargs
from embedclf.workflow._search._sources import ArraySource


def _data(per=None, n_cls=4, dim=12, seed=0, noise=(2.0, 2.0)):
    """Labels, parts and two 'backbones' whose vectors are noisy class centres."""
    per = per or {"training": 15, "validation": 30, "testing": 10}
    rng = np.random.default_rng(seed)
    y, split = [], []
    for part, n in per.items():
        for c in range(n_cls):
            y += [f"c{c}"] * n
            split += [part] * n
    y, split = np.array(y), np.array(split)
    cls = np.array([int(label[1:]) for label in y])
    plain = {
        h: rng.normal(size=(n_cls, dim))[cls] + rng.normal(scale=s, size=(len(y), dim))
        for h, s in zip(("cheap", "dear"), noise)
    }
    return y, split, plain


def _views(plain):
    def views(handle, rows, kind, copies):
        rng = np.random.default_rng(len(rows) * 31 + copies + (kind == "flip"))
        X = np.repeat(plain[handle][rows], copies, axis=0)
        return X + rng.normal(scale=0.3, size=X.shape)

    return views


def _search(budget_s, *, cost=None, seed=0, **kwargs):
    y, split, plain = _data(seed=seed)
    clock = FakeClock()
    source = ArraySource(
        plain,
        views=_views(plain),
        seconds_per_image=cost or {"cheap": 0.01, "dear": 0.05},
        clock=clock,
    )
    result = search_vectors(
        source,
        ["dear", "cheap"],
        y,
        split,
        budget_s=budget_s,
        clock=clock,
        mlp=False,
        **kwargs,
    )
    return result, source, clock


def test_steps_run_cheapest_first():
    result, source, _ = _search(10_000)
    # plain vectors: the cheaper backbone first although given second
    assert [c[0] for c in source.calls[:2]] == ["cheap", "dear"]
    steps = list(dict.fromkeys(r["step"] for r in result.table))
    assert steps == [
        "vectors",
        "C, scaling",
        "C refined",
        "test views",
        "2 training views",
        "4 training views",
    ]
    assert not any(r["status"].startswith("skipped") for r in result.table)


def test_budget_is_respected_and_skips_are_listed():
    # vectors of both backbones: 160 rows * 0.06 s = 9.6 s; views cost more
    result, source, clock = _search(40, cost={"cheap": 0.02, "dear": 0.04})
    assert clock() <= 40
    skipped = [r for r in result.table if r["status"].startswith("skipped")]
    assert skipped and all(r["estimated_s"] > 0 for r in skipped)
    # each skip was needed: the step and the final training did not fit
    assert all(r["estimated_s"] + r["reserved_s"] > r["left_s"] for r in skipped)
    assert all(kind != "train" for _, kind, _, _ in source.calls)
    assert result.chosen["augment_copies"] == 0
    assert "Skipped for the budget" in result.why


def test_the_first_backbone_is_always_embedded_even_over_budget():
    result, source, _ = _search(1, cost={"cheap": 1.0, "dear": 2.0})
    assert [r["status"] for r in result.table if r["step"] == "vectors"] == [
        "embedded",
        "skipped: budget",
    ]
    assert result.chosen["model"] == "cheap"


def test_choice_is_deterministic():
    a, _, _ = _search(10_000)
    b, _, _ = _search(10_000)
    assert a.chosen == b.chosen
    assert a.estimate == b.estimate
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in a.table]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in b.table]


def test_chosen_keywords_are_train_flags():
    kw = train_kwargs(Config(("a", "b"), 2, "train"), {"C": 0.1, "standardize": True})
    assert kw == {
        "model": ["a", "b"],
        "normalize_each": True,
        "augment_copies": 2,
        "random_crop": 10.0,
        "random_scale": 10.0,
        "random_brightness": 10.0,
        "flip_left_right": True,
        "test_views": "train",
        "classifier": "softmax",
        "C_grid": [0.1],
        "scaling": "standardize",
    }
    assert train_kwargs(Config(("a",)), {"head": "mlp"})["classifier"] == "mlp"


def test_cross_fitting_removes_the_winners_curse():
    # 200 candidates of pure noise (coin flips): the best one's score on the
    # rows it was chosen on is inflated, the cross-fitted one is not.
    chosen, crossed = [], []
    for seed in range(6):
        rng = np.random.default_rng(seed)
        n_cand, n = 200, 120
        correct = rng.random((n_cand, n)) < 0.5
        ce = np.where(correct, 0.5, 1.5) + 0.01 * rng.random((n_cand, n))
        y = np.repeat(["a", "b"], n // 2)
        fam, Cs = list(range(n_cand)), [1.0] * n_cand
        chosen.append(correct[choose(ce, fam, Cs)].mean())
        est, spread = cross_fitted_accuracy(ce, correct, fam, Cs, y, np.arange(n))
        crossed.append(est)
        assert spread >= 0
    assert np.mean(chosen) > 0.6
    assert abs(np.mean(crossed) - 0.5) < 0.03


def test_cross_fitting_of_a_clear_winner_is_its_accuracy():
    n = 40
    correct = np.zeros((3, n), dtype=bool)
    correct[1, :30] = True  # candidate 1 right on 75 %, lowest loss everywhere
    ce = np.ones((3, n))
    ce[1] = 0.2
    y = np.repeat(["a", "b"], n // 2)
    est, _ = cross_fitted_accuracy(ce, correct, [0, 1, 2], [1, 1, 1], y, np.arange(n))
    assert est == pytest.approx(0.75, abs=0.03)


def test_one_standard_error_rule_prefers_smaller_C_within_noise():
    rng = np.random.default_rng(1)
    base = rng.random(50)
    ce = np.vstack([base + 0.02, base, base + 1.0])  # C = 0.1, 1, 10
    fam = ["f", "f", "f"]
    assert choose(ce, fam, [0.1, 1.0, 10.0]) == 1
    assert choose(ce, fam, [0.1, 1.0, 10.0], one_se=True) == 0
    # another family is never taken by the rule
    assert choose(ce, ["g", "f", "f"], [0.1, 1.0, 10.0], one_se=True) == 1


def test_prior_rule_keeps_the_probe_unless_clearly_beaten():
    rng = np.random.default_rng(2)
    base = rng.random(60)
    # candidates: C=1 unscaled (the prior), C=10 slightly better, another
    # family clearly better
    ce = np.vstack([base + 0.01, base, base + 0.5])
    prior_of = [0, 0, None]
    assert choose(ce, ["f", "f", "g"], [1.0, 10.0, 1.0]) == 1
    assert choose(ce, ["f", "f", "g"], [1.0, 10.0, 1.0], prior_of=prior_of) == 0
    ce[0] += 1.0  # now the prior is far worse: the best is kept
    assert choose(ce, ["f", "f", "g"], [1.0, 10.0, 1.0], prior_of=prior_of) == 1


def test_small_validation_part_pools_and_uses_the_rule():
    y, split, plain = _data(per={"training": 6, "validation": 2, "testing": 5})
    source = ArraySource(plain)  # no views: they cost infinity
    result = search_vectors(
        source,
        ["cheap", "dear"],
        y,
        split,
        budget_s=1e9,
        clock=FakeClock(),
        mlp=False,
    )
    assert result.mode == "pooled-cv"
    assert "plain probe (unscaled, C=1)" in result.why
    assert result.chosen["augment_copies"] == 0
    assert 0 <= result.estimate <= 1


def test_row_scores_count_unseen_classes_as_wrong():
    P = np.array([[0.9, 0.1], [0.2, 0.8]])
    ce, ok = row_scores(P, np.array(["a", "z"]), np.array(["a", "b"]))
    assert ok.tolist() == [True, False]
    assert ce[1] == pytest.approx(-np.log(1e-15))


def test_budget_fit_rate_is_the_slowest_measured():
    clock = FakeClock()
    budget = Budget(100, clock)
    assert budget.fit_cost(1e6) == 0.0
    budget.record_fit(1e6, 2.0)
    budget.record_fit(1e6, 1.0)
    assert budget.fit_cost(2e6) == pytest.approx(4.0)
    clock.advance(70)
    assert budget.fits(20) and not budget.fits(20, reserve=15)


def test_stronger_backbone_hint():
    hint = stronger_backbone_hint(["/m/efficientnet_lite0_feature_vector"])
    assert "BiT-M" in hint and "tfhub.dev" in hint
    assert stronger_backbone_hint(["/my/own/model"]) is None
    v2 = "https://tfhub.dev/google/imagenet/efficientnet_v2_imagenet21k_s/feature_vector/2"
    assert stronger_backbone_hint([v2]) is None


def test_estimate_carries_its_standard_error():
    result, _, _ = _search(10_000)
    n_heldout = 4 * 30  # the validation part of _data
    p = result.estimate
    assert result.estimate_stderr == pytest.approx(np.sqrt(p * (1 - p) / n_heldout))
    assert result.to_manifest()["estimate_stderr"] == result.estimate_stderr
    from embedclf.workflow._search._table import summary_lines

    line = [ln for ln in summary_lines(result) if ln.startswith("Estimate")][0]
    assert f"standard error {result.estimate_stderr:.1%}" in line
