"""``embedclf train``: the handler (arguments in ``_cli_train_args.py``)."""

from __future__ import annotations

import time

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
    from embedclf.embedding._images import preprocessing_tag
    from embedclf.workflow._model_dir import save_model_dir
    from embedclf.workflow._report import write_report
    from embedclf.workflow._train import collect_images, parse_unknown
    from embedclf.workflow._views import view_plan

    t0 = time.perf_counter()
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
    t = time.perf_counter()
    head, tuning = _fit_head(args, X_fit, y_fit, groups, unknown)
    for row in tuning["grid"]:
        _print(
            f"  C={row['C']:<8g} train accuracy {row['train_accuracy']:.4f}  "
            f"cross-validated accuracy {row['validation_accuracy']:.4f}"
        )
    cv_text = (
        f" (cross-validated accuracy {tuning['cv_accuracy']:.4f})"
        if tuning["cv_accuracy"] is not None
        else ""
    )
    _print(f"Best C = {tuning['best_C']:g}{cv_text}.")
    if unknown != "off":
        _print(
            f"Open set: unknown below top probability {head.probability_threshold_:.4g}"
            + (
                f" or beyond distance {head.distance_threshold_:.4g}"
                if head.distance_threshold_ is not None
                else ""
            )
        )
    t_fit = time.perf_counter() - t
    t = time.perf_counter()
    predicted = {
        name: _predict_with_views(
            head, X[idx], paths[idx], embedder, test_views, augmentation
        )
        for name, idx in (("validation", va), ("testing", te))
    }
    t_views = time.perf_counter() - t
    val_acc, test_acc = (
        float(np.mean(predicted[name][0] == labels[idx])) if len(idx) else None
        for name, idx in (("validation", va), ("testing", te))
    )
    views_text = "" if test_views == "none" else f", test views: {test_views}"
    if val_acc is not None:
        _print(f"Validation accuracy = {val_acc:.2%} (N={len(va)}{views_text})")
    metrics = {
        "cv_accuracy": tuning["cv_accuracy"],
        "validation_accuracy": val_acc,
        "test_accuracy": test_acc,
        "n_training": int(len(tr)),
        "n_validation": int(len(va)),
        "n_testing": int(len(te)),
        "n_augmented_views": int(len(X_fit) - len(tr)),
        "c_grid": tuning["grid"],
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
            "class_weight": args.class_weight,
            "C_grid": list(args.C_grid),
        },
        "unknown": _unknown_entry(head, unknown),
        "augmentation": augmentation,
        "data": {
            "image_dir": str(args.image_dir),
            "layout": data.layout,
            "sources": data.sources,
            "unreadable": sorted(failed),
        },
        "metrics": metrics,
        "timings": {"embed_s": t_embed, "fit_s": t_fit, "test_views_s": t_views},
    }
    out = save_model_dir(args.output, head, manifest)
    eval_idx, eval_name = (te, "testing") if len(te) else (va, "validation")
    if len(eval_idx):
        y_pred, proba = predicted[eval_name]
        eval_acc = float(np.mean(y_pred == labels[eval_idx]))
        write_report(
            out / "report",
            paths[eval_idx],
            labels[eval_idx],
            y_pred,
            proba,
            [str(c) for c in head.classes_],
            title=f"{eval_name} part: accuracy {eval_acc:.4f}",
        )
    if args.summaries_dir:
        from embedclf.workflow._summaries import write_projector, write_scalars

        grid = tuning["grid"] or [_single_c_row(head, tuning, X, labels, tr, va)]
        write_scalars(args.summaries_dir, grid)
        write_projector(args.summaries_dir, X, labels, paths, split)
        _print(
            f"TensorBoard files written to {args.summaries_dir} "
            f"(tensorboard --logdir {args.summaries_dir})."
        )
    _print(
        f"Model written to {out} (head.skops, labels.txt, manifest.json"
        f"{', report/' if len(eval_idx) else ''}) in "
        f"{time.perf_counter() - t0:.1f} s."
    )
    if test_acc is not None:
        _print(f"Final test accuracy = {test_acc:.2%} (N={len(te)}{views_text})")
    return 0


def _fit_head(args, X_fit, y_fit, groups, unknown):
    """Tune C, fit the head (and the open-set rule), through the fit memo."""
    from embedclf.workflow._fit_memo import load_fit, memo_dir_for, memo_key, save_fit
    from embedclf.workflow._train import tune_head, wrap_open_set

    class_weight = None if args.class_weight == "none" else args.class_weight
    memo = memo_dir_for(args.cache)
    key = memo_key(
        X_fit,
        y_fit,
        groups,
        classifier=args.classifier,
        C_grid=args.C_grid,
        class_weight=class_weight,
        unknown=unknown,
    )
    hit = load_fit(memo, key)
    if hit is not None:
        _print(
            "Reusing the head fitted on exactly these vectors, labels and "
            f"settings ({memo / key}.skops)."
        )
        return hit
    grid_text = ", ".join(f"{c:g}" for c in args.C_grid)
    _print(f"Tuning C over [{grid_text}] by cross-validation on the training part ...")
    head, tuning = tune_head(
        X_fit,
        y_fit,
        classifier=args.classifier,
        C_grid=args.C_grid,
        class_weight=class_weight,
        groups=groups,
        n_jobs=args.n_jobs,
    )
    if unknown != "off":
        splits = tuning["splits"] if not (y_fit == "unknown").any() else None
        head = wrap_open_set(head, X_fit, y_fit, unknown=unknown, splits=splits)
    tuning = {k: v for k, v in tuning.items() if k != "splits"}
    save_fit(memo, key, head, tuning)
    return head, tuning


def _unknown_entry(head, unknown):
    if unknown == "off":
        return {"mode": "off", "label": None}
    return {
        "mode": "auto" if unknown == "auto" else "threshold",
        "label": head.unknown_label,
        "probability_threshold": head.probability_threshold_,
        "distance_threshold": head.distance_threshold_,
        "known_recall": head.known_recall_,
    }


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
