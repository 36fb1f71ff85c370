"""Item 22: which photos to label next (issue 28).

Grocery Store, Lite0 vectors from the cache (nothing is re-embedded): start
from 5 labelled photos a class of the official train/ split (a seeded draw),
the rest of train/ is the unlabelled pool. Each round, a strategy picks N
photos from the pool; they are labelled with their folder's class and the
head (``SoftmaxClassifier(C=1)``) is refitted on everything labelled so far;
its accuracy on the official test/ split is recorded after each round.
Strategies: every one of ``embedclf.workflow._suggest._rank.STRATEGIES``;
``random`` and ``margin`` (the N most uncertain alone) are the baselines and
run without the near-duplicate exclusion, as plain baselines would.

Also: the size of the training-photo index ``embedclf train`` writes into a
model directory for grocery's train + val photos (paths, content keys,
labels; ``workflow/_explain/_training_index.py``) against a float16 copy of
their vectors.
"""

from __future__ import annotations

import numpy as np
from _common import Timer

PER_CLASS = 5


def _start(y, seed, per_class):
    rng = np.random.default_rng(seed)
    idx = []
    for label in np.unique(y):
        rows = np.flatnonzero(y == label)
        idx += list(rng.choice(rows, min(per_class, len(rows)), replace=False))
    return np.array(sorted(idx))


def _fit(X, y):
    from embedclf import SoftmaxClassifier

    return SoftmaxClassifier(C=1.0).fit(X, y)


def _run_strategy(strategy, X, y, Xte, yte, start, n, rounds, seed):
    from embedclf.workflow._suggest._rank import rank_rows

    labelled = list(start)
    pool = np.setdiff1d(np.arange(len(y)), labelled)
    head = _fit(X[labelled], y[labelled])
    accs = [float(np.mean(head.predict(Xte) == yte))]
    baseline = strategy in ("random", "margin", "entropy")
    picks = []
    for _ in range(rounds):
        proba = head.predict_proba(X[pool])
        picked = rank_rows(
            X[pool],
            proba,
            n=n,
            X_labelled=None if baseline else X[labelled],
            strategy=strategy,
            random_state=seed * 1000 + len(labelled),
        ).indices
        guessed = head.classes_[proba[picked].argmax(axis=1)]
        picks.append(
            {
                "classes": int(len(np.unique(y[pool[picked]]))),
                "head_wrong": float(np.mean(guessed != y[pool[picked]])),
            }
        )
        labelled += list(pool[picked])
        pool = np.setdiff1d(pool, pool[picked])
        head = _fit(X[labelled], y[labelled])
        accs.append(float(np.mean(head.predict(Xte) == yte)))
    return accs, picks


def _index_size(ctx) -> dict:
    """Bytes of the model directory's training-photo index vs float16 vectors."""
    from embedclf.workflow._explain._training_index import training_index_file

    paths, labels = (
        np.concatenate(a) for a in zip(ctx.split("train"), ctx.split("val"))
    )
    X, _, _ = ctx.features("train")
    _, data = training_index_file(paths, labels, cache=ctx.shared_cache)
    return {
        "n_photos": int(len(paths)),
        "index_bytes": len(data),
        "float16_vectors_bytes": int(len(paths) * X.shape[1] * 2),
    }


def run(ctx) -> dict:
    import os

    from embedclf.workflow._suggest._rank import STRATEGIES

    load = list(os.getloadavg())
    with Timer() as t_embed:
        X, y, _ = ctx.features("train")
        Xte, yte, _ = ctx.features("test")
    seeds = [0] if ctx.quick else [0, 1, 2, 3, 4]
    rounds = 2 if ctx.quick else 4
    n = 5 if ctx.quick else 100
    per_class = 2 if ctx.quick else PER_CLASS
    curves = {s: [] for s in STRATEGIES}
    picks = {s: [] for s in STRATEGIES}
    with Timer() as t_run:
        for seed in seeds:
            start = _start(y, seed, per_class)
            for strategy in STRATEGIES:
                accs, info = _run_strategy(
                    strategy, X, y, Xte, yte, start, n, rounds, seed
                )
                curves[strategy].append(accs)
                picks[strategy].append(info)
    first = {
        s: {
            "classes": float(np.mean([p[0]["classes"] for p in picks[s]])),
            "head_wrong": float(np.mean([p[0]["head_wrong"] for p in picks[s]])),
        }
        for s in STRATEGIES
    }
    mean = {s: np.mean(c, axis=0).tolist() for s, c in curves.items()}
    wins = {
        s: int(np.sum(np.asarray(curves[STRATEGIES[0]])[:, 1:] > np.asarray(c)[:, 1:]))
        for s, c in curves.items()
        if s != STRATEGIES[0]
    }
    default = STRATEGIES[0]
    gain_random = [d - r for d, r in zip(mean[default], mean["random"])][1:]
    gain_margin = [d - r for d, r in zip(mean[default], mean["margin"])][1:]
    lines = [
        f"Grocery train/ (Lite0 vectors), {per_class} labelled photos a class to "
        f"start ({len(_start(y, 0, per_class))}), {n} suggested a round, "
        f"{rounds} rounds, {len(seeds)} seeds; mean test accuracy after each round "
        "(round 0: the starting set):",
        "",
        "| strategy | "
        + " | ".join(f"round {r}" for r in range(rounds + 1))
        + " | first picks: classes | first picks: head wrong |",
        "|---|" + "---|" * (rounds + 3),
    ]
    for s in STRATEGIES:
        lines.append(
            f"| {s} | "
            + " | ".join(f"{100 * a:.1f} %" for a in mean[s])
            + f" | {first[s]['classes']:.1f} | {100 * first[s]['head_wrong']:.0f} % |"
        )
    lines += [
        "",
        f"{default} beat random in {wins['random']} and the most uncertain alone "
        f"in {wins['margin']} of the {len(seeds) * rounds} (seed, round) pairs.",
    ]
    return {
        "title": "suggest: label the suggested photos vs random vs most uncertain",
        "settings": {
            "per_class": per_class,
            "n_per_round": n,
            "rounds": rounds,
            "seeds": seeds,
            "head": "SoftmaxClassifier(C=1)",
            "n_pool": int(len(y)),
            "n_test": int(len(yte)),
        },
        "test_accuracy": {s: c for s, c in curves.items()},
        "mean_test_accuracy": mean,
        "first_round_picks": first,
        "picks_per_round": picks,
        "default_strategy": default,
        "gain_over_random": gain_random,
        "gain_over_margin": gain_margin,
        "wins_of_default": {
            "rounds_compared": len(seeds) * rounds,
            "better_than": wins,
        },
        "training_index": _index_size(ctx),
        "loadavg_at_start": load,
        "seconds": {"vectors": t_embed.seconds, "rounds": t_run.seconds},
        "ratios": [
            {
                "name": f"{default} minus random, worst round (points)",
                "value": 100 * min(gain_random),
                "target": "> 0 at every round",
                "met": min(gain_random) > 0,
            },
            {
                "name": f"{default} minus most-uncertain, mean over rounds (points)",
                "value": 100 * float(np.mean(gain_margin)),
                "target": "report",
                "met": None,
            },
        ],
        "markdown": "\n".join(lines),
    }
