"""The ``embedclf`` command: retrain.py's workflow on the command line.

Subcommands: ``train``, ``predict``, ``evaluate``, ``embed``, ``export``,
``audit``, ``suggest`` and ``cache info`` / ``cache repair`` / ``cache merge``.
``main(argv)`` parses a list of arguments, so tests call it directly; it
returns the exit status (0 success, 1 a user error reported as one line on
stderr, 2 bad arguments from argparse).

Only argparse and the standard library are imported at module level, so
``embedclf --help`` never imports TensorFlow.
"""

from __future__ import annotations

import argparse
import logging
import os

from embedclf.cli._common import (
    DEFAULT_MODEL,
    PROG,
    _add_backbone_args,
    _add_image_size,
    _add_preprocessing,
    _embedder,
    _Formatter,
    _models,
    add_runtime_arguments,
    error,
    list_images,
    report_failures,
)

__all__ = ["main", "build_parser", "list_images"]

EXAMPLES = """\
examples:
  embedclf train photos/ --output model/ --cache emb.h5 --model path/to/savedmodel
  embedclf train grocery_store/train --val-dir grocery_store/val \\
      --test-dir grocery_store/test --output model/ --cache emb.h5 --model M
  embedclf train grocery_store/ --output model/ ...  (train/ val/ test/ detected)
  embedclf predict model/ photo.jpg more_photos/ --top-k 3
  embedclf evaluate model/ grocery_store/test
  embedclf export model/ --savedmodel exported/
  embedclf embed photos/ --cache emb.h5 --model M    (fill the cache ahead of time)
  embedclf audit grocery_store/ --output audit/ --cache emb.h5 --model M
  embedclf suggest model/ unlabelled_photos/ --n 50 --output to_label/
  embedclf cache info emb.h5
"""

# Errors a user can fix: printed as one line, exit status 1. Anything else is
# a bug and keeps its traceback.
_USER_ERRORS = (OSError, ValueError, TypeError, ImportError)

# Verbs that run TensorFlow (``cache info`` / ``cache repair`` do not).
_TENSORFLOW_COMMANDS = (
    "train",
    "predict",
    "evaluate",
    "embed",
    "export",
    "suggest",
)


# -- embed ---------------------------------------------------------------------------
def format_embed_parser(parser):
    parser.add_argument(
        "image_dir",
        metavar="IMAGE_DIR",
        help="Folder whose image files (recursively, any layout) are embedded.",
    )
    _add_backbone_args(parser, cache_required=True)
    _add_image_size(parser)
    parser.add_argument(
        "--rehash",
        action="store_true",
        help=(
            "Read and hash every file again, even those whose device, inode, "
            "size, mtime and ctime are unchanged since the last run (default: "
            "those are only stat-ed)."
        ),
    )
    _add_preprocessing(parser)
    add_runtime_arguments(parser)
    parser.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        default=None,
        help=(
            "Address of a Dask scheduler (e.g. tcp://HOST:8786) whose workers "
            "run the backbone; the cache stays on this machine and the workers "
            "need the images and the model at the same paths. Needs pip install "
            '"embedclf[dask]". Default: embed on this machine.'
        ),
    )
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
    model = _models(args, DEFAULT_MODEL)
    embedder = _embedder(
        args,
        model,
        image_size=args.image_size,
        resample=args.resample,
        crop_fraction=args.crop_fraction,
        normalize_each=args.normalize_each,
    )
    embedder.set_params(rehash_files=args.rehash, scheduler=args.scheduler)
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
    n_failed = report_failures(embedder.failed_paths_, embedder.failure_reasons_)
    print(
        f"Embedded {len(paths)} images in {seconds:.1f} s: "
        f"{embedder.n_computed_} computed by the backbone, {embedder.n_cached_} "
        f"from the cache, {n_failed} failed. Cache: {args.cache}"
    )
    return 1 if n_failed else 0


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
    merge = sub.add_parser(
        "merge",
        help=(
            "Merge caches filled on different machines into a new cache file "
            "(namespaces checked, every row's checksum verified)."
        ),
        formatter_class=_Formatter,
    )
    merge.add_argument(
        "sources", metavar="F", nargs="+", help="The cache files to merge (2 or more)."
    )
    merge.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUT",
        help="The new cache file to write; it must not exist yet.",
    )
    merge.set_defaults(handler=run_cache_merge)


def run_cache_info(args) -> int:
    from embedclf.cache._store import EmbeddingCache

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
    from embedclf.cache._store import EmbeddingCache

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


def run_cache_merge(args) -> int:
    from embedclf.cache._store import EmbeddingCache

    for path in args.sources:
        if not os.path.exists(path) and not os.path.exists(path + ".journal"):
            error(f"Cache file {path!r} does not exist.")
            return 1
    report = EmbeddingCache.merge(args.sources, args.output)
    print(
        f"Merged {len(args.sources)} caches into {args.output}: "
        f"{report['kept']} vectors in {report['namespaces']} namespace(s); "
        f"{report['shared']} key(s) were in several sources, {report['differing']} "
        "of them with different vectors (the first source's kept)."
    )
    return 0


# -- main ----------------------------------------------------------------------------
def _commands() -> list:
    """(verb, parser-formatting function, one-line help) of each verb."""
    from embedclf.cli._audit import format_audit_parser
    from embedclf.cli._predict import (
        format_evaluate_parser,
        format_export_parser,
        format_predict_parser,
    )
    from embedclf.cli._suggest import format_suggest_parser
    from embedclf.cli._train_args import format_train_parser

    return [
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
            "Export a model directory as a TensorFlow SavedModel or a "
            "TensorFlow Lite model (phones).",
        ),
        (
            "audit",
            format_audit_parser,
            "Find label errors, duplicates and leaks between splits, outliers.",
        ),
        (
            "suggest",
            format_suggest_parser,
            "Rank unlabelled photos by how much labelling them would help.",
        ),
        ("cache", format_cache_parser, "Inspect or repair an embedding cache file."),
    ]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``embedclf`` command."""
    from embedclf._version import __version__

    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Transfer-learning image classification, as TensorFlow's retrain.py:\n"
            "a pretrained CNN turns images into cached vectors and a light\n"
            "classifier is trained on them."
        ),
        epilog=EXAMPLES,
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
        help=(
            "Log more (-v: progress messages, -vv: debug, full tracebacks and "
            "TensorFlow's own log lines, which are hidden by default)."
        ),
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, fmt, help_text in _commands():
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
    if args.verbose < 2 and args.command in _TENSORFLOW_COMMANDS:
        # TensorFlow's start-up lines (absl banners, oneDNN, CUDA) stay off
        # stderr when something imports it; -vv shows them.
        from embedclf.embedding._quiet import quiet_tensorflow

        quiet_tensorflow()
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
        error(getattr(exc, "cli_message", None) or str(exc))
        return 1
