"""``embedclf.train``: the whole retrain workflow as one library function.

Collect the labelled images, embed them through the cache, add the training
views, choose and fit the head (and the unknown rule), predict the held-out
parts, and write the model directory with its report. Progress goes to the
``embedclf.train`` logger, at INFO (``embedclf train`` prints it); the
figures come back in a :class:`TrainResult`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from embedclf.embedding._backbones import DEFAULT_MODEL
from embedclf.workflow._train._options import TrainOptions, check_options
from embedclf.workflow._train._result import TrainResult

__all__ = ["TrainResult", "train"]

logger = logging.getLogger("embedclf.train")


@dataclass
class _Run:
    """The state of one run between its steps."""

    data: object
    backbone: object
    image_size: list | None
    embedder: object = None
    X: np.ndarray = None
    paths: np.ndarray = None
    labels: np.ndarray = None
    split: np.ndarray = None
    parts: dict = field(default_factory=dict)
    unreadable: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)
    search: object = None  # the SearchResult of train(budget=...)


def build_embedder(opts: TrainOptions, model, image_size, training_paths=None):
    """The ImageEmbedder of a train run: the one place it is built.

    int8 calibrates on ``training_paths`` (the user's own training photos).
    """
    from embedclf.embedding._embedder import ImageEmbedder

    calibration = training_paths if opts.precision == "int8" else None
    return ImageEmbedder(
        model=model,
        cache=opts.cache,
        batch_size=opts.batch_size,
        on_error="nan",
        progress=opts.progress,
        image_size=image_size,
        resample=opts.resample,
        crop_fraction=opts.crop_fraction,
        normalize_each=opts.normalize_each,
        runtime=opts.runtime,
        precision=opts.precision,
        calibration_images=calibration,
    )


def train(
    image_dir, *, output, model=DEFAULT_MODEL, cache=None, force=False,
    val_dir=None, test_dir=None, validation_percentage=10, testing_percentage=10,
    exclude=None, classifier="softmax", C="auto", scaling="auto", balance="none",
    class_weight=None, unknown="off", unknown_dir=None, random_crop=0.0,
    random_scale=0.0, random_brightness=0.0, flip_left_right=False,
    augment_copies=None, test_views="none", image_size=None, resample="bilinear",
    crop_fraction=0.875, normalize_each=False, runtime="auto", precision="auto",
    batch_size=32, progress="auto", summaries_dir=None, n_jobs=None, budget=None,
):  # fmt: skip
    """Train a classifier on a folder of class subfolders, as ``embedclf train``.

    Every keyword is the ``embedclf train`` flag of the same name (``--C`` is
    ``C``); see ``embedclf train --help`` and docs/train.md for what each
    does. The model directory written is the command's, figure for figure.

    Parameters
    ----------
    image_dir : str or os.PathLike
        One subfolder per class; or ``train/`` with ``val/`` and/or ``test/``.
    output : str or os.PathLike
        The model directory to write (new, empty, or one to replace).
    model : str or list of str, default=DEFAULT_MODEL
        Backbone handle(s); several are concatenated.
    cache : str or os.PathLike, default=None
        HDF5 embedding cache (also keeps distorted views and fitted heads).
    C : "auto", float, sequence of float or str, default="auto"
        Inverse regularisation strengths to try ("0.1,1" works too).
    class_weight : {"balanced", "none"} or None, default=None
    unknown : "auto", "off" or float, default="off"
    test_views : {"none", "flip", "train"}, default="none"
    image_size : int, default=None
        Side in pixels; None is the backbone's own input size.
    progress : bool or "auto", default="auto"
    runtime : {"auto", "openvino", "tensorflow"}, default="auto"
        What runs the backbone (docs/runtimes.md); recorded in the model
        directory, which ``predict`` and ``evaluate`` then reuse.
    precision : {"auto", "fp32", "bf16", "int8"}, default="auto"
        OpenVINO's arithmetic; int8 calibrates on the training photos.
    budget : float, default=None
        Minutes for searching the training settings and training the best
        (docs/budget.md): the given backbones alone or concatenated, C and
        scaling, test-time and training views, the MLP head. The search
        overrides those keywords; its table goes into the manifest and
        ``report/search.tsv``, and the estimate is its cross-fitted one.
    **others
        ``force``, ``val_dir``, ``test_dir``, ``validation_percentage``,
        ``testing_percentage``, ``exclude``, ``classifier``, ``scaling``, ``balance``,
        ``unknown_dir``, ``random_crop``, ``random_scale``,
        ``random_brightness``, ``flip_left_right``, ``augment_copies``,
        ``resample``, ``crop_fraction``, ``normalize_each``, ``batch_size``,
        ``summaries_dir``, ``n_jobs``: as the flags.

    Returns
    -------
    result : TrainResult

    Raises
    ------
    ValueError, FileNotFoundError, ModelDirError
        Bad settings or folders, checked before any slow step.
    """
    opts = check_options(TrainOptions(**locals()))
    t0 = time.perf_counter()
    run = _prepare(opts)
    if opts.budget is not None:
        from embedclf.workflow._train._budget import apply_budget_search
        from embedclf.workflow._train._outputs import backbone_entry

        run.search = apply_budget_search(opts, run.data)
        check_options(opts)  # the chosen settings, normalised as given ones
        run.backbone = backbone_entry(opts.model)
    _embed(opts, run)
    X_fit, y_fit, groups = _training_rows(opts, run)
    head, tuning = _fit(opts, run, X_fit, y_fit, groups)
    predicted = _predict_parts(opts, run, head)
    result = _save(opts, run, head, tuning, predicted, len(X_fit))
    result.timings["total_s"] = time.perf_counter() - t0
    return result


def _prepare(opts: TrainOptions) -> _Run:
    """Check the output folder and the backbone, collect the images."""
    from embedclf.workflow._model_dir import check_output_dir
    from embedclf.workflow._train._collect import collect_images
    from embedclf.workflow._train._outputs import backbone_entry

    check_output_dir(opts.output, force=opts.force)  # before any slow step
    backbone = backbone_entry(opts.model)  # checks every handle before any work
    data = collect_images(
        opts.image_dir,
        val_dir=opts.val_dir,
        test_dir=opts.test_dir,
        validation_percentage=opts.validation_percentage,
        testing_percentage=opts.testing_percentage,
        exclude=opts.exclude,
    )
    counts = {
        s: int((data.split == s).sum()) for s in ("training", "validation", "testing")
    }
    n_classes = len(np.unique(data.labels[data.split == "training"]))
    logger.info(
        f"Found {counts['training']} training, {counts['validation']} validation "
        f"and {counts['testing']} testing images in {n_classes} classes "
        f"(layout: {data.layout})."
    )
    image_size = [opts.image_size] * 2 if opts.image_size else None
    return _Run(data=data, backbone=backbone, image_size=image_size)


def _embed(opts: TrainOptions, run: _Run) -> None:
    """Embed every image; keep the readable ones; point at twins (leak hint)."""
    from embedclf.workflow._audit._duplicates import leak_hint

    data = run.data
    training = data.paths[data.split == "training"]
    run.embedder = build_embedder(opts, opts.model, run.image_size, training)
    t = time.perf_counter()
    X = run.embedder.transform(data.paths)
    run.timings["embed_s"] = time.perf_counter() - t
    failed = set(run.embedder.failed_paths_.tolist())
    run.unreadable = sorted(failed)
    logger.info(
        f"Embedded {len(data.paths)} images in {run.timings['embed_s']:.1f} s "
        f"({run.embedder.n_computed_} by the backbone, {run.embedder.n_cached_} "
        "from the cache"
        f"{f', {len(failed)} unreadable and left out' if failed else ''})."
    )
    keep = np.array([p not in failed for p in data.paths], dtype=bool)
    run.X, run.paths = X[keep], data.paths[keep]
    run.labels, run.split = data.labels[keep], data.split[keep]
    run.parts = {
        s: np.flatnonzero(run.split == s) for s in ("training", "validation", "testing")
    }
    hint = leak_hint(
        run.X,
        run.split,
        opts.image_dir,
        val_dir=opts.val_dir,
        test_dir=opts.test_dir,
        cache=opts.cache,
        model=opts.model,
    )
    if hint:
        logger.info(hint)


def _training_rows(opts: TrainOptions, run: _Run):
    """Training vectors plus distorted views (and balancing views)."""
    tr = run.parts["training"]
    X_fit, y_fit, groups = run.X[tr], run.labels[tr], None
    if opts.copies:
        from embedclf.embedding._augment import embed_views_like

        t = time.perf_counter()
        views, source, n_computed = embed_views_like(
            run.embedder, run.paths[tr], settings=opts.distortions, copies=opts.copies
        )
        X_fit = np.vstack([X_fit, views])
        y_fit = np.concatenate([y_fit, run.labels[tr][source]])
        groups = np.concatenate([np.arange(len(tr)), source])
        logger.info(
            f"Added {len(views)} distorted views ({opts.copies} per training image) "
            f"in {time.perf_counter() - t:.1f} s ({n_computed} by the backbone)."
        )
    if opts.balance == "views":
        from embedclf.workflow._train._balance import add_balance_views

        t = time.perf_counter()
        X_fit, y_fit, groups, n_extra, n_computed = add_balance_views(
            X_fit, y_fit, groups, run.paths[tr], embedder=run.embedder,
            settings=opts.distortions, copies=opts.copies,
        )  # fmt: skip
        logger.info(
            f"Added {n_extra} distorted views to the classes below the median "
            f"size (--balance views) in {time.perf_counter() - t:.1f} s "
            f"({n_computed} by the backbone)."
        )
    return X_fit, y_fit, groups


def _fit(opts: TrainOptions, run: _Run, X_fit, y_fit, groups):
    """Choose and fit the head; log the choice."""
    from embedclf.workflow._train._fit import fit_head, mlp_summary, selection_lines
    from embedclf.workflow._train._unknown import background_vectors, unknown_text

    t = time.perf_counter()
    X_bg = background_vectors(opts.unknown_dir, run.embedder, opts.unknown)
    va = run.parts["validation"]
    X_val, y_val = run.X[va], run.labels[va]
    if run.data.layout == "hash-split" and len(va):
        from embedclf.workflow._train._select import merge_validation

        X_fit, y_fit, groups, X_val, y_val = merge_validation(
            X_fit, y_fit, groups, X_val, y_val
        )
        logger.info(
            "Hash split: its validation images can be near-duplicates of "
            "training ones (shots of one session), so C is chosen by grouped "
            "cross-validation on training + validation instead."
        )
    head, tuning = fit_head(opts, X_fit, y_fit, groups, X_val, y_val, X_bg)
    lines = [mlp_summary(head)] if opts.classifier == "mlp" else selection_lines(tuning)
    for line in lines:
        logger.info(line)
    if opts.unknown != "off":
        logger.info(unknown_text(head, opts.unknown))
    run.timings["fit_s"] = time.perf_counter() - t
    return head, tuning


def _predict_parts(opts: TrainOptions, run: _Run, head) -> dict:
    """(labels, probabilities) of the validation and testing parts."""
    from embedclf.workflow._train._options import augmentation_entry
    from embedclf.workflow._train._views import predict_with_views

    t = time.perf_counter()
    augmentation = augmentation_entry(opts.distortions, opts.copies)
    predicted = {
        name: predict_with_views(
            head,
            run.X[idx],
            run.paths[idx],
            run.embedder,
            test_views=opts.test_views,
            augmentation=augmentation,
        )  # fmt: skip
        for name, idx in (
            ("validation", run.parts["validation"]),
            ("testing", run.parts["testing"]),
        )
    }
    run.timings["test_views_s"] = time.perf_counter() - t
    return predicted


def _save(opts, run, head, tuning, predicted, n_fit) -> TrainResult:
    """Metrics, manifest, model directory with its report, summaries."""
    from embedclf.workflow._model_dir import save_model_dir
    from embedclf.workflow._report._open_set import format_open_set
    from embedclf.workflow._train._outputs import (
        build_manifest,
        report_writer,
        training_index,
        write_summaries,
    )

    metrics = _metrics(opts, run, tuning, predicted, n_fit)
    if run.search is not None:  # budget: the estimate is the search's
        from embedclf.workflow._train._budget import searched_metrics

        metrics = searched_metrics(metrics, run.search)
    manifest = build_manifest(opts, run, head, tuning, metrics, dict(run.timings))
    found = {}
    out = save_model_dir(
        opts.output, head, manifest, force=opts.force,
        write_report=report_writer(run, head, tuning, predicted, found),
        extra_files={"training_photos": training_index(opts, run, tuning)},
    )  # fmt: skip
    report = found.get("report")
    if report is not None and "open_set" in report:
        logger.info(format_open_set(report["open_set"]))
    if opts.summaries_dir:
        write_summaries(opts.summaries_dir, run, head, tuning)
    estimate = metrics["estimate"]
    if run.search is not None and estimate is not None:
        logger.info(f"Estimate after the search (cross-fitted) = {estimate:.2%}")
    return _result(opts, run, Path(out), tuning, metrics, manifest, report)


def _metrics(opts, run, tuning, predicted, n_fit) -> dict:
    """The manifest's ``metrics`` (logs the validation accuracy)."""
    from embedclf.workflow._model_dir import manifest_c_grid

    tr, va, te = (run.parts[s] for s in ("training", "validation", "testing"))
    # The validation accuracy is that of the chosen settings fitted on the
    # training part alone (the head itself may be refitted on training +
    # validation, which would make its own validation score meaningless).
    val_acc = tuning.get("validation_accuracy")
    test_acc = (
        float(np.mean(predicted["testing"][0] == run.labels[te])) if len(te) else None
    )
    views_text = "" if opts.test_views == "none" else f", test views: {opts.test_views}"
    if val_acc is not None:
        logger.info(f"Validation accuracy = {val_acc:.2%} (N={len(va)}{views_text})")
    return {
        "selection_rule": tuning.get("rule"),
        "estimate": tuning.get("estimate"),
        "cv_accuracy": tuning["cv_accuracy"],
        "validation_accuracy": val_acc,
        "test_accuracy": test_acc,
        "n_training": int(len(tr)),
        "n_validation": int(len(va)),
        "n_testing": int(len(te)),
        "n_augmented_views": int(n_fit - len(tr)),
        "c_grid": manifest_c_grid(tuning["grid"], tuning.get("rule")),
    }


def _result(opts, run, out: Path, tuning, metrics, manifest, report) -> TrainResult:
    """The :class:`TrainResult` of a saved model directory ``out``."""
    tr, va, te = (run.parts[s] for s in ("training", "validation", "testing"))
    return TrainResult(
        model_dir=out,
        report_dir=out / "report" if (out / "report").is_dir() else None,
        test_accuracy=metrics["test_accuracy"],
        validation_accuracy=metrics["validation_accuracy"],
        estimate=metrics["estimate"],
        estimate_rule=metrics["selection_rule"],
        params={
            "classifier": opts.classifier,
            "C": tuning["best_C"],
            "standardize": tuning.get("standardize"),
            "class_weight": opts.class_weight,
            "balance": opts.balance,
            "unknown": manifest["unknown"],
            "test_views": opts.test_views,
        },
        metrics=metrics,
        timings=dict(run.timings),
        counts={"training": len(tr), "validation": len(va), "testing": len(te)},
        unreadable=list(run.unreadable),
        report=report,
    )
