"""A model directory (or TFLite export) ready to answer, for predict/evaluate.

Loading it with its backbone checked and its training cache found
(:func:`load_for_prediction`), or a LiteRT runner for a folder written by
``embedclf export --tflite``; the ImageEmbedder with the preprocessing and
runtime recorded at training; and its answers for a list of images,
averaged over the recorded test views.
"""

from __future__ import annotations

import logging
import os

import numpy as np

__all__ = [
    "answers",
    "load_for_prediction",
    "model_embedder",
    "model_source",
    "run_options",
]

logger = logging.getLogger("embedclf")


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


def model_embedder(loaded, handle, cache, options):
    """The ImageEmbedder of ``loaded``: its recorded preprocessing and runtime.

    ``options`` may override the runtime and precision (logged when they
    differ from the recorded ones).
    """
    from embedclf.embedding._embedder import ImageEmbedder
    from embedclf.workflow._model_dir import embedder_settings

    overrides = {
        k: options[k] for k in ("runtime", "precision") if options.get(k) is not None
    }
    return ImageEmbedder(
        model=handle,
        cache=cache,
        batch_size=options["batch_size"],
        on_error="nan",
        progress=options["progress"],
        **embedder_settings(loaded.manifest, **overrides),
    )


def answers(loaded, embedder, paths, test_views):
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


def _lite_runner(model_dir, **flags):
    """The LiteRT runner of a TFLite export folder, or None for a model dir.

    ``flags`` maps a flag name to whether it was given: none of them applies
    to an export, whose backbone and views were fixed when it was written.
    """
    from embedclf.workflow._export._litert import LiteRTClassifier, is_tflite_export

    if not is_tflite_export(model_dir):
        return None
    for flag, given in flags.items():
        if given:
            raise ValueError(
                f"{flag} does not apply to the TensorFlow Lite export "
                f"{os.fspath(model_dir)!r}: its backbone and test views were fixed "
                "when it was exported. Drop the flag, or pass the model directory."
            )
    return LiteRTClassifier(model_dir)


def run_options(model, cache, test_views, batch_size, progress, runtime, precision):
    """The keywords of :func:`predict`/:func:`evaluate` that find and run the
    backbone, as one dict (read by :func:`model_source` and
    :func:`model_embedder`)."""
    return {
        "model": model,
        "cache": cache,
        "test_views": test_views,
        "batch_size": batch_size,
        "progress": progress,
        "runtime": runtime,
        "precision": precision,
    }


def model_source(model_dir, options, explain):
    """A ``LiteRTClassifier`` for a TFLite export, else (ModelDir, handle, cache)."""
    lite = _lite_runner(
        model_dir,
        **{
            "--model": bool(options["model"]),
            "--test-views": bool(options["test_views"]),
            "--explain": explain,
            "--runtime": options.get("runtime") is not None,
            "--precision": options.get("precision") is not None,
        },
    )
    if lite is not None:
        return lite
    return load_for_prediction(
        model_dir, model=options["model"], cache=options["cache"]
    )
