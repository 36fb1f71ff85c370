"""Memo of fitted heads beside the embedding cache (``<cache>.fits/``).

With a warm embedding cache, the cross-validated search over ``C`` is the
slowest step of ``embedclf train`` (minutes for 81 classes of 1280-d
vectors). Its result depends only on the vectors, the labels and the settings,
so it is stored under a hash of all of them: a rerun with the same data and
settings reuses the fitted head instead of fitting it again, and any change
(one image, one label, another C grid, another library version) misses.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np

__all__ = ["memo_dir_for", "memo_key", "load_fit", "save_fit"]

logger = logging.getLogger("embedclf")


def memo_dir_for(cache) -> Path | None:
    """The memo directory of an embedding cache file (None without a cache)."""
    return None if cache is None else Path(os.fspath(cache) + ".fits")


def memo_key(X, y, groups=None, **settings) -> str:
    """SHA-256 of the data, the labels, the groups and the settings."""
    from embedclf.workflow._model_dir._manifest import library_versions

    digest = hashlib.sha256()
    X = np.ascontiguousarray(X, dtype=np.float32)
    digest.update(str(X.shape).encode())
    digest.update(X.tobytes())
    digest.update("\n".join(map(str, y)).encode())
    if groups is not None:
        digest.update(np.ascontiguousarray(groups, dtype=np.int64).tobytes())
    versions = library_versions()
    settings = dict(settings, versions=[versions["embedclf"], versions["scikit-learn"]])
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def load_fit(memo_dir, key: str):
    """The memoised (head, result) for ``key``, or None."""
    if memo_dir is None:
        return None
    from embedclf.exceptions import ModelDirError
    from embedclf.workflow._model_dir._trust import load_head

    head_path = Path(memo_dir) / f"{key}.skops"
    result_path = Path(memo_dir) / f"{key}.json"
    if not (head_path.is_file() and result_path.is_file()):
        return None
    try:
        result = json.loads(result_path.read_text())
        head = load_head(head_path)
    except (OSError, ValueError, ModelDirError) as exc:
        logger.warning("ignoring unreadable fit memo %s (%s)", head_path, exc)
        return None
    return head, result


def save_fit(memo_dir, key: str, head, result: dict) -> None:
    """Store (head, result) under ``key``; failures only log a warning."""
    if memo_dir is None:
        return
    import skops.io as sio

    memo_dir = Path(memo_dir)
    try:
        memo_dir.mkdir(parents=True, exist_ok=True)
        tmp = memo_dir / f"{key}.skops.tmp-{os.getpid()}"
        sio.dump(head, tmp)
        os.replace(tmp, memo_dir / f"{key}.skops")
        tmp = memo_dir / f"{key}.json.tmp-{os.getpid()}"
        tmp.write_text(json.dumps(result))
        os.replace(tmp, memo_dir / f"{key}.json")
    except OSError as exc:
        logger.warning("could not store the fit memo in %s (%s)", memo_dir, exc)
