"""embed_missing: each vector computed once, however many callers share a cache."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time

import numpy as np
import pytest

from embedclf import EmbeddingCache
from embedclf.cache._lease_owner import boot_id, process_start_time
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


def _lease_files(tmp_path):
    folder = tmp_path / "c.h5.leases"
    return sorted(os.listdir(folder)) if folder.exists() else []


def test_other_keys_are_computed_while_a_caller_holds_its_leases(tmp_path):
    ns = CacheNamespace("m", "m", "default", "v1")
    images = _images()
    release_a, a_inside = threading.Event(), threading.Event()
    plain = RecordingBackbone()

    def holding(batch):
        a_inside.set()
        assert release_a.wait(30)
        return plain(batch)

    result = {}
    a = threading.Thread(
        target=lambda: result.update(
            a=embed_missing(
                EmbeddingCache(tmp_path / "c.h5"), ns, KEYS[:4], images[:4], holding
            )
        )
    )
    a.start()
    assert a_inside.wait(30)
    assert len(_lease_files(tmp_path)) == 4  # held while A computes
    # B wants 2-5: it computes 4 and 5 now, while A still holds 0-3...
    seen_by_b = []

    def watching(batch):
        seen_by_b.extend(batch[:, 0, 0, 0].tolist())
        return plain(batch)

    b = threading.Thread(
        target=lambda: result.update(
            b=embed_missing(
                EmbeddingCache(tmp_path / "c.h5"), ns, KEYS[2:], images[2:], watching
            )
        )
    )
    b.start()
    deadline = time.monotonic() + 30
    while seen_by_b != [4, 5]:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert b.is_alive()  # ...and waits for 2 and 3
    release_a.set()
    a.join()
    b.join()
    assert result["a"][1] == KEYS[:4] and result["b"][1] == KEYS[4:]
    assert sorted(plain.seen) == list(range(6))  # each once
    for key in KEYS[2:4]:
        np.testing.assert_array_equal(result["a"][0][key], result["b"][0][key])
    assert _lease_files(tmp_path) == []


def test_a_dead_processes_lease_is_computed_at_once(tmp_path):
    ns = CacheNamespace("m", "m", "default", "v1")
    cache = EmbeddingCache(tmp_path / "c.h5", lease_ttl=600)
    dead = subprocess.Popen(["sleep", "1000"])
    leases = EmbeddingCache(tmp_path / "c.h5").leases()
    path = leases.path_for(ns.fingerprint, KEYS[0])
    os.makedirs(leases.folder)
    with open(path, "w") as fh:
        json.dump(
            dict(
                pid=dead.pid,
                host=socket.gethostname(),
                boot=boot_id(),
                start=process_start_time(dead.pid),
                token="ab" * 16,
                ttl=600,
                expires=time.time() + 600,
            ),
            fh,
        )
    dead.kill()
    dead.wait()
    backbone = RecordingBackbone()
    start = time.monotonic()
    got, computed = embed_missing(cache, ns, KEYS[:2], _images()[:2], backbone)
    assert computed == KEYS[:2] and time.monotonic() - start < 60
    assert _lease_files(tmp_path) == []


def test_a_failing_backbone_releases_its_leases(tmp_path):
    ns = CacheNamespace("m", "m", "default", "v1")
    cache = EmbeddingCache(tmp_path / "c.h5")

    def broken(batch):
        assert len(_lease_files(tmp_path)) == len(batch)
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        embed_missing(cache, ns, KEYS, _images(), broken)
    assert _lease_files(tmp_path) == []
    got, computed = embed_missing(cache, ns, KEYS, _images(), RecordingBackbone())
    assert computed == KEYS


def test_a_key_twice_in_a_batch_is_computed_once(tmp_path):
    ns = CacheNamespace("m", "m", "default", "v1")
    images, backbone = _images(), RecordingBackbone()
    rows = [0, 1, 0, 2, 1]
    keys = [KEYS[r] for r in rows]
    got, computed = embed_missing(
        EmbeddingCache(tmp_path / "c.h5"), ns, keys, images[rows], backbone
    )
    assert computed == KEYS[:3] and backbone.seen == [0, 1, 2]
    assert sorted(got) == sorted(KEYS[:3])
