"""The rewrite helpers behind EmbeddingCache.compact and repair, on real files."""

from __future__ import annotations

import os
import zlib

import numpy as np
import pytest

from embedclf import EmbeddingCache
from embedclf.cache._journal import read_records
from embedclf.cache._rewrite import row_crcs, size_bound
from embedclf.cache._store import CacheNamespace


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("layout", ["C", "F", "strided"])
def test_row_crcs_are_the_crc32_of_each_rows_bytes(dtype, layout):
    base = np.random.default_rng(0).normal(size=(9, 12)).astype(dtype)
    vectors = {
        "C": base,
        "F": np.asfortranarray(base),
        "strided": np.repeat(base, 2, axis=1)[:, ::2],
    }[layout]
    np.testing.assert_array_equal(vectors, base)
    expected = [zlib.crc32(row.tobytes()) for row in base]
    got = row_crcs(vectors)
    assert got.dtype == np.uint32 and got.tolist() == expected
    assert row_crcs(vectors, rows=[7, 0, 7]).tolist() == [
        expected[7],
        expected[0],
        expected[7],
    ]
    # one flipped bit changes the row's checksum and no other
    flipped = base.copy()
    flipped.view(np.uint8)[3, 0] ^= 1
    changed = row_crcs(flipped) != np.array(expected, dtype=np.uint32)
    assert changed.tolist() == [i == 3 for i in range(9)]


def _keys(n, start):
    return [f"{i:064x}" for i in range(start, start + n)]


# (namespace dims and dtypes, rows per put, puts per namespace, rows already
# compacted into the main file before the measured rewrite)
SCENARIOS = {
    "one namespace, new file": ([(1280, "float32")], 64, 4, 0),
    "two namespaces onto a main file": (
        [(1280, "float32"), (16, "float16")],
        32,
        3,
        500,
    ),
    "many one-row records": ([(64, "float32")], 1, 300, 10),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_size_bound_covers_the_rewritten_file(tmp_path, scenario):
    # compact() reserves size_bound(...) bytes before rewriting, so that a
    # full disk fails up front instead of in the middle of the HDF5 write.
    namespaces, rows_per_put, puts, main_rows = SCENARIOS[scenario]
    cache = EmbeddingCache(tmp_path / "c.h5")
    rng = np.random.default_rng(1)
    specs = [
        (CacheNamespace(f"m{i}", f"id{i}", "default", "v1", dtype=dtype), dim)
        for i, (dim, dtype) in enumerate(namespaces)
    ]
    if main_rows:
        for ns, dim in specs:
            cache.put(ns, _keys(main_rows, 10**6), rng.normal(size=(main_rows, dim)))
        cache.compact()
    for p in range(puts):
        for ns, dim in specs:
            keys = _keys(rows_per_put, p * rows_per_put)
            cache.put(ns, keys, rng.normal(size=(rows_per_put, dim)))
    main_bytes = os.path.getsize(cache.path) if os.path.exists(cache.path) else 0
    records, _ = read_records(cache.journal_path)
    assert len(records) == puts * len(specs)
    bound = size_bound(main_bytes, records)
    cache.compact()
    written = os.path.getsize(cache.path)
    assert written <= bound
    # ...and not so loose that it refuses rewrites a nearly full disk could
    # hold: at most one spare chunk per namespace and dataset, plus 1 MB.
    row_bytes = sum(
        1024 * (64 + 4 + dim * np.dtype(ns.dtype).itemsize) for ns, dim in specs
    )
    assert bound <= 2 * written + 4 * row_bytes + (1 << 20)
    got, found = cache.get(specs[0][0], _keys(rows_per_put * puts, 0))
    assert found.all() and np.isfinite(got).all()
