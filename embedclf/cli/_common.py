"""Helpers shared by the ``embedclf`` subcommands (see :mod:`embedclf.cli`).

Only the standard library (and ``_backbones``, which imports TensorFlow
lazily) at module level: importing this never imports TensorFlow, h5py or
scikit-learn.
"""

from __future__ import annotations

import argparse
import os
import sys

from embedclf.embedding._backbones import DEFAULT_MODEL

__all__ = [
    "DEFAULT_MODEL",
    "PROG",
    "add_runtime_arguments",
    "error",
    "runtime_settings",
    "list_images",
    "report_failures",
]

PROG = "embedclf"


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Wraps argument help; keeps the line breaks of descriptions and epilogs."""

    def __init__(self, prog):
        super().__init__(prog, max_help_position=32)


def error(message: str) -> None:
    """Print one ``embedclf: error: ...`` line on stderr."""
    message = " ".join(str(message).split())
    print(f"{PROG}: error: {message}", file=sys.stderr)


def _add_backbone_args(parser, *, required_default=True, cache_required=False):
    parser.add_argument(
        "--model",
        metavar="M",
        action="append",
        default=None,
        help=(
            "Backbone that turns images into vectors: a local SavedModel "
            "directory with the TF Hub image feature-vector interface, a TF Hub "
            "handle, or keras:<ApplicationName>. Options follow a '?': "
            "keras:InceptionV3?layer=mixed7&weights=FILE.weights.h5 (a layer, "
            "offline weights), DIR?signature=NAME&output=KEY (one of several "
            "outputs). "
            "Repeat it to use several "
            "backbones at once (their vectors are concatenated, in order). "
            + (
                "Default: TF Hub's Inception V3 feature vector, version 5, as "
                "in retrain.py (needs internet)."
                if required_default
                else "Default: the backbone(s) recorded in the model directory "
                "(found by absolute path or path relative to MODEL_DIR); when "
                "they have moved, pass each one's new folder, in the recorded "
                "order (identities are still checked)."
            )
        ),
    )
    parser.add_argument(
        "--cache",
        metavar="F",
        default=None,
        help=(
            "HDF5 file caching image vectors, keyed by image content and "
            "backbone, so a second run skips the backbone. "
            + (
                "Required."
                if cache_required
                else "Default: no cache."
                if required_default
                else "Default: the cache the model was trained with, when it "
                "still exists; otherwise none."
            )
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


def add_runtime_arguments(parser, *, recorded=False):
    """--runtime and --precision (train, embed, audit; predict and evaluate
    with ``recorded=True``: their default is what the model directory says)."""
    group = parser.add_argument_group(
        "runtime",
        "What runs the backbone (docs/runtimes.md compares them). Vectors of\n"
        "each runtime and precision are cached apart.",
    )
    default = (
        "Default: the one recorded in MODEL_DIR at training (a directory "
        "without one: tensorflow, fp32)."
        if recorded
        else None
    )
    group.add_argument(
        "--runtime",
        choices=["auto", "openvino", "tensorflow"],
        default=None,
        help=(
            "openvino converts the backbone once per machine (kept beside the "
            "cache and in ~/.cache/embedclf/openvino or $EMBEDCLF_OPENVINO_DIR) and "
            "runs it compiled for this CPU; tensorflow runs TensorFlow; auto "
            "is openvino, or tensorflow for a backbone OpenVINO cannot convert. "
            + (default or "Default: auto.")
        ),
    )
    group.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16", "int8"],
        default=None,
        help=(
            "OpenVINO's arithmetic: auto is bf16 on CPUs with bf16 "
            "instructions, fp32 elsewhere; int8 quantizes the backbone with "
            "NNCF on 300 of the training photos (train only). "
            + (default or "Default: auto.")
        ),
    )


def runtime_settings(args) -> dict:
    """The ImageEmbedder parameters --runtime/--precision set (the given ones)."""
    return {
        name: getattr(args, name)
        for name in ("runtime", "precision")
        if getattr(args, name, None) is not None
    }


def _add_model_dir(parser):
    parser.add_argument(
        "model_dir",
        metavar="MODEL_DIR",
        help="Model directory written by `embedclf train`.",
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


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1]; got {text!r}")
    return value


def _add_preprocessing(parser):
    """--resample, --crop-fraction, --normalize-each (train and embed)."""
    prep = parser.add_argument_group(
        "preprocessing",
        "How images are resized before the backbone (part of the cache key and\n"
        "of the model directory; predict, evaluate and export reuse them).",
    )
    prep.add_argument(
        "--resample",
        choices=["bilinear", "bicubic", "lanczos", "hamming", "box"],
        default="bilinear",
        help="Pillow's resize filter (antialiased). Default: bilinear.",
    )
    prep.add_argument(
        "--crop-fraction",
        type=_fraction,
        default=0.875,
        metavar="F",
        help=(
            "Keep the centred fraction F of each side before resizing; 1 keeps "
            "the whole image (embedclf 0.1). Default: 0.875 (the usual "
            "ImageNet evaluation crop)."
        ),
    )
    prep.add_argument(
        "--normalize-each",
        action="store_true",
        help=(
            "Scale each backbone's vector to unit length before concatenating "
            "them (useful with several --model). Default: off."
        ),
    )


def _add_test_views(parser, *, default_text):
    parser.add_argument(
        "--test-views",
        choices=["none", "flip", "train"],
        default=None,
        help=(
            "Average the predicted probabilities over extra views of each "
            "image, cached like training views: 'flip' adds the mirrored "
            "image, 'train' adds the training distortions' views (as many as "
            "--augment-copies), 'none' predicts from the plain image only. "
            f"Default: {default_text}."
        ),
    )


def _models(args, default=None):
    """``--model`` values: one handle (str), a list for several, or ``default``."""
    if not args.model:
        return default
    return args.model[0] if len(args.model) == 1 else list(args.model)


def _progress(args):
    return "auto" if args.progress is None else args.progress


def _embedder(args, model, *, on_error="nan", **settings):
    """The ImageEmbedder of a command; ``settings`` are its other parameters."""
    from embedclf.embedding._embedder import ImageEmbedder

    settings = {**settings, **runtime_settings(args)}
    return ImageEmbedder(
        model=model,
        cache=args.cache,
        batch_size=args.batch_size,
        on_error=on_error,
        progress=_progress(args),
        **settings,
    )


def report_failures(paths, reasons=None) -> int:
    """One stderr line per unreadable file; returns how many.

    ``reasons`` are the messages of the failures in the order of ``paths``
    (an embedder's ``failure_reasons_``); without them each file is decoded
    again to find out.
    """
    from embedclf.workflow._predict import failure_reason

    if reasons is None:
        reasons = [failure_reason(str(path)) for path in paths]
    for reason in reasons:
        error(str(reason))
    return len(paths)


def list_images(inputs) -> list[str]:
    """Files given directly, plus every image file under given folders."""
    from embedclf.embedding._images import IMAGE_EXTENSIONS
    from embedclf.workflow._datasets import walk_files

    out = []
    for item in inputs:
        if os.path.isdir(item):
            out.extend(
                path
                for path in walk_files(item)
                if os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS
            )
        else:
            out.append(item)
    return out
