"""What :func:`embedclf.train` returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["TrainResult"]


@dataclass
class TrainResult:
    """What :func:`embedclf.train` made, and how well it scores.

    Attributes
    ----------
    model_dir : pathlib.Path
        The model directory written (``output``).
    report_dir : pathlib.Path or None
        Its ``report/`` (of the testing part, else the validation part, and
        the training curves); None when nothing was written there.
    test_accuracy : float or None
        Accuracy on the testing part (None without one).
    validation_accuracy : float or None
        Accuracy on the validation part of the chosen settings fitted on the
        training part.
    estimate : float or None
        The accuracy the chosen settings were judged by: validation accuracy
        (rule "validation") or grouped cross-validated accuracy (rule
        "grouped-cv"); None when nothing was tuned.
    estimate_rule : str or None
        "validation", "grouped-cv", "mlp-early-stopping" or None.
    params : dict
        The chosen head: ``classifier``, ``C`` (None for "mlp"),
        ``standardize`` (the scaling chosen), ``class_weight``, ``balance``,
        ``unknown`` (the manifest's entry: rule, threshold, recalls),
        ``test_views`` (``"none"``, ``"flip"`` or ``"train"``; a budget
        search may have chosen it).
    metrics : dict
        The manifest's ``metrics`` (with the C grid tried).
    timings : dict
        Seconds spent: ``embed_s``, ``fit_s``, ``test_views_s``, ``total_s``.
    counts : dict
        Images per part (``training``, ``validation``, ``testing``).
    unreadable : list of str
        Files that could not be read, left out.
    report : dict or None
        The report's metrics (``accuracy``, ``per_class``, ``calibration``,
        ``open_set`` ...), as written to ``report/metrics.json``.
    """

    model_dir: Path
    report_dir: Path | None
    test_accuracy: float | None
    validation_accuracy: float | None
    estimate: float | None
    estimate_rule: str | None
    params: dict
    metrics: dict
    timings: dict
    counts: dict = field(default_factory=dict)
    unreadable: list = field(default_factory=list)
    report: dict | None = None
