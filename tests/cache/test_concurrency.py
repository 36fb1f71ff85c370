"""Several processes filling one cache file at the same time (issues 2 and 6).

Real child processes (``_embed_worker.py``) embed the same images in different
orders into one HDF5 cache, released together. All must finish, the cache must
end with exactly one row per distinct image, every vector must match a
no-cache reference, and thanks to the per-key leases the backbone must see each
distinct image exactly once across all processes.
"""

from __future__ import annotations

import random
import shutil
import threading
from pathlib import Path

import h5py
import numpy as np
import pytest
from _embed_worker import finish_worker, go, start_worker, wait_ready
from conftest import write_image

from embedclf import EmbeddingCache, ImageEmbedder
from embedclf.cache._journal import read_records
from embedclf.embedding._backbones import backbone_image_count, resolve_backbone
from embedclf.embedding._images import content_key

SIZE = 32


def _content_keys(paths):
    return [content_key(Path(p).read_bytes()) for p in paths]


def _embedder(model, cache=None, **kw):
    return ImageEmbedder(
        model=str(model), cache=cache, image_size=SIZE, progress=False, **kw
    )


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """40 distinct images plus 8 byte-identical copies under other names."""
    root = tmp_path_factory.mktemp("concurrency_images")
    paths = [
        str(write_image(root / f"img_{i:02d}.png", seed=i, size=(24, 24)))
        for i in range(40)
    ]
    for i in range(8):
        copy = root / f"copy of img_{i * 5:02d}.png"
        shutil.copyfile(paths[i * 5], copy)
        paths.append(str(copy))
    return paths


@pytest.mark.slow
@pytest.mark.parametrize("n_workers", [2, 4])
def test_processes_fill_one_cache(tiny_model_dir, images, tmp_path, n_workers):
    ref = dict(zip(images, _embedder(tiny_model_dir).transform(images)))
    n_distinct = 40
    cache = tmp_path / "shared.h5"
    procs = []
    for w in range(n_workers):
        order = list(images)
        random.Random(w).shuffle(order)
        procs.append(
            start_worker(tmp_path, f"w{w}", tiny_model_dir, cache, order, batch_size=3)
        )
        procs[-1].order = order
    for proc in procs:
        wait_ready(proc)
    for proc in procs:  # release them together
        go(proc)
    results = [finish_worker(proc) for proc in procs]

    for proc, (report, X) in zip(procs, results):
        expected = np.stack([ref[p] for p in proc.order])
        np.testing.assert_allclose(X, expected, rtol=1e-5, atol=1e-5)
        assert report["calls"] == report["n_computed"]
    # The leases: each distinct image went through a backbone once.
    assert sum(r["calls"] for r, _ in results) == n_distinct
    assert sum(r["n_computed"] for r, _ in results) == n_distinct

    records, _ = read_records(str(cache) + ".journal")
    assert records == []  # every writer compacted after its last commit
    ns = _embedder(tiny_model_dir)._namespace(resolve_backbone(str(tiny_model_dir)))
    with h5py.File(cache, "r") as f:
        stored = [k.decode() for k in f[ns.fingerprint]["keys"][...]]
    assert len(stored) == len(set(stored)) == n_distinct
    [info] = EmbeddingCache(cache).info()
    assert info["n_rows"] == n_distinct

    before = backbone_image_count()
    est = _embedder(tiny_model_dir, cache)
    X = est.transform(images)
    assert est.n_computed_ == 0 and backbone_image_count() == before
    np.testing.assert_allclose(
        X, np.stack([ref[p] for p in images]), rtol=1e-5, atol=1e-5
    )


def test_threads_share_one_cache(tiny_model_dir, images, tmp_path):
    """Threads of one process (e.g. joblib's threading backend) with their own
    estimators on one cache file: the same guarantees."""
    ref = dict(zip(images, _embedder(tiny_model_dir).transform(images)))
    cache = tmp_path / "threads.h5"
    outputs, errors = {}, []

    def run(w):
        order = list(images)
        random.Random(100 + w).shuffle(order)
        try:
            est = _embedder(tiny_model_dir, cache, batch_size=5)
            outputs[w] = (order, est.transform(order), est.n_computed_)
        except BaseException as exc:  # reported below
            errors.append(exc)

    before = backbone_image_count()
    threads = [threading.Thread(target=run, args=(w,)) for w in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    assert backbone_image_count() - before == 40
    assert sum(n for _, _, n in outputs.values()) == 40
    for order, X, _ in outputs.values():
        np.testing.assert_allclose(
            X, np.stack([ref[p] for p in order]), rtol=1e-5, atol=1e-5
        )
    assert (
        not Path(str(cache) + ".journal").exists()
        or not read_records(str(cache) + ".journal")[0]
    )


@pytest.mark.slow
def test_a_writer_killed_mid_run_does_not_block_the_others(
    tiny_model_dir, images, tmp_path
):
    """The cache lock is released by the kernel when its holder dies (flock)
    and a dead writer's leases are taken over at once, so a writer killed
    with SIGKILL, even inside the cache lock or holding leases, never blocks
    the others; its committed rows are used, nothing is lost."""
    import os
    import signal
    import time

    from _embed_worker import reap

    ref = dict(zip(images, _embedder(tiny_model_dir).transform(images)))
    cache = tmp_path / "shared.h5"
    journal = Path(str(cache) + ".journal")
    victim = start_worker(tmp_path, "victim", tiny_model_dir, cache, images)
    survivor = start_worker(
        tmp_path, "survivor", tiny_model_dir, cache, images[::-1], batch_size=3
    )
    wait_ready(victim)
    wait_ready(survivor)
    go(victim)
    deadline = time.monotonic() + 120
    while not (journal.exists() and journal.stat().st_size > 3000):
        assert victim.poll() is None and time.monotonic() < deadline
        time.sleep(0.0005)
    go(survivor)
    time.sleep(0.002)
    os.kill(victim.pid, signal.SIGKILL)
    reap(victim)
    report, X = finish_worker(survivor, timeout=120)
    np.testing.assert_allclose(
        X, np.stack([ref[p] for p in images[::-1]]), rtol=1e-5, atol=1e-5
    )
    assert 0 < report["n_cached"] and report["calls"] == report["n_computed"] < 40
    ns = _embedder(tiny_model_dir)._namespace(resolve_backbone(str(tiny_model_dir)))
    vectors, found = EmbeddingCache(cache).get(ns, _content_keys(images))
    assert found.all()
