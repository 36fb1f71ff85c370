"""``embedclf predict``, ``evaluate`` and ``export`` (see :mod:`embedclf.cli`)."""

from __future__ import annotations

from embedclf.cli._common import (
    _add_backbone_args,
    _add_model_dir,
    _add_test_views,
    _embedder,
    _failure_reason,
    _models,
    error,
    list_images,
    report_failures,
)
from embedclf.cli._predict_explain import (
    add_explain_argument,
    attach_explanations,
    explanation_lines,
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


def _lite_classifier(args):
    """The LiteRT runner of a TFLite export folder, or None for a model dir."""
    from embedclf.workflow._export._litert import LiteRTClassifier, is_tflite_export

    if not is_tflite_export(args.model_dir):
        return None
    explain = getattr(args, "explain", None) not in (None, False)
    for flag, value in (
        ("--model", args.model),
        ("--test-views", args.test_views),
        ("--explain", explain),
    ):
        if value:
            raise ValueError(
                f"{flag} does not apply to the TensorFlow Lite export "
                f"{args.model_dir!r}: its backbone and test views were fixed when "
                "it was exported. Drop the flag, or pass the model directory."
            )
    return LiteRTClassifier(args.model_dir)


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
    parser.set_defaults(handler=run_predict)


def _load_for_predict(args):
    """Load and check MODEL_DIR; returns (model_dir, backbone handle).

    Without ``--cache``, the cache the model was trained with is used when it
    still exists (``args.cache`` is set to it).
    """
    import logging

    from embedclf.workflow._model_dir import load_model_dir
    from embedclf.workflow._model_dir_locations import check_backbone, remembered_cache

    model_dir = load_model_dir(args.model_dir)
    handle = check_backbone(model_dir, _models(args))
    if args.cache is None:
        args.cache = remembered_cache(model_dir)
        if args.cache is not None:
            logging.getLogger("embedclf").info(
                "using the cache %s that %s was trained with (--cache overrides it)",
                args.cache,
                args.model_dir,
            )
    return model_dir, handle


def _embed_for_model_dir(args, model_dir, handle, paths):
    """Embed ``paths`` for a model dir; returns (X, ok mask, embedder)."""
    import numpy as np

    from embedclf.workflow._model_dir import embedder_settings

    embedder = _embedder(args, handle, **embedder_settings(model_dir.manifest))
    X = embedder.transform(paths)
    failed = set(embedder.failed_paths_.tolist())
    ok = np.array([p not in failed for p in paths], dtype=bool)
    return X, ok, embedder


def _predict_rows(args, model_dir, X, paths, embedder):
    """(labels, probabilities), averaged over the test views when asked."""
    import numpy as np

    from embedclf.workflow._views import predict_proba_views

    head = model_dir.head
    test_views = args.test_views or model_dir.manifest.get("test_views", "none")
    if test_views == "none" or len(X) == 0:
        return head.predict(X), head.predict_proba(X)
    proba, _ = predict_proba_views(
        head,
        X,
        paths,
        embedder,
        test_views=test_views,
        augmentation=model_dir.manifest.get("augmentation"),
    )
    return np.asarray(head.classes_)[proba.argmax(axis=1)], proba


def _load_source(args):
    """A ``LiteRTClassifier`` for a TFLite export, else (model_dir, handle)."""
    lite = _lite_classifier(args)
    return lite if lite is not None else _load_for_predict(args)


def _predict_all(args, source, paths):
    """(classes, labels, probabilities, ok mask, error messages, context).

    ``context`` is what ``--explain`` needs, (model_dir, embedder, the good
    paths, their vectors), or None for a TensorFlow Lite export.
    """
    if not isinstance(source, tuple):  # a TensorFlow Lite export
        proba, labels, ok, errors = source.predict_files(paths)
        return [str(c) for c in source.classes_], labels, proba, ok, errors, None
    model_dir, handle = source
    X, ok, embedder = _embed_for_model_dir(args, model_dir, handle, paths)
    labels = proba = None
    good = [p for p, g in zip(paths, ok) if g]
    if ok.any():
        labels, proba = _predict_rows(args, model_dir, X[ok], good, embedder)
    errors = [_failure_reason(p) for p, g in zip(paths, ok) if not g]
    classes = [str(c) for c in model_dir.head.classes_]
    return classes, labels, proba, ok, errors, (model_dir, embedder, good, X[ok])


def run_predict(args) -> int:
    import json

    import numpy as np

    source = _load_source(args)
    paths = list_images(args.images)
    if not paths:
        error(f"No image files found in {args.images}. Pass image files or folders.")
        return 1
    if args.top_k < 1:
        error(f"--top-k must be at least 1; got {args.top_k}.")
        return 2
    classes, labels, proba, ok, errors, context = _predict_all(args, source, paths)
    results = []
    j = k = 0
    for i, path in enumerate(paths):
        if not ok[i]:
            results.append({"path": path, "error": errors[k]})
            k += 1
            continue
        order = np.argsort(-proba[j])[: args.top_k]
        results.append(
            {
                "path": path,
                "label": str(labels[j]),
                "top_k": [
                    {"label": classes[c], "score": float(proba[j, c])} for c in order
                ],
            }
        )
        j += 1
    if args.explain is not None and ok.any():
        attach_explanations(args, *context, proba, results)
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
    parser.set_defaults(handler=run_evaluate)


def _evaluate_rows(args, source, paths):
    """(ok, y_pred, proba, classes, open_set inputs, n_failed, context).

    ``context`` is (model_dir, embedder, vectors of the good paths) for
    ``--explain``, or None for a TensorFlow Lite export.
    """
    from embedclf.workflow._report_open_set import open_set_inputs

    if not isinstance(source, tuple):  # a TensorFlow Lite export
        proba, y_pred, ok, errors = source.predict_files(list(paths))
        for message in errors:
            error(message)
        return ok, y_pred, proba, list(source.classes_), None, len(errors), None
    model_dir, handle = source
    X, ok, embedder = _embed_for_model_dir(args, model_dir, handle, list(paths))
    n_failed = report_failures([p for p, good in zip(paths, ok) if not good])
    y_pred, proba = _predict_rows(args, model_dir, X[ok], list(paths[ok]), embedder)
    open_set = open_set_inputs(model_dir.head, X[ok])
    context = (model_dir, embedder, X[ok])
    labels = model_dir.labels
    return ok, y_pred.astype(str), proba, labels, open_set, n_failed, context


def run_evaluate(args) -> int:
    from pathlib import Path

    from embedclf.workflow._report import format_metrics, write_report
    from embedclf.workflow._report_open_set import format_open_set
    from embedclf.workflow._train import _folder

    source = _load_source(args)
    paths, y_true = _folder(args.image_dir)
    rows = _evaluate_rows(args, source, paths)
    ok, y_pred, proba, classes, open_set, n_failed, context = rows
    name = Path(args.image_dir).resolve().name
    out = Path(args.report_dir or Path(args.model_dir) / f"report-{name}")
    explanations = None
    if args.explain:
        from embedclf.workflow._explain._explain import explain_misclassified

        model_dir, embedder, X_ok = context
        explanations = explain_misclassified(
            model_dir, embedder, paths[ok], X_ok, proba, y_true[ok], y_pred
        )
    metrics = write_report(
        out,
        paths[ok],
        y_true[ok],
        y_pred,
        proba,
        classes,
        title=f"{name}: accuracy {float((y_true[ok] == y_pred).mean()):.4f}",
        open_set=open_set,
        explanations=explanations,
    )
    print(format_metrics(metrics))
    if "open_set" in metrics:
        print(format_open_set(metrics["open_set"]))
    print(
        f"Accuracy on {args.image_dir}: {metrics['accuracy']:.4f} "
        f"({metrics['n_samples']} images)"
    )
    print(f"Report written to {out}")
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
        choices=["none", "dynamic", "int8"],
        default=None,
        help=(
            "With --tflite: 'none' keeps float32; 'dynamic' stores the weights "
            "as int8 (about 4x smaller); 'int8' also quantizes the activations "
            "(full-integer, for NPUs and the fastest CPU kernels), calibrated "
            "on a few hundred of the model's training photos. Default: none."
        ),
    )
    parser.add_argument(
        "--calibration-images",
        default=None,
        metavar="DIR",
        help=(
            "With --quantize int8: a folder of typical photos to calibrate on "
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
    )
    detail = {
        "none": "float32",
        "dynamic": "int8 weights, float activations",
        "int8": f"full int8, calibrated on {done.n_calibration} photos",
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

    if args.tflite is None and (args.quantize or args.calibration_images):
        error("--quantize and --calibration-images apply to --tflite only.")
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
