"""``embedclf train --budget``: run the search, print it, apply its choice."""

from __future__ import annotations

__all__ = ["budget_search", "record_search"]


def budget_search(args, say):
    """Search within ``args.budget`` minutes; set ``args`` to the chosen settings.

    Returns the :class:`~embedclf.workflow._search.SearchResult`.
    """
    from embedclf.cli._common import DEFAULT_MODEL, _models
    from embedclf.workflow._search import search_training
    from embedclf.workflow._search._table import summary_lines
    from embedclf.workflow._train import collect_images, parse_unknown

    if args.budget <= 0:
        raise ValueError(
            f"--budget must be a positive number of minutes; got {args.budget!r}."
        )
    data = collect_images(
        args.image_dir,
        val_dir=args.val_dir,
        test_dir=args.test_dir,
        validation_percentage=args.validation_percentage,
        testing_percentage=args.testing_percentage,
    )
    say(
        f"Searching the training settings within {args.budget:g} minutes "
        "(search and final training together) ..."
    )
    result = search_training(
        data,
        _models(args, DEFAULT_MODEL),
        cache=args.cache,
        budget_s=60.0 * args.budget,
        image_size=args.image_size,
        resample=args.resample,
        crop_fraction=args.crop_fraction,
        batch_size=args.batch_size,
        progress=args.progress is True,
        unknown=parse_unknown(args.unknown),
        class_weight=None if args.class_weight == "none" else args.class_weight,
        n_jobs=args.n_jobs,
        on_step=say,
    )
    for line in summary_lines(result):
        say(line)
    for key, value in result.chosen.items():
        setattr(
            args, key, [value] if key == "model" and isinstance(value, str) else value
        )
    if args.classifier == "mlp":
        args.C_grid, args.scaling = "auto", "auto"
    return result


def record_search(manifest: dict, result) -> None:
    """Put the search (table, choice, estimate) into ``manifest``."""
    manifest["search"] = result.to_manifest()
    metrics = manifest["metrics"]
    metrics["selection_estimate"] = metrics.get("estimate")
    metrics["estimate"] = result.estimate
    metrics["selection_rule"] = "budget-search"
