"""``EmbedderSource``: costs from the cache and measured throughput, on a tiny
real SavedModel and real image files."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_image_folder

from embedclf.workflow._search._sources import EmbedderSource

pytestmark = pytest.mark.tf


def test_costs_come_from_cache_misses_and_measured_throughput(tmp_path, tiny_model_dir):
    folder = make_image_folder(tmp_path / "img", n_per_class=12)
    paths = sorted(str(p) for p in folder.rglob("*.*"))
    handle = str(tiny_model_dir)
    source = EmbedderSource(paths, cache=tmp_path / "c.h5", probe_rows=8, batch_size=8)
    assert handle not in source.throughput
    cost = source.plain_cost(handle)  # probes 8 images: throughput measured
    assert source.throughput[handle] > 0
    assert 0 < cost < float("inf")
    X = source.plain(handle)
    assert X.shape == (24, 16) and not source.failed.any()
    assert source.plain_cost(handle) == 0.0  # all in the cache now
    rows = np.arange(10)
    assert source.views_cost(handle, rows, "train", 2) > 0
    V, src = source.views(handle, rows, "train", 2)
    assert V.shape == (20, 16) and src.tolist() == np.repeat(rows, 2).tolist()
    assert source.views_cost(handle, rows, "train", 2) == 0.0
    # a new source on the same cache finds the views there: nothing to pay
    again = EmbedderSource(paths, cache=tmp_path / "c.h5", batch_size=8, probe_rows=8)
    assert again.views_cost(handle, rows, "train", 2) == 0.0
    assert again.plain_cost(handle) == 0.0
    np.testing.assert_array_equal(again.views(handle, rows, "train", 2)[0], V)
    # views of other rows are not cached: the first query probes 4 rows' 8
    # views to measure the throughput, the other 10 rows' 20 views are priced
    assert 0 < again.views_cost(handle, np.arange(10, 24), "train", 2) < np.inf
    assert handle in again.throughput


def test_views_probe_skips_rows_already_cached(tmp_path, tiny_model_dir):
    """A probe on rows whose views are all cached would time nothing and
    leave the cost infinite (the search then skipped test views on grocery)."""
    folder = make_image_folder(tmp_path / "img", n_per_class=12)
    paths = sorted(str(p) for p in folder.rglob("*.*"))
    handle = str(tiny_model_dir)
    cache = tmp_path / "c.h5"
    first = EmbedderSource(paths, cache=cache, probe_rows=8, batch_size=8)
    first.views(handle, np.arange(8), "flip", 1)  # the first rows' views cached
    fresh = EmbedderSource(paths, cache=cache, probe_rows=8, batch_size=8)
    cost = fresh.views_cost(handle, np.arange(24), "flip", 1)
    assert handle in fresh.throughput
    assert 0 < cost < np.inf
