"""ImageEmbedder(scheduler=...) on a real dask.distributed LocalCluster.

Two worker processes of one thread each (module-scoped: the workers import
TensorFlow and load the tiny SavedModel once for the whole file). Backbone
calls are counted in the workers (``backbone_image_count`` through
``client.run``); the client process never loads the backbone.
"""

from __future__ import annotations

import logging
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import heavy_modules_loaded, make_image_folder, write_image

distributed = pytest.importorskip("distributed")

import _dask_plugins  # noqa: E402  (imports distributed)
import h5py  # noqa: E402
from _subprocess_cli import run_cli, user_env  # noqa: E402
from sklearn.utils._param_validation import InvalidParameterError  # noqa: E402

from embedclf import EmbeddingCache, ImageEmbedder  # noqa: E402
from embedclf.cache._journal import read_records  # noqa: E402
from embedclf.embedding._backbones import (  # noqa: E402
    backbone_image_count,
    resolve_backbone,
)
from embedclf.embedding._dask import plan_shards  # noqa: E402
from embedclf.embedding._dask_worker import embed_shard  # noqa: E402
from embedclf.embedding._images import content_key  # noqa: E402
from embedclf.embedding._prefetch import batch_bounds  # noqa: E402
from embedclf.exceptions import BackboneLoadError, ImageDecodeError  # noqa: E402

pytestmark = [pytest.mark.tf, pytest.mark.slow]

BATCH = 4
SIZE = 32


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",
        silence_logs=logging.ERROR,
    ) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def client(cluster):
    with distributed.Client(cluster, set_as_default=False) as client:
        yield client


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """26 distinct images, then a byte copy of two of them and a repeated path."""
    root = make_image_folder(
        tmp_path_factory.mktemp("dask") / "imgs",
        classes=("red", "green"),
        n_per_class=13,
    )
    paths = sorted(str(p) for p in root.rglob("*.*"))
    copy = root / "copy_of_first.png"
    shutil.copy(paths[0], copy)
    copy2 = root / "copy_of_fifth.jpg"
    shutil.copy(paths[5], copy2)
    return paths, [*paths, str(copy), paths[3], str(copy2)]


def _embedder(model, **kw):
    return ImageEmbedder(
        model=str(model), batch_size=BATCH, image_size=SIZE, progress=False, **kw
    )


def _worker_calls(client) -> int:
    return sum(client.run(backbone_image_count).values())


def _stored_keys(cache, model) -> list:
    """Every key row of the cache's files and journal (duplicates included)."""
    ns = _embedder(model)._namespace(resolve_backbone(str(model)))
    cache = EmbeddingCache(cache)
    keys = []
    for path in cache._files():
        with h5py.File(path, "r") as f:
            if ns.fingerprint in f:
                keys += [k.decode() for k in f[ns.fingerprint]["keys"][...]]
    records, _ = read_records(cache.journal_path)
    for rec in records:
        keys += list(rec.keys)
    return keys


@pytest.fixture(scope="module")
def local(tiny_model_dir, images):
    """The vectors of a local run (no cache: the backbone's float32 output)."""
    _, paths = images
    return _embedder(tiny_model_dir).transform(paths)


def test_vectors_are_those_of_a_local_run_and_each_image_meets_the_backbone_once(
    client, tiny_model_dir, images, local, tmp_path
):
    distinct, paths = images
    before_here, before_workers = backbone_image_count(), _worker_calls(client)
    est = _embedder(tiny_model_dir, cache=tmp_path / "c.h5", scheduler=client)
    X = est.transform(paths)
    assert np.array_equal(X, local)  # bit for bit
    assert _worker_calls(client) - before_workers == len(distinct)
    assert backbone_image_count() == before_here  # the client ran nothing
    assert (est.n_computed_, est.n_cached_) == (len(distinct), 0)  # as locally
    stored = _stored_keys(tmp_path / "c.h5", tiny_model_dir)
    assert len(stored) == len(set(stored)) == len(distinct)
    # Warm: nothing is submitted, the vectors come back the same.
    again = _embedder(tiny_model_dir, cache=tmp_path / "c.h5", scheduler=client)
    assert np.array_equal(again.transform(paths), local)
    assert (again.n_computed_, _worker_calls(client)) == (0, before_workers + 26)


def test_no_cache_and_a_scheduler_address(
    cluster, client, tiny_model_dir, images, local
):
    _, paths = images
    est = _embedder(tiny_model_dir, scheduler=cluster.scheduler_address)
    assert np.array_equal(est.transform(paths), local)


def test_workers_replay_the_local_batches(client, tiny_model_dir, images, tmp_path):
    distinct, paths = images
    est = _embedder(tiny_model_dir, scheduler=client, cache=tmp_path / "c.h5")
    est.transform(paths[:3])  # cached: the next run embeds 23 distinct files
    client.register_plugin(_dask_plugins.RecordBatches())
    try:
        est.transform(paths)
        got = sorted(sum(client.run(_dask_plugins.batch_sizes).values(), []))
    finally:
        client.unregister_worker_plugin(_dask_plugins.RecordBatches.name)
    local_sizes = [b - a for a, b in batch_bounds(len(distinct) - 3, BATCH)]
    assert got == sorted(local_sizes) == [3] + [4] * 5


def test_only_the_misses_are_submitted(client, tiny_model_dir, images, local, tmp_path):
    distinct, paths = images
    cache = tmp_path / "c.h5"
    _embedder(tiny_model_dir, cache=cache).transform(distinct[:10])  # locally
    before = _worker_calls(client)
    est = _embedder(tiny_model_dir, cache=cache, scheduler=client)
    assert np.array_equal(est.transform(paths), local)
    assert _worker_calls(client) - before == len(distinct) - 10
    assert est.n_computed_ == len(distinct) - 10
    stored = _stored_keys(cache, tiny_model_dir)
    assert len(stored) == len(set(stored)) == len(distinct)


def test_a_worker_killed_mid_run(client, tiny_model_dir, images, local, tmp_path):
    distinct, paths = images
    flag = tmp_path / "died"
    pids = set(client.run(_dask_plugins.worker_pid).values())
    client.register_plugin(_dask_plugins.DieOnce(flag, at_call=2))
    try:
        est = _embedder(tiny_model_dir, cache=tmp_path / "c.h5", scheduler=client)
        X = est.transform(paths)
    finally:
        client.unregister_worker_plugin(_dask_plugins.DieOnce.name)
    assert int(flag.read_text()) in pids  # a worker did die, mid-run
    assert np.array_equal(X, local)
    stored = _stored_keys(tmp_path / "c.h5", tiny_model_dir)
    assert len(stored) == len(set(stored)) == len(distinct)
    client.wait_for_workers(2, timeout=60)  # the nanny restarted it


def test_bad_files_are_filled_as_locally(client, tiny_model_dir, images, tmp_path):
    distinct, _ = images
    bad = tmp_path / "garbage.jpg"
    bad.write_bytes(b"not an image")
    paths = [distinct[0], str(bad), distinct[1], str(bad)]
    local = _embedder(tiny_model_dir, on_error="nan").transform(paths)
    est = _embedder(tiny_model_dir, on_error="nan", scheduler=client)
    X = est.transform(paths)
    assert np.array_equal(X, local, equal_nan=True) and np.isnan(X[[1, 3]]).all()
    assert est.failed_paths_.tolist() == [str(bad), str(bad)]
    raising = _embedder(tiny_model_dir, scheduler=client, cache=tmp_path / "c.h5")
    with pytest.raises(ImageDecodeError, match=re.escape(repr(str(bad)))) as info:
        raising.transform(paths)
    assert info.value.path == str(bad)  # its attributes crossed the processes


def test_several_backbones(client, tiny_model_dir, tiny_model_dir_b, images):
    distinct, _ = images
    kw = dict(batch_size=BATCH, image_size=SIZE, progress=False)
    models = [str(tiny_model_dir), str(tiny_model_dir_b)]
    local = ImageEmbedder(models, **kw).transform(distinct[:6])
    on_cluster = ImageEmbedder(models, scheduler=client, **kw).transform(distinct[:6])
    assert np.array_equal(on_cluster, local)


def test_scheduler_joblib_uses_the_active_dask_backend(
    cluster, client, tiny_model_dir, images, local
):
    import joblib

    _, paths = images
    est = _embedder(tiny_model_dir, scheduler="joblib")
    with (
        distributed.Client(cluster.scheduler_address, set_as_default=True),
        joblib.parallel_config(backend="dask"),
    ):
        before = _worker_calls(client)
        X = est.transform(paths)
        assert _worker_calls(client) - before == 26
    assert np.array_equal(X, local)


def test_scheduler_joblib_without_a_dask_backend(tiny_model_dir, images):
    est = _embedder(tiny_model_dir, scheduler="joblib")
    msg = (
        "The 'scheduler' parameter of ImageEmbedder is 'joblib', but no joblib "
        "Dask backend is active"
    )
    with pytest.raises(ValueError, match=re.escape(msg)):
        est.transform(images[0][:2])


def test_unreachable_scheduler_names_the_address_and_the_fix(tiny_model_dir, images):
    import dask

    est = _embedder(tiny_model_dir, scheduler="tcp://127.0.0.1:1")
    with (
        dask.config.set({"distributed.comm.timeouts.connect": "1s"}),
        pytest.raises(ConnectionError) as info,
    ):
        est.transform(images[0][:2])
    message = str(info.value)
    assert "Could not connect to the Dask scheduler at 'tcp://127.0.0.1:1'" in message
    assert "`dask scheduler`" in message and "dask worker tcp://HOST:8786" in message


def test_scheduler_parameter_is_validated(tiny_model_dir, images):
    with pytest.raises(InvalidParameterError, match="'scheduler' parameter"):
        _embedder(tiny_model_dir, scheduler=8786).transform(images[0][:1])


def test_cross_val_score_clones_an_embedder_holding_a_client(
    client, tiny_model_dir, images, tmp_path
):
    from sklearn.base import clone
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline

    from embedclf import SoftmaxClassifier

    distinct, _ = images
    labels = np.array([Path(p).parent.name for p in distinct])
    est = _embedder(tiny_model_dir, cache=tmp_path / "cv.h5", scheduler=client)
    twin = clone(est)
    assert twin.scheduler is client and twin.get_params()["cache"] == est.cache
    before = _worker_calls(client)
    scores = cross_val_score(
        make_pipeline(est, SoftmaxClassifier()), np.array(distinct), labels, cv=2
    )
    assert scores.shape == (2,) and np.isfinite(scores).all()
    # Every image went through a backbone once, on the workers, for both folds.
    assert _worker_calls(client) - before == len(distinct)


def test_pickling_an_embedder_holding_a_client_names_the_address(
    cluster, client, tiny_model_dir
):
    est = _embedder(tiny_model_dir, scheduler=client)
    with pytest.raises(TypeError) as info:
        pickle.dumps(est)
    message = str(info.value)
    assert "cannot be pickled: a Dask Client is a live connection" in message
    assert f"scheduler={cluster.scheduler_address!r}" in message
    # An address pickles, and the copy keeps it.
    by_address = _embedder(tiny_model_dir, scheduler=cluster.scheduler_address)
    copy = pickle.loads(pickle.dumps(by_address))
    assert copy.scheduler == cluster.scheduler_address


def test_cli_embed_on_the_cluster(cluster, client, tiny_model_dir, tmp_path):
    folder = make_image_folder(tmp_path / "imgs", n_per_class=4, seed=3)
    before = _worker_calls(client)
    cache = tmp_path / "cli.h5"
    args = ["embed", folder, "--model", tiny_model_dir, "--cache", cache]
    args += ["--image-size", SIZE, "--scheduler", cluster.scheduler_address]
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    assert "8 computed by the backbone" in result.stdout
    assert _worker_calls(client) - before == 8
    paths = sorted(str(p) for p in folder.rglob("*.*"))
    est = _embedder(tiny_model_dir, cache=cache)
    X = est.transform(paths)
    assert est.n_cached_ == 8
    assert np.array_equal(X, _embedder(tiny_model_dir).transform(paths))


def test_cli_unreachable_scheduler_is_one_clear_line(tiny_model_dir, tmp_path):
    folder = make_image_folder(tmp_path / "imgs", n_per_class=1)
    env = dict(user_env(), DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT="1s")
    args = ["embed", folder, "--model", tiny_model_dir, "--cache", tmp_path / "c.h5"]
    args += ["--scheduler", "tcp://127.0.0.1:1"]
    result = subprocess.run(
        [sys.executable, "-m", "embedclf", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 1
    assert (
        "Could not connect to the Dask scheduler at 'tcp://127.0.0.1:1'"
        in result.stderr
    )
    assert "dask scheduler" in result.stderr and "Traceback" not in result.stderr


# -- without a cluster -----------------------------------------------------------


def test_worker_refuses_a_model_that_differs_from_the_clients(tiny_model_dir, images):
    from dataclasses import replace

    spec = replace(resolve_backbone(str(tiny_model_dir)), identity="savedmodel:other")
    with pytest.raises(BackboneLoadError, match="differs from the one on the client"):
        embed_shard(
            images[0][:1],
            ["key"],
            spec,
            (SIZE, SIZE),
            bounds=[(0, 1)],
            resample="bilinear",
            crop_fraction=1.0,
            max_image_pixels=None,
            n_decode_threads=1,
            tf_threads=1,
        )


def test_worker_reports_a_file_whose_content_changed(tiny_model_dir, images):
    distinct, _ = images
    spec = resolve_backbone(str(tiny_model_dir))
    keys, vectors, failures = embed_shard(
        distinct[:2],
        ["not-its-key", "also-not"],
        spec,
        (SIZE, SIZE),
        bounds=[(0, 2)],
        resample="bilinear",
        crop_fraction=1.0,
        max_image_pixels=None,
        n_decode_threads=1,
    )
    assert keys == [] and vectors.shape[0] == 0
    assert [row for row, _ in failures] == [0, 1]
    assert all("changed while" in str(e) for _, e in failures)


@pytest.mark.parametrize(
    "n, n_workers, batch_size", [(23, 2, 4), (300, 2, 32), (10_000, 2, 32), (5, 1, 32)]
)
def test_plan_shards_groups_whole_batches(n, n_workers, batch_size):
    bounds = batch_bounds(n, batch_size)
    shards = plan_shards(bounds, n_workers, batch_size)
    assert [b for shard in shards for b in shard] == bounds  # whole, in order
    sizes = [shard[-1][1] - shard[0][0] for shard in shards]
    assert max(sizes) <= 4 * batch_size + batch_size
    if n >= 10 * batch_size:
        assert len(shards) >= 4 * n_workers  # enough to balance the load
    assert plan_shards([], 2, 32) == []


def test_image_decode_error_pickles_with_its_attributes():
    error = ImageDecodeError("/some/dir/a.jpg", "truncated file")
    error.add_note("1 more file(s) failed")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is ImageDecodeError and str(copy) == str(error)
    assert (copy.path, copy.reason) == ("/some/dir/a.jpg", "truncated file")
    assert copy.__notes__ == ["1 more file(s) failed"]


def test_import_embedclf_does_not_import_dask():
    heavy, _ = heavy_modules_loaded(
        "import embedclf\nfrom embedclf import ImageEmbedder\n"
        "ImageEmbedder(scheduler='tcp://h:8786')\n",
        modules=("dask", "distributed"),
    )
    assert heavy == []


def test_without_dask_the_error_names_the_extra(tiny_model_dir, tmp_path):
    image = write_image(tmp_path / "a.png")
    code = (
        "import sys\nsys.modules['distributed'] = None\n"
        "from embedclf import ImageEmbedder\n"
        f"est = ImageEmbedder({str(tiny_model_dir)!r}, scheduler='tcp://h:8786')\n"
        "try:\n"
        f"    est.transform([{str(image)!r}])\n"
        "except ImportError as exc:\n"
        "    print('IMPORTERROR', exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "IMPORTERROR" in out and 'pip install "embedclf[dask]"' in out


_WORKER_START = """
import sys
from embedclf.embedding._dask_worker import set_tf_threads
print("before", file=sys.stderr, flush=True)
set_tf_threads(1)
import tensorflow as tf
print("after", tf.config.threading.get_intra_op_parallelism_threads(), file=sys.stderr)
"""


def test_a_worker_imports_tensorflow_without_its_start_up_lines():
    done = subprocess.run(
        [sys.executable, "-c", _WORKER_START],
        capture_output=True,
        text=True,
        env=user_env(),
        timeout=300,
        check=True,
    )
    # The worker's own lines stay, in order; TensorFlow's absl banner, CUDA
    # and CPU-feature notices do not; the thread count is still set.
    assert done.stderr.splitlines() == ["before", "after 1"], done.stderr[-2000:]


def test_a_shard_runs_the_batches_it_is_given(tiny_model_dir, images):
    """Not a ramp of its own: the local run's batches, as the client cut them."""
    distinct, _ = images
    spec = resolve_backbone(str(tiny_model_dir))
    keys = [content_key(Path(p).read_bytes()) for p in distinct[:9]]
    recorder = _dask_plugins.RecordBatches()
    recorder.setup(worker=None)  # in this process
    try:
        got_keys, vectors, failures = embed_shard(
            distinct[:9],
            keys,
            spec,
            (SIZE, SIZE),
            bounds=[(0, 2), (2, 6), (6, 9)],  # not what batch_bounds(9, 4) makes
            resample="bilinear",
            crop_fraction=0.875,
            max_image_pixels=None,
            n_decode_threads=2,
        )
    finally:
        recorder.teardown(worker=None)
    assert _dask_plugins.BATCH_SIZES == [2, 4, 3]
    assert got_keys == keys and failures == []
    local = _embedder(tiny_model_dir, crop_fraction=0.875).transform(distinct[:9])
    assert np.array_equal(vectors, local)


def test_commit_keeps_rows_another_process_stored_meanwhile(tiny_model_dir, tmp_path):
    from embedclf.embedding._dask import _commit

    est = _embedder(tiny_model_dir)
    ns = est._namespace(resolve_backbone(str(tiny_model_dir)))
    cache = EmbeddingCache(tmp_path / "c.h5")
    theirs = np.ones((1, 16), np.float32)
    a, b = "a" * 64, "b" * 64
    cache.put(ns, [b], theirs)  # committed by someone else after our lookup
    vectors = {}
    _commit(cache, ns, [a, b], np.zeros((2, 16), np.float32), vectors)
    assert np.array_equal(vectors[b], theirs[0]) and not vectors[a].any()
    stored = _stored_keys(tmp_path / "c.h5", tiny_model_dir)
    assert sorted(stored) == [a, b]
