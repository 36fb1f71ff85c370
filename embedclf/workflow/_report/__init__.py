"""The evaluation report of a model: metrics, figures, pages, curves.

``_write``: the assembler (``write_report``) and the per-class metrics;
``_figures``: confusion matrix, calibration; ``_html``: the misclassified
page; ``_open_set``: the unknown answer's part; ``_curves``: the training
curves of ``train``. The thumbnails are ``workflow/_thumbnails.py``, shared
with the audit page.
"""

from embedclf.workflow._report._write import (
    classification_metrics,
    format_metrics,
    write_report,
)

__all__ = ["classification_metrics", "format_metrics", "write_report"]
