"""The training photos a model directory records, and their vectors.

``embedclf train`` writes ``training_photos.json.gz`` into the model's
versioned folder (named, with its SHA-256, under ``files`` in the manifest):
the absolute path, content key (SHA-256 of the bytes, the cache key) and
label of every photo the head was fitted on. Vectors are not copied: they
are read back from the cache by key (the training cache the manifest names,
or ``--cache``), and only photos missing from it are embedded again. On the
Grocery Store training + validation photos (2,936) the file weighs 126 kB,
against 7.5 MB for a float16 copy of the vectors (benchmark item 22).
"""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import numpy as np

__all__ = [
    "TRAINING_INDEX",
    "TrainingPhotos",
    "read_training_index",
    "training_index_file",
    "training_vectors",
]

#: Name under ``files`` in the manifest, and the file's name in the folder.
TRAINING_INDEX = ("training_photos", "training_photos.json.gz")


class TrainingPhotos:
    """Paths, content keys and labels of the photos a head was fitted on."""

    def __init__(self, paths, keys, labels):
        self.paths = np.asarray(paths, dtype=str)
        self.keys = np.asarray(keys, dtype=str)
        self.labels = np.asarray(labels, dtype=str)

    def __len__(self):
        return len(self.paths)


def training_index_file(paths, labels, *, cache=None) -> tuple[str, bytes]:
    """``(file name, bytes)`` of the index of ``paths`` (for save_model_dir).

    The content keys come from the cache's identity memo (a stat per photo)
    or, without a cache, by hashing each file.
    """
    import os

    from embedclf.embedding._batches import IMAGE_ERRORS
    from embedclf.embedding._identity_memo import hash_paths

    paths = [os.path.abspath(p) for p in paths]
    keys, errors = hash_paths(
        paths, cache, n_threads=2, rehash=False, errors=IMAGE_ERRORS
    )
    ok = [e is None for e in errors]
    body = {
        "format": "embedclf-training-photos",
        "format_version": 1,
        "paths": [p for p, g in zip(paths, ok) if g],
        "keys": [k for k, g in zip(keys, ok) if g],
        "labels": [str(y) for y, g in zip(labels, ok) if g],
    }
    data = gzip.compress(json.dumps(body).encode("utf-8"), mtime=0)
    return TRAINING_INDEX[1], data


def read_training_index(model_dir) -> TrainingPhotos | None:
    """The training photos of a loaded model directory, or None if it records
    none (trained before this file existed).

    Raises
    ------
    ModelDirError
        The file is missing or is not the one the manifest was written with.
    """
    from embedclf.exceptions import ModelDirError

    entry = (model_dir.manifest.get("files") or {}).get(TRAINING_INDEX[0])
    if not isinstance(entry, dict):
        return None
    rel = str(entry.get("path", ""))
    path = Path(model_dir.path) / rel
    if not rel or ".." in Path(rel).parts or not path.is_file():
        raise ModelDirError(
            f"Model directory {str(model_dir.path)!r} has no {rel}, which its "
            "manifest names. Train the model again."
        )
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != entry.get("sha256"):
        raise ModelDirError(
            f"In model directory {str(model_dir.path)!r}, {rel} is not the file "
            "manifest.json was written with (its SHA-256 differs). Train the "
            "model again."
        )
    body = json.loads(gzip.decompress(data))
    return TrainingPhotos(body["paths"], body["keys"], body["labels"])


def training_vectors(photos: TrainingPhotos, embedder):
    """Vectors of the training photos, read from the embedder's cache by key.

    Returns
    -------
    X : ndarray of shape (n_photos, dim)
        NaN rows for photos neither in the cache nor readable any more.
    ok : ndarray of bool
    """
    from embedclf.embedding._by_key import transform_keys

    # Photos missing from the cache are embedded again (with the embedder's
    # progress bar: without the training cache that is every photo).
    sub = type(embedder)(**dict(embedder.get_params(deep=False), on_error="nan"))
    X = transform_keys(sub, photos.paths, photos.keys)
    return X, np.isfinite(X).all(axis=1)
