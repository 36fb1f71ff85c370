"""``embedclf train``: the handler (arguments in ``_train_args.py``; the head's
fit in ``_train_fit.py``, the unknown answer's inputs and summary in
``_train_unknown.py``)."""

from __future__ import annotations

import time

from embedclf.cli._train_fit import _fit_head, _mlp_summary
from embedclf.cli._train_unknown import _background, _unknown_entry, _unknown_text

__all__ = ["run_train"]


def _print(*args):
    print(*args, flush=True)


def _distortions(args):
    from embedclf.embedding._augment import Distortions

    settings = Distortions(
        args.random_crop,
        args.random_scale,
        args.random_brightness,
        args.flip_left_right,
    )
    copies = args.augment_copies
    if copies is None:
        copies = 4 if settings.active else 0
    if copies < 0:
        raise ValueError(f"--augment-copies must be 0 or more; got {copies}.")
    if copies and not settings.active:
        raise ValueError(
            f"--augment-copies {copies} needs at least one distortion "
            "(--random-crop, --random-scale, --random-brightness or "
            "--flip-left-right); undistorted copies would only repeat the images."
        )
    return settings, copies


def _accuracy(head, X, y):
    import numpy as np

    if len(y) == 0:
        return None
    return float(np.mean(head.predict(X).astype(str) == y))


def _predict_with_views(head, X, paths, embedder, test_views, augmentation):
    """(labels, probabilities) of the rows of ``X``, averaged over test views."""
    import numpy as np

    from embedclf.workflow._views import predict_proba_views

    if len(X) == 0:
        return np.array([], dtype=str), np.zeros((0, len(head.classes_)))
    if test_views == "none":
        return head.predict(X).astype(str), head.predict_proba(X)
    proba, _ = predict_proba_views(
        head, X, paths, embedder, test_views=test_views, augmentation=augmentation
    )
    return np.asarray(head.classes_)[proba.argmax(axis=1)].astype(str), proba


def _backbone_entry(model):
    """The manifest's ``backbone``: one dict, or a list for several backbones."""
    from embedclf.embedding._backbones import resolve_backbone
    from embedclf.embedding._multi import backbone_handles

    entries = []
    for handle in backbone_handles(model):
        spec = resolve_backbone(handle)
        entries.append(
            {"handle": spec.handle, "identity": spec.identity, "kind": spec.kind}
        )
    return entries[0] if isinstance(model, str) else entries


def run_train(args) -> int:
    import numpy as np

    from embedclf.cli._common import DEFAULT_MODEL, _embedder, _models, report_failures
    from embedclf.cli._train_args import DEFAULT_C_GRID, _c_grid
    from embedclf.embedding._images import preprocessing_tag
    from embedclf.workflow._model_dir import (
        check_output_dir,
        manifest_c_grid,
        save_model_dir,
    )
    from embedclf.workflow._report import write_report
    from embedclf.workflow._report_open_set import format_open_set, open_set_inputs
    from embedclf.workflow._train import collect_images, parse_unknown
    from embedclf.workflow._views import view_plan

    t0 = time.perf_counter()
    check_output_dir(args.output, force=args.force)  # before any slow step
    search = None
    if getattr(args, "budget", None) is not None:  # --budget: search, set args
        from embedclf.cli._train_budget import budget_search

        search = budget_search(args, _print)
    if args.classifier == "mlp" and args.C_grid != _c_grid(DEFAULT_C_GRID):
        raise ValueError(
            "--C does not apply to --classifier mlp: its L2 penalty is fixed and "
            "early stopping picks how long it trains. Drop --C, or use "
            "--classifier softmax or svm."
        )
    unknown = parse_unknown(args.unknown)
    settings, copies = _distortions(args)
    model = _models(args, DEFAULT_MODEL)
    backbone = _backbone_entry(model)  # checks every handle before any work
    test_views = args.test_views or "none"
    augmentation = {
        "copies": copies,
        "random_crop": settings.random_crop,
        "random_scale": settings.random_scale,
        "random_brightness": settings.random_brightness,
        "flip_left_right": settings.flip_left_right,
    }
    view_plan(test_views, augmentation)  # refuses 'train' without distortions
    if test_views != "none" and unknown != "off":
        raise ValueError(
            "--test-views averages probabilities, which the --unknown rule does "
            "not use; pass one of them, not both."
        )
    data = collect_images(
        args.image_dir,
        val_dir=args.val_dir,
        test_dir=args.test_dir,
        validation_percentage=args.validation_percentage,
        testing_percentage=args.testing_percentage,
    )
    counts = {
        s: int((data.split == s).sum()) for s in ("training", "validation", "testing")
    }
    n_classes = len(np.unique(data.labels[data.split == "training"]))
    _print(
        f"Found {counts['training']} training, {counts['validation']} validation "
        f"and {counts['testing']} testing images in {n_classes} classes "
        f"(layout: {data.layout})."
    )
    image_size = [args.image_size] * 2 if args.image_size else None
    prep = {
        "image_size": image_size,
        "resample": args.resample,
        "crop_fraction": args.crop_fraction,
        "normalize_each": args.normalize_each,
    }
    embedder = _embedder(args, model, **prep)
    t = time.perf_counter()
    X = embedder.transform(data.paths)
    t_embed = time.perf_counter() - t
    failed = set(embedder.failed_paths_.tolist())
    report_failures(sorted(failed))
    _print(
        f"Embedded {len(data.paths)} images in {t_embed:.1f} s "
        f"({embedder.n_computed_} by the backbone, {embedder.n_cached_} from the "
        f"cache{f', {len(failed)} unreadable and left out' if failed else ''})."
    )
    keep = np.array([p not in failed for p in data.paths], dtype=bool)
    X, paths, labels, split = (
        X[keep],
        data.paths[keep],
        data.labels[keep],
        data.split[keep],
    )
    from embedclf.workflow._audit_duplicates import leak_hint

    if hint := leak_hint(X, split, args.image_dir):
        _print(hint)
    tr, va, te = (
        np.flatnonzero(split == s) for s in ("training", "validation", "testing")
    )
    X_fit, y_fit, groups = X[tr], labels[tr], None
    n_views_computed = 0
    if copies:
        from embedclf.embedding._augment import embed_views_like

        t = time.perf_counter()
        views, source, n_views_computed = embed_views_like(
            embedder, paths[tr], settings=settings, copies=copies
        )
        X_fit = np.vstack([X_fit, views])
        y_fit = np.concatenate([y_fit, labels[tr][source]])
        groups = np.concatenate([np.arange(len(tr)), source])
        _print(
            f"Added {len(views)} distorted views ({copies} per training image) in "
            f"{time.perf_counter() - t:.1f} s ({n_views_computed} by the backbone)."
        )
    if args.balance == "views":
        from embedclf.workflow._balance import add_balance_views

        t = time.perf_counter()
        X_fit, y_fit, groups, n_extra, n_bal_computed = add_balance_views(
            X_fit,
            y_fit,
            groups,
            paths[tr],
            embedder=embedder,
            settings=settings,
            copies=copies,
        )
        n_views_computed += n_bal_computed
        _print(
            f"Added {n_extra} distorted views to the classes below the median "
            f"size (--balance views) in {time.perf_counter() - t:.1f} s "
            f"({n_bal_computed} by the backbone)."
        )
    t = time.perf_counter()
    X_bg = _background(args, embedder, unknown)
    X_val, y_val = X[va], labels[va]
    if data.layout == "hash-split" and len(va):
        from embedclf.workflow._select import merge_validation

        X_fit, y_fit, groups, X_val, y_val = merge_validation(
            X_fit, y_fit, groups, X_val, y_val
        )
        _print(
            "Hash split: its validation images can be near-duplicates of "
            "training ones (shots of one session), so C is chosen by grouped "
            "cross-validation on training + validation instead."
        )
    head, tuning = _fit_head(args, X_fit, y_fit, groups, unknown, X_val, y_val, X_bg)
    if args.classifier == "mlp":
        _print(_mlp_summary(head))
    else:
        from embedclf.cli._train_select import print_selection

        print_selection(_print, tuning)
    if unknown != "off":
        _print(_unknown_text(head))
    t_fit = time.perf_counter() - t
    # The validation accuracy is that of the chosen settings fitted on the
    # training part alone (the head itself may be refitted on training +
    # validation, which would make its own validation score meaningless).
    t = time.perf_counter()
    predicted = {
        name: _predict_with_views(
            head, X[idx], paths[idx], embedder, test_views, augmentation
        )
        for name, idx in (("validation", va), ("testing", te))
    }
    t_views = time.perf_counter() - t
    val_acc, test_acc = (
        tuning.get("validation_accuracy"),
        float(np.mean(predicted["testing"][0] == labels[te])) if len(te) else None,
    )
    views_text = "" if test_views == "none" else f", test views: {test_views}"
    if val_acc is not None:
        _print(f"Validation accuracy = {val_acc:.2%} (N={len(va)}{views_text})")
    metrics = {
        "selection_rule": tuning.get("rule"),
        "estimate": tuning.get("estimate"),
        "cv_accuracy": tuning["cv_accuracy"],
        "validation_accuracy": val_acc,
        "test_accuracy": test_acc,
        "n_training": int(len(tr)),
        "n_validation": int(len(va)),
        "n_testing": int(len(te)),
        "n_augmented_views": int(len(X_fit) - len(tr)),
        "c_grid": manifest_c_grid(tuning["grid"], tuning.get("rule")),
    }
    manifest = {
        "backbone": backbone,
        "image_size": image_size,
        "preprocessing": preprocessing_tag(args.resample, args.crop_fraction),
        "resample": args.resample,
        "crop_fraction": args.crop_fraction,
        "normalize_each": args.normalize_each,
        "test_views": test_views,
        "embedding_dim": int(X.shape[1]),
        "classifier": {
            "type": args.classifier,
            "C": tuning["best_C"],
            "standardize": tuning.get("standardize"),
            "class_weight": args.class_weight,
            "balance": args.balance,
            "C_grid": args.C_grid
            if isinstance(args.C_grid, str)
            else list(args.C_grid),
        },
        "unknown": _unknown_entry(head, unknown),
        "augmentation": augmentation,
        "data": {
            "image_dir": str(args.image_dir),
            "layout": data.layout,
            "sources": data.sources,
            "unreadable": sorted(failed),
        },
        "cache": args.cache,
        "metrics": metrics,
        "timings": {"embed_s": t_embed, "fit_s": t_fit, "test_views_s": t_views},
    }
    if search is not None:  # --budget: the search's table, choice and estimate
        from embedclf.cli._train_budget import record_search

        record_search(manifest, search)
    out = save_model_dir(args.output, head, manifest, force=args.force)
    eval_idx, eval_name = (te, "testing") if len(te) else (va, "validation")
    if len(eval_idx):
        y_pred, proba = predicted[eval_name]
        eval_acc = float(np.mean(y_pred == labels[eval_idx]))
        report = write_report(
            out / "report",
            paths[eval_idx],
            labels[eval_idx],
            y_pred,
            proba,
            [str(c) for c in head.classes_],
            title=f"{eval_name} part: accuracy {eval_acc:.4f}",
            open_set=open_set_inputs(head, X[eval_idx]),
        )
        if "open_set" in report:
            _print(format_open_set(report["open_set"]))
    from embedclf.workflow._curves import CURVES_FILE, plot_training_curves

    plot_training_curves(
        out / "report" / CURVES_FILE,
        head,
        tuning["grid"],
        best_C=tuning["best_C"],
        rule=tuning.get("rule"),
    )
    if search is not None:  # --budget: report/search.tsv
        from embedclf.workflow._search._table import write_search_table

        write_search_table(out / "report", search)
    if args.summaries_dir:
        from embedclf.workflow._curves import epoch_curves
        from embedclf.workflow._summaries import (
            write_epoch_scalars,
            write_projector,
            write_scalars,
        )

        if epoch_curves(head) is not None:
            write_epoch_scalars(args.summaries_dir, epoch_curves(head))
        else:
            grid = [
                row
                for row in tuning["grid"]
                if row.get("standardize", tuning.get("standardize"))
                == tuning.get("standardize")
            ] or [_single_c_row(head, tuning, X, labels, tr, va)]
            write_scalars(args.summaries_dir, grid)
        write_projector(args.summaries_dir, X, labels, paths, split)
        _print(
            f"TensorBoard files written to {args.summaries_dir} "
            f"(tensorboard --logdir {args.summaries_dir})."
        )
    _print(
        f"Model written to {out} (manifest.json and the head and labels it names"
        f"{', report/' if len(eval_idx) else ''}) in "
        f"{time.perf_counter() - t0:.1f} s."
    )
    if test_acc is not None:
        _print(f"Final test accuracy = {test_acc:.2%} (N={len(te)}{views_text})")
    if search is not None and search.estimate is not None:
        _print(f"Estimate after the search (cross-fitted) = {search.estimate:.2%}")
    return 0


def _single_c_row(head, tuning, X, labels, tr, va):
    """Summary scalars without a grid: training part vs validation part."""
    from embedclf.workflow._train import cross_entropy_score

    val = va if len(va) else tr
    return {
        "C": tuning["best_C"],
        "train_accuracy": _accuracy(head, X[tr], labels[tr]),
        "validation_accuracy": _accuracy(head, X[val], labels[val]),
        "train_cross_entropy": cross_entropy_score(head, X[tr], labels[tr]),
        "validation_cross_entropy": cross_entropy_score(head, X[val], labels[val]),
    }
