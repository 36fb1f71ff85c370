"""``embedclf.predict`` and ``embedclf.evaluate``: using a model directory.

Load MODEL_DIR (its backbone checked and found from any folder, the training
cache reused when it still exists), embed the images with the preprocessing
recorded at training, and answer with the head (averaged over the recorded
test views). The CLI verbs of the same names print what these return.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "EvaluationResult",
    "evaluate",
    "failure_reason",
    "load_for_prediction",
    "predict",
]

logger = logging.getLogger("embedclf")


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


def load_for_prediction(model_dir, *, model=None, cache=None):
    """``(ModelDir, backbone handle, cache)`` for predicting with ``model_dir``.

    Without ``cache``, the cache the model was trained with, when it still
    exists.
    """
    from embedclf.workflow._model_dir import (
        check_backbone,
        load_model_dir,
        remembered_cache,
    )

    loaded = load_model_dir(model_dir)
    handle = check_backbone(loaded, model)
    if cache is None:
        cache = remembered_cache(loaded)
        if cache is not None:
            logger.info(
                "using the cache %s that %s was trained with (--cache overrides it)",
                cache,
                model_dir,
            )
    return loaded, handle, cache


def _embedder(loaded, handle, cache, batch_size, progress):
    from embedclf.embedding._embedder import ImageEmbedder
    from embedclf.workflow._model_dir import embedder_settings

    return ImageEmbedder(
        model=handle,
        cache=cache,
        batch_size=batch_size,
        on_error="nan",
        progress=progress,
        **embedder_settings(loaded.manifest),
    )


def _answers(loaded, embedder, paths, test_views):
    """(X, readable mask, labels, probabilities) of ``paths``."""
    from embedclf.workflow._train._views import predict_with_views

    X = embedder.transform(paths)
    failed = set(embedder.failed_paths_.tolist())
    ok = np.array([p not in failed for p in paths], dtype=bool)
    views = test_views or loaded.manifest.get("test_views", "none")
    good = [p for p, g in zip(paths, ok) if g]
    labels, proba = predict_with_views(
        loaded.head, X[ok], good, embedder, test_views=views,
        augmentation=loaded.manifest.get("augmentation"),
    )  # fmt: skip
    return X, ok, labels, proba


def failure_reason(path: str) -> str:
    from embedclf.embedding._images import load_image

    try:
        load_image(path, (8, 8))
    except (OSError, ValueError) as exc:
        return str(exc)
    return f"Could not embed {path!r}."


def _inputs(paths_or_dir) -> tuple[list[str], set[str]]:
    """(image paths, the inputs that do not exist) of files and folders.

    Folders give their image files (recursively); a missing input stays in
    place, to be reported as missing, not as an unreadable image file.
    """
    from embedclf.embedding._images import IMAGE_EXTENSIONS
    from embedclf.workflow._datasets import walk_files

    if isinstance(paths_or_dir, (str, os.PathLike)):
        paths_or_dir = [paths_or_dir]
    files, missing = [], set()
    for item in map(os.fspath, paths_or_dir):
        if os.path.isdir(item):
            files.extend(
                p
                for p in walk_files(item)
                if os.path.splitext(p)[1].lower() in IMAGE_EXTENSIONS
            )
            continue
        if not os.path.lexists(item):
            missing.add(item)
        files.append(item)
    return files, missing


def predict(
    model_dir, paths_or_dir, *, model=None, cache=None, test_views=None, top_k=5,
    batch_size=32, progress="auto",
):  # fmt: skip
    """The top labels of images, as ``embedclf predict --json`` prints them.

    Parameters
    ----------
    model_dir : str or os.PathLike
        A model directory written by :func:`embedclf.train`.
    paths_or_dir : str, os.PathLike or list of them
        Image files, and folders whose image files (recursively) are read.
    model : str or list of str, default=None
        The backbone(s), when they moved; None finds the recorded ones.
    cache : str or os.PathLike, default=None
        None uses the training cache when it still exists.
    test_views : {"none", "flip", "train"}, default=None
        None uses the model's (set at training).
    top_k : int, default=5
    batch_size : int, default=32
    progress : bool or "auto", default="auto"

    Returns
    -------
    results : list of dict
        One per image, in order: ``path``, ``label`` and ``top_k`` (a list
        of ``label``/``score``), or ``path`` and ``error`` for a file that
        could not be read or an input that does not exist.
    """
    if top_k < 1:
        raise ValueError(f"top_k (--top-k) must be at least 1; got {top_k}.")
    loaded, handle, cache = load_for_prediction(model_dir, model=model, cache=cache)
    paths, missing = _inputs(paths_or_dir)
    if not paths:
        raise ValueError(
            f"No image files found in {paths_or_dir}. Pass image files or folders."
        )
    results = []
    embedder = _embedder(loaded, handle, cache, batch_size, progress)
    _, ok, labels, proba = _answers(loaded, embedder, paths, test_views)
    classes = [str(c) for c in loaded.head.classes_]
    rows = iter(range(len(labels)))
    for path, good in zip(paths, ok):
        if path in missing:
            error = (
                f"No file or folder {path!r}: it does not exist. Check the path, "
                "or remove it from the input list."
            )
            results.append({"path": path, "error": error})
            continue
        if not good:
            results.append({"path": path, "error": failure_reason(path)})
            continue
        j = next(rows)
        order = np.argsort(-proba[j])[:top_k]
        top = [{"label": classes[c], "score": float(proba[j, c])} for c in order]
        results.append({"path": path, "label": str(labels[j]), "top_k": top})
    return results


def evaluate(
    model_dir, image_dir, *, report_dir=None, model=None, cache=None,
    test_views=None, batch_size=32, progress="auto",
):  # fmt: skip
    """Score a model directory on a labelled folder and write a report.

    Parameters
    ----------
    model_dir : str or os.PathLike
    image_dir : str or os.PathLike
        One subfolder per class (e.g. a test split).
    report_dir : str or os.PathLike, default=None
        None writes ``MODEL_DIR/report-<name of image_dir>``.
    model, cache, test_views, batch_size, progress
        As :func:`predict`.

    Returns
    -------
    result : EvaluationResult
    """
    from embedclf.workflow._report._open_set import open_set_inputs
    from embedclf.workflow._report._write import write_report
    from embedclf.workflow._train._collect import _folder

    loaded, handle, cache = load_for_prediction(model_dir, model=model, cache=cache)
    paths, y_true = _folder(image_dir)
    embedder = _embedder(loaded, handle, cache, batch_size, progress)
    X, ok, y_pred, proba = _answers(loaded, embedder, list(paths), test_views)
    name = Path(image_dir).resolve().name
    out = Path(report_dir or Path(model_dir) / f"report-{name}")
    metrics = write_report(
        out,
        paths[ok],
        y_true[ok],
        y_pred,
        proba,
        loaded.labels,
        title=f"{name}: accuracy {float((y_true[ok] == y_pred).mean()):.4f}",
        open_set=open_set_inputs(loaded.head, X[ok]),
    )
    return EvaluationResult(
        accuracy=metrics["accuracy"],
        metrics=metrics,
        report_dir=out,
        unreadable=[str(p) for p, good in zip(paths, ok) if not good],
    )
