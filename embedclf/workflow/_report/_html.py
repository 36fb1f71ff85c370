"""The report's page of misclassified images, readable at 81 classes.

A summary (accuracy, errors, calibration, links to the figures and tables),
the top confusions ranked with example thumbnails, then every misclassified
image grouped by true class. Thumbnails are files in ``thumbs/`` beside the
page, loaded lazily and linking to the full image (:mod:`._thumbnails`).
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from embedclf.workflow._thumbnails import image_link, write_thumbnails

__all__ = ["write_misclassified_html"]

_EXAMPLES = 4  # thumbnails per row of the top-confusions table

_CSS = """
body { font-family: sans-serif; margin: 1em 2em; color: #222; }
nav a { margin-right: 1em; }
table { border-collapse: collapse; margin: .5em 0 1.5em; }
td, th { border: 1px solid #ddd; padding: 4px 6px; font-size: 13px;
  vertical-align: top; }
th { background: #f3f3f3; }
.row { display: flex; gap: 6px; flex-wrap: wrap; }
.card { width: 170px; font-size: 12px; }
.card:has(.explain) { width: 290px; }
.nb { font-size: 11px; text-align: center; }
.path { color: #666; word-break: break-all; font-size: 11px; }
.bad { color: #b00; }
ol { padding-left: 1.2em; margin: 0; }
img { display: block; }
"""


def write_misclassified_html(
    paths,
    y_true,
    y_pred,
    proba,
    classes,
    path,
    *,
    top_k=3,
    confusions=None,
    calibration=None,
    figures=(),
    links=(),
    extra_html=None,
):
    """Write the page of misclassified images.

    Parameters
    ----------
    paths : sequence of str
        Image files, one per sample.
    y_true, y_pred : array-like of shape (n_samples,)
    proba : ndarray of shape (n_samples, n_classes)
        Predicted probabilities, columns in the order of ``classes``.
    classes : sequence of str
    path : str or os.PathLike
        The HTML file; thumbnails go to ``thumbs/`` beside it.
    top_k : int, default=3
        Scores shown per image.
    confusions : list of dict, default=None
        :func:`~._report_figures.top_confusions`, shown ranked with examples.
    calibration : dict, default=None
        :func:`~._report_figures.calibration`, summarised at the top.
    figures : sequence of (file name, caption)
        PNGs beside the page, shown (and linked) on it.
    links : sequence of (file name, text)
        Other files beside the page to link from the summary.
    extra_html : sequence of str, default=None
        One HTML snippet per sample (e.g. its explanation), shown in the
        card of each misclassified image.

    Returns
    -------
    n_misclassified : int
    """
    esc = html.escape
    path = Path(path)
    y_true = np.asarray(y_true).astype(str)
    y_pred = np.asarray(y_pred).astype(str)
    classes = [str(c) for c in classes]
    paths = [str(p) for p in paths]
    wrong = np.flatnonzero(y_true != y_pred)
    thumbs = write_thumbnails([paths[i] for i in wrong], path.parent / "thumbs")

    def img(i):
        return image_link(paths[i], thumbs[paths[i]], "thumbs")

    n = len(y_true)
    acc = 1 - len(wrong) / n if n else float("nan")
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>Misclassified images</title><style>{_CSS}</style></head><body>",
        f"<h1>Misclassified images: {len(wrong)} of {n}</h1>",
        "<nav><a href='#confusions'>Top confusions</a>"
        "<a href='#by-class'>By true class</a>"
        + "".join(f"<a href='{esc(f)}'>{esc(f)}</a>" for f, _ in figures)
        + "".join(f"<a href='{esc(f)}'>{esc(t)}</a>" for f, t in links)
        + "</nav>",
        f"<p>Accuracy <b>{acc:.1%}</b> ({n - len(wrong)} of {n} right); errors "
        f"in {len(set(y_true[wrong]))} of {len(set(y_true))} true classes.",
    ]
    if calibration and calibration.get("ece") is not None:
        parts.append(
            f" Expected calibration error {calibration['ece']:.3f}: a prediction "
            "shown with confidence <i>p</i> is right about "
            f"{_calibration_sentence(calibration)}."
        )
    parts.append("</p>")
    parts += _confusions_section(confusions, wrong, y_true, y_pred, img)
    for name, caption in figures:
        parts.append(
            f"<h2>{esc(caption)}</h2><a href='{esc(name)}'><img loading='lazy' "
            f"src='{esc(name)}' alt='{esc(caption)}' style='max-width:100%'></a>"
        )
    parts += _by_class_section(
        wrong, y_true, y_pred, proba, classes, paths, img, top_k, extra_html
    )
    parts.append("</body></html>\n")
    # A file name that is not UTF-8 (surrogate escapes) is shown escaped.
    path.write_text("".join(parts), encoding="utf-8", errors="backslashreplace")
    return len(wrong)


def _confusions_section(confusions, wrong, y_true, y_pred, img) -> list:
    """The ranked table of the top confusions, with example thumbnails."""
    esc = html.escape
    parts = []
    if confusions:
        by_pair = {}
        for i in wrong:
            by_pair.setdefault((y_true[i], y_pred[i]), []).append(i)
        parts.append(
            "<h2 id='confusions'>Top confusions</h2><table><tr><th>#</th>"
            "<th>true</th><th>predicted as</th><th>images</th>"
            "<th>share of true class</th><th>examples</th></tr>"
        )
        for rank, c in enumerate(confusions, 1):
            ex = by_pair.get((c["true"], c["predicted"]), [])[:_EXAMPLES]
            parts.append(
                f"<tr><td>{rank}</td><td>{esc(c['true'])}</td>"
                f"<td class='bad'>{esc(c['predicted'])}</td><td>{c['count']}</td>"
                f"<td>{c['share_of_true']:.0%}</td><td><div class='row'>"
                + "".join(img(i) for i in ex)
                + "</div></td></tr>"
            )
        parts.append("</table>")
    return parts


def _by_class_section(
    wrong, y_true, y_pred, proba, classes, paths, img, top_k, extra_html
) -> list:
    """Cards of the misclassified images, grouped by true class."""
    esc = html.escape
    parts = []
    parts.append("<h2 id='by-class'>Misclassified images by true class</h2>")
    if not len(wrong):
        parts.append("<p>No misclassified images.</p>")
    groups = {}
    for i in wrong:
        groups.setdefault(y_true[i], []).append(i)
    support = {c: int(np.sum(y_true == c)) for c in groups}
    for true in sorted(groups, key=lambda c: (-len(groups[c]), c)):
        rows = groups[true]
        parts.append(
            f"<h3 id='class-{esc(true)}'>{esc(true)}: {len(rows)} of "
            f"{support[true]} wrong</h3><div class='row'>"
        )
        for i in rows:
            order = np.argsort(-proba[i])[:top_k]
            scores = "".join(
                f"<li>{esc(classes[j])}: {proba[i, j]:.3f}</li>" for j in order
            )
            parts.append(
                f"<div class='card'>{img(i)}<p class='path'>{esc(paths[i])}</p>"
                f"<p>predicted: <b class='bad'>{esc(y_pred[i])}</b></p>"
                f"<ol>{scores}</ol>{extra_html[i] if extra_html else ''}</div>"
            )
        parts.append("</div>")
    return parts


def _calibration_sentence(calibration) -> str:
    """'74% of the time at p 0.8-0.9, ...' for the two fullest bins."""
    bins = sorted(calibration["bins"], key=lambda b: -b["count"])[:2]
    return ", ".join(
        f"{b['accuracy']:.0%} of the time at a mean confidence of "
        f"{b['confidence']:.2f} ({b['count']} images)"
        for b in sorted(bins, key=lambda b: b["confidence"])
    )
