"""Render an HTML page in headless Chromium and check its thumbnails showed.

Shared by the slow page tests of the report and the audit. Skips the test
where Chromium is absent (CI installs the Debian package ``chromium`` in
``.ci/run``).
"""

from __future__ import annotations

import html.parser
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pytest

__all__ = ["chromium", "colourful_fraction", "image_sources", "screenshot"]


def chromium() -> str:
    """The Chromium executable, or skip the test."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        exe = shutil.which(name)
        if exe:
            return exe
    pytest.skip("headless Chromium is not installed (apt-get install chromium)")


def screenshot(page, png, *, size=(1400, 1000), timeout=120) -> Path:
    """Screenshot ``page`` (an HTML file) into ``png`` with headless Chromium.

    The virtual-time budget lets lazy-loaded images in the viewport load
    before the shot is taken.
    """
    exe = chromium()
    png = Path(png)
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                exe,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                f"--user-data-dir={profile}",
                "--run-all-compositor-stages-before-draw",
                "--virtual-time-budget=15000",
                f"--screenshot={png}",
                f"--window-size={size[0]},{size[1]}",
                Path(page).resolve().as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=timeout,
        )
    assert png.exists() and png.stat().st_size > 0, "Chromium wrote no screenshot"
    return png


def colourful_fraction(png, *, min_saturation=0.25) -> float:
    """Share of the screenshot's pixels that are saturated colour.

    Text, borders and the white page are grey; photos (and the synthetic
    noise images of the unit tests) are colourful, so this is near 0 when
    the thumbnails did not render.
    """
    from PIL import Image

    hsv = np.asarray(Image.open(png).convert("RGB").convert("HSV"), dtype=float)
    return float(np.mean(hsv[..., 1] / 255.0 >= min_saturation))


class _Images(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.sources.append(dict(attrs).get("src", ""))


def image_sources(page) -> list[Path | str]:
    """The ``src`` of every ``<img>`` in ``page``, resolved to files when local."""
    parser = _Images()
    page = Path(page)
    parser.feed(page.read_text(encoding="utf-8"))
    out = []
    for src in parser.sources:
        if src.startswith("data:"):
            out.append(src)
        elif src.startswith("file:"):
            out.append(Path(unquote(urlparse(src).path)))
        else:
            out.append(page.parent / unquote(src))
    return out
