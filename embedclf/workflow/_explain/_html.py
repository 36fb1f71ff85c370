"""Drawing explanations: activation-map overlays and HTML snippets.

Used by the report's page of misclassified images and by ``embedclf predict
--explain DIR``. Overlays are JPEG files beside the page (like thumbnails).
"""

from __future__ import annotations

import hashlib
import html
import os
from pathlib import Path

import numpy as np

from embedclf.workflow._thumbnails import THUMBNAIL_SIZE, image_link

__all__ = ["explanation_html", "write_explanations_page", "write_overlay"]


def write_overlay(path, cam, folder, *, crop_fraction=1.0, size=THUMBNAIL_SIZE):
    """Write the image with its activation map laid over it; returns the name.

    The map covers the part of the image the backbone saw (the centred
    ``crop_fraction``); red is where the class's score is highest. None when
    the image cannot be read.
    """
    from matplotlib import colormaps
    from PIL import Image, ImageOps

    from embedclf.embedding._images import crop_box

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    grid = np.asarray(cam["grid"], dtype=np.float64)
    digest = hashlib.sha1(
        os.fsencode(os.path.abspath(path)) + cam["label"].encode() + grid.tobytes()
    ).hexdigest()[:16]
    name = f"cam-{digest}.jpg"
    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img).convert("RGB")
            img = img.crop(tuple(round(v) for v in crop_box(*img.size, crop_fraction)))
            img.thumbnail((size, size))
    except (OSError, ValueError, SyntaxError):
        return None
    span = grid.max() - grid.min()
    norm = (grid - grid.min()) / span if span > 0 else np.zeros_like(grid)
    heat = Image.fromarray(np.uint8(255 * norm)).resize(img.size, Image.BILINEAR)
    rgba = colormaps["jet"](np.asarray(heat) / 255.0)
    colour = Image.fromarray(np.uint8(255 * rgba[..., :3]))
    Image.blend(img, colour, 0.45).save(folder / name, format="JPEG", quality=85)
    return name


def explanation_html(neighbours, cam, thumbs, folder_name, overlay=None) -> str:
    """The explanation of one image: its activation map and neighbours.

    ``thumbs`` maps each neighbour's path to its thumbnail name (from
    ``write_thumbnails``); ``overlay`` is the name :func:`write_overlay`
    returned.
    """
    esc = html.escape
    parts = ["<div class='explain'>"]
    if cam is not None and cam.get("available") and overlay:
        parts.append(
            f"<p>activation map of <b>{esc(cam['label'])}</b> (logit "
            f"{cam['logit']:.2f}):</p><img loading='lazy' src='{esc(folder_name)}/"
            f"{esc(overlay)}' alt='activation map'>"
        )
    elif cam is not None:
        parts.append(
            f"<p class='path'>No activation map: {esc(cam.get('reason', ''))}.</p>"
        )
    for key, title in (("predicted", "nearest of"), ("runner_up", "runner-up")):
        group = neighbours.get(key) if neighbours else None
        if not group:
            continue
        parts.append(f"<p>{title} <b>{esc(group['label'])}</b>:</p><div class='row'>")
        for photo in group["photos"]:
            link = image_link(
                photo["path"], thumbs.get(photo["path"]), folder_name, size=80
            )
            parts.append(
                f"<div class='nb'>{link}<span>{photo['similarity']:.2f}</span></div>"
            )
        parts.append("</div>")
    parts.append("</div>")
    return "".join(parts)


_PAGE_CSS = """
body { font-family: sans-serif; margin: 1em 2em; color: #222; }
.item { display: flex; gap: 16px; border-bottom: 1px solid #ddd; padding: 8px 0; }
.item > div:first-child { width: 200px; flex: none; }
.row { display: flex; gap: 6px; flex-wrap: wrap; }
.nb { font-size: 11px; text-align: center; }
.path { color: #666; word-break: break-all; font-size: 11px; }
.explain p { margin: 4px 0; font-size: 13px; }
img { display: block; }
"""


def write_explanations_page(out, paths, labels, scores, snippets) -> Path:
    """``explain.html`` in ``out``: each image, its answer and its snippet."""
    from embedclf.workflow._thumbnails import write_thumbnails

    out = Path(out)
    thumbs = write_thumbnails(paths, out / "thumbs")
    esc = html.escape
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Why these "
        f"answers</title><style>{_PAGE_CSS}</style></head><body>",
        f"<h1>Why these answers ({len(paths)} images)</h1>",
        "<p>For each image: the activation map of the predicted class (red: "
        "where its score comes from) and the training photos of the predicted "
        "and runner-up classes nearest to it, with their cosine similarity.</p>",
    ]
    for path, label, score, snippet in zip(paths, labels, scores, snippets):
        parts.append(
            f"<div class='item'><div>{image_link(path, thumbs[path], 'thumbs')}"
            f"<p><b>{esc(label)}</b> {score:.2f}</p><p class='path'>{esc(path)}"
            f"</p></div>{snippet}</div>"
        )
    parts.append("</body></html>\n")
    page = out / "explain.html"
    page.write_text("".join(parts), encoding="utf-8", errors="backslashreplace")
    return page
