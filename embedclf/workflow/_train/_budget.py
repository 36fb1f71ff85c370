"""``train(budget=...)``: search the training settings, then train the best.

The search itself is ``workflow/_search/``; this module runs it on the
collected images of a train run, applies its choice to the run's options
and gives the run's metrics after it (:func:`searched_metrics`); the
manifest's ``search`` entry and ``report/search.tsv`` are written by
``_outputs.py``.
"""

from __future__ import annotations

import logging

__all__ = ["apply_budget_search", "searched_metrics"]

logger = logging.getLogger("embedclf.train")

#: ``SearchResult.chosen`` is named as the CLI's ``dest``s; these differ
#: from :func:`embedclf.train`'s keywords.
_KEYWORDS = {"C_grid": "C"}


def apply_budget_search(opts, data):
    """Search within ``opts.budget`` minutes; set ``opts`` to the choice.

    Returns the :class:`~embedclf.workflow._search.SearchResult`. The
    options are checked again afterwards by the caller
    (:func:`~embedclf.workflow._train._options.check_options`).
    """
    from embedclf.workflow._search import search_training
    from embedclf.workflow._search._table import summary_lines

    logger.info(
        f"Searching the training settings within {opts.budget:g} minutes "
        "(search and final training together) ..."
    )
    result = search_training(
        data,
        opts.model,
        cache=opts.cache,
        budget_s=60.0 * opts.budget,
        image_size=opts.image_size,
        resample=opts.resample,
        crop_fraction=opts.crop_fraction,
        batch_size=opts.batch_size,
        progress=opts.progress is True,
        unknown=opts.unknown,
        class_weight=None if opts.class_weight == "none" else opts.class_weight,
        n_jobs=opts.n_jobs,
        runtime=opts.runtime,
        precision=opts.precision,
        on_step=logger.info,
    )
    for line in summary_lines(result):
        logger.info(line)
    for key, value in result.chosen.items():
        setattr(opts, _KEYWORDS.get(key, key), value)
    if opts.classifier == "mlp":
        opts.C, opts.scaling = "auto", "auto"
    return result


def searched_metrics(metrics: dict, result) -> dict:
    """The run's ``metrics`` after the search ``result``, as a new dict.

    The estimate becomes the search's cross-fitted one; the selection's own
    estimate is kept as ``selection_estimate``. ``metrics`` is left as it
    is, so this is called before the manifest and the result are built.
    """
    return {
        **metrics,
        "selection_rule": "budget-search",
        "estimate": result.estimate,
        "selection_estimate": metrics.get("estimate"),
    }
