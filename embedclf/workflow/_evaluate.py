"""``embedclf.evaluate``: scoring a model directory on a labelled folder.

The images are answered as ``embedclf.predict`` answers them
(``_loaded_model.py``: a model directory or a TFLite export), then the report
is written (``_report/``), with its open-set section and, with
``explain=True``, why each misclassified image got its answer (``_explain/``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embedclf.workflow._loaded_model import (
    answers,
    model_embedder,
    model_source,
    run_options,
)

__all__ = ["EvaluationResult", "evaluate"]


@dataclass
class EvaluationResult:
    """What :func:`embedclf.evaluate` measured and wrote.

    Attributes
    ----------
    accuracy : float
        Accuracy on the readable images.
    metrics : dict
        The report's metrics (per class, top confusions, calibration,
        ``open_set``), as in ``metrics.json``.
    report_dir : pathlib.Path
        Where the report was written.
    unreadable : list of str
        Files that could not be read, left out.
    """

    accuracy: float
    metrics: dict
    report_dir: Path
    unreadable: list


def _evaluate_rows(source, paths, options):
    """(X or None, ok, y_pred, proba, classes, embedder or None, unreadable)."""
    if not isinstance(source, tuple):  # a TensorFlow Lite export
        proba, y_pred, ok, _ = source.predict_files(list(paths))
        bad = [str(p) for p, g in zip(paths, ok) if not g]
        return None, ok, y_pred, proba, list(source.classes_), None, bad
    loaded, handle, cache = source
    embedder = model_embedder(loaded, handle, cache, options)
    X, ok, y_pred, proba = answers(loaded, embedder, list(paths), options["test_views"])
    bad = [str(p) for p, g in zip(paths, ok) if not g]
    return X[ok], ok, y_pred, proba, loaded.labels, embedder, bad


def evaluate(
    model_dir, image_dir, *, report_dir=None, model=None, cache=None,
    test_views=None, batch_size=32, progress="auto", explain=False, runtime=None,
    precision=None,
):  # fmt: skip
    """Score a model directory on a labelled folder and write a report.

    Parameters
    ----------
    model_dir : str or os.PathLike
        A model directory, or a folder written by ``embedclf export
        --tflite`` (run with LiteRT; its report has no open-set section).
    image_dir : str or os.PathLike
        One subfolder per class (e.g. a test split).
    report_dir : str or os.PathLike, default=None
        None writes ``MODEL_DIR/report-<name of image_dir>``.
    model, cache, test_views, batch_size, progress, runtime, precision
        As :func:`predict`.
    explain : bool, default=False
        Show in ``misclassified.html``, for each misclassified image, the
        nearest training photos of the predicted and runner-up class and
        the activation map (where available).

    Returns
    -------
    result : EvaluationResult
    """
    from embedclf.workflow._report._open_set import open_set_inputs
    from embedclf.workflow._report._write import write_report
    from embedclf.workflow._train._collect import _folder

    options = run_options(
        model, cache, test_views, batch_size, progress, runtime, precision
    )
    source = model_source(model_dir, options, explain)
    paths, y_true = _folder(image_dir)
    X, ok, y_pred, proba, classes, embedder, bad = _evaluate_rows(
        source, paths, options
    )
    y_pred = np.asarray(y_pred).astype(str)
    explanations = open_set = None
    if isinstance(source, tuple):
        open_set = open_set_inputs(source[0].head, X)
        if explain:
            from embedclf.workflow._explain._explain import explain_misclassified

            explanations = explain_misclassified(
                source[0], embedder, paths[ok], X, proba, y_true[ok], y_pred
            )
    name = Path(image_dir).resolve().name
    out = Path(report_dir or Path(model_dir) / f"report-{name}")
    metrics = write_report(
        out,
        paths[ok],
        y_true[ok],
        y_pred,
        proba,
        classes,
        title=f"{name}: accuracy {float((y_true[ok] == y_pred).mean()):.4f}",
        open_set=open_set,
        explanations=explanations,
    )
    return EvaluationResult(
        accuracy=metrics["accuracy"],
        metrics=metrics,
        report_dir=out,
        unreadable=bad,
    )
