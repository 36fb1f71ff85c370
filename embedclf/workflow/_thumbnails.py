"""Thumbnail files for the HTML pages (the report and the audit).

Pages link small JPEG files written beside them instead of embedding base64
(an 81-class report used to weigh 8.6 MB): the page itself stays a few
hundred kB, the browser loads thumbnails lazily (``loading="lazy"``), and
each thumbnail links to the full image.
"""

from __future__ import annotations

import hashlib
import html
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

__all__ = ["THUMBNAIL_SIZE", "image_link", "write_thumbnails"]

THUMBNAIL_SIZE = 160


def _name(path) -> str:
    digest = hashlib.sha1(os.fsencode(os.path.abspath(path))).hexdigest()[:16]
    return f"{digest}.jpg"


def _write_one(src, dst: Path, size: int) -> bool:
    from PIL import Image, ImageOps

    if dst.exists():
        return True
    try:
        with Image.open(src) as img:
            img.draft("RGB", (size, size))
            img = ImageOps.exif_transpose(img).convert("RGB")
            img.thumbnail((size, size))
            tmp = dst.with_suffix(".tmp")
            img.save(tmp, format="JPEG", quality=80)
        os.replace(tmp, dst)
    except (OSError, ValueError, SyntaxError):
        return False
    return True


def write_thumbnails(paths, folder, *, size=THUMBNAIL_SIZE, progress=False) -> dict:
    """Write a JPEG thumbnail of each image into ``folder``.

    Parameters
    ----------
    paths : iterable of str or os.PathLike
        Image files; duplicates are written once.
    folder : str or os.PathLike
        Created if missing. Thumbnails are named by a hash of the image's
        absolute path, so a second run reuses them.
    size : int, default=160
        Longest side in pixels.
    progress : bool, default=False
        Show a tqdm progress bar on stderr.

    Returns
    -------
    names : dict
        ``{path: file name inside folder}``, or ``None`` for an image that
        cannot be read.
    """
    from tqdm.auto import tqdm

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    unique = list(dict.fromkeys(str(p) for p in paths))
    names = {p: _name(p) for p in unique}
    with (
        ThreadPoolExecutor(4) as pool,
        tqdm(
            total=len(unique), desc="thumbnails", unit="img", disable=not progress
        ) as bar,
    ):
        futures = {
            p: pool.submit(_write_one, p, folder / names[p], size) for p in unique
        }
        ok = {}
        for p, fut in futures.items():
            ok[p] = fut.result()
            bar.update()
    return {p: (names[p] if ok[p] else None) for p in unique}


def image_link(path, thumb, folder_name: str, *, size=THUMBNAIL_SIZE) -> str:
    """HTML for one thumbnail that links to the full image.

    ``thumb`` is the name :func:`write_thumbnails` returned (or None for an
    unreadable image); ``folder_name`` is the thumbnail folder relative to
    the page.
    """
    esc = html.escape
    href = esc(Path(os.path.abspath(path)).as_uri())
    title = esc(str(path))
    if thumb is None:
        return f"<div class='missing' title='{title}'>(cannot read image)</div>"
    return (
        f"<a href='{href}' title='{title}'><img loading='lazy' "
        f"src='{esc(folder_name)}/{esc(thumb)}' alt='{title}' "
        f"style='max-width:{size}px;max-height:{size}px'></a>"
    )
