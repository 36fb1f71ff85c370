"""``embedclf.predict`` (and ``embedclf.evaluate``): using a model directory.

Load MODEL_DIR (its backbone checked and found from any folder, the training
cache reused when it still exists), embed the images with the preprocessing
recorded at training, and answer with the head (averaged over the recorded
test views). A folder written by ``embedclf export --tflite`` is run with
LiteRT instead (``_export/_litert.py``), so a user checks on the desktop what
the phone will answer. ``explain=True`` adds why (``_explain/``). The CLI
verbs of the same names print what these return. Loading and running the
model is ``_loaded_model.py``; ``evaluate`` lives in ``_evaluate.py`` and is
re-exported here.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from embedclf.workflow._evaluate import EvaluationResult, evaluate
from embedclf.workflow._loaded_model import (
    answers,
    load_for_prediction,
    model_embedder,
    model_source,
    run_options,
)

__all__ = [
    "EvaluationResult",
    "evaluate",
    "failure_reason",
    "load_for_prediction",
    "predict",
]

logger = logging.getLogger("embedclf")


def failure_reason(path: str) -> str:
    """Why the image file ``path`` could not be embedded, by decoding it again.

    For the results that list their unreadable files by path only
    (``TrainResult.unreadable``, ``EvaluationResult.unreadable``, the audit's
    and suggest's), whose reasons were not kept; where the embedder is at
    hand, its ``failure_reasons_`` holds the message of the first failure
    (:func:`predict` uses that). Decoding again costs one read of each bad
    file, and it can miss a failure that does not repeat (a file changed
    while it was being embedded): then the message says so generically.
    """
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


def _predict_rows(source, paths, options, explain):
    """(classes, labels, proba, ok, error by path, explanations or None)."""
    if not isinstance(source, tuple):  # a TensorFlow Lite export
        proba, labels, ok, errors = source.predict_files(paths)
        bad = dict(zip([p for p, g in zip(paths, ok) if not g], errors))
        return [str(c) for c in source.classes_], labels, proba, ok, bad, None
    loaded, handle, cache = source
    embedder = model_embedder(loaded, handle, cache, options)
    X, ok, labels, proba = answers(loaded, embedder, paths, options["test_views"])
    reasons = dict(zip(embedder.failed_paths_.tolist(), embedder.failure_reasons_))
    bad = {p: str(reasons[p]) for p, g in zip(paths, ok) if not g}
    explanations = None
    if explain and ok.any():
        from embedclf.workflow._explain._explain import explain_predictions

        good = [p for p, g in zip(paths, ok) if g]
        explanations = (
            explain_predictions(loaded, embedder, good, X[ok], proba),
            loaded.manifest.get("crop_fraction", 1.0),
        )
    classes = [str(c) for c in loaded.head.classes_]
    return classes, labels, proba, ok, bad, explanations


def _with_explanations(results, explanations, explain_dir):
    """Add ``neighbours``/``activation_map`` to the answered results.

    With ``explain_dir``, also write ``explain_dir/explain.html``; returns
    its path (or None).
    """
    found, crop_fraction = explanations
    good = [r for r in results if "error" not in r]
    for r, e in zip(good, found):
        r["neighbours"] = e["neighbours"]
        if "neighbours_reason" in e:
            r["neighbours_reason"] = e["neighbours_reason"]
        r["activation_map"] = e["activation_map"]
    if explain_dir is None:
        return None
    from embedclf.workflow._explain._explain import render_explanations
    from embedclf.workflow._explain._html import write_explanations_page

    out = Path(explain_dir)
    paths = [r["path"] for r in good]
    snippets = render_explanations(
        found, paths, out / "explain", "explain", crop_fraction=crop_fraction
    )
    labels = [r["label"] for r in good]
    scores = [r["top_k"][0]["score"] for r in good]
    return write_explanations_page(out, paths, labels, scores, snippets)


def predict(
    model_dir, paths_or_dir, *, model=None, cache=None, test_views=None, top_k=5,
    batch_size=32, progress="auto", explain=False, explain_dir=None, runtime=None,
    precision=None,
):  # fmt: skip
    """The top labels of images, as ``embedclf predict --json`` prints them.

    Parameters
    ----------
    model_dir : str or os.PathLike
        A model directory written by :func:`embedclf.train`, or a folder
        written by ``embedclf export --tflite`` (run with LiteRT; then
        ``model``, ``test_views`` and ``explain`` do not apply).
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
    explain : bool, default=False
        Add why: ``neighbours`` (the nearest training photos of the
        predicted and the runner-up class, by cosine) and ``activation_map``
        (exact, where the backbone exposes its feature map; otherwise the
        reason it is not available).
    explain_dir : str or os.PathLike, default=None
        With ``explain``, also write ``explain_dir/explain.html``.
    runtime : {"auto", "openvino", "tensorflow"}, default=None
        None uses the runtime the model was trained with (a model directory
        without one: TensorFlow); another one is logged, since its vectors
        differ slightly (docs/runtimes.md).
    precision : {"auto", "fp32", "bf16", "int8"}, default=None
        As ``runtime``, for the precision.

    Returns
    -------
    results : list of dict
        One per image, in order: ``path``, ``label`` and ``top_k`` (a list
        of ``label``/``score``), or ``path`` and ``error`` for a file that
        could not be read or an input that does not exist.
    """
    if top_k < 1:
        raise ValueError(f"top_k (--top-k) must be at least 1; got {top_k}.")
    options = run_options(
        model, cache, test_views, batch_size, progress, runtime, precision
    )
    source = model_source(model_dir, options, explain)  # fails before the listing
    paths, missing = _inputs(paths_or_dir)
    if not paths:
        raise ValueError(
            f"No image files found in {paths_or_dir}. Pass image files or folders."
        )
    results = []
    classes, labels, proba, ok, bad, explanations = _predict_rows(
        source, paths, options, explain
    )
    rows = iter(range(len(paths) - len(bad)))
    for path, good in zip(paths, ok):
        if path in missing:
            error = (
                f"No file or folder {path!r}: it does not exist. Check the path, "
                "or remove it from the input list."
            )
            results.append({"path": path, "error": error})
            continue
        if not good:
            results.append({"path": path, "error": bad[path]})
            continue
        j = next(rows)
        order = np.argsort(-proba[j])[:top_k]
        top = [{"label": classes[c], "score": float(proba[j, c])} for c in order]
        results.append({"path": path, "label": str(labels[j]), "top_k": top})
    if explanations is not None:
        page = _with_explanations(results, explanations, explain_dir)
        if page is not None:
            logger.info("Explanations written to %s", page)
    return results
