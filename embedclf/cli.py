"""The ``embedclf`` command: retrain.py's workflow on the command line.

Subcommands: ``train``, ``predict``, ``evaluate``, ``embed``, ``export`` and
``cache info`` / ``cache repair``. ``main(argv)`` parses a list of arguments,
so tests call it directly; it returns the exit status (0 success, 1 a user
error reported as one line on stderr, 2 bad arguments from argparse).

Only argparse and the standard library are imported at module level, so
``embedclf --help`` never imports TensorFlow.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

__all__ = ["main", "build_parser"]

DEFAULT_MODEL = "https://tfhub.dev/google/imagenet/inception_v3/feature_vector/5"
PROG = "embedclf"

# Errors a user can fix: printed as one line, exit status 1. Anything else is
# a bug and keeps its traceback.
_USER_ERRORS = (OSError, ValueError, TypeError, ImportError)


class _Formatter(argparse.HelpFormatter):
    def __init__(self, prog):
        super().__init__(prog, max_help_position=32)


def error(message: str) -> None:
    """Print one ``embedclf: error: ...`` line on stderr."""
    message = " ".join(str(message).split())
    print(f"{PROG}: error: {message}", file=sys.stderr)


def _add_backbone_args(parser, *, required_default=True):
    parser.add_argument(
        "--model",
        metavar="M",
        default=DEFAULT_MODEL if required_default else None,
        help=(
            "Backbone that turns images into vectors: a local SavedModel "
            "directory with the TF Hub image feature-vector interface, a TF Hub "
            "handle, or keras:<ApplicationName>. "
            + (
                f"Default: {DEFAULT_MODEL} (Inception V3, needs internet)."
                if required_default
                else "Default: the backbone recorded in the model directory; "
                "pass a local copy of it when that path has moved."
            )
        ),
    )
    parser.add_argument(
        "--cache",
        metavar="F",
        default=None,
        help=(
            "HDF5 file caching image vectors, keyed by image content and "
            "backbone, so a second run skips the backbone. Default: no cache."
        ),
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=32,
        metavar="N",
        help="Images per backbone call. Default: 32.",
    )
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=(
            "Show a progress bar (images/s, ETA) on stderr while the backbone "
            "runs. Default: shown when many images need the backbone."
        ),
    )


def _add_image_size(parser):
    parser.add_argument(
        "--image-size",
        type=int,
        default=None,
        metavar="PIXELS",
        help=(
            "Side in pixels that images are resized to before the backbone. "
            "Default: the backbone's own input size."
        ),
    )


def _progress(args):
    return "auto" if args.progress is None else args.progress


def _embedder(args, model, *, on_error="nan", image_size=None):
    from embedclf._embedder import ImageEmbedder

    return ImageEmbedder(
        model=model,
        cache=args.cache,
        batch_size=args.batch_size,
        image_size=image_size,
        on_error=on_error,
        progress=_progress(args),
    )


def _failure_reason(path: str) -> str:
    """The error message for a file the embedder could not read."""
    from embedclf._images import load_image

    try:
        load_image(path, (8, 8))
    except (OSError, ValueError) as exc:
        return str(exc)
    return f"Could not embed {path!r}."


def report_failures(paths) -> int:
    """One stderr line per unreadable file; returns how many."""
    for path in paths:
        error(_failure_reason(str(path)))
    return len(paths)


def list_images(inputs) -> list[str]:
    """Files given directly, plus every image file under given folders."""
    from embedclf._images import IMAGE_EXTENSIONS

    out = []
    for item in inputs:
        if os.path.isdir(item):
            for dirpath, dirnames, filenames in os.walk(item, followlinks=True):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for name in sorted(filenames):
                    ext = os.path.splitext(name)[1].lower()
                    if not name.startswith(".") and ext in IMAGE_EXTENSIONS:
                        out.append(os.path.join(dirpath, name))
        else:
            out.append(item)
    return out


# -- predict ---------------------------------------------------------------------
def format_predict_parser(parser):
    parser.add_argument(
        "model_dir",
        metavar="MODEL_DIR",
        help="Model directory written by `embedclf train`.",
    )
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
    parser.set_defaults(handler=run_predict)


def _load_for_predict(args):
    """Load and check MODEL_DIR; returns (model_dir, backbone handle)."""
    from embedclf._model_dir import check_backbone, load_model_dir

    model_dir = load_model_dir(args.model_dir)
    return model_dir, check_backbone(model_dir, args.model)


def _embed_for_model_dir(args, model_dir, handle, paths):
    """Embed ``paths`` for a model dir; returns (X, ok mask)."""
    import numpy as np

    embedder = _embedder(args, handle, image_size=model_dir.manifest.get("image_size"))
    X = embedder.transform(paths)
    failed = set(embedder.failed_paths_.tolist())
    ok = np.array([p not in failed for p in paths], dtype=bool)
    return X, ok


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
    X, ok = _embed_for_model_dir(args, model_dir, handle, paths)
    head = model_dir.head
    results = []
    if ok.any():
        proba = head.predict_proba(X[ok])
        labels = head.predict(X[ok])
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
    parser.add_argument(
        "model_dir",
        metavar="MODEL_DIR",
        help="Model directory written by `embedclf train`.",
    )
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
    parser.set_defaults(handler=run_evaluate)


def run_evaluate(args) -> int:
    from pathlib import Path

    from embedclf._report import format_metrics, write_report
    from embedclf._train import _folder

    model_dir, handle = _load_for_predict(args)
    paths, y_true = _folder(args.image_dir)
    X, ok = _embed_for_model_dir(args, model_dir, handle, list(paths))
    n_failed = report_failures([p for p, good in zip(paths, ok) if not good])
    head = model_dir.head
    y_pred = head.predict(X[ok]).astype(str)
    proba = head.predict_proba(X[ok])
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
    )
    print(format_metrics(metrics))
    print(
        f"Accuracy on {args.image_dir}: {metrics['accuracy']:.4f} "
        f"({metrics['n_samples']} images)"
    )
    print(f"Report written to {out}")
    return 1 if n_failed else 0


# -- embed ---------------------------------------------------------------------------
def format_embed_parser(parser):
    parser.add_argument(
        "image_dir",
        metavar="IMAGE_DIR",
        help="Folder whose image files (recursively, any layout) are embedded.",
    )
    _add_backbone_args(parser)
    _add_image_size(parser)
    parser.set_defaults(handler=run_embed)


def run_embed(args) -> int:
    import time

    if args.cache is None:
        error("embed needs --cache F: the file that the vectors are stored in.")
        return 2
    if not os.path.isdir(args.image_dir):
        error(f"Image folder {args.image_dir!r} does not exist or is not a folder.")
        return 1
    paths = list_images([args.image_dir])
    if not paths:
        error(f"No image files found in {args.image_dir!r}.")
        return 1
    embedder = _embedder(args, args.model, image_size=args.image_size)
    start = time.perf_counter()
    try:
        embedder.transform(paths)
    except KeyboardInterrupt:
        error(
            "Interrupted. Every finished batch is kept in the cache; run the same "
            "command again to embed the rest."
        )
        return 130
    seconds = time.perf_counter() - start
    n_failed = report_failures(embedder.failed_paths_.tolist())
    print(
        f"Embedded {len(paths)} images in {seconds:.1f} s: "
        f"{embedder.n_computed_} computed by the backbone, {embedder.n_cached_} "
        f"from the cache, {n_failed} failed. Cache: {args.cache}"
    )
    return 1 if n_failed else 0


# -- export --------------------------------------------------------------------------
def format_export_parser(parser):
    parser.add_argument(
        "model_dir",
        metavar="MODEL_DIR",
        help="Model directory written by `embedclf train`.",
    )
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
        default=None,
        metavar="M",
        help=(
            "Backbone to include. Default: the one recorded in the model "
            "directory; pass a local copy of it when that path has moved."
        ),
    )
    parser.set_defaults(handler=run_export)


def run_export(args) -> int:
    from embedclf._export import export_savedmodel
    from embedclf._model_dir import load_model_dir

    model_dir = load_model_dir(args.model_dir)
    out = export_savedmodel(model_dir, args.savedmodel, model=args.model)
    print(
        f"SavedModel written to {out}. Load it with tf.saved_model.load; its "
        "'serving_default' signature maps encoded image bytes to "
        "'probabilities', 'label', 'class_index' and 'known', and "
        "'predict_images' does the same for float images in [0, 1]."
    )
    return 0


# -- cache ---------------------------------------------------------------------------
def format_cache_parser(parser):
    sub = parser.add_subparsers(dest="cache_command", metavar="ACTION", required=True)
    info = sub.add_parser(
        "info",
        help="List the backbones and vector counts stored in a cache file.",
        formatter_class=_Formatter,
    )
    info.add_argument("path", metavar="F", help="The HDF5 cache file.")
    info.set_defaults(handler=run_cache_info)
    repair = sub.add_parser(
        "repair",
        help=(
            "Rebuild a damaged cache file from every readable row; the damaged "
            "file is kept as F.corrupt-<time>."
        ),
        formatter_class=_Formatter,
    )
    repair.add_argument("path", metavar="F", help="The HDF5 cache file.")
    repair.set_defaults(handler=run_cache_repair)


def run_cache_info(args) -> int:
    from embedclf._cache import EmbeddingCache

    if not os.path.exists(args.path) and not os.path.exists(args.path + ".journal"):
        error(f"Cache file {args.path!r} does not exist.")
        return 1
    entries = EmbeddingCache(args.path).info()
    size = os.path.getsize(args.path) if os.path.exists(args.path) else 0
    print(f"{args.path}: {len(entries)} namespace(s), {size / 1e6:.1f} MB")
    for e in entries:
        print(
            f"  {e.get('fingerprint', '?')}  {e.get('n_rows', 0)} vectors  "
            f"dim={e.get('dim')}  dtype={e.get('dtype')}  "
            f"image_size={e.get('image_size')}"
        )
        print(f"      model: {e.get('handle')}")
        print(f"      preprocessing: {e.get('preprocessing')}")
    return 0


def run_cache_repair(args) -> int:
    from embedclf._cache import EmbeddingCache

    if not os.path.exists(args.path) and not os.path.exists(args.path + ".journal"):
        error(f"Cache file {args.path!r} does not exist.")
        return 1
    report = EmbeddingCache.repair(args.path)
    print(
        f"Repaired {args.path}: kept {report['kept']} vectors, dropped "
        f"{report['dropped']} failing their checksum"
        + (f", unreadable: {report['unreadable']}" if report["unreadable"] else "")
        + "."
    )
    if report["backup"]:
        print(f"The damaged file is kept as {report['backup']}.")
    return 0


# -- main ----------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``embedclf`` command."""
    from embedclf import __version__
    from embedclf._cli_train import format_train_parser

    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Transfer-learning image classification, as TensorFlow's retrain.py: "
            "a pretrained CNN turns images into cached vectors and a light "
            "classifier is trained on them."
        ),
        formatter_class=_Formatter,
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}"
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="Log more (-v: progress messages, -vv: debug and full tracebacks).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands = [
        (
            "train",
            format_train_parser,
            "Train a classifier on a folder of class subfolders.",
        ),
        (
            "predict",
            format_predict_parser,
            "Print the top labels of images, like label_image.",
        ),
        (
            "evaluate",
            format_evaluate_parser,
            "Score a model on a labelled folder and write a report.",
        ),
        (
            "embed",
            format_embed_parser,
            "Fill an embedding cache ahead of time (resumable).",
        ),
        (
            "export",
            format_export_parser,
            "Export a model directory as one TensorFlow SavedModel.",
        ),
        ("cache", format_cache_parser, "Inspect or repair an embedding cache file."),
    ]
    for name, fmt, help_text in commands:
        p = sub.add_parser(
            name, help=help_text, description=help_text, formatter_class=_Formatter
        )
        fmt(p)
    return parser


def _log_level(verbose: int) -> int:
    return {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)


def main(argv=None) -> int:
    """Run the ``embedclf`` command with ``argv`` (default: ``sys.argv[1:]``).

    Returns
    -------
    status : int
        0 on success, 1 on a user error (one line on stderr), 130 when
        interrupted. Bad arguments exit with status 2 (argparse).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(format="%(name)s: %(message)s")
    logging.getLogger("embedclf").setLevel(_log_level(args.verbose))
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        error("Interrupted.")
        return 130
    except _USER_ERRORS as exc:
        if args.verbose >= 2:
            raise
        error(str(exc))
        return 1
