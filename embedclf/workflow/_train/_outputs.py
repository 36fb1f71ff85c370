"""What a ``train`` run leaves behind: manifest, report, curves, summaries."""

from __future__ import annotations

import logging
import os

import numpy as np

__all__ = [
    "backbone_entry",
    "build_manifest",
    "report_writer",
    "training_index",
    "write_summaries",
]

logger = logging.getLogger("embedclf.train")


def backbone_entry(model):
    """The manifest's ``backbone``: one dict, or a list for several backbones."""
    from embedclf.embedding._backbones import resolve_backbone
    from embedclf.embedding._multi import backbone_handles

    entries = []
    for handle in backbone_handles(model):
        spec = resolve_backbone(handle)
        entries.append(
            {"handle": spec.handle, "identity": spec.identity, "kind": spec.kind}
        )
    return entries[0] if isinstance(model, str) else entries


def build_manifest(opts, run, head, tuning, metrics, timings) -> dict:
    """The manifest of the run (``save_model_dir`` adds files and versions).

    ``metrics`` are final (with a budget: :func:`~._budget.searched_metrics`);
    a budget search also gives the ``search`` entry (table, choice, estimate).
    """
    from embedclf.embedding._images import preprocessing_tag
    from embedclf.embedding._runtime import runtime_manifest
    from embedclf.workflow._train._options import augmentation_entry
    from embedclf.workflow._train._unknown import unknown_entry

    manifest = {
        "backbone": run.backbone,
        "image_size": run.image_size,
        "preprocessing": preprocessing_tag(opts.resample, opts.crop_fraction),
        "resample": opts.resample,
        "crop_fraction": opts.crop_fraction,
        "normalize_each": opts.normalize_each,
        **runtime_manifest(run.embedder),
        "test_views": opts.test_views,
        "embedding_dim": int(run.X.shape[1]),
        "classifier": {
            "type": opts.classifier,
            "C": tuning["best_C"],
            "standardize": tuning.get("standardize"),
            "class_weight": opts.class_weight,
            "balance": opts.balance,
            "C_grid": opts.C if isinstance(opts.C, str) else list(opts.C),
        },
        "unknown": unknown_entry(head, opts.unknown),
        "augmentation": augmentation_entry(opts.distortions, opts.copies),
        "data": {  # absolute: export's calibration reads them from any folder
            "image_dir": os.path.abspath(opts.image_dir),
            "layout": run.data.layout,
            "sources": {k: os.path.abspath(v) for k, v in run.data.sources.items()},
            "unreadable": run.unreadable,
            "excluded": run.data.excluded,
        },
        "cache": opts.cache,
        "metrics": metrics,
        "timings": timings,
    }
    if run.search is not None:
        manifest["search"] = run.search.to_manifest()
    return manifest


def report_writer(run, head, tuning, predicted, found: dict):
    """The ``write_report`` callback of ``save_model_dir`` for this run.

    It writes the report of the testing part (else the validation part) and
    the training curves into the new version's ``report/`` folder, and puts
    the report's metrics in ``found["report"]``.
    """
    from embedclf.workflow._report._curves import CURVES_FILE, plot_training_curves
    from embedclf.workflow._report._open_set import open_set_inputs
    from embedclf.workflow._report._write import write_report

    te, va = run.parts["testing"], run.parts["validation"]
    eval_idx, eval_name = (te, "testing") if len(te) else (va, "validation")

    def write(folder):
        if len(eval_idx):
            y_pred, proba = predicted[eval_name]
            labels = run.labels[eval_idx]
            accuracy = float(np.mean(y_pred == labels))
            found["report"] = write_report(
                folder,
                run.paths[eval_idx],
                labels,
                y_pred,
                proba,
                [str(c) for c in head.classes_],
                title=f"{eval_name} part: accuracy {accuracy:.4f}",
                open_set=open_set_inputs(head, run.X[eval_idx]),
            )
        plot_training_curves(
            folder / CURVES_FILE,
            head,
            tuning["grid"],
            best_C=tuning["best_C"],
            rule=tuning.get("rule"),
        )
        if run.search is not None:  # train(budget=...): the search table
            from embedclf.workflow._search._table import write_search_table

            write_search_table(folder, run.search)

    return write


def write_summaries(summaries_dir, run, head, tuning) -> None:
    """TensorBoard scalars (C grid or epochs) and the embedding projector."""
    from embedclf.workflow._report._curves import epoch_curves
    from embedclf.workflow._summaries import (
        write_epoch_scalars,
        write_projector,
        write_scalars,
    )

    if epoch_curves(head) is not None:
        write_epoch_scalars(summaries_dir, epoch_curves(head))
    else:
        grid = [
            row
            for row in tuning["grid"]
            if row.get("standardize", tuning.get("standardize"))
            == tuning.get("standardize")
        ] or [_single_c_row(head, tuning, run)]
        write_scalars(summaries_dir, grid)
    write_projector(summaries_dir, run.X, run.labels, run.paths, run.split)
    logger.info(
        f"TensorBoard files written to {summaries_dir} "
        f"(tensorboard --logdir {summaries_dir})."
    )


def _accuracy(head, X, y):
    if len(y) == 0:
        return None
    return float(np.mean(head.predict(X).astype(str) == y))


def _single_c_row(head, tuning, run):
    """Summary scalars without a grid: training part vs validation part."""
    from embedclf.workflow._train._tune import cross_entropy_score

    tr, va = run.parts["training"], run.parts["validation"]
    val = va if len(va) else tr
    X, labels = run.X, run.labels
    return {
        "C": tuning["best_C"],
        "train_accuracy": _accuracy(head, X[tr], labels[tr]),
        "validation_accuracy": _accuracy(head, X[val], labels[val]),
        "train_cross_entropy": cross_entropy_score(head, X[tr], labels[tr]),
        "validation_cross_entropy": cross_entropy_score(head, X[val], labels[val]),
    }


def training_index(opts, run, tuning: dict):
    """The photos the head was fitted on, as the model directory keeps them.

    Validation photos count when the head is refitted on them (the
    validation rule) or merged in (the hash split). They are the neighbours
    of ``--explain`` and the labelled set of ``embedclf suggest``.
    """
    from embedclf.workflow._explain._training_index import training_index_file

    tr, va = run.parts["training"], run.parts["validation"]
    refit = tuning.get("rule") == "validation" or run.data.layout == "hash-split"
    fitted = np.r_[tr, va] if refit else tr
    return training_index_file(run.paths[fitted], run.labels[fitted], cache=opts.cache)
