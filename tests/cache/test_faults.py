"""Faults: kill -9 mid-run, damaged cache files and journals, a full disk (issue 6).

Every test here asserts the two promises of the cache: a committed row is
never lost to a crash or to a later writer, and a vector is never wrong (rows
are compared with a no-cache reference). Damage that cannot be survived
silently gives a ``CacheFormatError`` that says how to recover.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import asdict
from pathlib import Path

import h5py
import numpy as np
import pytest
from _embed_worker import go, reap, start_worker, wait_ready
from conftest import mounted_tmpfs, write_image

from embedclf import EmbeddingCache, ImageEmbedder
from embedclf.cache._journal import encode_record, read_records
from embedclf.cache._store import CacheNamespace
from embedclf.embedding._backbones import backbone_image_count, resolve_backbone
from embedclf.embedding._images import content_key
from embedclf.exceptions import CacheFormatError

SIZE = 32
ATOL = 1e-5


# -- helpers ---------------------------------------------------------------------


def _images(root, n, seed=0):
    return [
        str(write_image(Path(root) / f"img_{i:03d}.png", seed=seed + i, size=(24, 24)))
        for i in range(n)
    ]


def _embedder(model, cache=None, **kw):
    kw.setdefault("batch_size", 4)
    return ImageEmbedder(
        model=str(model), cache=cache, image_size=SIZE, progress=False, **kw
    )


def _namespace(model) -> CacheNamespace:
    return _embedder(model)._namespace(resolve_backbone(str(model)))


def _keys(paths):
    return [content_key(Path(p).read_bytes()) for p in paths]


def _committed_rows(cache_path, ns, keys, ref):
    """Open the cache as a new user would; every row found must be correct.
    Returns the number of rows found."""
    vectors, found = EmbeddingCache(cache_path).get(ns, keys)
    if found.any():
        np.testing.assert_allclose(vectors[found], ref[found], rtol=1e-5, atol=ATOL)
    return int(found.sum())


def _main_keys(cache_path, ns):
    with h5py.File(cache_path, "r") as f:
        return [k.decode() for k in f[ns.fingerprint]["keys"][...]]


def _temp_files(cache_path):
    cache_path = Path(cache_path)
    return sorted(cache_path.parent.glob(cache_path.name + ".tmp-*"))


@pytest.fixture(scope="module")
def dataset(tiny_model_dir, tmp_path_factory):
    """24 small images, their content keys and their no-cache vectors."""
    root = tmp_path_factory.mktemp("fault_images")
    paths = _images(root, 24)
    ref = _embedder(tiny_model_dir).transform(paths)
    return paths, _keys(paths), ref


# -- kill -9 at random points ----------------------------------------------------


def _stored_keys(cache_path, ns):
    """Keys in the main file and every live segment (with repeats, if any)."""
    from embedclf.cache._segments import list_segments

    with h5py.File(cache_path, "r") as f:
        through = int(f.attrs.get("merged_through", 0))
    files = [str(cache_path)] + [
        s.path for s in list_segments(str(cache_path), through)[0]
    ]
    out = []
    for path in files:
        with h5py.File(path, "r") as f:
            if ns.fingerprint in f:
                out += [k.decode() for k in f[ns.fingerprint]["keys"][...]]
    return out


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["main file", "segments"])
def test_sigkill_at_random_points_keeps_every_committed_row(
    tiny_model_dir, tmp_path, monkeypatch, mode
):
    """Three runs on one cache are killed: at a random journal size, after a
    random delay, and during compaction. After each kill the cache opens, every
    row it holds is correct, and no committed row has disappeared. The final
    run computes exactly the rows that were never committed. With "segments",
    every compaction after the first writes a segment (format 2), in the
    children too."""
    if mode == "segments":
        from embedclf.cache import _segments

        monkeypatch.setenv("EMBEDCLF_CACHE_FOLD_BYTES", "0")
        monkeypatch.setattr(_segments, "FOLD_BYTES", 0)
    n_other = 300 if mode == "segments" else 0
    rng = random.Random(20261123)
    paths = _images(tmp_path / "img", 120)
    ref = _embedder(tiny_model_dir).transform(paths)
    keys = _keys(paths)
    ns = _namespace(tiny_model_dir)
    meta = dict(asdict(ns), fingerprint=ns.fingerprint, dim=16)
    record_size = len(encode_record(meta, keys[:2], ref[:2]))  # batch_size=2
    cache = tmp_path / "cache.h5"
    journal = Path(str(cache) + ".journal")
    committed, killed, seconds_per_record = 0, [], 0.01
    if n_other:  # a main file of other rows: every compaction adds a segment
        filler = EmbeddingCache(cache)
        other = [f"{i:064x}" for i in range(n_other)]
        filler.put(ns, other, np.zeros((n_other, 16), dtype=np.float32))
        filler.compact()
    for run, strategy in enumerate(["journal", "delay", "compaction"]):
        # A compaction kill comes after every batch is committed: that run
        # gets a few new rows only, so the final run still has rows to compute.
        todo = paths[: committed + 10] if strategy == "compaction" else paths
        remaining = (len(todo) - committed) // 2  # records this run will append
        proc = start_worker(
            tmp_path, f"kill{run}", tiny_model_dir, cache, todo, size=SIZE
        )
        wait_ready(proc)
        start_size = journal.stat().st_size if journal.exists() else 0
        stale = set(_temp_files(cache))
        threshold = start_size + rng.randint(1, max(1, remaining // 2)) * record_size
        delay = rng.uniform(0.05, 0.5) * remaining * seconds_per_record
        t0 = time.monotonic()
        go(proc)
        while proc.poll() is None:
            if strategy == "delay" and time.monotonic() - t0 >= delay:
                break
            if strategy == "journal":
                if journal.exists() and journal.stat().st_size >= threshold:
                    break
                time.sleep(0.0002)
            if strategy == "compaction" and set(_temp_files(cache)) - stale:
                break  # busy-poll: a rewrite lasts milliseconds
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            killed.append(strategy)
        elapsed = time.monotonic() - t0
        reap(proc)
        now = _committed_rows(cache, ns, keys, ref)  # opens; all rows correct
        assert now >= committed, f"{strategy}: committed rows were lost"
        if strategy == "journal":
            seconds_per_record = elapsed / max(1, (now - committed) / 2)
        committed = now
        records, valid_end = read_records(str(journal))
        assert all(len(r.keys) == len(r.vectors) for r in records)
    # The journal-size kill always lands mid-run; the timed and compaction
    # kills usually do (it depends on the machine's load).
    print(f"killed mid-run: {killed}; committed before the last run: {committed}")
    assert "journal" in killed, killed
    assert committed < len(paths)

    before = backbone_image_count()
    est = _embedder(tiny_model_dir, cache, batch_size=16)
    X = est.transform(paths)
    assert est.n_computed_ == len(paths) - committed
    assert backbone_image_count() - before == len(paths) - committed
    np.testing.assert_allclose(X, ref, rtol=1e-5, atol=ATOL)
    assert not journal.exists() and _temp_files(cache) == []
    stored = _stored_keys(cache, ns)
    assert sorted(set(stored) - set(other if n_other else [])) == sorted(set(keys))
    if mode == "main file":  # segments may repeat a key until they are merged
        assert len(stored) == len(set(stored))
    else:  # segments were written (and maybe merged into the main file)
        with h5py.File(cache, "r") as f:
            merged = int(f.attrs["merged_through"])
        assert merged > 0 or list(cache.parent.glob(cache.name + ".seg-*"))
    assert EmbeddingCache(cache).info()[0]["n_rows"] == len(set(keys)) + n_other
    X2 = _embedder(tiny_model_dir, cache).transform(paths)
    np.testing.assert_array_equal(X2, X)


def test_crash_between_rename_and_journal_removal(tiny_model_dir, dataset, tmp_path):
    """A kill after the new HDF5 file replaced the old one but before the
    journal was deleted leaves rows in both: nothing is duplicated."""
    paths, keys, ref = dataset
    cache = tmp_path / "cache.h5"
    ns = _namespace(tiny_model_dir)
    EmbeddingCache(cache).put(ns, keys[:10], ref[:10])
    saved = Path(str(cache) + ".journal").read_bytes()
    EmbeddingCache(cache).compact()
    Path(str(cache) + ".journal").write_bytes(saved)  # the state after the kill
    est = _embedder(tiny_model_dir, cache)
    X = est.transform(paths)
    assert est.n_cached_ == 10 and est.n_computed_ == len(paths) - 10
    np.testing.assert_allclose(X, ref, rtol=1e-5, atol=ATOL)
    stored = _main_keys(cache, ns)
    assert len(stored) == len(set(stored)) == len(paths)


def test_temp_files_of_a_killed_compaction_are_cleaned_up(
    tiny_model_dir, dataset, tmp_path
):
    paths, _, ref = dataset
    cache = tmp_path / "cache.h5"
    _embedder(tiny_model_dir, cache).transform(paths[:5])
    stale = Path(f"{cache}.tmp-99999-deadbeef")
    stale.write_bytes(b"half an HDF5 file" * 1000)
    X = _embedder(tiny_model_dir, cache).transform(paths)
    np.testing.assert_allclose(X, ref, rtol=1e-5, atol=ATOL)
    assert _temp_files(cache) == []


# -- damaged journal ---------------------------------------------------------------


def _journal_with_records(tiny_model_dir, dataset, tmp_path, n_records=4):
    paths, keys, ref = dataset
    cache = tmp_path / "cache.h5"
    ns = _namespace(tiny_model_dir)
    writer = EmbeddingCache(cache)
    for i in range(n_records):
        writer.put(ns, keys[i * 3 : i * 3 + 3], ref[i * 3 : i * 3 + 3])
    return cache, Path(str(cache) + ".journal"), ns


@pytest.mark.parametrize("damage", ["half_record", "garbage", "flipped_crc"])
def test_damaged_journal_tail_loses_only_that_record(
    tiny_model_dir, dataset, tmp_path, damage
):
    paths, keys, ref = dataset
    cache, journal, ns = _journal_with_records(tiny_model_dir, dataset, tmp_path)
    data = journal.read_bytes()
    if damage == "half_record":
        extra = encode_record(
            dict(asdict(ns), fingerprint=ns.fingerprint, dim=16),
            keys[12:15],
            ref[12:15],
        )
        journal.write_bytes(data + extra[: len(extra) // 2])
        expected_cached = 12
    elif damage == "garbage":
        journal.write_bytes(data + os.urandom(300))
        expected_cached = 12
    else:
        journal.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
        expected_cached = 9
    est = _embedder(tiny_model_dir, cache)
    X = est.transform(paths)
    assert est.n_cached_ == expected_cached
    assert est.n_computed_ == len(paths) - expected_cached
    np.testing.assert_allclose(X, ref, rtol=1e-5, atol=ATOL)
    assert not journal.exists()
    assert len(_main_keys(cache, ns)) == len(paths)


def test_damage_inside_the_journal_keeps_the_records_after_it(
    tiny_model_dir, dataset, tmp_path
):
    """Bit rot in record 2 of 4 must not take records 3 and 4 with it, neither
    on reading nor when the next writer appends (which cuts a torn tail)."""
    paths, keys, ref = dataset
    cache, journal, ns = _journal_with_records(tiny_model_dir, dataset, tmp_path)
    data = bytearray(journal.read_bytes())
    record_len = len(data) // 4
    data[record_len + record_len // 2] ^= 0xFF
    journal.write_bytes(bytes(data))
    with pytest.warns(RuntimeWarning, match="the records after it are kept"):
        found = EmbeddingCache(cache).get(ns, keys[:12])[1]
    assert found.tolist() == [True] * 3 + [False] * 3 + [True] * 6
    with pytest.warns(RuntimeWarning, match="damaged byte"):
        EmbeddingCache(cache).put(ns, keys[20:21], ref[20:21])
        found = EmbeddingCache(cache).get(ns, keys[:12] + keys[20:21])[1]
    assert found.sum() == 10
    with pytest.warns(RuntimeWarning):
        est = _embedder(tiny_model_dir, cache)
        X = est.transform(paths)
    assert est.n_computed_ == len(paths) - 10
    np.testing.assert_allclose(X, ref, rtol=1e-5, atol=ATOL)


def test_a_new_journal_on_a_reused_inode_is_not_cut(tiny_model_dir, dataset, tmp_path):
    """Process A appended to the journal; B compacted (deleted) it; C started a
    new, longer journal whose inode number is the old one (ext4 reuses them at
    once). A's next append must not cut C's records at A's stale offset."""
    paths, keys, ref = dataset
    cache = tmp_path / "cache.h5"
    journal = Path(str(cache) + ".journal")
    ns = _namespace(tiny_model_dir)
    a = EmbeddingCache(cache)
    a.put(ns, keys[:3], ref[:3])
    keep = tmp_path / "old-journal-inode"
    os.link(journal, keep)  # hold the inode so we can hand it back below
    EmbeddingCache(cache).compact()  # B
    EmbeddingCache(cache).put(ns, keys[3:15], ref[3:15])  # C: a new journal
    with open(keep, "r+b") as fh:  # the new journal, on the old inode
        fh.write(journal.read_bytes())
    os.replace(keep, journal)
    a.put(ns, keys[15:18], ref[15:18])
    vectors, found = EmbeddingCache(cache).get(ns, keys)
    assert found.tolist() == [True] * 18 + [False] * (len(keys) - 18)
    np.testing.assert_allclose(vectors[found], ref[:18], rtol=1e-5, atol=ATOL)


# -- damaged HDF5 file -------------------------------------------------------------


def _compacted_cache(tiny_model_dir, dataset, tmp_path):
    paths, keys, ref = dataset
    cache = tmp_path / "cache.h5"
    _embedder(tiny_model_dir, cache).transform(paths)
    assert not Path(str(cache) + ".journal").exists()
    return cache


REPAIR_HINT = re.escape("(or EmbeddingCache.repair(path) in Python) to rebuild it")


def _expect_clear_error(tiny_model_dir, cache, paths, what):
    with pytest.raises(CacheFormatError, match=REPAIR_HINT) as info:
        _embedder(tiny_model_dir, cache).transform(paths)
    assert type(info.value) is CacheFormatError  # not a bare h5py OSError
    assert re.search(what, str(info.value)), str(info.value)
    assert str(cache) in str(info.value)


def _repair_then_rerun(tiny_model_dir, cache, dataset, *, min_kept):
    paths, keys, ref = dataset
    report = EmbeddingCache.repair(cache)
    assert report["kept"] >= min_kept, report
    assert Path(report["backup"]).exists()
    before = backbone_image_count()
    est = _embedder(tiny_model_dir, cache)
    X = est.transform(paths)
    assert est.n_computed_ == len(paths) - report["kept"]
    assert backbone_image_count() - before == len(paths) - report["kept"]
    np.testing.assert_allclose(X, ref, rtol=1e-5, atol=ATOL)
    return report


@pytest.mark.parametrize("keep, min_kept", [(0.999, 24), (0.5, 0), (0.02, 0)])
def test_truncated_cache_file(tiny_model_dir, dataset, tmp_path, keep, min_kept):
    """A cut-off HDF5 file (interrupted copy, full disk elsewhere): a clear
    error; repair keeps every row whose data and checksum survived."""
    cache = _compacted_cache(tiny_model_dir, dataset, tmp_path)
    os.truncate(cache, int(cache.stat().st_size * keep))
    _expect_clear_error(tiny_model_dir, cache, dataset[0], "not a readable HDF5 file")
    _repair_then_rerun(tiny_model_dir, cache, dataset, min_kept=min_kept)


def test_flipped_vector_bytes_fail_their_checksum(tiny_model_dir, dataset, tmp_path):
    paths, keys, ref = dataset
    cache = _compacted_cache(tiny_model_dir, dataset, tmp_path)
    ns = _namespace(tiny_model_dir)
    with h5py.File(cache, "r") as f:
        ds = f[ns.fingerprint]["vectors"]
        row_bytes = ds.shape[1] * ds.dtype.itemsize
        stored = [k.decode() for k in f[ns.fingerprint]["keys"][...]]
        if ds.chunks is None:
            offset = ds.id.get_offset()
        else:
            offset = ds.id.get_chunk_info(0).byte_offset
    with open(cache, "r+b") as fh:
        for row in (3, 7):
            fh.seek(offset + row * row_bytes + 5)
            byte = fh.read(1)
            fh.seek(offset + row * row_bytes + 5)
            fh.write(bytes([byte[0] ^ 0x10]))
    _expect_clear_error(
        tiny_model_dir, cache, paths, r"2 stored vector\(s\) fail their checksum"
    )
    report = _repair_then_rerun(tiny_model_dir, cache, dataset, min_kept=22)
    assert report["dropped"] == 2 and report["kept"] == 22
    assert set(stored) - set(_main_keys(cache, ns)) == set()


def test_damaged_superblock_keeps_the_journal_rows(tiny_model_dir, dataset, tmp_path):
    paths, keys, ref = dataset
    cache = tmp_path / "cache.h5"
    _embedder(tiny_model_dir, cache).transform(paths[5:])
    ns = _namespace(tiny_model_dir)
    EmbeddingCache(cache).put(ns, keys[:5], ref[:5])  # committed, not compacted
    with open(cache, "r+b") as fh:
        fh.write(b"\0" * 64)
    _expect_clear_error(tiny_model_dir, cache, paths, "not a readable HDF5 file")
    report = _repair_then_rerun(tiny_model_dir, cache, dataset, min_kept=5)
    assert report["unreadable"] == ["<file>"] and report["kept"] == 5


def test_flipped_key_is_a_miss_never_a_wrong_vector(tiny_model_dir, dataset, tmp_path):
    paths, keys, ref = dataset
    cache = _compacted_cache(tiny_model_dir, dataset, tmp_path)
    ns = _namespace(tiny_model_dir)
    with h5py.File(cache, "r+") as f:
        ds = f[ns.fingerprint]["keys"]
        k = ds[4]
        ds[4] = k[:-1] + (b"0" if k[-1:] != b"0" else b"1")
    est = _embedder(tiny_model_dir, cache)
    X = est.transform(paths)
    assert est.n_computed_ == 1
    np.testing.assert_allclose(X, ref, rtol=1e-5, atol=ATOL)


def test_repair_refuses_files_it_must_not_rewrite(tiny_model_dir, dataset, tmp_path):
    """repair keeps a backup, but still must not turn someone else's HDF5 file
    or a cache of a newer format into an empty cache of this version."""
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = [1, 2, 3]
    with pytest.raises(CacheFormatError, match="so embedclf will not rewrite it"):
        EmbeddingCache.repair(foreign)
    with h5py.File(foreign, "r") as f:
        assert list(f) == ["x"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "foreign.h5",
        "foreign.h5.lock",
    ]
    cache = _compacted_cache(tiny_model_dir, dataset, tmp_path)
    with h5py.File(cache, "r+") as f:
        f.attrs["format_version"] = 99
    with pytest.raises(CacheFormatError, match="repairing it would lose data"):
        EmbeddingCache.repair(cache)
    with h5py.File(cache, "r") as f:
        assert f.attrs["format_version"] == 99


def test_cache_path_that_is_a_directory(tiny_model_dir, dataset, tmp_path):
    msg = f"The cache path {str(tmp_path)!r} is a directory. Pass the path of a file"
    with pytest.raises(CacheFormatError, match=re.escape(msg)):
        _embedder(tiny_model_dir, tmp_path).transform(dataset[0][:2])
    with pytest.raises(CacheFormatError, match=re.escape(msg)):
        EmbeddingCache.repair(tmp_path)


# -- disk full -----------------------------------------------------------------------

_FSIZE_SCRIPT = textwrap.dedent(
    """
    import json, resource, signal, sys
    import numpy as np
    from embedclf import EmbeddingCache
    from embedclf.cache._store import CacheNamespace
    path, limit = sys.argv[1], int(sys.argv[2])
    ns = CacheNamespace("m", "m", "default", "v1")
    cache = EmbeddingCache(path)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    out = {"committed": 0}
    for i in range(1000):
        vec = np.full((1, 16), i, dtype=np.float32)
        try:
            cache.put(ns, [f"{i:064x}"], vec)
        except OSError as exc:
            out.update(put_errno=exc.errno, put_error=str(exc))
            break
        out["committed"] = i + 1
    try:
        cache.compact()
    except OSError as exc:
        out.update(compact_errno=exc.errno, compact_error=str(exc))
    print(json.dumps(out))
    """
)


def test_file_size_limit_while_writing_keeps_committed_rows(tmp_path):
    """RLIMIT_FSIZE makes writes past the limit fail with EFBIG (as a full
    disk fails with ENOSPC), with no root needed."""
    cache = tmp_path / "cache.h5"
    limit = 8000
    proc = subprocess.run(
        [sys.executable, "-c", _FSIZE_SCRIPT, str(cache), str(limit)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    n = out["committed"]
    assert 3 <= n < 1000
    assert out["put_errno"] == errno.EFBIG
    assert re.search(
        r"Could not write to the cache journal .* Every row committed before this "
        r"batch is kept; free some disk space",
        out["put_error"],
    )
    assert out["compact_errno"] == errno.EFBIG
    assert "It is unchanged and the new rows are kept in" in out["compact_error"]
    journal = Path(str(cache) + ".journal")
    records, valid_end = read_records(str(journal))
    assert valid_end == journal.stat().st_size <= limit  # no torn record left
    assert len(records) == n
    assert not cache.exists() and _temp_files(cache) == []
    ns = CacheNamespace("m", "m", "default", "v1")
    keys = [f"{i:064x}" for i in range(n + 1)]
    vectors, found = EmbeddingCache(cache).get(ns, keys)
    assert found.tolist() == [True] * n + [False]
    np.testing.assert_array_equal(vectors[:n, 0], np.arange(n))
    EmbeddingCache(cache).compact()  # with room again, everything folds in
    vectors, found = EmbeddingCache(cache).get(ns, keys)
    assert found.sum() == n and not journal.exists()


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs: a real, full filesystem (root only)."""
    with mounted_tmpfs(
        tmp_path / "disk", "2m", "; the RLIMIT_FSIZE test covers this"
    ) as mnt:
        yield mnt


def _fill(directory, leave=0):
    """Fill the filesystem of ``directory``, then free ``leave`` bytes."""
    filler = Path(directory) / "filler"
    block = b"\xaa" * 65536
    with open(filler, "wb") as fh:
        try:
            while True:
                fh.write(block)
                fh.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    with open(filler, "ab"):
        pass
    size = filler.stat().st_size
    os.truncate(filler, max(0, size - leave))
    return filler


def test_disk_full_while_embedding(tiny_model_dir, dataset, small_disk, caplog):
    paths, keys, ref = dataset
    ns = _namespace(tiny_model_dir)
    cache = small_disk / "cache.h5"
    _embedder(tiny_model_dir, cache).transform(paths[:8])
    committed = _committed_rows(cache, ns, keys, ref)
    assert committed == 8

    # No byte left: the lease of the first missing image cannot be written
    # (before the backbone runs; the journal is covered by the RLIMIT test).
    filler = _fill(small_disk)
    with pytest.raises(OSError, match="Cannot create a lease file in") as info:
        _embedder(tiny_model_dir, cache).transform(paths)
    assert info.value.errno == errno.ENOSPC
    assert "Free some disk space" in str(info.value)
    assert _committed_rows(cache, ns, keys, ref) == 8
    assert os.listdir(str(cache) + ".leases") == []

    # Room for the journal, not for rewriting the HDF5 file.
    filler.unlink()
    # transform still returns every vector; the failed compaction is a warning.
    filler = _fill(small_disk, leave=cache.stat().st_size // 2)
    with caplog.at_level(logging.WARNING, logger="embedclf"):
        est = _embedder(tiny_model_dir, cache)
        X = est.transform(paths)
    np.testing.assert_allclose(X, ref, rtol=1e-5, atol=ATOL)
    assert est.n_computed_ == len(paths) - 8
    messages = [r.getMessage() for r in caplog.records]
    assert any(
        re.search(
            r"Could not rewrite the cache file .*No space left on device.* It is "
            r"unchanged and the new rows are kept in",
            m,
        )
        for m in messages
    ), messages
    assert Path(str(cache) + ".journal").exists()
    assert _committed_rows(cache, ns, keys, ref) == len(paths)
    assert _temp_files(cache) == []

    filler.unlink()
    before = backbone_image_count()
    est = _embedder(tiny_model_dir, cache)
    X = est.transform(paths)
    assert est.n_computed_ == 0 and backbone_image_count() == before
    np.testing.assert_allclose(X, ref, rtol=1e-5, atol=ATOL)
    EmbeddingCache(cache).compact()  # with room again, the journal folds in
    assert not Path(str(cache) + ".journal").exists()
    assert sorted(_main_keys(cache, ns)) == sorted(keys)


# -- a backbone replaced under the same path -------------------------------------------
# The model-directory refusals (a manifest naming another backbone, a newer
# format version, untrusted types) are tested in test_model_dir.py and
# test_cli.py; this adds the adversarial case of a backbone retrained in place.


def test_backbone_replaced_in_place(tiny_model_dir, dataset, tmp_path):
    """Same path, same dim, other weights: the cache must not serve the old
    model's vectors, and a model directory trained on the old one refuses it."""
    from conftest import build_tiny_savedmodel

    from embedclf import SoftmaxClassifier
    from embedclf.exceptions import ModelDirError
    from embedclf.workflow._model_dir import (
        check_backbone,
        load_model_dir,
        save_model_dir,
    )

    paths, _, ref = dataset
    backbone = tmp_path / "backbone"
    shutil.copytree(tiny_model_dir, backbone)
    cache = tmp_path / "cache.h5"
    X_old = _embedder(backbone, cache).transform(paths)
    np.testing.assert_allclose(X_old, ref, rtol=1e-5, atol=ATOL)
    spec = resolve_backbone(str(backbone))
    y = np.array(["a", "b"] * (len(paths) // 2))
    head = SoftmaxClassifier().fit(X_old, y)
    manifest = {"backbone": {"handle": spec.handle, "identity": spec.identity}}
    manifest["backbone"]["kind"] = spec.kind
    save_model_dir(tmp_path / "md", head, manifest)
    assert check_backbone(load_model_dir(tmp_path / "md")) == str(backbone)

    shutil.rmtree(backbone)  # retrained in place: same dim, other weights
    build_tiny_savedmodel(backbone, dim=16, seed=7)
    new_ref = _embedder(tmp_path / "backbone").transform(paths)
    assert not np.allclose(new_ref, ref)
    est = _embedder(backbone, cache)
    X_new = est.transform(paths)
    assert est.n_cached_ == 0
    np.testing.assert_allclose(X_new, new_ref, rtol=1e-5, atol=ATOL)
    with pytest.raises(
        ModelDirError,
        match=re.escape(
            f"was trained on backbone {str(backbone)!r}, but the backbone in use, "
            f"{str(backbone)!r}, is a different model"
        ),
    ):
        check_backbone(load_model_dir(tmp_path / "md"))
