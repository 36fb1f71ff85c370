"""The audit and report pages, rendered in headless Chromium (slow).

Each test takes a screenshot and checks that the thumbnails rendered: the
share of colourful pixels (the photos) is high on the page and near zero
once the thumbnail files are removed, so the check can fail.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from _chromium import chromium, colourful_fraction, image_sources, screenshot
from conftest import CLASS_COLOURS, write_image

pytestmark = pytest.mark.slow


def _photos(root, n_per_class=8):
    paths, labels = [], []
    for k, (name, colour) in enumerate(CLASS_COLOURS.items()):
        for i in range(n_per_class):
            p = write_image(
                root / name / f"{i}.jpg", seed=100 * k + i, size=(96, 72), colour=colour
            )
            paths.append(str(p))
            labels.append(name)
    return np.array(paths), np.array(labels)


def _check_renders(page, tmp_path):
    sources = image_sources(page)
    assert sources, "the page has no images"
    assert all(not str(s).startswith("data:") for s in sources)
    assert all(s.is_file() for s in sources), "an <img> points at a missing file"
    shot = screenshot(page, tmp_path / f"{page.stem}.png")
    shown = colourful_fraction(shot)
    # Without the thumbnail files the same page renders (almost) no colour.
    shutil.rmtree(page.parent / "thumbs")
    bare = colourful_fraction(screenshot(page, tmp_path / "bare.png"))
    assert shown > 0.05, f"only {shown:.1%} colourful pixels: thumbnails missing?"
    # Links, highlighted labels and the report's figures keep some colour
    # (how much of a figure is drawn at shot time varies): the thumbnails
    # must add at least 3 % of the pixels.
    assert bare < 0.03 and shown - bare > 0.03, (shown, bare)
    return shown


def test_audit_page_renders_thumbnails(tmp_path):
    from embedclf.workflow._audit._run import audit_vectors, write_audit

    chromium()
    paths, labels = _photos(tmp_path / "img")
    rng = np.random.default_rng(0)
    X = np.eye(4, 16)[np.searchsorted(sorted(CLASS_COLOURS), labels)] * 4
    X = (X + rng.normal(0, 1, X.shape)).astype(np.float32)
    labels = labels.copy()
    flipped = {0: "green", 8: "red", 16: "yellow"}  # three label issues
    for i, wrong in flipped.items():
        labels[i] = wrong if labels[i] != wrong else "blue"
    # A dark photo among them: the image-issue section gets a thumbnail.
    from PIL import Image, ImageEnhance

    from embedclf.embedding._images import content_key, read_image_bytes
    from embedclf.workflow._audit._images import image_properties

    with Image.open(paths[1]) as img:
        ImageEnhance.Brightness(img).enhance(0.15).save(paths[1])
    keys = [content_key(read_image_bytes(p)) for p in paths]
    props = image_properties(paths, keys)
    result = audit_vectors(X, labels, paths=paths, props=props, n_folds=3)
    assert len(result.label_issues) >= 2
    assert "dark" in {r["issue"] for r in result.image_issues}
    page = write_audit(result, tmp_path / "audit")["html"]
    text = page.read_text()
    for section in ("id='next'", "id='images'", "What to do next", "Image issues"):
        assert section in text
    images_part = text[text.index("id='images'") : text.index("id='balance'")]
    assert "<img" in images_part
    _check_renders(page, tmp_path)


def test_report_page_renders_thumbnails(tmp_path):
    from embedclf.workflow._report import write_report

    chromium()
    paths, labels = _photos(tmp_path / "img")
    classes = sorted(CLASS_COLOURS)
    pred = labels.copy()
    pred[::3] = np.roll(labels, 9)[::3]  # every third image wrong
    proba = np.full((len(labels), len(classes)), 0.1)
    proba[np.arange(len(labels)), np.searchsorted(classes, pred)] = 0.7
    write_report(tmp_path / "report", paths, labels, pred, proba, classes)
    _check_renders(tmp_path / "report" / "misclassified.html", tmp_path)
