"""The audit's HTML page: suspects beside examples of their classes.

Thumbnails are small JPEG files in ``thumbs/`` beside the page, loaded
lazily and linking to the full image (see :mod:`._thumbnails`).
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from embedclf.workflow._thumbnails import image_link, write_thumbnails

__all__ = ["write_audit_html"]

_MAX_LABEL = 150  # suspects shown on the page (issues.csv lists them all)
_MAX_PAIRS = 150
_MAX_OUTLIERS = 60
_MAX_PER_IMAGE_ISSUE = 40
_EXAMPLES = 3  # typical images shown per class
_THUMB = 128

_CSS = """
body { font-family: sans-serif; margin: 1em 2em; color: #222; }
table { border-collapse: collapse; margin: .5em 0 1.5em; }
td, th { border: 1px solid #ddd; padding: 4px 6px; vertical-align: top;
  font-size: 13px; }
th { background: #f3f3f3; }
.row { display: flex; gap: 8px; align-items: flex-start; }
.group { border-left: 3px solid #ccc; padding-left: 6px; }
.suspect { border-left-color: #c33; }
.small { color: #666; font-size: 12px; }
.bad { color: #b00; font-weight: bold; }
img { display: block; }
nav a { margin-right: 1em; }
pre { white-space: pre-wrap; background: #f6f6f6; padding: 4px; margin: 4px 0; }
"""


def _typical(result, n=_EXAMPLES) -> dict:
    """Per class, the images most confidently of that class out of fold."""
    y = np.searchsorted(result.classes, result.labels)
    own = result.proba[np.arange(len(y)), y]
    out = {}
    for k, c in enumerate(result.classes):
        rows = np.flatnonzero(y == k)
        out[str(c)] = rows[np.argsort(-own[rows])][:n].tolist()
    return out


def _pct(x):
    return "n/a" if x is None else f"{x:.1%}"


def write_audit_html(result, path, *, progress=False) -> Path:
    """Write the audit page ``path`` (and ``thumbs/`` beside it)."""
    path = Path(path)
    typical = _typical(result)
    label_rows = result.label_issues[:_MAX_LABEL]
    pair_rows = sorted(
        result.duplicates[: 10 * _MAX_PAIRS],
        key=lambda p: ("/" not in p["splits"], p["kind"] != "exact"),
    )[:_MAX_PAIRS]
    outlier_rows = result.outliers[:_MAX_OUTLIERS]
    image_rows = _image_rows(result)
    shown = set()
    for r in label_rows:
        shown |= {r["index"], *typical[r["label"]], *typical[r["suggested_label"]]}
    for p in pair_rows:
        shown |= {p["i"], p["j"]}
    shown |= {r["index"] for r in outlier_rows}
    shown |= {r["index"] for rows in image_rows.values() for r in rows}
    cell = _cell_maker(result, shown, path.parent / "thumbs", progress)
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>Data audit</title><style>{_CSS}</style></head><body>",
        "<h1>Data audit</h1>",
        "<nav><a href='#next'>What to do next</a><a href='#labels'>Label issues"
        "</a><a href='#duplicates'>Duplicates"
        "</a><a href='#images'>Image issues</a><a href='#outliers'>Outliers</a>"
        "<a href='#balance'>Class balance</a>"
        "<a href='issues.csv'>issues.csv</a><a href='audit.json'>audit.json</a>"
        "</nav>",
        *_summary_table(result.summary),
        *_twins_paragraph(result.twins),
        *_next_section(result.summary.get("next_steps", [])),
        *_labels_section(result, label_rows, typical, cell),
        *_duplicates_section(result, pair_rows, cell),
        *_outliers_section(result, outlier_rows, cell),
        *_image_section(result, image_rows, cell),
        *_balance_section(result.balance),
        "</body></html>\n",
    ]
    path.write_text("".join(parts), encoding="utf-8", errors="backslashreplace")
    return path


def _cell_maker(result, shown, thumbs_dir, progress):
    """``cell(i, caption)``: row ``i``'s thumbnail (written now) and caption."""
    thumbs = {}
    if result.paths is not None:
        names = write_thumbnails(
            [result.paths[i] for i in sorted(shown)],
            thumbs_dir,
            size=_THUMB,
            progress=progress,
        )
        thumbs = {i: names[str(result.paths[i])] for i in sorted(shown)}

    def img(i):
        if result.paths is None:
            return f"<div class='small'>row {i}</div>"
        return image_link(result.paths[i], thumbs.get(i), "thumbs", size=_THUMB)

    def cell(i, caption=""):
        return f"<div>{img(i)}<div class='small'>{caption}</div></div>"

    return cell


def _summary_table(s) -> list:
    return [
        "<table><tr><th>images</th><th>classes</th><th>out-of-fold accuracy</th>"
        "<th>label issues</th><th>exact duplicate pairs</th>"
        f"<th>near-duplicate pairs (cosine &ge; {s['duplicate_threshold']:g}"
        + (
            f" or hashes &le; {s['phash_distance']} bits apart"
            if s.get("phash_distance") is not None
            else ""
        )
        + ")</th>"
        "<th>across splits</th><th>images with an image issue</th>"
        "<th>outliers</th></tr>",
        f"<tr><td>{s['n_images']}</td><td>{s['n_classes']}</td>"
        f"<td>{s['out_of_fold_accuracy']:.1%}</td><td>{s['n_label_issues']}</td>"
        f"<td>{s['n_exact_duplicate_pairs']}</td>"
        f"<td>{s['n_near_duplicate_pairs']}</td>"
        f"<td>{s['n_cross_split_pairs']}</td>"
        f"<td>{s.get('n_images_with_image_issue', 'n/a')}</td>"
        f"<td>{s['n_outliers']}</td></tr>"
        "</table>",
    ]


def _twins_paragraph(tw) -> list:
    esc = html.escape
    parts = []
    if tw:
        parts.append(
            f"<p>Accuracy on the {esc(tw['split'])} images of a plain softmax "
            "head (C=1, fitted on the training images only, not the head "
            "<code>embedclf train</code> tunes): "
            f"<b>{_pct(tw['accuracy_all'])}</b> overall; "
            f"{_pct(tw['accuracy_with_twin'])} on the {tw['n_with_twin']} with a "
            f"near-twin in training, {_pct(tw['accuracy_without_twin'])} on the "
            f"{tw['n_without_twin']} without one.</p>"
        )
    return parts


def _labels_section(result, label_rows, typical, cell) -> list:
    esc = html.escape
    parts = []
    parts.append(
        f"<h2 id='labels'>Label issues ({len(result.label_issues)}"
        f"{f', the first {len(label_rows)} shown' if len(label_rows) < len(result.label_issues) else ''})</h2>"  # noqa: E501
        "<p class='small'>Ranked by cleanlab's label quality (self-confidence "
        "of the given label, out of fold, lowest first). Left: the suspect; "
        "then typical images of its given class and of the suggested class.</p>"
        "<table><tr><th>#</th><th>suspect</th><th>given class</th>"
        "<th>suggested class</th></tr>"
    )
    for rank, r in enumerate(label_rows, 1):
        i = r["index"]
        given = "".join(cell(j) for j in typical[r["label"]] if j != i)
        sugg = "".join(cell(j) for j in typical[r["suggested_label"]])
        parts.append(
            f"<tr><td>{rank}</td><td>"
            + cell(
                i,
                f"{esc(result.split[i])}<br>quality {r['quality']:.3f}<br>"
                f"p(given) {r['given_proba']:.2f}, p(suggested) "
                f"{r['suggested_proba']:.2f}",
            )
            + f"</td><td><b>{esc(r['label'])}</b><div class='row group'>{given}"
            f"</div></td><td><b class='bad'>{esc(r['suggested_label'])}</b>"
            f"<div class='row group suspect'>{sugg}</div></td></tr>"
        )
    parts.append("</table>")
    return parts


def _duplicates_section(result, pair_rows, cell) -> list:
    esc = html.escape
    s = result.summary
    parts = []
    parts.append(
        f"<h2 id='duplicates'>Duplicates ({len(result.duplicates)} pairs, "
        f"{s['n_cross_split_pairs']} across splits)</h2>"
        "<p class='small'>Exact: same file content (SHA-256). Near: cosine "
        f"similarity of the embeddings &ge; {s['duplicate_threshold']:g} "
        "(crops, re-shoots, re-encoded copies; signal <i>embedding</i>) "
        "and/or perceptual hashes at most "
        f"{s.get('phash_distance') or 0} bits apart of 64 (resized and "
        "re-encoded copies of any size; signal <i>phash</i>). Pairs across "
        "splits first: a held-out image with a twin in training inflates "
        "its score.</p><table><tr><th>kind</th><th>signal</th><th>splits</th>"
        "<th>similarity</th><th>image</th><th>image</th></tr>"
    )
    for p in pair_rows:
        i, j = p["i"], p["j"]
        cross = "/" in p["splits"]
        parts.append(
            f"<tr><td>{p['kind']}</td><td>{esc(p['signal'])}"
            f"{_hash_note(p)}</td><td{' class=bad' if cross else ''}>"
            f"{esc(p['splits'])}</td><td>{_sim(p['similarity'])}</td><td>"
            + cell(i, f"{esc(result.split[i])}: {esc(result.labels[i])}")
            + "</td><td>"
            + cell(j, f"{esc(result.split[j])}: {esc(result.labels[j])}")
            + "</td></tr>"
        )
    parts.append("</table>")
    return parts


def _outliers_section(result, outlier_rows, cell) -> list:
    esc = html.escape
    parts = []
    parts.append(
        f"<h2 id='outliers'>Outliers ({len(result.outliers)})</h2>"
        "<p class='small'>Unlike their nearest neighbours of any class "
        "(cleanlab OutOfDistribution score below the lower quartile fence)."
        "</p><div class='row' style='flex-wrap:wrap'>"
    )
    for r in outlier_rows:
        i = r["index"]
        parts.append(
            cell(
                i,
                f"{esc(r['label'])} ({esc(result.split[i])})<br>score {r['score']:.3f}",
            )
        )
    parts.append("</div>")
    return parts


def _balance_section(b) -> list:
    esc = html.escape
    parts = []
    parts.append(
        f"<h2 id='balance'>Class balance</h2><p>{b['smallest']} to "
        f"{b['largest']} images per class in the {esc(b['splits'][0])} split."
    )
    if b["tiny_classes"]:
        parts.append(
            f" {len(b['tiny_classes'])} class(es) have fewer than "
            f"{b['tiny_below']} images there, too few for stratified "
            f"{b['tiny_below']}-fold cross-validation: "
            + ", ".join(esc(c) for c in b["tiny_classes"])
            + "."
        )
    parts.append("</p><table><tr><th>class</th>")
    parts += [f"<th>{esc(sp)}</th>" for sp in b["splits"]]
    parts.append("</tr>")
    for c, counts in b["counts"].items():
        tiny = c in b["tiny_classes"]
        parts.append(
            f"<tr><td{' class=bad' if tiny else ''}>{esc(c)}</td>"
            + "".join(f"<td>{counts[sp]}</td>" for sp in b["splits"])
            + "</tr>"
        )
    parts.append("</table>")
    return parts


def _sim(x):
    return "n/a" if x is None else f"{x:.4f}"


def _hash_note(p):
    d = p.get("phash_distance")
    return "" if d is None else f"<div class='small'>{d} bits apart</div>"


def _image_rows(result) -> dict:
    rows = {}
    for r in result.image_issues:
        rows.setdefault(r["issue"], []).append(r)
    return {k: v[:_MAX_PER_IMAGE_ISSUE] for k, v in rows.items()}


def _image_section(result, image_rows, cell) -> list:
    esc = html.escape
    s = result.summary
    if not s.get("image_checks"):
        return [
            "<h2 id='images'>Image issues</h2><p>Not checked "
            "(audit_vectors without image properties).</p>"
        ]
    counts = s["n_image_issues"]
    parts = [
        f"<h2 id='images'>Image issues ({s['n_images_with_image_issue']} "
        "images)</h2><p class='small'>CleanVision's checks of the pictures "
        "themselves, whatever their label: blurry, dark, light "
        "(overexposed), low information (blank), odd aspect ratio, odd size, "
        "grayscale. Score: CleanVision's, low is bad.</p><table><tr>"
        + "".join(f"<th>{esc(k.replace('_', ' '))}</th>" for k in counts)
        + "</tr><tr>"
        + "".join(f"<td>{n}</td>" for n in counts.values())
        + "</tr></table>"
    ]
    for issue, rows in image_rows.items():
        more = f", the first {len(rows)} shown" if len(rows) < counts[issue] else ""
        parts.append(
            f"<h3>{esc(issue.replace('_', ' '))} ({counts[issue]}{more})</h3>"
            "<div class='row' style='flex-wrap:wrap'>"
        )
        for r in rows:
            i = r["index"]
            parts.append(
                cell(
                    i,
                    f"{esc(r['label'])} ({esc(result.split[i])})<br>"
                    f"score {r['score']:.3f}",
                )
            )
        parts.append("</div>")
    return parts


def _next_section(steps) -> list:
    esc = html.escape
    parts = ["<h2 id='next'>What to do next</h2>"]
    if not steps:
        return parts + ["<p>Nothing to do: no issue found.</p>"]
    parts.append("<table><tr><th>issue</th><th>found</th><th>what to do</th></tr>")
    for st in steps:
        command = f"<pre>{esc(st['command'])}</pre>" if st.get("command") else ""
        parts.append(
            f"<tr><td>{esc(st['kind'].replace('_', ' '))}</td><td>{st['count']}"
            f"</td><td>{esc(st['advice'])}{command}</td></tr>"
        )
    return parts + ["</table>"]
