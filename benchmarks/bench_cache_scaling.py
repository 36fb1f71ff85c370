"""Item 8: adding 100 rows to a cache of 10k vs 1M rows costs the same (format 2).

Two caches of synthetic 1280-d float32 vectors (the backbone's width) are
built once under the work directory (10k rows: 51 MB; 1M rows: 5.1 GB) and
reused by later runs. Each round adds 100 new rows to each cache the way a
``transform`` that computed 100 images does (a new ``EmbeddingCache``,
``put``, ``compact``), the two sizes back to back so that both see the same
load; the ratio is the median over rounds of t(1M) / t(10k). Means over the
rounds include the segment merges the rounds triggered (amortised cost).

Baseline in the same run: format 1's compaction, which rewrote the whole
file, replayed on the 10k cache (``FOLD_BYTES`` raised so that the journal
folds into the main file), on a copy.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import statistics

import numpy as np
from _common import Timer

_DIM = 1280
_ADD = 100


def _keys(start, n):
    return [
        hashlib.sha256(f"row-{i}".encode()).hexdigest() for i in range(start, start + n)
    ]


def _build(path, ns, n_rows):
    """Write a format-2 main file of ``n_rows`` random rows straight with h5py
    (through the cache's own row writer), block by block."""
    import h5py

    from embedclf.cache._hdf5 import FORMAT, FORMAT_VERSION
    from embedclf.cache._rewrite import _Appender

    tmp = f"{path}.building"
    rng = np.random.default_rng(0)
    meta = dict(
        handle=ns.handle,
        identity=ns.identity,
        image_size=ns.image_size,
        preprocessing=ns.preprocessing,
        dtype=ns.dtype,
        dim=_DIM,
    )
    with h5py.File(tmp, "w") as f:
        f.attrs.update(
            format=FORMAT, format_version=FORMAT_VERSION, role="main", merged_through=0
        )
        out = _Appender(f, ns.fingerprint, meta, n_rows)
        for start in range(0, n_rows, 8192):
            n = min(8192, n_rows - start)
            out.append(_keys(start, n), rng.random((n, _DIM), dtype=np.float32))
    os.replace(tmp, path)


def _cache_of(ctx, ns, n_rows):
    """The n_rows cache, rebuilt when missing; stray segments and journals of
    an earlier run are removed so that every run starts from one file."""
    root = ctx.workdir / "cache_scaling"
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"base_{n_rows}.h5"
    if not path.exists():
        _build(path, ns, n_rows)
    work = root / f"work_{n_rows}"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir()
    os.link(path, work / "cache.h5")  # compactions replace, never modify it
    return work / "cache.h5"


def _add(path, ns, start, rng):
    from embedclf import EmbeddingCache

    vectors = rng.random((_ADD, _DIM), dtype=np.float32)
    keys = _keys(start, _ADD)
    with Timer() as t:
        cache = EmbeddingCache(path)
        cache.put(ns, keys, vectors)
        cache.compact()
    return t.seconds


def run(ctx) -> dict:
    from embedclf import EmbeddingCache
    from embedclf.cache import _segments
    from embedclf.cache._segments import list_segments
    from embedclf.cache._store import CacheNamespace

    small_n, large_n = (1_000, 4_000) if ctx.quick else (10_000, 1_000_000)
    rounds = 2 if ctx.quick else 16
    ns = CacheNamespace("synthetic", "synthetic-1280", "default", "bench-v1")
    with Timer() as t_build:
        small, large = _cache_of(ctx, ns, small_n), _cache_of(ctx, ns, large_n)
    rng = np.random.default_rng(1)
    times = {"small": [], "large": []}
    next_key = 10**8
    for _ in range(rounds):
        for name, path in (("small", small), ("large", large)):
            times[name].append(_add(path, ns, next_key, rng))
            next_key += _ADD
    per_round = [b / a for a, b in zip(times["small"], times["large"])]

    # Baseline: format 1 rewrote the whole file on every compaction.
    full = small.parent / "format1.h5"
    shutil.copyfile(small.parent.parent / f"base_{small_n}.h5", full)
    saved, _segments.FOLD_BYTES = _segments.FOLD_BYTES, 1 << 62
    try:
        full_times = [_add(full, ns, 2 * 10**8 + r * _ADD, rng) for r in range(3)]
    finally:
        _segments.FOLD_BYTES = saved

    for name, path in (("small", small), ("large", large)):
        _, found = EmbeddingCache(path).get(ns, _keys(10**8, 2 * _ADD * rounds))
        assert found.sum() == _ADD * rounds, name  # half the keys went to each
    n_segments = {
        name: len(list_segments(str(path))[0])
        for name, path in (("small", small), ("large", large))
    }
    ratio = statistics.median(per_round)
    return {
        "title": f"Adding {_ADD} rows to caches of {small_n} and {large_n} rows",
        "ratios": [
            {
                "name": f"add {_ADD} rows: {large_n} / {small_n}-row cache, "
                "median of per-round ratios",
                "value": ratio,
                "target": "<= 2",
                "met": ratio <= 2,
            },
            {
                "name": f"same, mean over {rounds} rounds (merges included)",
                "value": statistics.mean(times["large"])
                / statistics.mean(times["small"]),
                "target": "report",
                "met": None,
            },
            {
                "name": f"format-1 full rewrite / format-2 add, {small_n} rows",
                "value": statistics.median(full_times)
                / statistics.median(times["small"]),
                "target": "report",
                "met": None,
            },
        ],
        "metrics": {
            "dim": _DIM,
            "rows_added_per_round": _ADD,
            "rounds": rounds,
            "small_rows": small_n,
            "large_rows": large_n,
            "small_file_bytes": os.path.getsize(
                small.parent.parent / f"base_{small_n}.h5"
            ),
            "large_file_bytes": os.path.getsize(
                large.parent.parent / f"base_{large_n}.h5"
            ),
            "small_add_s": times["small"],
            "large_add_s": times["large"],
            "small_add_median_s": statistics.median(times["small"]),
            "large_add_median_s": statistics.median(times["large"]),
            "per_round_ratio": per_round,
            "format1_full_rewrite_small_s": full_times,
            "segments_after": n_segments,
            "build_s": t_build.seconds,
        },
    }
