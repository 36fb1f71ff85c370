"""Item 6: how accurate, and how honestly estimated, on grocery_store (issue 13).

Everything runs on cached vectors of the official folders (fit on train/,
choose on val/, score on test/ once, never choose on it), side by side in one
run:

* the plain scikit-learn probe ``LogisticRegression(C=1, max_iter=3000)`` on
  the Lite0 vectors (the baseline every row is compared with);
* default ``embedclf train`` model selection (``workflow._train._select.select_head``,
  the function the CLI calls): C over decades 1e-4..1e4 refined, scaling on
  and off, chosen by validation cross-entropy, refitted on train + val, with
  the estimate it prints next to the final test accuracy;
* each lever on and off, with its time: the selection rule (0.1.0's ungrouped
  CV over [0.01, 0.1, 1], near-duplicate-grouped CV, validation split),
  scaling, backbones (Lite2 alone, Lite0 + Lite2 concatenated raw or each
  L2-normalised), training views, test-time views (predictions averaged over
  the test image and its distorted views, through ``embedding._augment``),
  class balancing (``class_weight="balanced"`` vs ``--balance views``, with
  the recall of the five smallest classes);
* the near-duplicate threshold of the grouped CV: share of training photos
  grouped and the CV estimate, against the official val/test accuracy.

The second backbone is the shared EfficientNet-Lite2 next to ``--model``;
rows that need it are skipped when it is absent. Quick mode keeps 5 classes
and the Lite0 rows.
"""

from __future__ import annotations

import json

import numpy as np
from _accuracy_report import report
from _common import SHARED, Context, Timer

#: Parallel fits of one search (as ``embedclf train --n-jobs``): the grid's
#: candidates are independent. Times below are wall times with this setting.
N_JOBS = 4
#: The runtime this item measures: TensorFlow, as the items before 19 (their
#: recorded figures and the shared cache's vectors are TensorFlow's).
RUNTIME = "tensorflow"
LITE2 = SHARED / "models" / "efficientnet_lite2_feature_vector"


def _acc(pred, y):
    return float(np.mean(np.asarray(pred).astype(str) == y)) if len(y) else None


def _embedder(ctx, model):
    """The ImageEmbedder of this item's plain vectors and views."""
    from embedclf import ImageEmbedder

    return ImageEmbedder(
        str(model),
        cache=ctx.shared_cache,
        batch_size=ctx.batch_size,
        progress=False,
        runtime=RUNTIME,
    )


def _vectors(ctx, model, name):
    key = ("bench_accuracy", str(model), name)
    if key not in ctx._memo:
        paths, y = ctx.split(name)
        emb = _embedder(ctx, model)
        ctx._memo[key] = (emb.transform(paths), y, emb.n_computed_)
    return ctx._memo[key]


def _views(ctx, paths, settings, k, model=None):
    """(vectors, source) of k distorted views of each path, through the cache.

    With the plain vectors' embedder (its preprocessing and runtime), as
    ``train`` does; before 2026-12-07 the views were embedded with
    embed_views' own defaults (crop 1.0 instead of the embedder's 0.875).
    """
    from embedclf.embedding._augment import embed_views_like

    emb = _embedder(ctx, model or ctx.model)
    views, source, _ = embed_views_like(emb, paths, settings=settings, copies=k)
    return views, source


def _budget_row(ctx, add):
    """``embedclf train --budget 10`` (Lite0 + Lite2 given) on this item's
    runtime, in-process on a copy of the cache (item 23's runner): beside the
    probe and the hand-picked combinations above, on the same vectors."""
    from bench_budget import _cli

    argv = ["--model", str(ctx.model), "--model", str(LITE2), "--budget", "10"]
    run = _cli(ctx, "accuracy_budget10", [*argv, "--runtime", RUNTIME])
    chosen = run["chosen"] or {}
    add(
        "budget",
        "embedclf train --budget 10 (Lite0 and Lite2 given)",
        run["seconds"],
        run["test_accuracy"],
        estimate=run["estimate"],
        chosen=", ".join(
            f"{k}={v}" for k, v in chosen.items() if k != "model" and v not in (0, 0.0)
        ),
    )


def _l2_blocks(*blocks):
    from sklearn.preprocessing import normalize

    return np.hstack([normalize(b) for b in blocks])


def _smallest_recall(pred, y, small):
    return {c: _acc(pred[y == c], y[y == c]) for c in small if (y == c).any()}


def run(ctx: Context) -> dict:
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    from embedclf.embedding._augment import STANDARD_DISTORTIONS, Distortions
    from embedclf.workflow._train._select import select_head

    d = {}
    with Timer() as t_embed:
        for name in ("train", "val", "test"):
            d[name] = _vectors(ctx, ctx.model, name)
    (X_tr, y_tr, _), (X_va, y_va, _), (X_te, y_te, _) = d["train"], d["val"], d["test"]
    has_lite2 = LITE2.is_dir() and not ctx.quick
    if has_lite2:
        L2 = {name: _vectors(ctx, LITE2, name)[0] for name in ("train", "val", "test")}
    rows = []

    def add(group, name, seconds, test_acc, *, estimate=None, chosen="", **extra):
        rows.append(
            {
                "group": group,
                "setting": name,
                "seconds": seconds,
                "estimate": estimate,
                "test_accuracy": test_acc,
                "chosen": chosen,
                **extra,
            }
        )
        # rows so far, for a run that is stopped before its report
        (ctx.workdir / "bench_accuracy_rows.json").write_text(
            json.dumps(rows, indent=1, default=str)
        )
        print(f"  {group}: {name}: test {test_acc} ({seconds:.0f} s)", flush=True)

    def selected(group, name, Xtr, ytr, Xva, yva, Xte, **kwargs):
        with Timer() as t:
            head, res = select_head(
                Xtr, ytr, X_val=Xva, y_val=yva, n_jobs=N_JOBS, **kwargs
            )
        chosen = f"C={res['best_C']:g}, {'std' if res['standardize'] else 'raw'}"
        if res.get("validation_near_duplicates"):
            other = res.get("estimate_unlike_training")
            chosen += (
                f"; {res['validation_near_duplicates']}/{res['n_validation']} val "
                "photos near-duplicates of train"
                + (f", {100 * other:.1f} % on the others" if other is not None else "")
            )
        add(
            group,
            name,
            t.seconds,
            _acc(head.predict(Xte), y_te),
            estimate=res["estimate"],
            chosen=f"{res['rule']}: {chosen}",
        )
        return head, res

    # --- the baseline: plain scikit-learn on the same vectors -------------
    with Timer() as t, threadpool_limits(1, "blas"):
        probe = LogisticRegression(C=1, max_iter=3000).fit(X_tr, y_tr)
    add(
        "baseline",
        "LogisticRegression(C=1, max_iter=3000), train only",
        t.seconds,
        _acc(probe.predict(X_te), y_te),
        estimate=_acc(probe.predict(X_va), y_va),
        chosen="fixed",
    )

    # --- default embedclf train ------------------------------------------
    head0, res0 = selected(
        "default", "embedclf train (default selection)", X_tr, y_tr, X_va, y_va, X_te
    )

    # --- lever: selection rule --------------------------------------------
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    from embedclf import SoftmaxClassifier

    with Timer() as t:
        old = GridSearchCV(
            SoftmaxClassifier(standardize=True, tol=1e-3),
            {"C": [0.01, 0.1, 1]},
            cv=StratifiedKFold(3, shuffle=True, random_state=0),
        ).fit(X_tr, y_tr)
        old_head = SoftmaxClassifier(standardize=True, C=old.best_params_["C"])
        old_head.fit(X_tr, y_tr)
    add(
        "rule",
        "0.1.0: ungrouped 3-fold CV over [0.01, 0.1, 1], standardised",
        t.seconds,
        _acc(old_head.predict(X_te), y_te),
        estimate=old.best_score_,
        chosen=f"C={old.best_params_['C']:g}",
    )
    selected(
        "rule",
        "near-duplicate-grouped CV (no validation part)",
        X_tr,
        y_tr,
        None,
        None,
        X_te,
    )
    # retrain.py's hash split of train/ alone: its validation part shares
    # sessions (near-duplicates) with its training part
    from embedclf.model_selection import retrain_split

    part = np.asarray(retrain_split(list(ctx.split("train")[0]), 10, 0))
    hs_tr, hs_va = part == "training", part == "validation"
    if hs_va.any() and len(np.unique(y_tr[hs_va])) > 1:
        selected(
            "rule",
            "hash split of train/, selected on its 10 % validation part",
            X_tr[hs_tr],
            y_tr[hs_tr],
            X_tr[hs_va],
            y_tr[hs_va],
            X_te,
        )
    rows.append(dict(rows[1], group="rule", setting="validation part (default)"))

    # --- lever: scaling ---------------------------------------------------
    # Each scaling alone: its best decade in the default's grid (validation
    # cross-entropy), then select_head on the half-decades around it, as the
    # default search does for the scaling it keeps.
    for label, value in (("none", False), ("standardised", True)):
        mine = [r for r in res0["grid"] if r["standardize"] == value]
        C = min(mine, key=lambda r: r["validation_cross_entropy"])["C"]
        selected(
            "scaling",
            f"scaling {label} only",
            X_tr,
            y_tr,
            X_va,
            y_va,
            X_te,
            standardize=value,
            C_grid=[C / 10**0.5, C, C * 10**0.5],
        )
    rows.append(dict(rows[1], group="scaling", setting="auto: both tried (default)"))

    # --- lever: backbones -------------------------------------------------
    if has_lite2:
        selected(
            "backbones", "Lite2 alone", L2["train"], y_tr, L2["val"], y_va, L2["test"]
        )
        cat = {k: np.hstack([d[k][0], L2[k]]) for k in ("train", "val", "test")}
        _, res_raw = selected(
            "backbones",
            "Lite0 + Lite2 concatenated, raw",
            cat["train"],
            y_tr,
            cat["val"],
            y_va,
            cat["test"],
        )
        l2cat = {k: _l2_blocks(d[k][0], L2[k]) for k in ("train", "val", "test")}
        _, res_l2 = selected(
            "backbones",
            "Lite0 + Lite2, each L2-normalised",
            l2cat["train"],
            y_tr,
            l2cat["val"],
            y_va,
            l2cat["test"],
        )

    # --- lever: training views and test-time views -----------------------
    k = 1 if ctx.quick else 2
    # the library's defaults for --balance views and --budget are these
    settings = Distortions(**STANDARD_DISTORTIONS)
    paths_tr, _ = ctx.split("train")
    paths_te, _ = ctx.split("test")
    with Timer() as t_views:
        views, source = _views(ctx, paths_tr, settings, k)
    X_aug = np.vstack([X_tr, views])
    y_aug = np.concatenate([y_tr, y_tr[source]])
    groups = np.concatenate([np.arange(len(y_tr)), source])
    head_aug, _ = selected(
        "views",
        f"+ {k} distorted training views per image",
        X_aug,
        y_aug,
        X_va,
        y_va,
        X_te,
        groups=groups,
    )
    rows[-1]["seconds"] += t_views.seconds
    rows[-1]["views_s"] = t_views.seconds
    with Timer() as t_tta:
        tviews, tsource = _views(ctx, paths_te, settings, k)
    for name, head in (("default head", head0), ("views head", head_aug)):
        with Timer() as t:
            proba = head.predict_proba(X_te)
            for v in range(k):
                proba = proba + head.predict_proba(tviews[v::k])
        pred = head.classes_[np.argmax(proba, axis=1)]
        add(
            "views",
            f"{name} + test-time average over {k} distorted views",
            t_tta.seconds + t.seconds,
            _acc(pred, y_te),
            chosen="same head",
        )

    # --- both backbones + training views + test-time views ---------------
    if has_lite2:
        # raw or per-backbone L2, whichever has the lower validation
        # cross-entropy (never the test split)
        def val_loss(res):
            return min(r["validation_cross_entropy"] for r in res["grid"])

        use_l2 = val_loss(res_l2) < val_loss(res_raw)
        join = _l2_blocks if use_l2 else (lambda *b: np.hstack(b))
        with Timer() as t_v2:
            views2, _ = _views(ctx, paths_tr, settings, k, model=LITE2)
            tviews2, _ = _views(ctx, paths_te, settings, k, model=LITE2)
        both = {
            "train": join(np.vstack([X_tr, views]), np.vstack([L2["train"], views2])),
            "val": join(X_va, L2["val"]),
            "test": join(X_te, L2["test"]),
            "tta": join(tviews, tviews2),
        }
        name = f"Lite0 + Lite2 ({'each L2' if use_l2 else 'raw'}) + {k} views"
        head_b, _ = selected(
            "combined",
            name,
            both["train"],
            y_aug,
            both["val"],
            y_va,
            both["test"],
            groups=groups,
        )
        rows[-1]["seconds"] += t_v2.seconds + t_views.seconds
        with Timer() as t:
            proba = head_b.predict_proba(both["test"])
            for v in range(k):
                proba = proba + head_b.predict_proba(both["tta"][v::k])
        add(
            "combined",
            f"{name} + test-time average over {k} views",
            rows[-1]["seconds"] + t_tta.seconds + t.seconds,
            _acc(head_b.classes_[np.argmax(proba, axis=1)], y_te),
            chosen="same head",
        )

    # --- lever: class balancing ------------------------------------------
    classes, counts = np.unique(y_tr, return_counts=True)
    small = list(classes[np.argsort(counts, kind="stable")[:5]])
    balance = []

    def balance_row(name, head, seconds):
        pred = head.predict(X_te).astype(str)
        recalls = [
            _acc(pred[y_te == c], y_te[y_te == c]) for c in classes if (y_te == c).any()
        ]
        balance.append(
            {
                "setting": name,
                "seconds": seconds,
                "test_accuracy": _acc(pred, y_te),
                "mean_recall": float(np.mean(recalls)),
                "smallest": _smallest_recall(pred, y_te, small),
            }
        )

    balance_row("none (default)", head0, rows[1]["seconds"])
    head_bw, _ = selected(
        "balance",
        "class_weight='balanced'",
        X_tr,
        y_tr,
        X_va,
        y_va,
        X_te,
        class_weight="balanced",
    )
    balance_row("class_weight='balanced'", head_bw, rows[-1]["seconds"])
    from embedclf import ImageEmbedder
    from embedclf.workflow._train._balance import add_balance_views

    with Timer() as t_bal:
        Xb, yb, gb, n_extra, _ = add_balance_views(
            X_tr,
            y_tr,
            None,
            list(paths_tr),
            embedder=ImageEmbedder(
                model=ctx.model,
                cache=ctx.shared_cache,
                batch_size=ctx.batch_size,
                progress=False,
                runtime=RUNTIME,
            ),
            settings=Distortions(),
            copies=0,
        )
    head_bv, _ = selected(
        "balance",
        f"--balance views (+{n_extra} views)",
        Xb,
        yb,
        X_va,
        y_va,
        X_te,
        groups=gb,
    )
    rows[-1]["seconds"] += t_bal.seconds
    balance_row(f"--balance views (+{n_extra} views)", head_bv, rows[-1]["seconds"])

    # --- the budgeted search (issue 26) on the same vectors ----------------
    if has_lite2:
        _budget_row(ctx, add)

    # --- near-duplicate threshold of the grouped CV -----------------------
    thresholds = _threshold_table(X_tr, y_tr, quick=ctx.quick)

    return report(
        ctx,
        dict(
            rows=rows,
            balance=balance,
            small=small,
            counts=counts,
            classes=classes,
            thresholds=thresholds,
            res0=res0,
            y_tr=y_tr,
            y_va=y_va,
            y_te=y_te,
            embed_s=t_embed.seconds,
        ),
    )


def _threshold_table(X, y, *, quick):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from threadpoolctl import threadpool_limits

    from embedclf.model_selection import NearDuplicateKFold
    from embedclf.model_selection._group_split import class_groups

    out = []
    levels = [None, 0.9, 0.85] if quick else [None, 0.95, 0.9, 0.875, 0.85, 0.8]
    for thr in levels:
        with Timer() as t, threadpool_limits(1, "blas"):
            if thr is None:
                cv, grouped = StratifiedKFold(3, shuffle=True, random_state=0), 0.0
            else:
                cv = NearDuplicateKFold(3, threshold=thr)
                g = class_groups(X, y, threshold=thr, min_groups=3)
                grouped = float(np.mean(np.bincount(g)[g] > 1))
            score = cross_val_score(
                LogisticRegression(C=1, max_iter=3000, tol=1e-3), X, y, cv=cv
            ).mean()
        out.append(
            {
                "threshold": thr,
                "grouped": grouped,
                "cv_accuracy": float(score),
                "seconds": t.seconds,
            }
        )
    return out
