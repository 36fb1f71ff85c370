"""JournalView: one process's incremental view of a cache journal file."""

from __future__ import annotations

import os

import numpy as np

from embedclf.cache._journal import encode_record
from embedclf.cache._journal_view import JournalView


def _meta(fp="ns-a", dim=3):
    return {"fingerprint": fp, "dim": dim, "dtype": "float32"}


def _record(keys, vectors, fp="ns-a"):
    return encode_record(_meta(fp, vectors.shape[1]), keys, vectors)


def _append(view, keys, vectors, fp="ns-a"):
    view.append(_record(keys, vectors, fp), _meta(fp), keys, vectors)


def _key(i):
    return f"{i:064x}"


def _vecs(n, seed):
    return np.random.default_rng(seed).normal(size=(n, 3)).astype(np.float32)


def test_a_view_sees_what_another_view_appended(tmp_path):
    path = str(tmp_path / "c.h5.journal")
    writer, reader = JournalView(path), JournalView(path)
    reader.refresh()
    assert reader.rows == {}  # no file yet
    v1, v2 = _vecs(2, 0), _vecs(1, 1)
    writer.refresh()
    _append(writer, [_key(0), _key(1)], v1)
    reader.refresh()
    np.testing.assert_array_equal(reader.rows["ns-a"][_key(1)], v1[1])
    writer.refresh()
    _append(writer, [_key(2)], v2, "ns-b")
    reader.refresh()  # reads only the new record, keeps the old rows
    assert set(reader.rows) == {"ns-a", "ns-b"}
    assert set(reader.rows["ns-a"]) == {_key(0), _key(1)}
    np.testing.assert_array_equal(reader.rows["ns-b"][_key(2)], v2[0])


def test_the_first_record_of_a_key_wins(tmp_path):
    path = str(tmp_path / "c.h5.journal")
    view = JournalView(path)
    first, second = _vecs(1, 0), _vecs(1, 1)
    view.refresh()
    _append(view, [_key(0)], first)
    _append(view, [_key(0)], second)
    fresh = JournalView(path)
    fresh.refresh()
    for v in (view, fresh):
        np.testing.assert_array_equal(v.rows["ns-a"][_key(0)], first[0])


def test_a_replaced_journal_is_reread_from_the_start(tmp_path):
    # Another process compacted the journal away and started a new, longer
    # one (possibly on the same inode): offsets into the old file are void.
    path = str(tmp_path / "c.h5.journal")
    stale = JournalView(path)
    old = _vecs(1, 0)
    stale.refresh()
    _append(stale, [_key(0)], old)
    os.remove(path)
    other = JournalView(path)
    new = _vecs(3, 1)
    keys = [_key(5), _key(6), _key(7)]
    other.refresh()
    _append(other, keys, new)
    stale.refresh()
    assert set(stale.rows["ns-a"]) == set(keys)  # the compacted row is gone
    extra = _vecs(1, 2)
    _append(stale, [_key(9)], extra)
    other.refresh()  # nothing of the other process's record was cut off
    assert set(other.rows["ns-a"]) == set(keys) | {_key(9)}


def test_reset_forgets_everything(tmp_path):
    path = str(tmp_path / "c.h5.journal")
    view = JournalView(path)
    v = _vecs(1, 0)
    view.refresh()
    _append(view, [_key(0)], v)
    view.reset()
    assert view.rows == {} and view.meta == {}
    view.refresh()  # the file is still there: read again from the start
    assert set(view.rows["ns-a"]) == {_key(0)}
