"""``embedclf train``: its arguments, in groups (the handler is ``_train.py``).

Each flag is a keyword of :func:`embedclf.train` (``--C`` is ``C``); argparse
checks types and choices here, the library checks values and combinations.
"""

from __future__ import annotations

import argparse

__all__ = ["format_train_parser"]


def _percentage(text: str) -> float:
    value = float(text)
    if not 0 <= value < 100:
        raise argparse.ArgumentTypeError(f"must be in [0, 100); got {text!r}")
    return value


def _c_grid(text: str) -> list[float] | str:
    from embedclf.workflow._train._options import normalise_C

    try:
        return normalise_C(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be 'auto' or positive numbers separated by commas; got {text!r}"
        ) from None


def format_train_parser(parser):
    from embedclf.cli._common import (
        _add_backbone_args,
        _add_image_size,
        _add_preprocessing,
        _add_test_views,
        add_runtime_arguments,
    )
    from embedclf.cli._train import run_train

    _add_data_args(parser)
    _add_head_args(parser.add_argument_group("head", "The classifier on the vectors."))
    _add_unknown_args(
        parser.add_argument_group("unknown", "Answering 'unknown' (open set).")
    )
    _add_distortion_args(
        parser.add_argument_group(
            "distortions",
            "retrain.py's image distortions, applied to training images only. Each\n"
            "training image gets --augment-copies distorted views, embedded once and\n"
            "kept in the cache, so a second run costs no backbone time.",
        )
    )
    _add_output_args(parser)
    _add_backbone_args(parser)
    _add_image_size(parser)
    _add_preprocessing(parser)
    add_runtime_arguments(parser)
    _add_test_views(parser, default_text="none")
    parser.set_defaults(handler=run_train)


def _add_data_args(parser):
    """IMAGE_DIR, --output, --force and where the parts come from."""
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
        help=(
            "Directory to write the trained model and its report to: new, empty, "
            "or a model directory to replace (the old model stays whole until "
            "the new one is complete). Required."
        ),
    )
    parser.add_argument(
        "--exclude",
        metavar="FILE",
        default=None,
        help=(
            "Text file of image paths to leave out, one a line ('#' starts a "
            "comment), such as the exclude.txt `embedclf audit` writes. "
            "Default: none."
        ),
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help=(
            "Write into an --output folder that holds other files and is not a "
            "model directory. Default: refuse it."
        ),
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


def _add_head_args(group):
    """--classifier, --C, --scaling, --balance, --class-weight."""
    group.add_argument(
        "--classifier",
        choices=["softmax", "svm", "mlp"],
        default="softmax",
        help=(
            "The head: 'softmax' (multinomial logistic regression, as retrain.py, "
            "exportable), 'svm' (SVC with calibrated probabilities) or 'mlp' "
            "(Dense(1024, relu) + softmax, early stopping on 10%% of the "
            "training part, exportable; --C does not apply). Default: softmax."
        ),
    )
    group.add_argument(
        "--C",
        dest="C_grid",
        type=_c_grid,
        default="auto",
        metavar="VALUES",
        help=(
            "Inverse regularisation strengths to try, comma-separated, or 'auto' "
            "(every decade from 1e-4 to 1e4, then the half-decades around the "
            "best). The one with the lowest cross-entropy on the validation "
            "part is kept (then refitted on training + validation); without a "
            "validation part, by cross-validation on the training part with "
            "near-duplicate photos kept in one fold. Default: auto."
        ),
    )
    group.add_argument(
        "--scaling",
        choices=["auto", "standardize", "none"],
        default="auto",
        help=(
            "Feature scaling of the head: 'standardize' (zero mean, unit "
            "variance), 'none', or 'auto' (both tried, the better kept, as C). "
            "Default: auto."
        ),
    )
    group.add_argument(
        "--balance",
        choices=["none", "views"],
        default="none",
        help=(
            "'views' adds distorted views (cached) of the training images of "
            "each class smaller than the median class, up to the median size; "
            "the distortions are those set below, or crop, scale and "
            "brightness 10 %% and flips when none is set. Compare "
            "--class-weight balanced. Default: none."
        ),
    )
    group.add_argument(
        "--class-weight",
        choices=["balanced", "none"],
        default="none",
        help="'balanced' weights classes inversely to their size. Default: none.",
    )


def _add_unknown_args(group):
    """--unknown, --unknown-dir."""
    group.add_argument(
        "--unknown",
        default="off",
        metavar="auto|THRESHOLD|off",
        help=(
            "Answer 'unknown' for images unlike every class: 'auto' fuses the "
            "top probability and the distance to the nearest training image, "
            "with the threshold keeping 95%% of known images of the validation "
            "part (or of out-of-fold scores); a number in [0, 1] is the lowest "
            "accepted top probability; 'off' always answers a class. Default: off."
        ),
    )
    group.add_argument(
        "--unknown-dir",
        default=None,
        metavar="DIR",
        help=(
            "Folder of background images of none of the classes (like a class "
            "folder named 'unknown'), used with --unknown auto to weigh the "
            "unknown scores and measured in the summary. Default: none."
        ),
    )


def _add_distortion_args(group):
    """retrain.py's distortions and --augment-copies."""
    for flag, help_text in [
        ("--random-crop", "Percentage of margin to randomly crop off. Default: 0."),
        ("--random-scale", "Percentage of random enlargement. Default: 0."),
        (
            "--random-brightness",
            "Percentage of random brightness change (up or down). Default: 0.",
        ),
    ]:
        group.add_argument(
            flag,
            flag.replace("-", "_").replace("__", "--"),
            type=float,
            default=0.0,
            metavar="PCT",
            help=help_text,
        )
    group.add_argument(
        "--flip-left-right",
        "--flip_left_right",
        action="store_true",
        help="Mirror half of the views horizontally. Default: off.",
    )
    group.add_argument(
        "--augment-copies",
        type=int,
        default=None,
        metavar="K",
        help=(
            "Distorted views per training image. Default: 4 when a distortion "
            "is set, else 0."
        ),
    )


def _add_output_args(parser):
    """--summaries-dir, --n-jobs."""
    parser.add_argument(
        "--budget",
        type=float,
        default=None,
        metavar="MINUTES",
        help=(
            "Search the training settings within this many minutes (search and "
            "final training together): the given --model backbones alone or "
            "concatenated (each normalised), C and scaling, test-time views, "
            "training views and the MLP head, cheapest first, each step's cost "
            "estimated from measured throughput; then train the best. Overrides "
            "--C, --scaling, --classifier, --normalize-each, --test-views, "
            "--augment-copies and the distortions. Default: no search."
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
