"""``embedclf cache merge A B -o C`` (run as a user would, in a subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from embedclf import EmbeddingCache
from embedclf.cache import _segments
from embedclf.cache._store import CacheNamespace

NS = CacheNamespace("model-a", "id-a", "default", "v1")
NS_B = CacheNamespace("model-b", "id-b", "default", "v1", dtype="float16")
ROOT = Path(__file__).resolve().parents[2]


def keys(n, start=0):
    return [f"{i:064x}" for i in range(start, start + n)]


def vecs(n, dim=6, start=0):
    return (np.arange(start * dim, (start + n) * dim, dtype=np.float32) / 3).reshape(
        n, dim
    )


def _cli(*args):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "embedclf", "cache", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


@pytest.fixture
def two_caches(tmp_path, monkeypatch):
    """A: rows 0-9 (main file, a segment and the journal); B: rows 5-14 plus
    a float16 namespace; rows 5-9 are the same vectors in both."""
    monkeypatch.setattr(_segments, "FOLD_BYTES", 0)
    a, b = EmbeddingCache(tmp_path / "a.h5"), EmbeddingCache(tmp_path / "b.h5")
    a.put(NS, keys(4), vecs(4))
    a.compact()
    a.put(NS, keys(3, 4), vecs(3, start=4))
    a.compact()  # a segment
    a.put(NS, keys(3, 7), vecs(3, start=7))  # left in the journal
    b.put(NS, keys(10, 5), vecs(10, start=5))
    b.put(NS_B, keys(2, 100), vecs(2, dim=3))
    b.compact()
    assert list(tmp_path.glob("a.h5.seg-*"))
    return a.path, b.path


def test_merge_writes_every_row_once(two_caches, tmp_path):
    a, b = two_caches
    out = tmp_path / "c.h5"
    proc = _cli("merge", a, b, "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert "17 vectors in 2 namespace(s); 5 key(s) were in several sources, 0 " in (
        proc.stdout
    )
    got, found = EmbeddingCache(out).get(NS, keys(16))
    assert found.tolist() == [True] * 15 + [False]
    np.testing.assert_array_equal(got[:15], vecs(15))
    got, found = EmbeddingCache(out).get(NS_B, keys(2, 100))
    assert found.all()
    np.testing.assert_array_equal(got, vecs(2, dim=3).astype(np.float16))
    assert {e["fingerprint"]: e["n_rows"] for e in EmbeddingCache(out).info()} == {
        NS.fingerprint: 15,
        NS_B.fingerprint: 2,
    }
    assert not list(tmp_path.glob("c.h5.seg-*")) and not Path(f"{out}.journal").exists()
    assert EmbeddingCache(a).get(NS, keys(10))[1].all()  # sources untouched


def test_merge_refuses_a_namespace_with_another_dim(tmp_path):
    a, b = EmbeddingCache(tmp_path / "a.h5"), EmbeddingCache(tmp_path / "b.h5")
    a.put(NS, keys(2), vecs(2))
    b.put(NS, keys(2, 5), vecs(2, dim=7))
    proc = _cli("merge", a.path, b.path, "-o", tmp_path / "c.h5")
    assert proc.returncode == 1
    assert f"Cannot merge {b.path!r} into {a.path!r}" in proc.stderr
    assert "holds 6-d vectors" in proc.stderr and "7-d" in proc.stderr
    assert not (tmp_path / "c.h5").exists()


def test_merge_verifies_checksums_and_names_the_damaged_source(two_caches, tmp_path):
    a, b = two_caches
    with h5py.File(b, "r+") as f:
        f[NS_B.fingerprint]["vectors"][1] = np.zeros(3, dtype=np.float16)
    out = tmp_path / "c.h5"
    proc = _cli("merge", a, b, "-o", out)
    assert proc.returncode == 1
    assert f"1 row(s) of [{b!r}] fail their checksum" in proc.stderr
    assert f"embedclf cache repair {b}" in proc.stderr
    assert not out.exists()


def test_merge_never_writes_into_an_existing_file(two_caches, tmp_path):
    a, b = two_caches
    proc = _cli("merge", a, b, "-o", a)
    assert proc.returncode == 1 and "already exists" in proc.stderr
    proc = _cli("merge", a, tmp_path / "missing.h5", "-o", tmp_path / "c.h5")
    assert proc.returncode == 1 and "does not exist" in proc.stderr


def test_differing_vectors_are_counted_and_the_first_source_wins(tmp_path):
    a, b = EmbeddingCache(tmp_path / "a.h5"), EmbeddingCache(tmp_path / "b.h5")
    a.put(NS, keys(3), vecs(3))
    b.put(NS, keys(3), vecs(3) + 1)
    report = EmbeddingCache.merge([a.path, b.path], tmp_path / "c.h5")
    assert report == {"kept": 3, "namespaces": 1, "shared": 3, "differing": 3}
    got, _ = EmbeddingCache(tmp_path / "c.h5").get(NS, keys(3))
    np.testing.assert_array_equal(got, vecs(3))
