"""The search table as a file (``report/search.tsv``) and as printed lines."""

from __future__ import annotations

import csv
from pathlib import Path

__all__ = ["COLUMNS", "row_line", "summary_lines", "write_search_table"]

COLUMNS = (
    "step",
    "candidate",
    "status",
    "validation_accuracy",
    "validation_cross_entropy",
    "estimated_s",
    "reserved_s",
    "left_s",
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


def row_line(row, *, n=None, seconds=None) -> str:
    """One printed line: a step done (its best candidate of ``n``) or skipped."""
    step = f"  {row['step']:<17}"
    if row["status"] == "embedded":
        return (
            f"{step}{row['candidate']}: vectors in {row['seconds']:.0f} s "
            f"(estimated {row['estimated_s']:.0f} s)"
        )
    if row["status"] != "tried":
        return (
            f"{step}{row['status']}: {row['candidate']} (estimated "
            f"{row['estimated_s']:.0f} s + {row['reserved_s']:.0f} s for the final "
            f"training, {row['left_s']:.0f} s left)"
        )
    return (
        f"{step}best of {n or 1:>2}: {row['candidate']}: held-out accuracy "
        f"{row['validation_accuracy']:.4f}, cross-entropy "
        f"{row['validation_cross_entropy']:.4f} ({seconds or 0:.0f} s)"
    )


def summary_lines(result) -> list[str]:
    """Lines to print after the search: the choice, its estimate, a hint."""
    lines = []
    lines.append(f"Chosen: {result.why}")
    if result.estimate is not None:
        stderr = result.estimate_stderr
        noise = "" if stderr is None else f"standard error {stderr:.1%}; "
        lines.append(
            f"Estimate after the search: {result.estimate:.2%} ({noise}"
            f"+/- {result.estimate_spread:.2%} over halvings; {result.estimate_rule})."
        )
    if result.hint:
        lines.append(result.hint)
    return lines
