"""EmbeddingCache and its journal, on real HDF5 files."""

from __future__ import annotations

import os
import re

import h5py
import numpy as np
import pytest

from embedclf import EmbeddingCache
from embedclf.cache._journal import append_record, encode_record, read_records
from embedclf.cache._store import FORMAT_VERSION, CacheNamespace
from embedclf.exceptions import CacheFormatError, CacheMismatchError

NS = CacheNamespace("model-a", "id-a", "default", "v1")
NS_B = CacheNamespace("model-b", "id-b", "default", "v1")


def keys(n, start=0):
    return [f"{i:064x}" for i in range(start, start + n)]


def vecs(n, dim=5, seed=0):
    return np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)


def test_put_get_before_and_after_compact(tmp_path):
    path = tmp_path / "c.h5"
    cache = EmbeddingCache(path)
    v = vecs(10)
    cache.put(NS, keys(10), v)
    assert not path.exists()  # only the journal so far
    got, found = cache.get(NS, keys(12))
    assert found.tolist() == [True] * 10 + [False] * 2
    np.testing.assert_array_equal(got[:10], v)
    assert np.isnan(got[10:]).all()
    cache.compact()
    assert path.exists() and not os.path.exists(cache.journal_path)
    got2, found2 = EmbeddingCache(path).get(NS, keys(10)[::-1])
    assert found2.all()
    np.testing.assert_array_equal(got2, v[::-1])


def test_stored_dim_from_the_journal_and_the_hdf5_file(tmp_path):
    cache = EmbeddingCache(tmp_path / "c.h5")
    assert cache.stored_dim(NS) is None  # no files at all
    cache.put(NS, keys(3), vecs(3, dim=7))
    assert cache.stored_dim(NS) == 7 and cache.stored_dim(NS_B) is None
    cache.compact()
    assert not os.path.exists(cache.journal_path)
    assert EmbeddingCache(tmp_path / "c.h5").stored_dim(NS) == 7
    assert cache.stored_dim(NS_B) is None


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize(
    "query",
    [
        list(range(40)),  # every row in stored order
        list(range(40))[::-1],  # every row, permuted
        [3, 99, 3, 17, 98],  # a few rows (point selection), misses, repeats
        list(range(0, 40, 2)) + [97, 0],  # many rows (whole read), misses, repeats
    ],
    ids=["all-in-order", "all-reversed", "few", "many-with-misses"],
)
def test_get_from_the_hdf5_file_matches_what_was_put(tmp_path, dtype, query):
    ns = CacheNamespace("m", "m", "default", "v1", dtype=dtype)
    path = tmp_path / "c.h5"
    v = vecs(40, dim=6)
    stored = v.astype(dtype).astype(np.float32)
    cache = EmbeddingCache(path)
    cache.put(ns, keys(40), v)
    cache.compact()
    got, found = EmbeddingCache(path).get(ns, [f"{i:064x}" for i in query])
    assert got.dtype == np.float32 and got.shape == (len(query), 6)
    for row, i in enumerate(query):
        if i < 40:
            assert found[row]
            np.testing.assert_array_equal(got[row], stored[i])
        else:
            assert not found[row] and np.isnan(got[row]).all()
    got[:] = 0  # the caller owns the array: the next lookup is unaffected
    again, _ = EmbeddingCache(path).get(ns, keys(40))
    np.testing.assert_array_equal(again, stored)


def test_namespaces_are_separate_and_stamped(tmp_path):
    path = tmp_path / "c.h5"
    cache = EmbeddingCache(path)
    cache.put(NS, keys(3), vecs(3, dim=5))
    cache.put(NS_B, keys(3), vecs(3, dim=7, seed=1))
    cache.compact()
    with h5py.File(path, "r") as f:
        assert f.attrs["format"] == "embedclf-embedding-cache"
        assert f.attrs["format_version"] == FORMAT_VERSION
        group = f[NS.fingerprint]
        assert group.attrs["handle"] == "model-a" and group.attrs["dim"] == 5
        assert group.attrs["dtype"] == "float32"
    a, _ = cache.get(NS, keys(3))
    b, _ = cache.get(NS_B, keys(3))
    assert a.shape == (3, 5) and b.shape == (3, 7)
    np.testing.assert_array_equal(b, vecs(3, dim=7, seed=1))


def test_duplicate_puts_keep_first_and_compact_is_incremental(tmp_path):
    cache = EmbeddingCache(tmp_path / "c.h5")
    cache.put(NS, keys(4), vecs(4))
    cache.compact()
    cache.put(NS, keys(6), vecs(6, seed=5))  # first 4 are duplicates
    cache.compact()
    info = cache.info()
    assert [ns["n_rows"] for ns in info] == [6]
    got, found = cache.get(NS, keys(6))
    np.testing.assert_array_equal(got[:4], vecs(4))
    np.testing.assert_array_equal(got[4:], vecs(6, seed=5)[4:])


def test_dim_mismatch_is_refused(tmp_path):
    cache = EmbeddingCache(tmp_path / "c.h5")
    cache.put(NS, keys(2), vecs(2, dim=5))
    with pytest.raises(CacheMismatchError, match="holds 5-d vectors"):
        cache.put(NS, keys(2, 5), vecs(2, dim=6))
    cache.compact()
    with pytest.raises(CacheMismatchError, match="holds 5-d vectors"):
        cache.put(NS, keys(2, 5), vecs(2, dim=6))
    cache.put(NS, keys(1, 7), vecs(1, dim=5))  # checked once against the file...
    with pytest.raises(CacheMismatchError, match="holds 5-d vectors"):
        cache.put(NS, keys(2, 5), vecs(2, dim=6))  # ...but not for another dim


def test_not_a_cache_files_are_refused_clearly(tmp_path):
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"definitely not hdf5" * 10)
    with pytest.raises(CacheFormatError, match=re.escape("embedclf cache repair")):
        EmbeddingCache(junk).get(NS, keys(1))
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = [1, 2, 3]
    with pytest.raises(CacheFormatError, match="not an embedclf embedding cache"):
        EmbeddingCache(foreign).get(NS, keys(1))
    with pytest.raises(CacheFormatError, match="not an embedclf embedding cache"):
        EmbeddingCache(foreign).put(NS, keys(1), vecs(1))
    with h5py.File(foreign, "r") as f:
        assert list(f) == ["x"]  # untouched


def test_newer_format_version_is_refused(tmp_path):
    path = tmp_path / "c.h5"
    cache = EmbeddingCache(path)
    cache.put(NS, keys(1), vecs(1))
    cache.compact()
    with h5py.File(path, "r+") as f:
        f.attrs["format_version"] = FORMAT_VERSION + 1
    with pytest.raises(CacheFormatError, match="Upgrade embedclf"):
        EmbeddingCache(path).get(NS, keys(1))


def test_checksum_catches_corrupted_rows_and_repair_keeps_good_ones(tmp_path):
    path = tmp_path / "c.h5"
    cache = EmbeddingCache(path)
    cache.put(NS, keys(5), vecs(5))
    cache.compact()
    with h5py.File(path, "r+") as f:
        f[NS.fingerprint]["vectors"][2] = np.zeros(5, dtype=np.float32)
    with pytest.raises(CacheFormatError, match="fail their checksum"):
        EmbeddingCache(path).get(NS, keys(5))
    report = EmbeddingCache.repair(path)
    assert report["kept"] == 4 and report["dropped"] == 1
    assert os.path.exists(report["backup"])
    got, found = EmbeddingCache(path).get(NS, keys(5))
    assert found.tolist() == [True, True, False, True, True]
    np.testing.assert_array_equal(got[found], vecs(5)[found])


def test_journal_torn_tail_is_ignored_and_trimmed(tmp_path):
    path = str(tmp_path / "j")
    meta = {"fingerprint": "f", "dim": 5}
    end = append_record(path, encode_record(meta, keys(2), vecs(2)), valid_length=0)
    rec2 = encode_record(meta, keys(2, 2), vecs(2, seed=1))
    with open(path, "ab") as fh:  # a crash halfway through the second append
        fh.write(rec2[: len(rec2) // 2])
    records, valid = read_records(path)
    assert valid == end and len(records) == 1
    np.testing.assert_array_equal(records[0].vectors, vecs(2))
    end2 = append_record(path, rec2, valid_length=valid)
    records, valid = read_records(path)
    assert valid == end2 == os.path.getsize(path)
    assert [r.keys for r in records] == [keys(2), keys(2, 2)]


def test_journal_crc_detects_flipped_bits(tmp_path):
    path = str(tmp_path / "j")
    meta = {"fingerprint": "f", "dim": 5}
    append_record(path, encode_record(meta, keys(1), vecs(1)), valid_length=0)
    data = bytearray(open(path, "rb").read())
    data[-10] ^= 0xFF
    open(path, "wb").write(bytes(data))
    records, valid = read_records(path)
    assert records == [] and valid == 0


def test_cache_none_path_types(tmp_path):
    cache = EmbeddingCache(str(tmp_path / "s.h5"))
    cache.put(NS, keys(1), vecs(1))
    assert EmbeddingCache(tmp_path / "s.h5").get(NS, keys(1))[1].all()


def test_float16_namespace(tmp_path):
    ns16 = CacheNamespace("m", "m", "default", "v1", dtype="float16")
    cache = EmbeddingCache(tmp_path / "c.h5")
    v = vecs(3)
    cache.put(ns16, keys(3), v)
    cache.compact()
    with h5py.File(tmp_path / "c.h5", "r") as f:
        assert f[ns16.fingerprint]["vectors"].dtype == np.float16
    got, _ = cache.get(ns16, keys(3))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, v, rtol=1e-3, atol=1e-3)


def test_compact_if_due_bounds_the_journal(tmp_path, monkeypatch):
    import embedclf.cache._store as cache_module

    monkeypatch.setattr(cache_module, "_COMPACT_MIN_BYTES", 1000)
    cache = EmbeddingCache(tmp_path / "c.h5")
    cache.put(NS, keys(2), vecs(2))
    assert cache.compact_if_due() is False  # 2 small rows: not due yet
    assert os.path.exists(cache.journal_path)
    cache.put(NS, keys(40, 2), vecs(40))
    assert cache.compact_if_due() is True
    assert not os.path.exists(cache.journal_path)
    assert cache.get(NS, keys(42))[1].all()
