"""``embedclf suggest``: which unlabelled photos to label next."""

from __future__ import annotations

from embedclf.cli._common import (
    _add_backbone_args,
    _add_model_dir,
    _models,
    _progress,
)

__all__ = ["format_suggest_parser", "run_suggest"]


def format_suggest_parser(parser):
    from embedclf.workflow._suggest._rank import STRATEGIES

    _add_model_dir(parser)
    parser.add_argument(
        "unlabelled",
        nargs="+",
        metavar="UNLABELLED_DIR",
        help="Folder(s) or files of unlabelled photos (folders searched recursively).",
    )
    parser.add_argument(
        "--n",
        type=int,
        default=50,
        metavar="N",
        help="How many photos to suggest. Default: 50.",
    )
    parser.add_argument(
        "--output",
        required=True,
        metavar="DIR",
        help="Folder to write suggestions.csv and suggestions.html into. Required.",
    )
    parser.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default=STRATEGIES[0],
        help=(
            "How photos are ranked: margin-kcentre picks, one at a time, the "
            "photo with the largest product of the model's uncertainty and its "
            "distance to the training photos and earlier picks (measured best "
            "on the grocery photos, docs/suggest.md); margin/entropy: most "
            "uncertain alone; kcentre: most unlike alone; random. Default: "
            f"{STRATEGIES[0]}."
        ),
    )
    parser.add_argument(
        "--duplicate-threshold",
        type=float,
        default=0.94,
        metavar="COS",
        help=(
            "Cosine similarity at or above which a photo counts as a "
            "near-duplicate of a training photo (left out) or of another pick. "
            "Default: 0.94 (the audit's threshold)."
        ),
    )
    # --model, --cache, --batch-size, --progress as predict has them
    _add_backbone_args(parser, required_default=False)
    parser.set_defaults(handler=run_suggest)


def run_suggest(args) -> int:
    import os

    from embedclf.cli._common import error, report_failures
    from embedclf.workflow._suggest._suggest import suggest

    if args.n < 1:
        error(f"--n must be at least 1; got {args.n}.")
        return 2
    result = suggest(
        args.model_dir,
        args.unlabelled,
        n=args.n,
        output=args.output,
        strategy=args.strategy,
        duplicate_threshold=args.duplicate_threshold,
        cache=args.cache,
        model=_models(args),
        batch_size=args.batch_size,
        progress=_progress(args),
    )
    n_failed = report_failures(result.unreadable)
    for row in result.rows:
        print(
            f"{row['rank']:4d}  {row['path']}  {row['predicted_label']} "
            f"({row['probability']:.2f}): {row['why']}"
        )
    print(
        f"Suggested {len(result.rows)} of {result.n_candidates} unlabelled photos "
        f"({result.strategy}; {len(result.excluded)} near-duplicates of training "
        f"photos left out). Written to {os.path.join(args.output, 'suggestions.csv')} "
        f"and {os.path.join(args.output, 'suggestions.html')}."
    )
    return 1 if n_failed else 0
