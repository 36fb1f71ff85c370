"""Embedding the cache misses on a Dask cluster: ``ImageEmbedder(scheduler=...)``.

The client side. ``ImageEmbedder.transform`` hashes the files and looks them
up in the cache as it does locally; the misses (one per distinct content)
come here instead of ``_batches.compute_missing``:

1. the backbone batches a local run would make over them (``batch_bounds``:
   4, 8, 16, ... then ``batch_size``) are grouped into shards of whole
   batches, so every image meets the backbone in the same batch as it would
   locally and the vectors are bit for bit those of a local run;
2. each shard is one task (``_dask_worker.embed_shard``), submitted with
   ``retries=2`` (an exception in the task is retried on another worker; a
   task whose worker dies is rescheduled by the scheduler, up to
   ``distributed.scheduler.allowed-failures`` times);
3. as each shard finishes (``distributed.as_completed``) its vectors are
   looked up once more (another process may have committed some meanwhile)
   and the rest committed to the cache here, on the client: only the client
   opens the cache file, and a crash of the client keeps every finished shard.

Dask is an optional dependency (``pip install "embedclf[dask]"``); this module
imports it only when called, so ``import embedclf`` never does.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import numpy as np

from embedclf.embedding._batches import shows_progress
from embedclf.embedding._inputs import normalize_size
from embedclf.embedding._prefetch import batch_bounds

__all__ = [
    "INSTALL_HINT",
    "clone_sharing_client",
    "compute_on_cluster",
    "connect",
    "holds_client",
    "plan_shards",
    "refuse_to_pickle_client",
]

INSTALL_HINT = 'pip install "embedclf[dask]"'

#: Shards per worker aimed at: enough to balance the load and to commit
#: often, few enough that the per-task overhead (milliseconds) stays small.
SHARDS_PER_WORKER = 8


def import_distributed():
    """``distributed``, or an ImportError that says how to install it."""
    try:
        import distributed
    except ImportError as exc:
        raise ImportError(
            "Embedding on a Dask cluster (ImageEmbedder(scheduler=...), embedclf "
            "embed --scheduler) needs dask.distributed, which is not installed. "
            f"Install it with: {INSTALL_HINT}"
        ) from exc
    return distributed


def _joblib_client(distributed):
    """The Client of the active ``joblib.parallel_config(backend="dask")``."""
    from joblib.parallel import get_active_backend

    backend, _ = get_active_backend()
    client = getattr(backend, "client", None)
    if not isinstance(client, distributed.Client):
        raise ValueError(
            "The 'scheduler' parameter of ImageEmbedder is 'joblib', but no joblib "
            f"Dask backend is active (joblib's backend is {type(backend).__name__}). "
            "Create a distributed.Client and call transform inside "
            "`with joblib.parallel_config(backend='dask'):`, or pass the "
            "scheduler's address instead."
        )
    return client


@contextmanager
def connect(scheduler):
    """The ``distributed.Client`` that ``scheduler`` names, for one transform.

    A Client is used as is (and left open); ``"joblib"`` is the client of the
    active joblib Dask backend; a string is a scheduler address, connected to
    here and closed at the end.
    """
    distributed = import_distributed()
    if isinstance(scheduler, distributed.Client):
        yield scheduler
        return
    if scheduler == "joblib":
        yield _joblib_client(distributed)
        return
    try:
        client = distributed.Client(scheduler, set_as_default=False)
    except (OSError, TimeoutError, ValueError, TypeError) as exc:
        raise ConnectionError(
            f"Could not connect to the Dask scheduler at {scheduler!r} ({exc}). "
            "Start one with `dask scheduler` on that host (it listens on "
            "tcp://HOST:8786) and workers with `dask worker tcp://HOST:8786 "
            "--nthreads 1`, or pass scheduler=None (no --scheduler) to embed "
            "on this machine."
        ) from exc
    try:
        yield client
    finally:
        client.close()


def holds_client(estimator) -> bool:
    """Whether ``estimator.scheduler`` is a Client object (not an address)."""
    return estimator.scheduler is not None and not isinstance(estimator.scheduler, str)


def clone_sharing_client(estimator):
    """``sklearn.base.clone`` of an embedder whose clone keeps the same Client.

    A ``distributed.Client`` is a live connection, not state: scikit-learn's
    clone deep-copies every parameter, which a Client refuses (its event loop
    tasks do not pickle), so ``cross_val_score`` and ``GridSearchCV`` failed
    on ``ImageEmbedder(scheduler=client)``. Every other parameter is cloned
    as scikit-learn does.
    """
    from sklearn.base import clone

    params = estimator.get_params(deep=False)
    client = params.pop("scheduler")
    cloned = {name: clone(value, safe=False) for name, value in params.items()}
    return type(estimator)(**cloned, scheduler=client)


def refuse_to_pickle_client(estimator):
    """Raise the TypeError that says what to pass instead of a Client."""
    address = getattr(getattr(estimator.scheduler, "scheduler", None), "address", None)
    where = repr(address) if isinstance(address, str) else "'tcp://HOST:8786'"
    raise TypeError(
        f"{type(estimator).__name__}(scheduler=<{type(estimator.scheduler).__name__}>) "
        "cannot be pickled: a Dask Client is a live connection. Process-based "
        "parallelism (GridSearchCV or cross_val_score with n_jobs > 1) and "
        "joblib.dump / pickle copy the estimator that way; pass the scheduler's "
        f"address instead (scheduler={where}), or scheduler='joblib' inside "
        "joblib.parallel_config(backend='dask')."
    )


def plan_shards(bounds, n_workers: int, batch_size: int) -> list[list[tuple]]:
    """Group consecutive backbone batches into shards of whole batches.

    A shard closes once it holds ``ceil(n / (8 * n_workers))`` images (``n``
    in all), clipped to between one and four ``batch_size``: small runs get
    one batch per shard (the load balances to within a batch), large ones
    fewer, larger tasks.

    Returns
    -------
    shards : list of list of (start, stop)
        The batches of each shard, in order, covering ``bounds``.
    """
    if not bounds:
        return []
    n = bounds[-1][1]
    target = math.ceil(n / (SHARDS_PER_WORKER * max(1, n_workers)))
    target = min(max(target, batch_size), 4 * batch_size)
    shards, current, size = [], [], 0
    for start, stop in bounds:
        current.append((start, stop))
        size += stop - start
        if size >= target:
            shards.append(current)
            current, size = [], 0
    if current:
        shards.append(current)
    return shards


def _commit(cache, ns, keys, vecs, vectors) -> None:
    """Store one shard's vectors (those no other process stored meanwhile)."""
    if cache is None:
        vectors.update(zip(keys, vecs))
        return
    found_vecs, found = cache.get(ns, keys)
    for j in np.flatnonzero(found):
        vectors[keys[j]] = found_vecs[j]
    new = np.flatnonzero(~found)
    if len(new) == 0:
        return
    cache.put(ns, [keys[j] for j in new], vecs[new])
    cache.compact_if_due()
    stored = vecs[new].astype(ns.dtype).astype(np.float32)
    vectors.update(zip((keys[j] for j in new), stored))


def compute_on_cluster(
    embedder, paths, todo, spec, ns, cache, vectors, errors, runtime=None
):
    """Embed the keys in ``todo`` on the cluster of ``embedder.scheduler``.

    The parameters and the return value are those of
    ``_batches.compute_missing`` (``spec`` instead of a loaded backbone: the
    client never loads it; ``runtime``, the client's effective
    ``_runtime.Runtime``, which every worker then uses). Raises the first failure with
    ``on_error="raise"``, after committing the shards that finished.
    """
    from tqdm.auto import tqdm

    from embedclf.embedding._dask_worker import embed_shard

    items = list(todo.items())
    bounds = batch_bounds(len(items), embedder.batch_size)
    settings = dict(
        spec=spec,
        image_size=normalize_size(embedder.image_size),
        resample=embedder.resample,
        crop_fraction=embedder.crop_fraction,
        max_image_pixels=embedder.max_image_pixels,
        n_decode_threads=embedder.n_decode_threads,
    )
    if runtime is not None:
        settings["runtime"] = runtime
    show = shows_progress(embedder, len(items))
    distributed = import_distributed()
    computed = set()
    with connect(embedder.scheduler) as client:
        n_workers = len(client.scheduler_info().get("workers", {}))
        futures = {}
        for shard in plan_shards(bounds, n_workers, embedder.batch_size):
            lo, hi = shard[0][0], shard[-1][1]
            future = client.submit(
                embed_shard,
                [paths[index] for _, index in items[lo:hi]],
                [key for key, _ in items[lo:hi]],
                bounds=[(start - lo, stop - lo) for start, stop in shard],
                retries=2,
                pure=False,
                **settings,
            )
            futures[future] = lo
        try:
            with tqdm(
                total=len(items),
                unit="img",
                desc="embedding on Dask",
                leave=False,
                disable=not show,
            ) as bar:
                for future in distributed.as_completed(list(futures), loop=client.loop):
                    keys, vecs, failures = future.result()
                    lo = futures.pop(future)
                    _commit(cache, ns, keys, vecs, vectors)
                    computed.update(keys)
                    for row, error in failures:
                        errors[items[lo + row][1]] = error
                    if failures and embedder.on_error == "raise":
                        raise failures[0][1]
                    bar.update(len(keys) + len(failures))
        finally:
            if futures:  # an error: do not leave the rest running
                client.cancel(list(futures))
    return computed
