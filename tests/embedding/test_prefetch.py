"""Tests of the threaded batch decoding shared by the embedder and augmentation."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from embedclf.embedding._prefetch import batch_bounds, prefetched_batches


@pytest.mark.parametrize("n", [0, 1, 3, 4, 5, 27, 100])
@pytest.mark.parametrize("batch_size", [1, 2, 4, 8, 32])
def test_batch_bounds_ramp_up_then_full_batches(n, batch_size):
    bounds = batch_bounds(n, batch_size)
    sizes = [stop - start for start, stop in bounds]
    # contiguous cover of range(n), never more than batch_size at once
    assert [start for start, _ in bounds] == [sum(sizes[:i]) for i in range(len(sizes))]
    assert sum(sizes) == n and all(0 < s <= batch_size for s in sizes)
    if n:
        assert sizes[0] == min(4, batch_size, n)
        # each call doubles the previous one until batch_size (the last may be short)
        for prev, cur in zip(sizes[:-2], sizes[1:-1]):
            assert cur == min(2 * prev, batch_size)
    if n >= 100 and batch_size == 32:
        assert sizes[:4] == [4, 8, 16, 32]


def _fill(item, out):
    out[...] = item
    return ("ok", item, threading.current_thread().name)


@pytest.mark.parametrize("n_threads", [1, 3])
def test_batches_come_in_order_with_rows_aligned(n_threads):
    items = list(range(50))
    seen = []
    with prefetched_batches(
        items, _fill, batch_size=8, shape=(2, 3), dtype=np.int64, n_threads=n_threads
    ) as batches:
        for batch, images, results in batches:
            assert images.shape == (len(batch), 2, 3) and images.dtype == np.int64
            for row, item in enumerate(batch):
                assert (images[row] == item).all()
                assert results[row][:2] == ("ok", item)
            seen.extend(batch)
    assert seen == items
    # decoding ran in the worker threads, not in the consumer's
    assert all(r[2] != threading.current_thread().name for r in results)


def test_leaving_early_waits_for_the_batch_in_flight_only():
    decoded = []

    def decode(item, out):
        decoded.append(item)
        out[...] = item

    items = list(range(200))
    with pytest.raises(RuntimeError, match="consumer failed"):
        with prefetched_batches(
            items, decode, batch_size=16, shape=(), dtype=np.int64, n_threads=2
        ) as batches:
            for batch, _, _ in batches:
                raise RuntimeError("consumer failed")
    # the first batch (4 items) and the one decoded ahead (8), nothing more
    assert sorted(decoded) == list(range(12))


def test_decode_exception_reaches_the_consumer_at_its_batch():
    def decode(item, out):
        if item == 6:
            raise ValueError("bad item 6")
        out[...] = item

    got = []
    with pytest.raises(ValueError, match="bad item 6"):
        with prefetched_batches(
            list(range(20)), decode, batch_size=8, shape=(), dtype=np.int64, n_threads=2
        ) as batches:
            for batch, _, _ in batches:
                got.extend(batch)
    assert got == [0, 1, 2, 3]  # item 6 is in the second call (items 4-11)


def test_batches_with_progress_counts_and_closes_its_bar_on_errors():
    from tqdm import tqdm

    from embedclf.embedding._prefetch import batches_with_progress

    def fail_at_7(item, out):
        if item == 7:
            raise RuntimeError("bad item")
        out[...] = item

    kw = {"batch_size": 4, "shape": (1,), "dtype": np.int64, "n_threads": 2}
    with batches_with_progress(
        list(range(6)), _fill, desc="d", unit="u", show=True, **kw
    ) as (bar, batches):
        for batch, _, _ in batches:
            bar.update(len(batch))
        assert bar.n == 6 and bar.desc.startswith("d")
    open_before = len(tqdm._instances)
    with pytest.raises(RuntimeError, match="bad item"):
        with batches_with_progress(
            list(range(10)), fail_at_7, desc="d", unit="u", show=True, **kw
        ) as (bar, batches):
            for batch, _, _ in batches:
                bar.update(len(batch))
    assert len(tqdm._instances) <= open_before  # no bar left on the terminal
