"""The search table as a file (``report/search.tsv``) and as printed lines."""

from __future__ import annotations

import csv
from pathlib import Path

__all__ = ["COLUMNS", "summary_lines", "write_search_table"]

COLUMNS = (
    "step",
    "candidate",
    "status",
    "validation_accuracy",
    "validation_cross_entropy",
    "estimated_s",
    "seconds",
    "chosen",
)


def write_search_table(folder, result) -> Path:
    """Write ``search.tsv`` (one row per candidate or skipped step) in ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "search.tsv"
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(
            f, COLUMNS, delimiter="\t", extrasaction="ignore", restval=""
        )
        writer.writeheader()
        for row in result.table:
            writer.writerow(dict(row, chosen="yes" if row.get("chosen") else ""))
    return path


def summary_lines(result) -> list[str]:
    """Lines to print: the best candidate of each step, skipped steps, the choice."""
    lines, best = [], {}
    for row in result.table:
        if row["status"] == "tried":
            old = best.get(row["step"])
            if old is None or (
                row["validation_cross_entropy"] < old["validation_cross_entropy"]
            ):
                best[row["step"]] = row
    seen = set()
    for row in result.table:
        step = row["step"]
        if row["status"] == "tried" and step not in seen:
            seen.add(step)
            r = best[step]
            n = sum(1 for x in result.table if x["step"] == step)
            lines.append(
                f"  {step:<18} best of {n:>2}: {r['candidate']}: held-out accuracy "
                f"{r['validation_accuracy']:.4f}, cross-entropy "
                f"{r['validation_cross_entropy']:.4f} ({r['seconds'] * n:.0f} s)"
            )
        elif row["status"] != "tried":
            lines.append(
                f"  {step:<18} {row['status']}: {row['candidate']} "
                f"({row['seconds']:.0f} s"
                + (
                    f", estimated {row['estimated_s']:.0f} s"
                    if row["estimated_s"]
                    else ""
                )
                + (f", {row['left_s']:.0f} s left" if "left_s" in row else "")
                + ")"
            )
    lines.append(f"Chosen: {result.why}")
    if result.estimate is not None:
        lines.append(
            f"Estimate after the search: {result.estimate:.2%} "
            f"(+/- {result.estimate_spread:.2%} over halvings; {result.estimate_rule})."
        )
    if result.hint:
        lines.append(result.hint)
    return lines
