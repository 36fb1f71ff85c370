"""``embedclf predict``, ``evaluate`` and ``export`` (see :mod:`embedclf.cli`)."""

from __future__ import annotations

from embedclf.cli._common import (
    _add_backbone_args,
    _add_model_dir,
    _add_test_views,
    _embedder,
    _failure_reason,
    _models,
    add_runtime_arguments,
    error,
    list_images,
    report_failures,
    runtime_settings,
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
    add_runtime_arguments(parser, recorded=True)
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

    settings = embedder_settings(model_dir.manifest, **runtime_settings(args))
    embedder = _embedder(args, handle, **settings)
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


def run_predict(args) -> int:
    import json

    import numpy as np

    model_dir, handle = _load_for_predict(args)
    paths = list_images(args.images)
    if not paths:
        error(f"No image files found in {args.images}. Pass image files or folders.")
        return 1
    if args.top_k < 1:
        error(f"--top-k must be at least 1; got {args.top_k}.")
        return 2
    X, ok, embedder = _embed_for_model_dir(args, model_dir, handle, paths)
    head = model_dir.head
    results = []
    if ok.any():
        good = [p for p, g in zip(paths, ok) if g]
        labels, proba = _predict_rows(args, model_dir, X[ok], good, embedder)
    classes = [str(c) for c in head.classes_]
    j = 0
    for i, path in enumerate(paths):
        if not ok[i]:
            results.append({"path": path, "error": _failure_reason(path)})
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
    add_runtime_arguments(parser, recorded=True)
    parser.set_defaults(handler=run_evaluate)


def run_evaluate(args) -> int:
    from pathlib import Path

    from embedclf.workflow._report import format_metrics, write_report
    from embedclf.workflow._report_open_set import format_open_set, open_set_inputs
    from embedclf.workflow._train import _folder

    model_dir, handle = _load_for_predict(args)
    paths, y_true = _folder(args.image_dir)
    X, ok, embedder = _embed_for_model_dir(args, model_dir, handle, list(paths))
    n_failed = report_failures([p for p, good in zip(paths, ok) if not good])
    y_pred, proba = _predict_rows(args, model_dir, X[ok], list(paths[ok]), embedder)
    y_pred = y_pred.astype(str)
    name = Path(args.image_dir).resolve().name
    out = Path(args.report_dir or Path(args.model_dir) / f"report-{name}")
    metrics = write_report(
        out,
        paths[ok],
        y_true[ok],
        y_pred,
        proba,
        model_dir.labels,
        title=f"{name}: accuracy {float((y_true[ok] == y_pred).mean()):.4f}",
        open_set=open_set_inputs(model_dir.head, X[ok]),
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
