"""The file-identity memo: warm runs stat files; any change of identity re-hashes."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import write_image

from embedclf import ImageEmbedder
from embedclf.embedding import _identity_memo
from embedclf.embedding._identity_memo import IdentityMemo

SIZE = 32


@pytest.fixture
def reads(monkeypatch):
    """Paths whose bytes the memo's hashing read (the real reader still runs)."""
    seen = []
    real = _identity_memo.read_image_bytes

    def counting(path):
        seen.append(os.fspath(path))
        return real(path)

    monkeypatch.setattr(_identity_memo, "read_image_bytes", counting)
    return seen


@pytest.fixture
def not_racy(monkeypatch):
    """Files written by the test a moment ago may be memoised."""
    monkeypatch.setattr(_identity_memo, "RACY_SECONDS", 0.0)


@pytest.fixture
def images(tmp_path):
    return [
        str(write_image(tmp_path / "img" / f"{i}.png", seed=i, size=(20, 20)))
        for i in range(6)
    ]


def _embedder(model, cache, **kw):
    return ImageEmbedder(
        model=str(model), cache=cache, image_size=SIZE, progress=False, **kw
    )


def test_a_warm_run_reads_no_file_and_returns_the_same_vectors(
    tiny_model_dir, images, tmp_path, reads, not_racy
):
    cache = tmp_path / "c.h5"
    X = _embedder(tiny_model_dir, cache).transform(images)
    assert sorted(reads) == sorted(images)  # cold: each file read once to hash
    assert len(IdentityMemo(cache).load()) == len(images)
    reads.clear()
    est = _embedder(tiny_model_dir, cache)
    X2 = est.transform(images)
    assert reads == [] and est.n_cached_ == len(images)
    np.testing.assert_array_equal(X2, X)
    reads.clear()
    X3 = _embedder(tiny_model_dir, cache, rehash_files=True).transform(images)
    assert sorted(reads) == sorted(images)  # rehash: every file read again
    np.testing.assert_array_equal(X3, X)


@pytest.mark.parametrize("change", ["same size, old mtime", "replaced", "renamed over"])
def test_any_change_of_identity_rehashes(
    tiny_model_dir, images, tmp_path, reads, not_racy, change
):
    cache = tmp_path / "c.h5"
    _embedder(tiny_model_dir, cache).transform(images)
    target = Path(images[0])
    if change == "same size, old mtime":
        # new bytes, same size, mtime put back: only the ctime tells
        st = target.stat()
        data = bytearray(target.read_bytes())
        data[-20] ^= 0xFF  # inside the PNG's IEND/IDAT: still the same size
        target.write_bytes(bytes(data))
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert target.stat().st_mtime_ns == st.st_mtime_ns
    elif change == "replaced":
        shutil.copyfile(images[1], target)
    else:
        os.replace(images[2], target)  # another file's inode under this name
        shutil.copyfile(target, images[2])
    reads.clear()
    X = _embedder(tiny_model_dir, cache, on_error="nan").transform(images)
    assert str(target) in reads
    ref = _embedder(tiny_model_dir, None, on_error="nan").transform(images)
    np.testing.assert_array_equal(np.isnan(X), np.isnan(ref))
    np.testing.assert_allclose(X[~np.isnan(X)], ref[~np.isnan(ref)], atol=1e-5)


def test_files_changed_a_moment_ago_are_not_memoised(tiny_model_dir, images, tmp_path):
    """The racy-file guard (as git's): a second write within one timestamp tick
    could leave all five fields equal, so fresh files are hashed every time."""
    cache = tmp_path / "c.h5"
    _embedder(tiny_model_dir, cache).transform(images)
    assert IdentityMemo(cache).load() == {}


def test_damaged_memo_records_are_ignored(
    tiny_model_dir, images, tmp_path, reads, not_racy
):
    cache = tmp_path / "c.h5"
    X = _embedder(tiny_model_dir, cache).transform(images)
    memo = Path(str(cache) + ".identities")
    data = bytearray(memo.read_bytes())
    assert len(data) == 80 * len(images)
    data[40 + 5] ^= 0x01  # a bit of the first record's key
    memo.write_bytes(bytes(data) + b"torn")
    reads.clear()
    X2 = _embedder(tiny_model_dir, cache).transform(images)
    assert len(reads) == 1  # the damaged record's file, hashed again
    np.testing.assert_array_equal(X2, X)
    assert len(IdentityMemo(cache).load()) == len(images)
    assert memo.stat().st_size % 80 == 0  # the torn tail was cut


def test_no_cache_no_memo(tiny_model_dir, images, tmp_path, not_racy):
    _embedder(tiny_model_dir, None).transform(images)
    assert not list(tmp_path.rglob("*.identities"))


def test_the_memo_file_is_compacted(tmp_path):
    memo = IdentityMemo(tmp_path / "c.h5")
    for i in range(3000):  # one file re-hashed 3000 times: the last key wins
        memo.add([((1, 2, 3, 4, 5), f"{i:064x}")])
    assert os.path.getsize(memo.path) <= 80 * 1026  # stale records dropped
    assert IdentityMemo(tmp_path / "c.h5").load() == {(1, 2, 3, 4, 5): f"{2999:064x}"}


def test_keys_round_trip_whatever_their_bytes(tmp_path):
    keys = ["00" * 32, "ab" * 31 + "00", "ff" * 32, "00" + "12" * 31]
    memo = IdentityMemo(tmp_path / "c.h5")
    memo.add([((i, i, i, i, i), k) for i, k in enumerate(keys)])
    got = IdentityMemo(tmp_path / "c.h5").load()
    assert got == {(i, i, i, i, i): k for i, k in enumerate(keys)}


def test_embed_rehash_flag_reads_every_file(
    tiny_model_dir, images, tmp_path, reads, not_racy, capsys
):
    from embedclf.cli import main

    folder = str(Path(images[0]).parent)
    args = ["embed", folder, "--cache", str(tmp_path / "c.h5")]
    args += ["--model", str(tiny_model_dir)]
    assert main(args) == 0
    reads.clear()
    assert main(args) == 0 and reads == []
    assert main([*args, "--rehash"]) == 0
    assert sorted(reads) == sorted(images)
    assert "0 computed by the backbone, 6 from the cache" in capsys.readouterr().out
