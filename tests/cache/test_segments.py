"""Segments and size-tiered compaction (format 2): what a write costs, what
survives, and the order of the syscalls that make a row durable."""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from embedclf import EmbeddingCache
from embedclf.cache import _segments
from embedclf.cache._segments import FANOUT, list_segments, plan_merge
from embedclf.cache._store import FORMAT_VERSION, CacheNamespace
from embedclf.exceptions import CacheFormatError

NS = CacheNamespace("model-a", "id-a", "default", "v1")
NS16 = CacheNamespace("model-b", "id-b", "8x8", "v1", dtype="float16")
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "cache_format_1"


def keys(n, start=0):
    return [f"{i:064x}" for i in range(start, start + n)]


def vecs(n, dim=8, seed=0):
    return np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)


@pytest.fixture
def segment_mode(monkeypatch):
    """Every compaction after the first writes a segment (no small-cache fold)."""
    monkeypatch.setattr(_segments, "FOLD_BYTES", 0)


def _segments_of(path):
    return list_segments(str(path), _merged_through(path))[0]


def _merged_through(path):
    with h5py.File(path, "r") as f:
        return int(f.attrs.get("merged_through", 0))


def _add(cache, start, n, seed=None):
    cache.put(NS, keys(n, start), vecs(n, seed=start if seed is None else seed))
    cache.compact()


# -- the merge policy ---------------------------------------------------------------


def test_plan_merge_tiers_and_the_major_compaction():
    mb = 1 << 20
    assert plan_merge([], 100 * mb) is None
    assert plan_merge([mb] * (FANOUT - 1), 100 * mb) is None
    assert plan_merge([mb] * FANOUT, 100 * mb) == (0, FANOUT)
    # an older, bigger tier is left alone; only the newest tier is merged
    big = mb * FANOUT**2
    assert plan_merge([big] + [mb] * FANOUT, 100 * big) == (1, FANOUT + 1)
    assert plan_merge([big, big, mb], 100 * big) is None
    # segments as big as the main file: fold everything into it
    assert plan_merge([big, big], 2 * big) == "main"
    assert plan_merge([mb], 0) == "main"  # no main file


def test_simulated_growth_rewrites_each_row_a_logarithmic_number_of_times():
    """Replay the policy on sizes only: bytes written per byte added stays
    small and does not grow with the size of the cache."""

    def amplification(main_bytes, adds, add_bytes):
        sizes, written = [], 0
        for _ in range(adds):
            sizes.append(add_bytes)
            written += add_bytes
            while (plan := plan_merge(sizes, main_bytes)) is not None:
                if plan == "main":
                    main_bytes += sum(sizes)
                    written += main_bytes
                    sizes = []
                else:
                    merged = sum(sizes[plan[0] : plan[1]])
                    written += merged
                    sizes[plan[0] : plan[1]] = [merged]
        return written / (adds * add_bytes), len(sizes)

    small, n_small = amplification(50 << 20, 2000, 512 << 10)  # 10k rows + 200k
    large, n_large = amplification(5 << 30, 2000, 512 << 10)  # 1M rows + 200k
    assert small < 8 and large < 8
    assert n_large <= 3 * (FANOUT - 1)


# -- segments on real files --------------------------------------------------------


def test_a_compaction_writes_a_segment_and_leaves_the_main_file_alone(
    tmp_path, segment_mode
):
    path = tmp_path / "c.h5"
    cache = EmbeddingCache(path)
    _add(cache, 0, 20)  # no main file yet: it becomes the main file
    before = os.stat(path)
    _add(cache, 20, 5)
    after = os.stat(path)
    assert (after.st_ino, after.st_mtime_ns, after.st_size) == (
        before.st_ino,
        before.st_mtime_ns,
        before.st_size,
    )
    [seg] = _segments_of(path)
    with h5py.File(seg.path, "r") as f:
        assert f.attrs["role"] == "segment"
        assert f.attrs["format_version"] == FORMAT_VERSION
        assert len(f[NS.fingerprint]["keys"]) == 5  # the new rows only
    got, found = EmbeddingCache(path).get(NS, keys(26))
    assert found.tolist() == [True] * 25 + [False]
    np.testing.assert_array_equal(got[:20], vecs(20, seed=0))
    np.testing.assert_array_equal(got[20:25], vecs(5, seed=20))


def test_segments_merge_by_tier_then_into_the_main_file(tmp_path, segment_mode):
    path = tmp_path / "c.h5"
    cache = EmbeddingCache(path)
    _add(cache, 0, 400)  # main file
    for i in range(FANOUT - 1):
        _add(cache, 400 + i, 1)
    assert len(_segments_of(path)) == FANOUT - 1
    _add(cache, 500, 1)  # the FANOUT-th small segment: merged into one
    [merged] = _segments_of(path)
    assert (merged.first, merged.last) == (1, FANOUT)
    main_ino = os.stat(path).st_ino
    for i in range(40):  # then the segments outgrow the main file
        _add(cache, 1000 + 10 * i, 10)
        if not _segments_of(path):
            break
    assert os.stat(path).st_ino != main_ino  # a new main file, renamed in
    assert _segments_of(path) == [] and _merged_through(path) > FANOUT
    with h5py.File(path, "r") as f:
        stored = [k.decode() for k in f[NS.fingerprint]["keys"][...]]
    assert len(stored) == len(set(stored))
    expected = keys(400) + keys(FANOUT - 1, 400) + keys(1, 500)
    expected += [k for j in range(i + 1) for k in keys(10, 1000 + 10 * j)]
    assert sorted(stored) == sorted(expected)
    got, found = EmbeddingCache(path).get(NS, expected)
    assert found.all()


def test_keys_in_several_files_count_once_and_the_first_copy_wins(
    tmp_path, segment_mode
):
    path = tmp_path / "c.h5"
    cache = EmbeddingCache(path)
    _add(cache, 0, 4)
    cache.put(NS, keys(6), vecs(6, seed=5))  # 4 duplicates of the main file
    cache.compact()
    cache.put(NS, keys(2, 4), vecs(2, seed=9))  # 2 duplicates of the segment
    assert [ns["n_rows"] for ns in cache.info()] == [6]
    got, found = EmbeddingCache(path).get(NS, keys(6))
    np.testing.assert_array_equal(got[:4], vecs(4, seed=0))
    np.testing.assert_array_equal(got[4:], vecs(6, seed=5)[4:])


def test_leftovers_of_a_killed_merge_are_ignored_then_deleted(tmp_path, segment_mode):
    """A merge killed after its rename but before deleting its inputs leaves
    both: lookups and counts see each row once; the next compaction deletes
    the superseded files."""
    path = tmp_path / "c.h5"
    cache = EmbeddingCache(path)
    _add(cache, 0, 400)
    saved = tmp_path / "saved"
    saved.mkdir()
    for i in range(FANOUT):
        _add(cache, 400 + i, 1)
        if i < FANOUT - 1:
            for seg in _segments_of(path):
                shutil.copy(seg.path, saved)
    for copy in saved.iterdir():  # the inputs the killed merge did not delete
        shutil.copy(copy, tmp_path)
    live, superseded, _ = list_segments(str(path), _merged_through(path))
    assert len(live) == 1 and len(superseded) == FANOUT - 1
    assert [ns["n_rows"] for ns in EmbeddingCache(path).info()] == [400 + FANOUT]
    _add(cache, 600, 1)
    assert sorted(p.name for p in tmp_path.glob("c.h5.seg-*")) == sorted(
        os.path.basename(s.path) for s in _segments_of(path)
    )
    assert len(_segments_of(path)) == 2


def test_a_damaged_segment_is_named_and_repair_keeps_the_rest(tmp_path, segment_mode):
    path = tmp_path / "c.h5"
    cache = EmbeddingCache(path)
    _add(cache, 0, 10)
    _add(cache, 10, 3)
    [seg] = _segments_of(path)
    with h5py.File(seg.path, "r+") as f:
        f[NS.fingerprint]["vectors"][1] = np.zeros(8, dtype=np.float32)
    with pytest.raises(CacheFormatError, match="fail their checksum") as info:
        EmbeddingCache(path).get(NS, keys(13))
    assert seg.path in str(info.value) and "embedclf cache repair" in str(info.value)
    report = EmbeddingCache.repair(path)
    assert report["kept"] == 12 and report["dropped"] == 1
    assert list(tmp_path.glob("c.h5.seg-*")) == []
    found = EmbeddingCache(path).get(NS, keys(13))[1]
    assert found.tolist() == [True] * 11 + [False] + [True]


# -- durability: the order of fsync, rename and delete --------------------------------


@pytest.fixture
def syscalls(monkeypatch):
    """Record fsync / replace / remove (by inode where it matters), still
    calling the real functions."""
    events = []
    real_fsync, real_replace, real_remove = os.fsync, os.replace, os.remove
    real_write = os.write

    def fsync(fd):
        st = os.fstat(fd)
        events.append(("fsync", st.st_ino))
        return real_fsync(fd)

    def replace(src, dst, **kw):
        events.append(("replace", os.stat(src).st_ino, os.fspath(dst)))
        return real_replace(src, dst, **kw)

    def remove(p, **kw):
        events.append(("remove", os.fspath(p)))
        return real_remove(p, **kw)

    def write(fd, data):
        events.append(("write", os.fstat(fd).st_ino))
        return real_write(fd, data)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "remove", remove)
    monkeypatch.setattr(os, "write", write)
    return events


def _index(events, event, after=-1):
    return next(i for i, e in enumerate(events) if i > after and e == event)


def test_put_returns_only_after_the_journal_and_its_directory_are_synced(
    tmp_path, syscalls
):
    cache = EmbeddingCache(tmp_path / "c.h5")
    cache.put(NS, keys(2), vecs(2))
    journal = os.stat(cache.journal_path).st_ino
    directory = os.stat(tmp_path).st_ino
    last_write = max(i for i, e in enumerate(syscalls) if e == ("write", journal))
    synced = _index(syscalls, ("fsync", journal), after=last_write)
    _index(syscalls, ("fsync", directory), after=synced)  # a new journal's name
    syscalls.clear()
    cache.put(NS, keys(2, 2), vecs(2))
    last_write = max(i for i, e in enumerate(syscalls) if e == ("write", journal))
    assert ("fsync", journal) in syscalls[last_write:]


@pytest.mark.parametrize("mode", ["main", "segment"])
def test_compaction_syncs_data_then_renames_then_syncs_the_directory(
    tmp_path, monkeypatch, syscalls, mode
):
    path = tmp_path / "c.h5"
    cache = EmbeddingCache(path)
    _add(cache, 0, 10)
    if mode == "segment":
        monkeypatch.setattr(_segments, "FOLD_BYTES", 0)
    cache.put(NS, keys(5, 10), vecs(5))
    syscalls.clear()
    cache.compact()
    [(i_rename, tmp_ino, dst)] = [
        (i, e[1], e[2]) for i, e in enumerate(syscalls) if e[0] == "replace"
    ]
    if mode == "main":
        assert dst == str(path)
    else:
        assert dst == _segments_of(path)[0].path
    assert os.stat(dst).st_ino == tmp_ino  # renamed, not copied or rewritten
    assert ("fsync", tmp_ino) in syscalls[:i_rename]  # data before the name
    i_dir = _index(syscalls, ("fsync", os.stat(tmp_path).st_ino), after=i_rename)
    i_drop = _index(syscalls, ("remove", cache.journal_path))
    assert i_dir < i_drop  # the journal goes only once its rows are durable


def test_a_merge_deletes_its_inputs_only_after_its_output_is_durable(
    tmp_path, segment_mode, syscalls
):
    path = tmp_path / "c.h5"
    cache = EmbeddingCache(path)
    _add(cache, 0, 400)
    for i in range(FANOUT - 1):
        _add(cache, 400 + i, 1)
    inputs = [s.path for s in _segments_of(path)]
    syscalls.clear()
    _add(cache, 500, 1)
    renames = [(i, e) for i, e in enumerate(syscalls) if e[0] == "replace"]
    i_merge, (_, merged_ino, merged) = renames[-1]
    assert merged == _segments_of(path)[0].path
    assert ("fsync", merged_ino) in syscalls[:i_merge]
    i_dir = _index(syscalls, ("fsync", os.stat(tmp_path).st_ino), after=i_merge)
    for p in inputs:
        assert _index(syscalls, ("remove", p)) > i_dir


# -- format 1 -------------------------------------------------------------------------


def _format_1_copy(tmp_path):
    path = tmp_path / "cache.h5"
    with gzip.open(FIXTURE / "cache.h5.gz", "rb") as src, open(path, "wb") as dst:
        shutil.copyfileobj(src, dst)
    shutil.copy(FIXTURE / "cache.h5.journal", tmp_path / "cache.h5.journal")
    return path


def test_a_format_1_cache_is_upgraded_before_any_segment(tmp_path, segment_mode):
    path = _format_1_copy(tmp_path)
    EmbeddingCache(path).compact()  # the journal's 2 rows: no segment on format 1
    with h5py.File(path, "r") as f:
        assert f.attrs["format_version"] == 2
    assert _segments_of(path) == []
    assert EmbeddingCache(path).get(NS, keys(12))[1].all()


def test_a_format_1_cache_is_read_then_rewritten_as_format_2(tmp_path):
    path = _format_1_copy(tmp_path)
    with h5py.File(path, "r") as f:
        assert f.attrs["format_version"] == 1
    v = np.arange(12 * 16, dtype=np.float32).reshape(12, 16) / 7
    for compacted in (False, True):
        got, found = EmbeddingCache(path).get(NS, keys(13))
        assert found.tolist() == [True] * 12 + [False]
        np.testing.assert_array_equal(got[:12], v)
        got, found = EmbeddingCache(path).get(NS16, keys(4, 100))
        assert found.all()
        np.testing.assert_array_equal(got, v[:4, :8].astype(np.float16))
        if not compacted:
            EmbeddingCache(path).compact()
    with h5py.File(path, "r") as f:
        assert f.attrs["format_version"] == FORMAT_VERSION == 2
    assert not os.path.exists(str(path) + ".journal")


def test_every_namespace_of_a_format_1_cache_reads_the_same_after_rewrite(
    tmp_path, monkeypatch
):
    """Every row of every namespace survives the upgrade and the first segment.

    The committed format-1 fixture (written by the code before segments), not
    a machine-local cache: this test used to skip unless /work/cache/grocery.h5
    existed and was still format 1.
    """
    path = _format_1_copy(tmp_path)
    with h5py.File(path, "r") as f:
        version = int(f.attrs["format_version"])
        namespaces = {
            fp: (
                CacheNamespace(
                    *(str(g.attrs[a]) for a in ("handle", "identity", "image_size")),
                    str(g.attrs["preprocessing"]),
                    dtype=str(g.attrs["dtype"]),
                ),
                [k.decode() for k in g["keys"][...]],
                int(g.attrs["dim"]),
            )
            for fp, g in f.items()
        }
    assert version == 1 and len(namespaces) == 2
    before = {
        fp: EmbeddingCache(path).get(ns, k) for fp, (ns, k, _) in namespaces.items()
    }
    monkeypatch.setattr(_segments, "FOLD_BYTES", 0)
    ns, _, dim = next(iter(namespaces.values()))
    EmbeddingCache(path).put(ns, ["f" * 64], np.zeros((1, dim)))
    EmbeddingCache(path).compact()  # format 1: rewritten once, no segment yet
    with h5py.File(path, "r") as f:
        assert f.attrs["format_version"] == 2 and _segments_of(path) == []
    EmbeddingCache(path).put(ns, ["e" * 64], np.zeros((1, dim)))
    EmbeddingCache(path).compact()
    assert len(_segments_of(path)) == 1
    for fp, (ns, k, _) in namespaces.items():
        got, found = EmbeddingCache(path).get(ns, k)
        assert found.all() and before[fp][1].all()
        np.testing.assert_array_equal(got, before[fp][0])
