"""``embedclf train``: arguments and handler (see :mod:`embedclf.cli`)."""

from __future__ import annotations

import argparse
import time

__all__ = ["format_train_parser", "run_train"]

DEFAULT_C_GRID = "0.01,0.1,1"


def _percentage(text: str) -> float:
    value = float(text)
    if not 0 <= value < 100:
        raise argparse.ArgumentTypeError(f"must be in [0, 100); got {text!r}")
    return value


def _c_grid(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(
            f"must be positive numbers separated by commas; got {text!r}"
        )
    return sorted(set(values))


def format_train_parser(parser):
    from embedclf._cli_common import _add_backbone_args, _add_image_size

    parser.add_argument(
        "image_dir",
        metavar="IMAGE_DIR",
        help=(
            "Training images, one subfolder per class. If it holds only train/ "
            "and val/ and/or test/ subfolders (official splits, e.g. the Grocery "
            "Store dataset), those are used as the three parts."
        ),
    )
    parser.add_argument(
        "--output",
        "-o",
        required=True,
        metavar="MODEL_DIR",
        help="Directory to write the trained model and its report to. Required.",
    )
    parser.add_argument(
        "--val-dir",
        default=None,
        metavar="DIR",
        help=(
            "Validation images (one subfolder per class); then IMAGE_DIR is all "
            "training data. Default: split off from IMAGE_DIR."
        ),
    )
    parser.add_argument(
        "--test-dir",
        default=None,
        metavar="DIR",
        help=(
            "Testing images (one subfolder per class) for the final test "
            "accuracy. Default: split off from IMAGE_DIR."
        ),
    )
    for flag, default, what in [
        ("--validation-percentage", 10, "validation"),
        ("--testing-percentage", 10, "testing"),
    ]:
        parser.add_argument(
            flag,
            flag.replace("-", "_").replace("__", "--"),
            type=_percentage,
            default=default,
            metavar="PCT",
            help=(
                f"Percentage of IMAGE_DIR put in the {what} part by retrain.py's "
                "stable hash of file names (ignored with --val-dir/--test-dir "
                f"or official subfolders). Default: {default}."
            ),
        )
    parser.add_argument(
        "--classifier",
        choices=["softmax", "svm"],
        default="softmax",
        help=(
            "The head: 'softmax' (multinomial logistic regression, as retrain.py, "
            "exportable) or 'svm' (SVC with calibrated probabilities). "
            "Default: softmax."
        ),
    )
    parser.add_argument(
        "--C",
        dest="C_grid",
        type=_c_grid,
        default=_c_grid(DEFAULT_C_GRID),
        metavar="VALUES",
        help=(
            "Inverse regularisation strengths to try, comma-separated; the best "
            "by cross-validation on the training part is kept, and a single "
            f"value skips the search. Default: {DEFAULT_C_GRID}."
        ),
    )
    parser.add_argument(
        "--class-weight",
        choices=["balanced", "none"],
        default="none",
        help="'balanced' weights classes inversely to their size. Default: none.",
    )
    parser.add_argument(
        "--unknown",
        default="off",
        metavar="auto|THRESHOLD|off",
        help=(
            "Answer 'unknown' for images unlike every class: 'auto' tunes a "
            "probability and an embedding-distance threshold by "
            "cross-validation, a number in [0, 1] is the lowest accepted top "
            "probability, 'off' always answers a class. Default: off."
        ),
    )
    dist = parser.add_argument_group(
        "distortions",
        "retrain.py's image distortions, applied to training images only. Each\n"
        "training image gets --augment-copies distorted views, embedded once and\n"
        "kept in the cache, so a second run costs no backbone time.",
    )
    for flag, help_text in [
        ("--random-crop", "Percentage of margin to randomly crop off. Default: 0."),
        ("--random-scale", "Percentage of random enlargement. Default: 0."),
        (
            "--random-brightness",
            "Percentage of random brightness change (up or down). Default: 0.",
        ),
    ]:
        dist.add_argument(
            flag,
            flag.replace("-", "_").replace("__", "--"),
            type=float,
            default=0.0,
            metavar="PCT",
            help=help_text,
        )
    dist.add_argument(
        "--flip-left-right",
        "--flip_left_right",
        action="store_true",
        help="Mirror half of the views horizontally. Default: off.",
    )
    dist.add_argument(
        "--augment-copies",
        type=int,
        default=None,
        metavar="K",
        help=(
            "Distorted views per training image. Default: 4 when a distortion "
            "is set, else 0."
        ),
    )
    parser.add_argument(
        "--summaries-dir",
        default=None,
        metavar="DIR",
        help=(
            "Write TensorBoard files here: train/validation accuracy and "
            "cross-entropy over the C grid, and the embeddings for the "
            "Embedding Projector (tensorboard --logdir DIR). Default: none."
        ),
    )
    parser.add_argument(
        "--n-jobs",
        type=int,
        default=None,
        metavar="N",
        help="Parallel jobs for cross-validation. Default: 1.",
    )
    _add_backbone_args(parser)
    _add_image_size(parser)
    parser.set_defaults(handler=run_train)


def _print(*args):
    print(*args, flush=True)


def _distortions(args):
    from embedclf._augment import Distortions

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


def run_train(args) -> int:
    import numpy as np

    from embedclf._backbones import resolve_backbone
    from embedclf._cli_common import _embedder, report_failures
    from embedclf._images import PREPROCESSING
    from embedclf._model_dir import save_model_dir
    from embedclf._report import write_report
    from embedclf._train import collect_images, parse_unknown

    t0 = time.perf_counter()
    unknown = parse_unknown(args.unknown)
    settings, copies = _distortions(args)
    spec = resolve_backbone(args.model)
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
    embedder = _embedder(args, spec.handle, image_size=image_size)
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
        from embedclf._augment import embed_views

        t = time.perf_counter()
        views, source, n_views_computed = embed_views(
            paths[tr],
            model=spec.handle,
            settings=settings,
            copies=copies,
            cache=args.cache,
            image_size=image_size,
            batch_size=args.batch_size,
            progress=embedder.progress is True
            or (embedder.progress == "auto" and len(tr) * copies >= 256),
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
            f"Open set: unknown below top probability {head.probability_threshold_}"
            + (
                f" or beyond distance {head.distance_threshold_:.4g}"
                if head.distance_threshold_ is not None
                else ""
            )
        )
    t_fit = time.perf_counter() - t
    val_acc, test_acc = (
        _accuracy(head, X[va], labels[va]),
        _accuracy(head, X[te], labels[te]),
    )
    if val_acc is not None:
        _print(f"Validation accuracy = {val_acc:.2%} (N={len(va)})")
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
        "backbone": {
            "handle": spec.handle,
            "identity": spec.identity,
            "kind": spec.kind,
        },
        "image_size": image_size,
        "preprocessing": PREPROCESSING,
        "embedding_dim": int(X.shape[1]),
        "classifier": {
            "type": args.classifier,
            "C": tuning["best_C"],
            "class_weight": args.class_weight,
            "C_grid": list(args.C_grid),
        },
        "unknown": _unknown_entry(head, unknown),
        "augmentation": {
            "copies": copies,
            "random_crop": settings.random_crop,
            "random_scale": settings.random_scale,
            "random_brightness": settings.random_brightness,
            "flip_left_right": settings.flip_left_right,
        },
        "data": {
            "image_dir": str(args.image_dir),
            "layout": data.layout,
            "sources": data.sources,
            "unreadable": sorted(failed),
        },
        "metrics": metrics,
        "timings": {"embed_s": t_embed, "fit_s": t_fit},
    }
    out = save_model_dir(args.output, head, manifest)
    eval_idx, eval_name = (te, "testing") if len(te) else (va, "validation")
    if len(eval_idx):
        eval_acc = _accuracy(head, X[eval_idx], labels[eval_idx])
        write_report(
            out / "report",
            paths[eval_idx],
            labels[eval_idx],
            head.predict(X[eval_idx]).astype(str),
            head.predict_proba(X[eval_idx]),
            [str(c) for c in head.classes_],
            title=f"{eval_name} part: accuracy {eval_acc:.4f}",
        )
    if args.summaries_dir:
        from embedclf._summaries import write_projector, write_scalars

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
        _print(f"Final test accuracy = {test_acc:.2%} (N={len(te)})")
    return 0


def _fit_head(args, X_fit, y_fit, groups, unknown):
    """Tune C, fit the head (and the open-set rule), through the fit memo."""
    from embedclf._fit_memo import load_fit, memo_dir_for, memo_key, save_fit
    from embedclf._train import tune_head, wrap_open_set

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
    from embedclf._train import cross_entropy_score

    val = va if len(va) else tr
    return {
        "C": tuning["best_C"],
        "train_accuracy": _accuracy(head, X[tr], labels[tr]),
        "validation_accuracy": _accuracy(head, X[val], labels[val]),
        "train_cross_entropy": cross_entropy_score(head, X[tr], labels[tr]),
        "validation_cross_entropy": cross_entropy_score(head, X[val], labels[val]),
    }
