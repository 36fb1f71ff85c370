"""``embedclf predict``, ``evaluate`` and ``export`` (see :mod:`embedclf.cli`)."""

from __future__ import annotations

from embedclf.cli._common import (
    _add_backbone_args,
    _add_model_dir,
    _add_test_views,
    _models,
    _progress,
    add_runtime_arguments,
    error,
    list_images,
    report_failures,
    runtime_settings,
)
from embedclf.cli._predict_explain import add_explain_argument, explanation_lines

__all__ = [
    "format_evaluate_parser",
    "format_export_parser",
    "format_predict_parser",
    "run_evaluate",
    "run_export",
    "run_predict",
]


# -- predict ---------------------------------------------------------------------
def _add_model_or_lite_dir(parser):
    parser.add_argument(
        "model_dir",
        metavar="MODEL_DIR",
        help=(
            "Model directory written by `embedclf train`, or a folder written "
            "by `embedclf export --tflite` (run with LiteRT: pip install "
            '"embedclf[lite]").'
        ),
    )


def format_predict_parser(parser):
    _add_model_or_lite_dir(parser)
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
    add_explain_argument(parser)
    add_runtime_arguments(parser, recorded=True)
    parser.set_defaults(handler=run_predict)


def _where(args) -> dict:
    """The keywords that find the backbone, the cache, the views, the runtime."""
    return {
        "model": _models(args),
        "cache": args.cache,
        "test_views": args.test_views,
        "batch_size": args.batch_size,
        "progress": _progress(args),
        **runtime_settings(args),
    }


def run_predict(args) -> int:
    import json

    from embedclf.workflow._predict import predict

    if args.top_k < 1:
        error(f"--top-k must be at least 1; got {args.top_k}.")
        return 2
    results = predict(
        args.model_dir,
        args.images,
        top_k=args.top_k,
        explain=args.explain is not None,
        explain_dir=args.explain or None,
        **_where(args),
    )
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
            for line in explanation_lines(r):
                print(line)
    if args.explain:
        import sys
        from pathlib import Path

        page = Path(args.explain) / "explain.html"
        # stderr under --json, so that stdout stays one JSON document
        print(f"Explanations written to {page}", file=sys.stderr if args.json else None)
    return 1 if n_failed else 0


# -- evaluate ----------------------------------------------------------------------
def format_evaluate_parser(parser):
    _add_model_or_lite_dir(parser)
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
    add_explain_argument(parser, report=True)
    add_runtime_arguments(parser, recorded=True)
    parser.set_defaults(handler=run_evaluate)


def run_evaluate(args) -> int:
    from embedclf.workflow._predict import evaluate
    from embedclf.workflow._report import format_metrics
    from embedclf.workflow._report._open_set import format_open_set

    result = evaluate(
        args.model_dir,
        args.image_dir,
        report_dir=args.report_dir,
        explain=args.explain,
        **_where(args),
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
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument(
        "--savedmodel",
        metavar="OUT_DIR",
        help=(
            "Directory to write the TensorFlow SavedModel to (encoded image "
            "bytes -> probabilities; replaced if it exists). One of "
            "--savedmodel and --tflite is required."
        ),
    )
    target.add_argument(
        "--tflite",
        metavar="OUT_DIR",
        help=(
            "Directory to write a TensorFlow Lite model for phones to "
            "(model.tflite: uint8 RGB pixels [1, H, W, 3] -> probabilities; "
            "labels.txt; preprocessing.json; replaced if it exists). Check it "
            "with `embedclf predict OUT_DIR IMAGES`."
        ),
    )
    parser.add_argument(
        "--quantize",
        choices=["none", "dynamic", "int8", "mixed"],
        default=None,
        help=(
            "With --tflite: 'none' keeps float32; 'dynamic' stores the weights "
            "as int8 (about 4x smaller); 'int8' also quantizes the activations "
            "(full-integer, for NPUs and the fastest CPU kernels), calibrated "
            "on a few hundred of the model's training photos; 'mixed' is int8 "
            "except the ops most sensitive to it, kept in float (closer to the "
            "float answers, larger; CPU/GPU only). Default: none."
        ),
    )
    parser.add_argument(
        "--float-fraction",
        type=float,
        default=None,
        metavar="F",
        help=(
            "With --quantize mixed: the share of the quantizable ops kept in "
            "float, the most sensitive first (TensorFlow's quantization "
            "debugger on the calibration photos). Default: 0.3."
        ),
    )
    parser.add_argument(
        "--calibration-images",
        default=None,
        metavar="DIR",
        help=(
            "With --quantize int8 or mixed: a folder of typical photos to calibrate on "
            "(up to 300 are used). Default: the model's training photos."
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


def _run_export_tflite(args, model_dir) -> int:
    from embedclf.workflow._export._tflite import export_tflite

    calibration = None
    if args.calibration_images is not None:
        calibration = list_images([args.calibration_images])[:300]
        if not calibration:
            error(f"No image files found in {args.calibration_images!r}.")
            return 1
    done = export_tflite(
        model_dir,
        args.tflite,
        quantize=args.quantize or "none",
        model=_models(args),
        calibration_images=calibration,
        float_fraction=args.float_fraction,
    )
    detail = {
        "none": "float32",
        "dynamic": "int8 weights, float activations",
        "int8": f"full int8, calibrated on {done.n_calibration} photos",
        "mixed": (
            f"int8 with {len(done.float_ops)} of {done.n_ops_checked} ops in float, "
            f"calibrated on {done.n_calibration} photos"
        ),
    }[done.quantize]
    print(
        f"TensorFlow Lite model written to {done.path}: model.tflite "
        f"{done.model_bytes / 1e6:.2f} MB ({detail}), labels.txt, "
        "preprocessing.json. Its input is uint8 RGB pixels "
        "[1, H, W, 3] resized as preprocessing.json says; check it with "
        f"`embedclf predict {done.path} IMAGES`."
    )
    return 0


def run_export(args) -> int:
    from embedclf.workflow._export._savedmodel import export_savedmodel
    from embedclf.workflow._model_dir import load_model_dir

    if args.tflite is None and (
        args.quantize or args.calibration_images or args.float_fraction is not None
    ):
        error(
            "--quantize, --calibration-images and --float-fraction apply to "
            "--tflite only."
        )
        return 2
    if args.float_fraction is not None and args.quantize != "mixed":
        error("--float-fraction applies to --quantize mixed only.")
        return 2
    model_dir = load_model_dir(args.model_dir)
    if args.tflite is not None:
        return _run_export_tflite(args, model_dir)
    out = export_savedmodel(model_dir, args.savedmodel, model=_models(args))
    print(
        f"SavedModel written to {out}. Load it with tf.saved_model.load; its "
        "'serving_default' signature maps a batch of encoded image files "
        "(image_bytes: a 1-D tf.string tensor) to 'probabilities', 'label', "
        "'class_index' and 'known', and 'predict_images' does the same for "
        "float images in [0, 1]. docs/export.md shows how."
    )
    return 0
