"""``embedclf audit``: label issues, duplicates and leaks, image problems,
outliers, balance, and what to do next."""

from __future__ import annotations

import os
import time

from embedclf.cli._common import (
    _add_backbone_args,
    _add_image_size,
    _progress,
    add_runtime_arguments,
    error,
    runtime_settings,
)

__all__ = ["format_audit_parser", "run_audit"]


def format_audit_parser(parser):
    from embedclf.workflow._audit._duplicates import DUPLICATE_THRESHOLD

    parser.add_argument(
        "image_dir",
        metavar="IMAGE_DIR",
        help=(
            "Folder of class subfolders; or a folder holding train/ and val/ "
            "and/or test/ (official splits), as for `embedclf train`."
        ),
    )
    parser.add_argument(
        "--val-dir",
        metavar="DIR",
        default=None,
        help="Validation images (one subfolder per class). Default: none.",
    )
    parser.add_argument(
        "--test-dir",
        metavar="DIR",
        default=None,
        help="Testing images (one subfolder per class). Default: none.",
    )
    parser.add_argument(
        "--output",
        metavar="DIR",
        required=True,
        help=(
            "Folder for audit.html, issues.csv, audit.json, exclude.txt, "
            "label_issues.txt, thumbs/ and .memo/ (what a second audit reuses). "
            "Required."
        ),
    )
    parser.add_argument(
        "--duplicate-threshold",
        type=float,
        default=DUPLICATE_THRESHOLD,
        metavar="COS",
        help=(
            "Cosine similarity of embeddings from which two images count as "
            f"near-duplicates. Default: {DUPLICATE_THRESHOLD}."
        ),
    )
    parser.add_argument(
        "--no-image-checks",
        dest="image_checks",
        action="store_false",
        help=(
            "Skip CleanVision's image checks (blurry, dark, light, low "
            "information, odd size or shape, grayscale) and the perceptual-hash "
            "duplicates. Default: run them (their results are cached with "
            "--cache)."
        ),
    )
    parser.add_argument(
        "--folds",
        type=int,
        default=5,
        metavar="K",
        help="Folds of the out-of-fold probabilities. Default: 5.",
    )
    _add_backbone_args(parser)
    _add_image_size(parser)
    add_runtime_arguments(parser)
    parser.set_defaults(handler=run_audit)


def _pct(value) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def run_audit(args) -> int:
    from embedclf.cli._common import DEFAULT_MODEL, _models, report_failures
    from embedclf.workflow._audit._duplicates import audit_command
    from embedclf.workflow._audit._run import audit_images, write_audit
    from embedclf.workflow._train import collect_images

    if args.folds < 2:
        error(f"--folds must be 2 or more; got {args.folds}.")
        return 2
    if os.path.exists(args.output) and not os.path.isdir(args.output):
        error(f"--output {args.output!r} is a file; pass a folder.")
        return 1
    t0 = time.perf_counter()
    data = collect_images(
        args.image_dir,
        val_dir=args.val_dir,
        test_dir=args.test_dir,
        validation_percentage=0,
        testing_percentage=0,
    )
    image_size = [args.image_size] * 2 if args.image_size else None
    result = audit_images(
        data.paths,
        data.labels,
        data.split,
        # As `train`: the default backbone when --model is not given.
        model=_models(args, DEFAULT_MODEL),
        cache=args.cache,
        image_size=image_size,
        batch_size=args.batch_size,
        progress=_progress(args),
        duplicate_threshold=args.duplicate_threshold,
        n_folds=args.folds,
        image_checks=args.image_checks,
        # A second audit of the same data into the same folder reads the
        # out-of-fold probabilities and neighbour searches back.
        memory=os.path.join(args.output, ".memo"),
        **runtime_settings(args),
    )
    report_failures(result.summary["unreadable"])
    train = audit_command(
        args.image_dir,
        val_dir=args.val_dir,
        test_dir=args.test_dir,
        cache=args.cache,
        model=args.model,
        output="MODEL_DIR",
    ).replace("embedclf audit", "embedclf train", 1)
    files = write_audit(result, args.output, train_command=train)
    _print_summary(args, result, time.perf_counter() - t0)
    steps = result.summary.get("next_steps", [])
    if steps:
        print("What to do next:")
    shown = set()
    for st in steps:
        print(f"  {st['kind'].replace('_', ' ')} ({st['count']}): {st['advice']}")
        if st["command"] and st["command"] not in shown:
            print(f"    {st['command']}")
            shown.add(st["command"])
    print(f"Written: {files['html']} ({files['csv'].name}, {files['json'].name}).")
    return 0


def _print_summary(args, result, seconds) -> None:
    from embedclf.workflow._audit._images import IMAGE_ISSUES

    s = result.summary
    print(
        f"Audited {s['n_images']} images in {s['n_classes']} classes in "
        f"{seconds:.1f} s (out-of-fold accuracy "
        f"{s['out_of_fold_accuracy']:.1%})."
    )
    print(f"  label issues: {s['n_label_issues']}")
    print(
        f"  duplicate pairs: {s['n_exact_duplicate_pairs']} exact, "
        f"{s['n_near_duplicate_pairs']} near (cosine >= "
        f"{s['duplicate_threshold']:g}"
        + (
            f" or perceptual hashes <= {s['phash_distance']} bits apart"
            if s["phash_distance"] is not None
            else ""
        )
        + f"); {s['n_cross_split_pairs']} across splits"
    )
    if s["image_checks"]:
        by = s["cross_split_pairs_by_signal"]
        if s["n_cross_split_pairs"]:
            print(
                "    across splits found by: "
                + ", ".join(f"{k} {n}" for k, n in by.items() if n)
            )
    tw = s["twins"]
    if tw and tw["n_with_twin"]:
        print(
            f"  {tw['split']} accuracy of a plain softmax head (C=1, fitted on "
            "the training images only; not the head `embedclf train` tunes) "
            f"{_pct(tw['accuracy_all'])}: "
            f"{_pct(tw['accuracy_with_twin'])} on the {tw['n_with_twin']} images "
            f"with a near-twin in training, {_pct(tw['accuracy_without_twin'])} "
            f"on the {tw['n_without_twin']} without"
        )
    if s["image_checks"]:
        n = s["n_image_issues"]
        found = ", ".join(f"{k.replace('_', ' ')} {n[k]}" for k in IMAGE_ISSUES if n[k])
        print(
            f"  image issues (CleanVision): {s['n_images_with_image_issue']} images"
            + (f" ({found})" if found else "")
        )
    print(f"  outliers: {s['n_outliers']}")
    tiny = s["balance"]["tiny_classes"]
    print(
        f"  class sizes: {s['balance']['smallest']} to {s['balance']['largest']}"
        + (f"; {len(tiny)} below {args.folds}: {', '.join(tiny)}" if tiny else "")
    )
