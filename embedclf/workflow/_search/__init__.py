"""``embedclf train --budget``: search the training levers within a time budget.

Private subpackage of ``workflow``. Given the collected parts (training and
validation images), the backbones and the cache, :func:`search_training`
tries, cheapest first, the levers ``embedclf train`` already has: each
backbone alone or all concatenated (each L2-normalised), ``C`` and scaling,
test-time views (flip, the training distortions), training views (2, 4
copies) and the MLP head. Each step's cost is estimated from measured
throughput before it is spent; steps that do not fit are listed as skipped.
The choice comes back as ``train`` keyword arguments with an estimate that
accounts for the selection (cross-fitted, ``_estimate.py``).

Modules: ``_recommend`` (backbones to try online, as data), ``_sources``
(vectors and their cost: from ImageEmbedder and the cache, or from arrays),
``_budget`` (the clock and the cost rates), ``_heldout`` (held-out
probabilities of each candidate: validation part or grouped folds),
``_estimate`` (choice rules, cross-fitted estimate), ``_search`` (the
search's state, pricing and table rows, :class:`SearchResult`), ``_run``
(the steps in order, :func:`search_vectors`, :func:`search_training`),
``_table`` (search.tsv, printed lines).
"""

from embedclf._lazy import lazy_exports

__all__ = [
    "RECOMMENDED_BACKBONES",
    "SearchResult",
    "search_training",
    "search_vectors",
    "stronger_backbone_hint",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "RECOMMENDED_BACKBONES": "embedclf.workflow._search._recommend",
        "stronger_backbone_hint": "embedclf.workflow._search._recommend",
        "SearchResult": "embedclf.workflow._search._search",
        "search_training": "embedclf.workflow._search._run",
        "search_vectors": "embedclf.workflow._search._run",
    },
)
