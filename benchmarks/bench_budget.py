"""Item 23: ``embedclf train --budget`` (issue 26).

Two parts, both against the plain probe ``LogisticRegression(C=1,
max_iter=3000)``:

* grocery, official folders, both shared backbones given: ``embedclf train
  --budget 10`` (and ``--budget 20``) run in-process through ``main()`` on a
  *copy* of the grocery cache (so views it computes are paid for here and do
  not warm later runs): final test accuracy, printed estimate and wall time;
  beside it the default ``embedclf train`` (no budget, Lite0) on another copy;
  all with the default runtime, whose plain vectors of both backbones the
  cache should hold (``embedclf embed`` the grocery folder with each model
  first; otherwise the runs embed them within their budget);
* small data: seeded samples of grocery (37 classes, ``n_train`` training
  and 2 validation photos a class from the official train/ and val/ folders,
  up to 10 test photos a class from test/), on the cached vectors: the probe
  fitted on training + validation (Lite0, Lite2, both each L2-normalised),
  the default selection (``select_head`` on Lite0, as ``train``) and the
  budgeted search (``search_vectors`` on Lite0 alone and on Lite0 + Lite2;
  views are not searched here: the samples' views are not cached), each
  final model fitted as ``train`` fits the chosen settings; the estimate's
  error (estimate - test accuracy) per split.

Quick mode: the small-data part only, on the quick 5-class subset, Lite0.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import time

import numpy as np
from _common import SHARED, Context, Timer

LITE2 = SHARED / "models" / "efficientnet_lite2_feature_vector"
SEEDS = 6
N_TRAIN = (6,)


def _vectors(ctx, model):
    from embedclf import ImageEmbedder

    out = {}
    for name in ("train", "val", "test"):
        paths, y = ctx.split(name)
        emb = ImageEmbedder(
            str(model),
            cache=ctx.shared_cache,
            batch_size=ctx.batch_size,
            progress=False,
        )
        out[name] = (emb.transform(paths), np.asarray(y).astype(str))
    return out


def _sample(vecs, seed, *, n_train, n_val=2, n_test=10, n_classes=37):
    rng = np.random.default_rng(seed)
    names = {"train": "training", "val": "validation", "test": "testing"}
    first = next(iter(vecs.values()))
    need = {"train": n_train, "val": n_val, "test": 2}
    ok = [
        c
        for c in np.unique(first["train"][1])
        if all((first[s][1] == c).sum() >= n for s, n in need.items())
    ]
    classes = rng.choice(ok, min(n_classes, len(ok)), replace=False)
    blocks = {h: [] for h in vecs}
    y, split = [], []
    for c in classes:
        for s, n in (("train", n_train), ("val", n_val), ("test", n_test)):
            idx = np.flatnonzero(first[s][1] == c)
            pick = rng.choice(idx, min(n, len(idx)), replace=False)
            for h in vecs:
                blocks[h].append(vecs[h][s][0][pick])
            y += [c] * len(pick)
            split += [names[s]] * len(pick)
    return {h: np.vstack(b) for h, b in blocks.items()}, np.array(y), np.array(split)


def _probe(X, y, fit, te):
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, "blas"):
        p = LogisticRegression(C=1, max_iter=3000).fit(X[fit], y[fit])
    return float(np.mean(p.predict(X[te]) == y[te]))


def _final(X, y, split, **select):
    """Test accuracy of select_head's head (as ``train`` fits), and its estimate."""
    from embedclf.workflow._train._select import select_head

    tr, va, te = (split == s for s in ("training", "validation", "testing"))
    head, res = select_head(X[tr], y[tr], X_val=X[va], y_val=y[va], **select)
    return float(np.mean(head.predict(X[te]) == y[te])), res["estimate"]


def _budgeted(plain, handles, y, split, rule=None):
    from embedclf.workflow._search._budget import FakeClock
    from embedclf.workflow._search._heldout import features
    from embedclf.workflow._search._run import search_vectors
    from embedclf.workflow._search._sources import ArraySource

    source = ArraySource({h: plain[h] for h in handles})
    with Timer() as t:
        res = search_vectors(
            source,
            handles,
            y,
            split,
            budget_s=600,
            clock=FakeClock(),
            mlp=False,
            allow_views=False,
            allow_test_views=False,
            rule=rule,
        )
    ch = res.chosen
    models = ch["model"] if isinstance(ch["model"], list) else [ch["model"]]
    acc, _ = _final(
        features(source, models),
        y,
        split,
        C_grid=ch["C_grid"],
        standardize=ch["scaling"] == "standardize",
    )
    return {
        "test_accuracy": acc,
        "estimate": res.estimate,
        "seconds": t.seconds,
        "chosen": f"{'+'.join(os.path.basename(m)[:18] for m in models)} "
        f"C={ch['C_grid'][0]:g} {ch['scaling']}",
    }


def _small_split(vecs, seed, n_train, quick):
    from sklearn.preprocessing import normalize

    plain, y, split = _sample(vecs, seed, n_train=n_train, n_classes=5 if quick else 37)
    fit, te = split != "testing", split == "testing"
    handles = list(plain)
    row = {
        "seed": seed,
        "n_train": n_train,
        "n_classes": len(set(y)),
        "n_test": int(te.sum()),
    }
    for i, h in enumerate(handles):
        row[f"probe_backbone{i}"] = _probe(plain[h], y, fit, te)
    row["probe"] = row["probe_backbone0"]  # the default's (and Lite0 search's)
    if len(handles) > 1:
        cat = np.hstack([normalize(plain[h]) for h in handles])
        row["probe_both"] = _probe(cat, y, fit, te)
    row["default_test"], row["default_estimate"] = _final(plain[handles[0]], y, split)
    runs = {"budget_lite0": (handles[:1], None)}
    runs["budget_lite0_one_se"] = (handles[:1], "one-se")  # the rule before
    if len(handles) > 1:
        runs["budget_both"] = (handles, None)
    for name, (hs, rule) in runs.items():
        r = _budgeted(plain, hs, y, split, rule)
        row.update({f"{name}_{k}": v for k, v in r.items()})
    print(
        f"  small n_train={n_train} seed {seed}: "
        + ", ".join(f"{k} {v:.3f}" for k, v in row.items() if isinstance(v, float)),
        flush=True,
    )
    return row


def _cli(ctx, name, argv):
    """Run ``embedclf train`` in-process on a copy of the cache; parse it."""
    from embedclf.cli import main

    folder = ctx.fresh_dir(f"budget_{name}")
    cache = folder / "cache.h5"
    for suffix in ("", ".identities"):
        src = f"{ctx.shared_cache}{suffix}"
        if os.path.exists(src):
            shutil.copy(src, f"{cache}{suffix}")
    out = folder / "model"
    buf = io.StringIO()
    load = os.getloadavg()
    with Timer() as t, contextlib.redirect_stdout(buf):
        status = main(
            [
                "train",
                str(ctx.data),
                "-o",
                str(out),
                "--cache",
                str(cache),
                "--no-progress",
                *argv,
            ]
        )
    text = buf.getvalue()
    (ctx.workdir / f"bench_budget_{name}.log").write_text(text)
    manifest = json.loads((out / "manifest.json").read_text())
    m = manifest["metrics"]
    return {
        "status": status,
        "seconds": t.seconds,
        "loadavg_before": load,
        "loadavg_after": os.getloadavg(),
        "test_accuracy": m["test_accuracy"],
        "estimate": m["estimate"],
        "chosen": manifest.get("search", {}).get("chosen"),
        "search_table": (out / "report" / "search.tsv").is_file(),
        "table": manifest.get("search", {}).get("table"),
        "why": manifest.get("search", {}).get("why"),
    }


def _decomposition(vecs, chosen):
    """Where the estimate's error comes from: the chosen settings (plain
    vectors, no views) fitted on train only vs train + val, scored on val and
    test."""
    from sklearn.preprocessing import normalize

    from embedclf.heads._linear import SoftmaxClassifier

    models = chosen["model"] if isinstance(chosen["model"], list) else [chosen["model"]]

    def feats(part):
        blocks = [vecs[m][part][0] for m in models]
        return (
            blocks[0] if len(blocks) == 1 else np.hstack([normalize(b) for b in blocks])
        )

    (Xtr, Xva, Xte), y = (
        (feats(p) for p in ("train", "val", "test")),
        {p: vecs[models[0]][p][1] for p in ("train", "val", "test")},
    )
    params = {
        "C": chosen["C_grid"][0],
        "standardize": chosen["scaling"] == "standardize",
    }
    h = SoftmaxClassifier(**params).fit(Xtr, y["train"])
    both = SoftmaxClassifier(**params).fit(
        np.vstack([Xtr, Xva]), np.concatenate([y["train"], y["val"]])
    )
    return {
        "train_only_val_accuracy": float(np.mean(h.predict(Xva) == y["val"])),
        "train_only_test_accuracy": float(np.mean(h.predict(Xte) == y["test"])),
        "train_val_test_accuracy": float(np.mean(both.predict(Xte) == y["test"])),
    }


def _mean(rows, key):
    vals = [r[key] for r in rows if r.get(key) is not None]
    return float(np.mean(vals)) if vals else None


def run(ctx: Context) -> dict:
    has_lite2 = LITE2.is_dir() and not ctx.quick
    vecs = {str(ctx.model): _vectors(ctx, ctx.model)}
    if has_lite2:
        vecs[str(LITE2)] = _vectors(ctx, LITE2)
    small = [
        _small_split(vecs, seed, n, ctx.quick)
        for n in ((4,) if ctx.quick else N_TRAIN)
        for seed in range(1 if ctx.quick else SEEDS)
    ]
    grocery = {}
    # BENCH_BUDGET_PARTS=small: the small-data part only (e.g. to re-measure
    # a rule without the 15-minute grocery runs)
    if not ctx.quick and os.environ.get("BENCH_BUDGET_PARTS", "all") == "all":
        models = ["--model", str(ctx.model)] + (
            ["--model", str(LITE2)] if has_lite2 else []
        )
        grocery["budget_10"] = _cli(ctx, "budget10", [*models, "--budget", "10"])
        grocery["default"] = _cli(ctx, "default", ["--model", str(ctx.model)])
        # a larger budget, to see the views levers when the machine allows
        grocery["budget_20"] = _cli(ctx, "budget20", [*models, "--budget", "20"])
        chosen = grocery["budget_10"]["chosen"]
        if chosen and chosen.get("classifier") == "softmax":
            grocery["budget_10"]["decomposition"] = _decomposition(vecs, chosen)
    return _report(small, grocery, has_lite2)


def _small_summary(small):
    s = {k: _mean(small, k) for k in small[0] if isinstance(small[0][k], float)}
    for name in ("budget_lite0", "budget_lite0_one_se", "budget_both", "default"):
        test = f"{name}_test_accuracy" if name != "default" else "default_test"
        est = f"{name}_estimate" if name != "default" else "default_estimate"
        errs = [r[est] - r[test] for r in small if r.get(est) is not None]
        if errs:
            s[f"{name}_estimate_bias"] = float(np.mean(errs))
            s[f"{name}_estimate_mae"] = float(np.mean(np.abs(errs)))
    return s


def _ratio(name, value, target, met):
    return {"name": name, "value": value, "target": target, "met": met}


def _report(small, grocery, has_lite2):
    s = _small_summary(small)
    pts = 100.0
    ratios = [
        _ratio(
            "small data: default - probe (points, mean)",
            pts * (s["default_test"] - s["probe"]),
            ">= -0.5",
            s["default_test"] - s["probe"] >= -0.005,
        ),
        _ratio(
            "small data: budget (Lite0) - probe (points, mean)",
            pts * (s["budget_lite0_test_accuracy"] - s["probe"]),
            ">= -0.5",
            s["budget_lite0_test_accuracy"] - s["probe"] >= -0.005,
        ),
        _ratio(
            "small data: budget (Lite0), one-SE rule - probe (points, mean)",
            pts * (s["budget_lite0_one_se_test_accuracy"] - s["probe"]),
            "report (the rule before)",
            None,
        ),
        _ratio(
            "small data: budget (Lite0) |estimate - test| (mean)",
            s["budget_lite0_estimate_mae"],
            "report",
            None,
        ),
    ]
    if has_lite2:
        ratios += [
            _ratio(
                "small data: budget (Lite0+Lite2) - probe on both (points)",
                pts * (s["budget_both_test_accuracy"] - s["probe_both"]),
                ">= -0.5",
                s["budget_both_test_accuracy"] - s["probe_both"] >= -0.005,
            ),
            _ratio(
                "small data: budget (Lite0+Lite2) |estimate - test| (mean)",
                s["budget_both_estimate_mae"],
                "report",
                None,
            ),
        ]
    if grocery:
        b, d = grocery["budget_10"], grocery["default"]
        err = abs(b["estimate"] - b["test_accuracy"])
        ratios += [
            _ratio(
                "grocery: train --budget 10 final test accuracy",
                b["test_accuracy"],
                ">= 0.80",
                b["test_accuracy"] >= 0.80,
            ),
            _ratio(
                "grocery: train --budget 10 |printed estimate - test|",
                err,
                "<= 0.02",
                err <= 0.02,
            ),
            _ratio(
                "grocery: train --budget 10 wall seconds",
                b["seconds"],
                "<= 600",
                b["seconds"] <= 600,
            ),
            _ratio(
                "grocery: chosen settings, test accuracy gained by refitting on "
                "train + val (points, plain vectors)",
                pts
                * (
                    b.get("decomposition", {}).get("train_val_test_accuracy", np.nan)
                    - b.get("decomposition", {}).get("train_only_test_accuracy", np.nan)
                ),
                "report",
                None,
            ),
            _ratio(
                "grocery: train --budget 20 final test accuracy",
                grocery["budget_20"]["test_accuracy"],
                "report",
                None,
            ),
            _ratio(
                "grocery: train --budget 20 |printed estimate - test|",
                abs(
                    grocery["budget_20"]["estimate"]
                    - grocery["budget_20"]["test_accuracy"]
                ),
                "report",
                None,
            ),
            _ratio(
                "grocery: train --budget 20 wall seconds",
                grocery["budget_20"]["seconds"],
                "<= 1200",
                grocery["budget_20"]["seconds"] <= 1200,
            ),
            _ratio(
                "grocery: default train (no budget, Lite0) test accuracy",
                d["test_accuracy"],
                "report (item 6: 0.749)",
                None,
            ),
            _ratio(
                "grocery: default train (no budget, Lite0) wall seconds",
                d["seconds"],
                "report",
                None,
            ),
        ]
    return {
        "title": "train --budget: search within a time budget (issue 26)",
        "ratios": ratios,
        "metrics": {
            "small": small,
            "small_mean": s,
            "grocery": grocery,
            "loadavg_end": os.getloadavg(),
            "time": time.time(),
        },
        "markdown": _markdown(s, grocery, len(small)),
    }


def _markdown(s, grocery, n_splits):
    def pct(v):
        return "-" if v is None else f"{100 * v:.1f} %"

    lines = [
        f"### Item 23: small data ({n_splits} seeded splits, means)",
        "",
        "| setting | test accuracy | estimate | mean abs(estimate - test) |",
        "|---|---|---|---|",
        f"| probe LogisticRegression(C=1), Lite0 | {pct(s['probe'])} | - | - |",
    ]
    if "probe_both" in s:
        lines.append(
            f"| probe, Lite0 + Lite2 each L2 | {pct(s['probe_both'])} | - | - |"
        )
    lines.append(
        f"| default selection (Lite0) | {pct(s['default_test'])} | "
        f"{pct(s['default_estimate'])} | {pct(s.get('default_estimate_mae'))} |"
    )
    for name, label in (
        ("budget_lite0", "Lite0"),
        ("budget_lite0_one_se", "Lite0, one-SE rule toward smaller C"),
        ("budget_both", "Lite0 + Lite2"),
    ):
        if f"{name}_test_accuracy" in s:
            lines.append(
                f"| budgeted search ({label}) | {pct(s[f'{name}_test_accuracy'])} | "
                f"{pct(s[f'{name}_estimate'])} | {pct(s[f'{name}_estimate_mae'])} |"
            )
    if grocery:
        lines += [
            "",
            "### Item 23: grocery (official folders)",
            "",
            "| run | test accuracy | estimate | seconds | chosen |",
            "|---|---|---|---|---|",
        ]
        for name, r in grocery.items():
            ch = r.get("chosen") or {}
            short = ", ".join(f"{k}={v}" for k, v in ch.items() if k != "model")
            lines.append(
                f"| {name} | {pct(r['test_accuracy'])} | "
                f"{pct(r['estimate'])} | {r['seconds']:.0f} | {short} |"
            )
    return "\n".join(lines)
