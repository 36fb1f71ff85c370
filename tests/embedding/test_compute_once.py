"""embed_missing: each vector computed once, however many callers share a cache."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from embedclf import EmbeddingCache
from embedclf.cache._store import CacheNamespace
from embedclf.embedding._compute_once import embed_missing

KEYS = [f"{i:064x}" for i in range(6)]


class RecordingBackbone:
    """A deterministic image -> vector function that records what it saw."""

    def __init__(self, delay=0.0):
        self.delay = delay
        self.seen = []
        self._lock = threading.Lock()

    def __call__(self, images):
        with self._lock:
            self.seen.extend(images[:, 0, 0, 0].tolist())
        time.sleep(self.delay)
        flat = images.reshape(len(images), -1).astype(np.float32)
        return np.stack([flat.mean(axis=1), flat.std(axis=1), flat[:, 0]], axis=1)


def _images():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(len(KEYS), 4, 4, 3), dtype=np.uint8)
    images[:, 0, 0, 0] = np.arange(len(KEYS))  # each image names its row
    return images


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_computes_only_what_is_missing_and_returns_what_is_stored(tmp_path, dtype):
    ns = CacheNamespace("m", "m", "default", "v1", dtype=dtype)
    cache = EmbeddingCache(tmp_path / "c.h5")
    images, backbone = _images(), RecordingBackbone()
    expected = backbone(images).astype(dtype).astype(np.float32)
    backbone.seen.clear()

    got, computed = embed_missing(cache, ns, KEYS[:2], images[:2], backbone)
    assert computed == KEYS[:2] and backbone.seen == [0, 1]
    got, computed = embed_missing(cache, ns, KEYS, images, backbone)
    assert computed == KEYS[2:] and backbone.seen == [0, 1, 2, 3, 4, 5]
    assert sorted(got) == sorted(KEYS)
    for i, key in enumerate(KEYS):
        assert got[key].dtype == np.float32
        np.testing.assert_array_equal(got[key], expected[i])
    # everything is committed: a fresh handle computes nothing
    got2, computed = embed_missing(
        EmbeddingCache(tmp_path / "c.h5"), ns, KEYS, images, backbone
    )
    assert computed == [] and len(backbone.seen) == len(KEYS)
    for key in KEYS:
        np.testing.assert_array_equal(got2[key], got[key])


def test_concurrent_callers_compute_each_vector_once(tmp_path):
    ns = CacheNamespace("m", "m", "default", "v1")
    images = _images()
    backbone = RecordingBackbone(delay=0.2)  # long enough for the calls to overlap
    start = threading.Barrier(3)
    results = []

    def worker():
        cache = EmbeddingCache(tmp_path / "c.h5")  # its own handle, as a process
        start.wait()
        results.append(embed_missing(cache, ns, KEYS, images, backbone))

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(backbone.seen) == list(range(len(KEYS)))
    assert sorted(len(computed) for _, computed in results) == [0, 0, len(KEYS)]
    for got, _ in results:
        for key in KEYS:
            np.testing.assert_array_equal(got[key], results[0][0][key])


def test_without_a_cache_every_row_is_computed():
    ns = CacheNamespace("m", "m", "default", "v1")
    images, backbone = _images(), RecordingBackbone()
    got, computed = embed_missing(None, ns, KEYS, images, backbone)
    assert computed == KEYS and backbone.seen == list(range(len(KEYS)))
    expected = backbone(images)
    for i, key in enumerate(KEYS):
        np.testing.assert_array_equal(got[key], expected[i])
