"""``suggestions.csv`` and ``suggestions.html`` (thumbnails by predicted label)."""

from __future__ import annotations

import csv
import html
from pathlib import Path

from embedclf.workflow._thumbnails import image_link, write_thumbnails

__all__ = ["write_suggestions"]

COLUMNS = (
    "rank",
    "path",
    "predicted_label",
    "probability",
    "runner_up_label",
    "runner_up_probability",
    "uncertainty",
    "nearest_labelled_similarity",
    "why",
)

_CSS = """
body { font-family: sans-serif; margin: 1em 2em; color: #222; }
.row { display: flex; gap: 8px; flex-wrap: wrap; }
.card { width: 170px; font-size: 12px; }
.path { color: #666; word-break: break-all; font-size: 11px; }
h2 { margin-top: 1.2em; border-bottom: 1px solid #ddd; }
code { background: #f3f3f3; padding: 0 3px; }
img { display: block; }
"""

_STRATEGY_TEXT = {
    "margin-kcentre": "each pick is the photo with the largest product of the "
    "model's uncertainty (1 - margin between its two best classes) and its "
    "distance to the nearest training photo or earlier pick",
    "entropy-kcentre": "each pick is the photo with the largest product of the "
    "model's entropy and its distance to the nearest training photo or earlier "
    "pick",
    "margin": "the photos with the smallest margin between the model's two "
    "best classes",
    "entropy": "the photos with the highest entropy of the model's probabilities",
    "kcentre": "each pick is the photo farthest from every training photo and "
    "earlier pick",
    "random": "drawn at random",
}


def write_suggestions(out: Path, result, *, n_training=None) -> list[str]:
    """Write the CSV and the page into ``out``; returns the file names."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "suggestions.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        for row in result.rows:
            writer.writerow({k: _cell(row[k]) for k in COLUMNS})
    thumbs = write_thumbnails([r["path"] for r in result.rows], out / "thumbs")
    esc = html.escape
    groups = {}
    for row in result.rows:
        groups.setdefault(row["predicted_label"], []).append(row)
    labelled = (
        f"{n_training} training photos"
        if n_training is not None
        else "no recorded training photos"
    )
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>Photos to label next</title><style>{_CSS}</style></head><body>",
        f"<h1>{len(result.rows)} photos to label next</h1>",
        f"<p>Chosen from {result.n_candidates} unlabelled photos by "
        f"<b>{esc(result.strategy)}</b>: "
        f"{esc(_STRATEGY_TEXT.get(result.strategy, ''))}. Compared with "
        f"{labelled}; {len(result.excluded)} near-duplicates of them were left "
        f"out. Grouped by the label the model predicts (often wrong: these are "
        "the photos it is least sure of). Label a photo by moving it into its "
        "class folder, then train again. The list, with why each photo was "
        "picked, is also in <a href='suggestions.csv'>suggestions.csv</a> "
        "(hover over a path to see it here).</p>",
    ]
    for label in sorted(groups, key=lambda g: (-len(groups[g]), g)):
        rows = groups[label]
        parts.append(
            f"<h2 id='{esc(label)}'>predicted {esc(label)} ({len(rows)})</h2>"
            "<div class='row'>"
        )
        for r in rows:
            link = image_link(r["path"], thumbs[r["path"]], "thumbs")
            other = (
                f"<br>or {esc(r['runner_up_label'])} {r['runner_up_probability']:.2f}"
                if r["runner_up_label"] is not None
                else ""
            )
            near = r["nearest_labelled_similarity"]
            near = "" if near is None else f"<br>nearest training photo: {near:.2f}"
            parts.append(
                f"<div class='card'>{link}<p><b>#{r['rank']}</b> "
                f"{esc(label)} {r['probability']:.2f}{other}{near}</p>"
                f"<p class='path' title='{esc(r['why'])}'>{esc(r['path'])}</p></div>"
            )
        parts.append("</div>")
    parts.append("</body></html>\n")
    (out / "suggestions.html").write_text(
        "".join(parts), encoding="utf-8", errors="backslashreplace"
    )
    return ["suggestions.csv", "suggestions.html"]


def _cell(value):
    if isinstance(value, float):
        return f"{value:.4f}"
    return "" if value is None else value
