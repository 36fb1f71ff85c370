"""``embedclf train``: what the model-selection step prints."""

from __future__ import annotations

__all__ = ["print_selection", "selection_text"]


def selection_text(args, *, has_val: bool) -> str:
    """The line announcing the search, before it runs."""
    if isinstance(args.C_grid, str):
        grid = "1e-4 .. 1e4 (each decade, then half-decades around the best)"
    else:
        grid = "[" + ", ".join(f"{c:g}" for c in args.C_grid) + "]"
    scaling = {
        "auto": "with and without standardisation",
        "standardize": "standardised",
        "none": "unscaled",
    }[args.scaling]
    where = (
        "on the validation part (fit on the training part), then refitting on "
        "training + validation"
        if has_val
        else "by cross-validation on the training part, near-duplicate photos "
        "kept in one fold"
    )
    return f"Tuning C over {grid}, {scaling}, {where} ..."


def print_selection(say, tuning: dict) -> None:
    """Print the candidates tried, the rule used and its estimate."""
    rule = tuning.get("rule")
    held_out = {
        "validation": "validation accuracy",
        "grouped-cv": "grouped cross-validated accuracy",
    }.get(rule, "held-out accuracy")
    for row in tuning["grid"]:
        scaling = "standardised" if row.get("standardize") else "unscaled    "
        say(
            f"  C={row['C']:<8.3g} {scaling}  train accuracy "
            f"{row['train_accuracy']:.4f}  {held_out} "
            f"{row['validation_accuracy']:.4f}  cross-entropy "
            f"{row['validation_cross_entropy']:.4f}"
        )
    scaling = "standardised" if tuning.get("standardize") else "unscaled"
    best = f"Best C = {tuning['best_C']:g} ({scaling})"
    if rule == "validation":
        say(
            f"{best}, chosen by the lowest validation cross-entropy; its "
            f"validation accuracy {tuning['estimate']:.4f} (fitted on the "
            "training part) is the estimate. Refitted on training + validation."
        )
        n_dup = tuning.get("validation_near_duplicates") or 0
        if n_dup:
            from embedclf.model_selection._group_split import SPLIT_THRESHOLD

            other = tuning.get("estimate_unlike_training")
            say(
                f"  {n_dup} of {tuning.get('n_validation')} validation images "
                f"have a near-duplicate (cosine >= {SPLIT_THRESHOLD:g}) of their "
                "class in the training part, which flatters the estimate"
                + (
                    f"; on the other {tuning['n_validation'] - n_dup} it is "
                    f"{other:.4f}."
                    if other is not None
                    else "."
                )
            )
    elif rule == "grouped-cv":
        say(
            f"{best}, chosen by the lowest cross-validated cross-entropy over "
            f"{tuning.get('n_groups')} near-duplicate groups; estimate: "
            f"cross-validated accuracy {tuning['estimate']:.4f}."
        )
    else:
        say(f"{best}: a single setting, nothing tuned and no held-out estimate.")
