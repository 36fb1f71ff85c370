"""The data-quality audit: label issues, duplicates and leaks, outliers,
image problems, balance.

:func:`audit_vectors` works on embeddings and labels (and optionally the
split, paths, content keys and CleanVision image properties of each row);
:func:`audit_images` embeds image files and measures their properties first
(both through the cache) and calls it. :func:`write_audit` writes
``audit.html``, ``issues.csv``, ``audit.json`` and the list files for
``embedclf train --exclude``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import numpy as np

from embedclf.workflow._audit._duplicates import (
    DUPLICATE_THRESHOLD,
    duplicate_pairs,
    twin_accuracy,
)
from embedclf.workflow._audit._hash_pairs import (
    PHASH_DISTANCE,
    merge_pairs,
    phash_pairs,
)
from embedclf.workflow._audit._summary import audit_summary
from embedclf.workflow._audit._write import write_audit  # noqa: F401

__all__ = ["AuditResult", "audit_images", "audit_vectors", "write_audit"]

# write_audit lives in _write (this module's size); re-exported here.

logger = logging.getLogger("embedclf")

#: Memoised results a ``memory`` folder keeps (an audit stores 4 to 6:
#: out-of-fold probabilities, outliers, pairs, the twin head's predictions),
#: so about the last five audits of changed data.
MEMO_ITEMS = 24


@dataclass
class AuditResult:
    """What :func:`audit_vectors` found; ``summary`` is JSON-ready."""

    labels: np.ndarray
    split: np.ndarray
    paths: np.ndarray | None
    classes: np.ndarray
    proba: np.ndarray
    label_issues: list = field(default_factory=list)
    duplicates: list = field(default_factory=list)
    outliers: list = field(default_factory=list)
    image_issues: list = field(default_factory=list)
    balance: dict = field(default_factory=dict)
    twins: dict | None = None
    summary: dict = field(default_factory=dict)

    def rows(self):
        """One dict per issue, with the columns of ``issues.csv``."""
        path = (lambda i: str(self.paths[i])) if self.paths is not None else str

        def base(kind, i):
            return {
                "issue": kind,
                "index": i,
                "path": path(i),
                "split": self.split[i],
                "label": self.labels[i],
            }

        for r in self.label_issues:
            yield base("label", r["index"]) | {
                "suggested_label": r["suggested_label"],
                "score": f"{r['quality']:.4f}",
            }
        for p in self.duplicates:
            sim = p["similarity"]
            yield base(f"{p['kind']}_duplicate", p["i"]) | {
                "score": "" if sim is None else f"{sim:.4f}",
                "signal": p["signal"],
                "other_index": p["j"],
                "other_path": path(p["j"]),
                "other_split": self.split[p["j"]],
                "other_label": self.labels[p["j"]],
            }
        for r in self.outliers:
            yield base("outlier", r["index"]) | {"score": f"{r['score']:.4f}"}
        for r in self.image_issues:
            yield base(r["issue"], r["index"]) | {"score": f"{r['score']:.4f}"}


def _balance(labels, split, n_folds) -> dict:
    classes = np.unique(labels)
    parts = [s for s in ("training", "validation", "testing") if (split == s).any()]
    parts += sorted(set(split) - set(parts))
    counts = {
        str(c): {s: int(np.sum((labels == c) & (split == s))) for s in parts}
        for c in classes
    }
    first = parts[0]
    tiny = sorted(c for c, n in counts.items() if n[first] < n_folds)
    sizes = [n[first] for n in counts.values()]
    return {
        "splits": parts,
        "counts": counts,
        "tiny_classes": tiny,
        "tiny_below": int(n_folds),
        "smallest": int(min(sizes)),
        "largest": int(max(sizes)),
    }


def audit_vectors(
    X,
    labels,
    split=None,
    *,
    paths=None,
    keys=None,
    props=None,
    duplicate_threshold=DUPLICATE_THRESHOLD,
    phash_distance=PHASH_DISTANCE,
    n_folds=5,
    C=1.0,
    random_state=0,
    progress=False,
    memory=None,
):
    """Audit labelled embeddings for label errors, duplicates and outliers.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Embeddings, e.g. ``ImageEmbedder(cache=...).transform(paths)``.
    labels : array-like of shape (n_samples,)
        Given labels.
    split : array-like of shape (n_samples,), default=None
        "training", "validation" or "testing" per row; None means one split.
    paths : array-like of shape (n_samples,), default=None
        Image files, for the page and ``issues.csv``.
    keys : array-like of shape (n_samples,), default=None
        Content keys (equal keys = exact duplicates).
    props : ndarray of shape (n_samples, n_properties), default=None
        CleanVision's image properties and perceptual hash of each row
        (:func:`~._images.image_properties`); None skips the image checks
        and the hash pairs.
    duplicate_threshold : float, default=DUPLICATE_THRESHOLD
        Cosine similarity from which two images are near-duplicates (0.94).
    phash_distance : int, default=PHASH_DISTANCE
        Bits (of 64) in which two perceptual hashes may differ and still
        pair (4).
    n_folds : int, default=5
        Folds of the out-of-fold probabilities (group-aware).
    C : float, default=1.0
        Inverse regularisation of the softmax head behind them.
    random_state : int, default=0
    progress : bool, default=False
        Progress bars on stderr.
    memory : str, os.PathLike or joblib.Memory, default=None
        Where the out-of-fold probabilities, outlier scores, embedding
        pairs and the twin head's predictions are memoised, keyed by a hash
        of their inputs (as ``Pipeline(memory=...)``): a second audit of the
        same vectors and labels skips them. None memoises nothing. A folder
        given by its path keeps the ``MEMO_ITEMS`` results used last (older
        ones are deleted after the audit, so re-audits of changing data do
        not pile up); a ``joblib.Memory`` is left as it is.

    Returns
    -------
    result : AuditResult
    """
    from sklearn.preprocessing import LabelEncoder

    from embedclf.workflow._audit._labels import find_outliers, out_of_fold_proba

    X = np.asarray(X, dtype=np.float32)
    labels = np.asarray(labels).astype(str)
    if X.ndim != 2 or len(X) != len(labels):
        raise ValueError(
            f"X must be 2-D with one row per label; got shape {X.shape} for "
            f"{len(labels)} labels."
        )
    n = len(labels)
    split = np.full(n, "training") if split is None else np.asarray(split).astype(str)
    paths = None if paths is None else np.asarray(paths).astype(str)
    encoder = LabelEncoder().fit(labels)
    y = encoder.transform(labels)
    classes = encoder.classes_
    if len(classes) < 2:
        raise ValueError(f"The audit needs at least 2 classes; got {len(classes)}.")
    from sklearn.utils.validation import check_memory

    given_path = isinstance(memory, (str, os.PathLike))
    memory = check_memory(os.fspath(memory) if given_path else memory)
    proba = memory.cache(out_of_fold_proba, ignore=["progress"])(
        X, y, n_folds=n_folds, C=C, random_state=random_state, progress=progress
    )
    label_issues = _label_issue_rows(labels, classes, y, proba)
    flagged, scores = memory.cache(find_outliers)(X)
    outliers = [
        {"index": int(i), "score": float(scores[i]), "label": str(labels[i])}
        for i in flagged
    ]
    pairs = memory.cache(duplicate_pairs)(
        X, split, keys=keys, threshold=duplicate_threshold
    )
    image_issues = []
    if props is not None:
        image_issues, pairs = _image_checks(
            np.asarray(props), X, labels, split, pairs, phash_distance
        )
    twins = _twins(X, labels, split, pairs, C, memory)
    result = AuditResult(
        labels=labels,
        split=split,
        paths=paths,
        classes=classes,
        proba=proba,
        label_issues=label_issues,
        duplicates=pairs,
        outliers=outliers,
        image_issues=image_issues,
        balance=_balance(labels, split, n_folds),
        twins=twins,
    )
    result.summary = audit_summary(
        result, y, pairs, image_issues, outliers, twins,
        duplicate_threshold=duplicate_threshold,
        phash_distance=None if props is None else int(phash_distance),
    )  # fmt: skip
    if given_path:
        memory.reduce_size(items_limit=MEMO_ITEMS)
    return result


def _label_issue_rows(labels, classes, y, proba) -> list[dict]:
    """The suspected label errors, most suspicious first (cleanlab's ranking)."""
    from embedclf.workflow._audit._labels import find_label_issues_oof

    ranked, quality = find_label_issues_oof(y, proba)
    suggested = proba.argmax(axis=1)
    return [
        {
            "index": int(i),
            "label": str(labels[i]),
            "suggested_label": str(classes[suggested[i]]),
            "quality": float(quality[i]),
            "given_proba": float(proba[i, y[i]]),
            "suggested_proba": float(proba[i, suggested[i]]),
        }
        for i in ranked
    ]


def _image_checks(props, X, labels, split, pairs, phash_distance):
    """(image issue rows, pairs with the perceptual-hash pairs merged in)."""
    from embedclf.workflow._audit._images import (
        find_image_issues,
        image_issue_rows,
        phash_bits,
    )

    image_issues = image_issue_rows(find_image_issues(props), labels)
    valid = ~np.isnan(props).any(axis=1)
    hashed = phash_pairs(
        phash_bits(props), split, max_distance=phash_distance, valid=valid
    )
    return image_issues, merge_pairs(pairs, hashed, X)


def _held_predictions(X_train, y_train, X_held, C):
    from embedclf.heads._linear import SoftmaxClassifier

    return SoftmaxClassifier(C=C).fit(X_train, y_train).predict(X_held)


def _twins(X, labels, split, pairs, C, memory):
    """Test accuracy (head fitted on training) with vs without a training twin."""
    train = split == "training"
    held_name = "testing" if (split == "testing").any() else "validation"
    held = split == held_name
    if not held.any() or len(np.unique(labels[train])) < 2:
        return None
    has_twin = np.zeros(len(labels), dtype=bool)
    for p in pairs:
        a, b = p["i"], p["j"]
        if train[a] and held[b]:
            has_twin[b] = True
        if train[b] and held[a]:
            has_twin[a] = True
    pred = memory.cache(_held_predictions)(X[train], labels[train], X[held], C)
    return {"split": held_name} | twin_accuracy(labels[held], pred, has_twin[held])


def audit_images(
    paths,
    labels,
    split=None,
    *,
    model,
    cache=None,
    image_size=None,
    batch_size=32,
    progress=False,
    image_checks=True,
    runtime="auto",
    precision="auto",
    **kwargs,
):
    """Embed and measure image files (through ``cache``) and audit them.

    The vectors and CleanVision's image properties are read from ``cache``
    when there, else computed and stored, both keyed by the files' content;
    then :func:`audit_vectors` runs on them.

    Parameters
    ----------
    paths : array-like of shape (n_samples,)
    labels : array-like of shape (n_samples,)
    split : array-like of shape (n_samples,), default=None
    model : str
        Backbone handle, as for :class:`~embedclf.ImageEmbedder`.
    cache : str or os.PathLike, default=None
        Embedding cache; with every vector cached the audit takes seconds.
    image_size, batch_size, progress, runtime, precision
        As for :class:`~embedclf.ImageEmbedder` (``progress="auto"`` shows
        the audit's own bars when stderr is a terminal).
    image_checks : bool, default=True
        Run CleanVision's image checks and the perceptual-hash pairing.
    **kwargs
        Passed to :func:`audit_vectors`.

    Returns
    -------
    result : AuditResult
        Unreadable images are left out and listed in
        ``result.summary["unreadable"]``.
    """
    from embedclf.embedding._embedder import ImageEmbedder
    from embedclf.embedding._images import content_key, read_image_bytes

    paths = np.asarray(paths).astype(str)
    labels = np.asarray(labels).astype(str)
    split = None if split is None else np.asarray(split).astype(str)
    embedder = ImageEmbedder(
        model=model,
        cache=cache,
        image_size=image_size,
        batch_size=batch_size,
        on_error="nan",
        progress=progress,
        runtime=runtime,
        precision=precision,
    )
    X = embedder.transform(paths)
    failed = set(embedder.failed_paths_.tolist())
    keep = np.array([p not in failed for p in paths], dtype=bool)
    # The cache's key (SHA-256 of the bytes); the embedder computed it too but
    # does not expose it, and hashing is cheap next to the rest.
    keys = [content_key(read_image_bytes(p)) for p in paths[keep]]
    if progress == "auto":
        import sys

        progress = sys.stderr.isatty()
    props = None
    if image_checks:
        from embedclf.workflow._audit._images import image_properties

        props = image_properties(
            paths[keep], keys, cache=cache, progress=bool(progress)
        )
    result = audit_vectors(
        X[keep],
        labels[keep],
        None if split is None else split[keep],
        paths=paths[keep],
        keys=keys,
        props=props,
        progress=bool(progress),
        **kwargs,
    )
    result.summary["unreadable"] = sorted(failed)
    return result
