"""Image-property checks of the audit, from CleanVision, cached by content key.

CleanVision (``cleanvision``, by cleanlab's authors) computes per image a few
raw properties (brightness percentiles, aspect ratio, entropy, edge variance
of a 64-pixel grey copy, colour mode, size) and turns them into issue scores
and flags with its own thresholds (``ImagePropertyIssueManager``). We call
the same property classes and the same score/flag functions with the same
default parameters; what we do differently:

- the raw properties of each file are stored in the embedding cache under a
  namespace of their own, keyed by the file's content key, so a warm audit
  reads them instead of decoding every image again (CleanVision's
  ``Imagelab`` recomputes everything on each run);
- the 64-bit perceptual hash (``imagehash.phash``, hash size 8, the hash
  CleanVision's near-duplicate check uses) is stored with them; pairs are
  found in :mod:`._duplicates` by Hamming distance rather than equal hashes
  (see ``PHASH_DISTANCE`` there for why and what it costs);
- CleanVision's exact-duplicate check (MD5 of the pixels) is left to the
  content key (SHA-256 of the bytes), which the audit already has;
- three checks are adjusted where CleanVision's defaults missed planted
  problems or flagged clean photos on the Grocery Store photos (measured in
  ``benchmarks/bench_audit.py``): see ``BLUR_RESOLUTION``,
  ``LIGHT_MEAN_BRIGHTNESS`` and ``ODD_SIZE_MIN_IQR``.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = [
    "IMAGE_ISSUES",
    "PROPERTY_COLUMNS",
    "find_image_issues",
    "image_issue_rows",
    "image_properties",
    "phash_bits",
]

logger = logging.getLogger("embedclf")

#: CleanVision's image-property issue types, in the order the page shows them.
IMAGE_ISSUES = (
    "blurry",
    "dark",
    "light",
    "low_information",
    "odd_aspect_ratio",
    "odd_size",
    "grayscale",
)
_BRIGHTNESS = [f"brightness_perc_{p}" for p in (1, 5, 10, 15, 90, 95, 99)]
#: The raw properties stored per image (the phash as four 16-bit words,
#: exact in float32).
PROPERTY_COLUMNS = (
    *_BRIGHTNESS,
    "brightness",
    "aspect_ratio",
    "entropy",
    "blurriness",
    "blurriness_grayscale_std",
    "blurriness_fine",
    "grayscale",
    "size",
    "width",
    "height",
    "phash_0",
    "phash_1",
    "phash_2",
    "phash_3",
)
_VERSION = "1"

#: Longest side (pixels) of the grey copy whose edges measure blur.
#: CleanVision uses 64 (``MAX_RESOLUTION_FOR_BLURRY_DETECTION``), where a
#: Gaussian blur of radius 3 on a 348-pixel photo shrinks to half a pixel:
#: none of 20 such photos was flagged. At 128, with CleanVision's own score
#: and threshold (0.29), 9 of 10 planted ones are flagged and 1.7 % of the 5,421
#: real photos (benchmarks/results/audit.json); its grey-histogram term,
#: which spares single-colour images, stays at 64 as calibrated.
BLUR_RESOLUTION = 128
#: Mean brightness (CleanVision's ``brightness`` property) from which a photo
#: is also called light. CleanVision's own rule (5th percentile of pixel
#: brightness above 0.95) flags only nearly white images; photos brightened
#: x3 keep dark corners and were never flagged. The 5,421 Grocery Store
#: photos reach 0.684 at most (99.9th percentile 0.60).
LIGHT_MEAN_BRIGHTNESS = 0.65
#: Smallest spread (as a share of the median side) of the odd-size rule.
#: CleanVision flags sizes beyond 3 interquartile ranges of the median; when
#: most photos share one size the range is 0 and every other size is odd
#: (463 of the 5,421 Grocery Store photos, 348x464 among 348x348).
ODD_SIZE_MIN_IQR = 0.1


def _import_cleanvision():
    try:
        import cleanvision  # noqa: F401
        import imagehash  # noqa: F401
    except ImportError:
        raise ImportError(
            "The audit's image checks need cleanvision and imagehash, "
            "dependencies of embedclf that are not installed. Run: "
            "pip install cleanvision imagehash"
        ) from None


def _namespace():
    from importlib.metadata import version

    from embedclf.cache import CacheNamespace

    ident = (
        f"cleanvision-{version('cleanvision')}/imagehash-{version('imagehash')}"
        f"/phash8/properties-v{_VERSION}"
    )
    return CacheNamespace("image-properties", ident, "original", f"v{_VERSION}")


def _properties_of(path) -> np.ndarray:
    """The raw properties of one file, as CleanVision computes them."""
    import imagehash
    from cleanvision.issue_managers.image_property import (
        AspectRatioProperty,
        BlurrinessProperty,
        BrightnessProperty,
        EntropyProperty,
    )
    from PIL import Image

    with Image.open(path) as f:
        # As CleanVision's datasets do: the decoded image, no EXIF rotation,
        # no colour conversion (its grayscale check reads the mode).
        img = f.copy()
    raw = BrightnessProperty("dark").calculate(img)
    raw |= AspectRatioProperty().calculate(img)
    raw |= EntropyProperty().calculate(img)
    raw |= BlurrinessProperty().calculate(img)
    fine = BlurrinessProperty()
    fine.max_resolution = BLUR_RESOLUTION
    raw["blurriness_fine"] = fine.calculate(img)["blurriness"]
    raw["grayscale"] = float(img.mode == "L")
    raw["width"], raw["height"] = img.size
    raw["size"] = float(np.sqrt(img.size[0]) * np.sqrt(img.size[1]))
    bits = imagehash.phash(img, hash_size=8).hash.flatten()
    words = np.packbits(bits).view(">u2").astype(np.float32)
    out = [float(raw[c]) for c in PROPERTY_COLUMNS[:-4]]
    return np.concatenate([np.asarray(out, dtype=np.float32), words])


def _safe_properties(path) -> np.ndarray:
    try:
        return _properties_of(path)
    except (OSError, ValueError, SyntaxError) as exc:
        logger.warning("image properties of %s: %s", path, exc)
        return np.full(len(PROPERTY_COLUMNS), np.nan, dtype=np.float32)


def image_properties(paths, keys, *, cache=None, progress=False, n_jobs=2):
    """CleanVision's raw image properties and the perceptual hash of each file.

    Parameters
    ----------
    paths : sequence of str
        Image files.
    keys : sequence of str
        Their content keys (as the embedding cache uses).
    cache : str or os.PathLike, default=None
        Embedding cache file; the properties live there under a namespace of
        their own, so a second audit reads them instead of the images.
    progress : bool, default=False
        A tqdm bar over the images computed (not over those read back).
    n_jobs : int, default=2
        Threads decoding images.

    Returns
    -------
    props : ndarray of shape (n_samples, len(PROPERTY_COLUMNS))
        NaN rows for files that cannot be read.
    """
    from tqdm.auto import tqdm

    _import_cleanvision()
    paths = [str(p) for p in paths]
    keys = list(keys)
    out = np.full((len(paths), len(PROPERTY_COLUMNS)), np.nan, dtype=np.float32)
    found = np.zeros(len(paths), dtype=bool)
    store = ns = None
    if cache is not None and len(keys):
        from embedclf.cache import EmbeddingCache

        store, ns = EmbeddingCache(cache), _namespace()
        got, found = store.get(ns, keys)
        if got is not None:
            out[found] = got[found]
    todo = np.flatnonzero(~found)
    if len(todo):
        with (
            ThreadPoolExecutor(max(1, int(n_jobs))) as pool,
            tqdm(
                total=len(todo), desc="image checks", unit="img", disable=not progress
            ) as bar,
        ):
            for i, row in zip(
                todo, pool.map(_safe_properties, [paths[i] for i in todo])
            ):
                out[i] = row
                bar.update()
        ok = todo[~np.isnan(out[todo]).any(axis=1)]
        if store is not None and len(ok):
            store.put(ns, [keys[i] for i in ok], out[ok])
            store.compact()
    return out


def default_params() -> dict:
    """CleanVision's default parameters of each image-property check."""
    from cleanvision.issue_managers.image_property_issue_manager import (
        ImagePropertyIssueManager,
    )

    return ImagePropertyIssueManager().get_default_params()


def find_image_issues(props, *, params=None, deviations=True) -> dict:
    """CleanVision's scores and flags from the raw properties.

    Parameters
    ----------
    props : ndarray of shape (n_samples, len(PROPERTY_COLUMNS))
        From :func:`image_properties`; NaN rows (unreadable) are never flagged.
    params : dict, default=None
        Per issue type, parameters overriding CleanVision's defaults (e.g.
        ``{"dark": {"threshold": 0.2}}``).
    deviations : bool, default=True
        Apply embedclf's three deviations (``BLUR_RESOLUTION``,
        ``LIGHT_MEAN_BRIGHTNESS``, ``ODD_SIZE_MIN_IQR``); False gives
        CleanVision's own flags (the benchmark compares both).

    Returns
    -------
    issues : dict
        ``{issue type: (scores, flags)}``, arrays of shape (n_samples,);
        low scores are bad, as in CleanVision.
    """
    import pandas as pd
    from cleanvision.issue_managers.image_property_issue_manager import (
        ImagePropertyIssueManager,
    )
    from cleanvision.utils.utils import get_is_issue_colname, get_score_colname

    _import_cleanvision()
    manager = ImagePropertyIssueManager()
    manager.update_params(params or {})
    props = np.asarray(props, dtype=np.float64)
    ok = ~np.isnan(props).any(axis=1)
    frame = pd.DataFrame(props[ok], columns=list(PROPERTY_COLUMNS))
    frame["color_space"] = np.where(frame["grayscale"] > 0.5, "L", "RGB")
    if deviations:
        frame["blurriness"] = frame["blurriness_fine"]  # see BLUR_RESOLUTION
    out = {}
    for issue in IMAGE_ISSUES:
        prop = manager.image_properties[issue]
        kwargs = manager.params[issue]
        if issue == "odd_size" and deviations:
            scores, flags = _odd_size(frame["size"].to_numpy(), **kwargs)
        else:
            got = prop.get_scores(frame[prop.score_columns], issue, **kwargs)
            marked = prop.mark_issue(got, issue, threshold=kwargs.get("threshold"))
            scores = got[get_score_colname(issue)].to_numpy(dtype=float)
            flags = marked[get_is_issue_colname(issue)].to_numpy(dtype=bool)
        if issue == "light" and deviations:  # see LIGHT_MEAN_BRIGHTNESS
            flags = flags | (frame["brightness"].to_numpy() >= LIGHT_MEAN_BRIGHTNESS)
        score = np.ones(len(props))
        flag = np.zeros(len(props), dtype=bool)
        score[ok], flag[ok] = scores, flags
        out[issue] = (score, flag)
    return out


def _odd_size(size, iqr_factor=3.0):
    """CleanVision's ``SizeProperty`` score, its spread floored (ODD_SIZE_MIN_IQR)."""
    if not len(size):
        return np.ones(0), np.zeros(0, dtype=bool)
    q1, median, q3 = np.percentile(size, [25, 50, 75])
    iqr = max(q3 - q1, ODD_SIZE_MIN_IQR * median)
    low, high = q1 - iqr_factor * iqr, q3 + iqr_factor * iqr
    score = 1 - np.clip(np.abs(size - (low + high) / 2) / (high - low), 0, 1)
    return score, score < 0.5


def image_issue_rows(issues, labels) -> list:
    """One dict per flagged (image, issue type), worst first within a type."""
    rows = []
    for issue in IMAGE_ISSUES:
        score, flag = issues[issue]
        for i in np.flatnonzero(flag)[np.argsort(score[flag], kind="stable")]:
            rows.append(
                {
                    "index": int(i),
                    "issue": issue,
                    "score": float(score[i]),
                    "label": str(labels[i]),
                }
            )
    return rows


def phash_bits(props) -> np.ndarray:
    """The 64 bits of each row's perceptual hash, shape (n_samples, 64)."""
    words = np.nan_to_num(np.asarray(props)[:, -4:]).astype(">u2")
    return np.unpackbits(words.view(np.uint8), axis=1).astype(bool)
