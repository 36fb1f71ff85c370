"""``embedclf predict``, ``evaluate`` and ``export`` (see :mod:`embedclf.cli`)."""

from __future__ import annotations

from embedclf.cli._common import (
    _add_backbone_args,
    _add_model_dir,
    _add_test_views,
    _models,
    _progress,
    error,
    report_failures,
)

__all__ = [
    "format_evaluate_parser",
    "format_export_parser",
    "format_predict_parser",
    "run_evaluate",
    "run_export",
    "run_predict",
]


# -- predict ---------------------------------------------------------------------
def format_predict_parser(parser):
    _add_model_dir(parser)
    parser.add_argument(
        "images",
        nargs="+",
        metavar="IMAGE_OR_DIR",
        help="Image files, or folders whose image files (recursively) are predicted.",
    )
    parser.add_argument(
        "--top-k",
        type=int,
        default=5,
        metavar="K",
        help="Labels shown per image, best first. Default: 5.",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="Print one JSON list of results instead of text. Default: text.",
    )
    _add_backbone_args(parser, required_default=False)
    _add_test_views(parser, default_text="the model directory's (set at training)")
    parser.set_defaults(handler=run_predict)


def _where(args) -> dict:
    """The keywords that find the backbone, the cache and the views."""
    return {
        "model": _models(args),
        "cache": args.cache,
        "test_views": args.test_views,
        "batch_size": args.batch_size,
        "progress": _progress(args),
    }


def run_predict(args) -> int:
    import json

    from embedclf.workflow._predict import predict

    if args.top_k < 1:
        error(f"--top-k must be at least 1; got {args.top_k}.")
        return 2
    results = predict(args.model_dir, args.images, top_k=args.top_k, **_where(args))
    n_failed = 0
    for r in results:
        if "error" in r:
            error(r["error"])
            n_failed += 1
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            if "error" in r:
                continue
            print(f"{r['path']}: {r['label']}")
            for item in r["top_k"]:
                print(f"  {item['label']} (score = {item['score']:.5f})")
    return 1 if n_failed else 0


# -- evaluate ----------------------------------------------------------------------
def format_evaluate_parser(parser):
    _add_model_dir(parser)
    parser.add_argument(
        "image_dir",
        metavar="IMAGE_DIR",
        help="Labelled folder with one subfolder per class (e.g. a test split).",
    )
    parser.add_argument(
        "--report-dir",
        default=None,
        metavar="DIR",
        help=(
            "Where to write the report (metrics.json, per_class.tsv, "
            "confusion_matrix.png, misclassified.html). Default: "
            "MODEL_DIR/report-<name of IMAGE_DIR>."
        ),
    )
    _add_backbone_args(parser, required_default=False)
    _add_test_views(parser, default_text="the model directory's (set at training)")
    parser.set_defaults(handler=run_evaluate)


def run_evaluate(args) -> int:
    from embedclf.workflow._predict import evaluate
    from embedclf.workflow._report import format_metrics
    from embedclf.workflow._report._open_set import format_open_set

    result = evaluate(
        args.model_dir, args.image_dir, report_dir=args.report_dir, **_where(args)
    )
    n_failed = report_failures(result.unreadable)
    print(format_metrics(result.metrics))
    if "open_set" in result.metrics:
        print(format_open_set(result.metrics["open_set"]))
    print(
        f"Accuracy on {args.image_dir}: {result.metrics['accuracy']:.4f} "
        f"({result.metrics['n_samples']} images)"
    )
    print(f"Report written to {result.report_dir}")
    return 1 if n_failed else 0


# -- export --------------------------------------------------------------------------
def format_export_parser(parser):
    _add_model_dir(parser)
    parser.add_argument(
        "--savedmodel",
        required=True,
        metavar="OUT_DIR",
        help=(
            "Directory to write the TensorFlow SavedModel to (replaced if it "
            "exists). Required."
        ),
    )
    parser.add_argument(
        "--model",
        action="append",
        default=None,
        metavar="M",
        help=(
            "Backbone to include (repeat it for a model trained on several). "
            "Default: the one(s) recorded in the model directory (found by "
            "absolute path or path relative to MODEL_DIR); pass each one's new "
            "folder, in order, when they have moved (identities are still "
            "checked)."
        ),
    )
    parser.set_defaults(handler=run_export)


def run_export(args) -> int:
    from embedclf.workflow._export import export_savedmodel
    from embedclf.workflow._model_dir import load_model_dir

    model_dir = load_model_dir(args.model_dir)
    out = export_savedmodel(model_dir, args.savedmodel, model=_models(args))
    print(
        f"SavedModel written to {out}. Load it with tf.saved_model.load; its "
        "'serving_default' signature maps encoded image bytes to "
        "'probabilities', 'label', 'class_index' and 'known', and "
        "'predict_images' does the same for float images in [0, 1]."
    )
    return 0
