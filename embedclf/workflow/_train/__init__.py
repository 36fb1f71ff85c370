"""The policy of ``embedclf train``, as library functions.

``_collect``: the labelled images and their split; ``_select``: choosing C
and scaling; ``_fit_memo``: reusing a fitted head; ``_views``: test-time
views; ``_balance``: views for small classes.
"""

from embedclf.workflow._train._collect import (
    SPLITS,
    LabelledImages,
    collect_images,
    parse_unknown,
)
from embedclf.workflow._train._tune import (
    MIN_VALIDATION,
    cross_entropy_score,
    cv_splits,
    make_head,
    wrap_open_set,
)

__all__ = [
    "MIN_VALIDATION",
    "SPLITS",
    "LabelledImages",
    "collect_images",
    "cross_entropy_score",
    "cv_splits",
    "make_head",
    "parse_unknown",
    "wrap_open_set",
]
