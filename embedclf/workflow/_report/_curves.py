"""Training curves of a head as a PNG (``report/training_curves.png``).

* An MLP head (:class:`~embedclf.MLPHeadClassifier`): training loss and
  held-out accuracy after each epoch, with the epoch whose weights were kept.
* A head tuned over a C grid (softmax, SVM): training and cross-validated
  accuracy against C, with the chosen C.

The numbers come from the fitted head (``loss_curve_``,
``validation_scores_``) and from ``tune_head``'s grid; nothing is recomputed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["CURVES_FILE", "epoch_curves", "plot_training_curves"]

CURVES_FILE = "training_curves.png"


def epoch_curves(head) -> dict | None:
    """Per-epoch ``loss`` and ``validation_accuracy`` (or None) of an MLP head.

    Looks inside an OpenSetClassifier (``estimator_``); None for heads that
    are not trained by epochs.
    """
    inner = getattr(head, "estimator_", head)
    loss = getattr(inner, "loss_curve_", None)
    if loss is None:
        return None
    val = getattr(inner, "validation_scores_", None)
    return {
        "loss": np.asarray(loss, dtype=float),
        "validation_accuracy": None if val is None else np.asarray(val, dtype=float),
    }


def plot_training_curves(path, head, grid=(), *, best_C=None, rule=None) -> Path | None:
    """Draw the head's curves into ``path``; None when there is nothing to draw.

    Parameters
    ----------
    path : str or os.PathLike
        The PNG to write.
    head : fitted classifier
    grid : sequence of dict, default=()
        ``tune_head``'s rows (``C``, ``train_accuracy``,
        ``validation_accuracy``).
    best_C : float or None, default=None
        The C that was kept, marked on the C curve.
    rule : str or None, default=None
        How the rows were scored: "validation" (candidates fitted on the
        training part, scored on the validation part) or cross-validation.
        Rows of several scalings (``standardize``) are drawn as one curve
        each, sorted by C.
    """
    from embedclf.workflow._report._figures import _import_pyplot

    curves = epoch_curves(head)
    if curves is None and len(grid) < 2:
        return None
    plt = _import_pyplot()
    path = Path(path)
    if curves is not None:
        fig = _plot_epochs(plt, curves)
    else:
        fig = _plot_c_grid(plt, grid, best_C, rule)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _plot_epochs(plt, curves):
    """Loss and held-out accuracy per epoch (:func:`epoch_curves`) side by side."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    epochs = np.arange(1, len(curves["loss"]) + 1)
    ax_loss.plot(epochs, curves["loss"], marker=".", color="tab:blue")
    ax_loss.set(
        xlabel="epoch",
        ylabel="loss (cross-entropy + L2, log scale)",
        title="Training loss",
        yscale="log",
    )
    val = curves["validation_accuracy"]
    if val is not None:
        best = int(np.argmax(val))
        ax_acc.plot(epochs, val, marker=".", color="tab:orange")
        ax_acc.axvline(best + 1, color="grey", linestyle="--", linewidth=1)
        ax_acc.annotate(
            f"kept: epoch {best + 1}, {val[best]:.3f}",
            (best + 1, val[best]),
            textcoords="offset points",
            xytext=(6, -14),
            fontsize=9,
        )
        ax_acc.set(
            xlabel="epoch",
            ylabel="accuracy",
            title="Accuracy on the held-out part of the training images",
        )
    else:
        ax_acc.text(0.5, 0.5, "no early stopping:\nno held-out curve", ha="center")
        ax_acc.set_axis_off()
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
    return fig


def _plot_c_grid(plt, grid, best_C, rule):
    """Training and held-out accuracy against C, one curve pair per scaling."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    held_out = "validation part" if rule == "validation" else "cross-validated"
    scalings = sorted({row.get("standardize") for row in grid}, key=str)
    for n, scaling in enumerate(scalings):
        rows = sorted(
            (r for r in grid if r.get("standardize") == scaling),
            key=lambda r: r["C"],
        )
        name = {True: " (standardised)", False: " (unscaled)"}.get(scaling, "")
        C = [r["C"] for r in rows]
        style = "-" if n == 0 else "--"
        ax.plot(C, [r["train_accuracy"] for r in rows], style, marker="o",
                color="tab:blue", label="training" + name)  # fmt: skip
        ax.plot(C, [r["validation_accuracy"] for r in rows], style, marker="o",
                color="tab:orange", label=held_out + name)  # fmt: skip
    if best_C is not None:
        ax.axvline(best_C, color="grey", linestyle="--", linewidth=1)
    ax.set_xscale("log")
    ax.set(
        xlabel="C (inverse L2 strength; right = less regularised)",
        ylabel="accuracy",
        title="Accuracy over the C grid"
        + ("" if rule == "validation" else " (mean over folds)"),
    )
    ax.legend()
    ax.grid(alpha=0.3)
    return fig
