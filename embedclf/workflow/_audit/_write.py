"""Writing an audit's files: the page, ``issues.csv``, ``audit.json``, lists."""

from __future__ import annotations

import csv
import json
from pathlib import Path

__all__ = ["write_audit"]

_CSV_FIELDS = [
    "issue",
    "index",
    "path",
    "split",
    "label",
    "suggested_label",
    "score",
    "other_index",
    "other_path",
    "other_split",
    "other_label",
    "signal",
]


def write_audit(result, output, *, train_command=None) -> dict:
    """Write ``audit.html``, ``issues.csv``, ``audit.json`` and the list files
    ``exclude.txt`` and ``label_issues.txt`` into ``output``.

    ``train_command`` is the ``embedclf train ...`` command the next steps
    extend with ``--exclude FILE`` (default: placeholders). The steps are
    also stored in ``result.summary["next_steps"]``.

    Returns
    -------
    files : dict
        ``{"html": path, "csv": path, "json": path, "exclude.txt": path,
        "label_issues.txt": path}``.
    """
    from embedclf.workflow._audit._html import write_audit_html
    from embedclf.workflow._audit._next import exclude_lists, next_steps, write_lists

    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    lists = exclude_lists(result)
    list_files = write_lists(lists, out)
    result.summary["next_steps"] = next_steps(
        result, lists, output=out, train_command=train_command
    )
    csv_path = out / "issues.csv"
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=_CSV_FIELDS)
        writer.writeheader()
        for row in result.rows():
            writer.writerow(row)
    json_path = out / "audit.json"
    payload = dict(result.summary)
    payload["class_counts"] = result.balance["counts"]
    payload["label_issues"] = result.label_issues
    payload["duplicates"] = result.duplicates
    payload["outliers"] = result.outliers
    payload["image_issues"] = result.image_issues
    if result.paths is not None:
        payload["paths"] = result.paths.tolist()
    json_path.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    html_path = write_audit_html(result, out / "audit.html", progress=False)
    return {"html": html_path, "csv": csv_path, "json": json_path} | list_files
