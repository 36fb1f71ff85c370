"""What runs on a Dask worker: embed one shard of an embedder's cache misses.

The client (``_dask.py``) submits :func:`embed_shard` by reference, so a
worker imports this module (and, at its first shard, TensorFlow and the
backbone) but never Dask's client side nor the cache: vectors travel back to
the client, which alone writes the cache file.

Each worker process loads the backbone once (the process-wide registry of
``_backbones.load_backbone``) and checks, once, that the model at the
backbone's path on this machine has the identity the client computed (same
graph and weights), so a worker never mixes vectors of another model into the
cache. TensorFlow on a worker runs with as many intra- and inter-op threads as
the worker has (``dask worker --nthreads N``), set before its first op, and
is imported without its start-up log lines (``quiet_tensorflow``), which
would otherwise fill every worker's log with CUDA and CPU-feature notices.
With the OpenVINO runtime the worker compiles, once per process, the model
the client converted (in the folder beside the cache; OpenVINO gets the
worker's threads) and never imports TensorFlow.
"""

from __future__ import annotations

import logging

import numpy as np

from embedclf.embedding._backbones import resolve_backbone
from embedclf.embedding._batches import image_decoder, split_batch
from embedclf.embedding._prefetch import prefetched_batches
from embedclf.embedding._quiet import quiet_tensorflow
from embedclf.embedding._runtime import TENSORFLOW, load_runtime
from embedclf.exceptions import BackboneLoadError

__all__ = ["embed_shard", "set_tf_threads"]

logger = logging.getLogger("embedclf")

#: (kind, identity, handle) of the backbones whose identity this process checked.
_checked_backbones: set = set()
#: The thread count TensorFlow was given in this process (None: not set yet).
_tf_threads: list = [None]


def set_tf_threads(n_threads: int) -> None:
    """Give TensorFlow ``n_threads`` intra- and inter-op threads (once).

    Only possible before TensorFlow runs its first op in this process; later
    calls with the same count do nothing, with another count log a warning.
    """
    if _tf_threads[0] is not None:
        if _tf_threads[0] != n_threads:
            logger.warning(
                "TensorFlow already runs with %d threads in this Dask worker; "
                "%d requested.",
                _tf_threads[0],
                n_threads,
            )
        return
    quiet_tensorflow()  # a worker's log: no TensorFlow start-up lines
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(n_threads)
        tf.config.threading.set_inter_op_parallelism_threads(n_threads)
    except RuntimeError:  # TensorFlow already initialised in this process
        logger.warning(
            "TensorFlow was initialised before the first shard; it keeps "
            "its own thread count in this worker."
        )
    _tf_threads[0] = n_threads


def _worker_threads() -> int:
    """Threads of the Dask worker running this task (1 outside a worker)."""
    try:
        from distributed import get_worker

        return int(get_worker().state.nthreads)
    except (ImportError, ValueError, AttributeError):
        return 1


def _check_identity(spec) -> None:
    """Refuse a model that differs, on this machine, from the client's."""
    key = (spec.kind, spec.identity, spec.handle)
    if key in _checked_backbones:
        return
    try:
        here = resolve_backbone(spec.handle)
    except BackboneLoadError as exc:
        raise BackboneLoadError(
            f"A Dask worker could not find the model {spec.handle!r}: {exc} Each "
            "worker needs the backbone at the same path as the client (copy it or "
            "use a shared folder)."
        ) from exc
    if here.identity != spec.identity:
        raise BackboneLoadError(
            f"The model {spec.handle!r} on a Dask worker differs from the one on "
            f"the client (identity {here.identity!r}, expected {spec.identity!r}). "
            "Give every machine the same model files."
        )
    _checked_backbones.add(key)


def embed_shard(
    paths,
    keys,
    spec,
    image_size,
    *,
    bounds,
    resample,
    crop_fraction,
    max_image_pixels,
    n_decode_threads,
    tf_threads=None,
    runtime=TENSORFLOW,
):
    """Decode and embed one shard: whole backbone batches of a local run.

    Parameters
    ----------
    paths : list of str
        One file per row of the shard (each distinct content once).
    keys : list of str
        The content key the client hashed each file to; a file whose bytes
        now hash otherwise fails with ``ImageDecodeError`` (as locally).
    spec : BackboneSpec
        The backbone as the client resolved it.
    image_size : tuple of (height, width) or None
        None: the backbone's default size.
    bounds : list of (start, stop)
        The backbone batches, relative to the shard, as the local run would
        make them, so that every image meets the backbone in the same batch.
    resample, crop_fraction, max_image_pixels, n_decode_threads
        As the embedder's parameters.
    tf_threads : int or None, default=None
        TensorFlow's (or OpenVINO's) threads; None: the worker's thread count.
    runtime : _runtime.Runtime, default=TENSORFLOW
        The runtime the client chose (OpenVINO: the model it converted,
        compiled once per worker process from the same folder).

    Returns
    -------
    keys : list of str
        The keys of the rows embedded.
    vectors : ndarray of shape (len(keys), dim), float32
    failures : list of (row, error)
        The shard rows that failed and why (picklable exceptions).
    """
    threads = tf_threads or _worker_threads()
    if runtime.name == "tensorflow":
        set_tf_threads(threads)
    _check_identity(spec)
    requested = tuple(image_size) if image_size else None
    backbone = load_runtime(spec, requested, runtime, threads=threads, publish=False)
    size = tuple(image_size) if image_size else (backbone.default_image_size,) * 2
    items = [(key, row) for row, key in enumerate(keys)]
    decode = image_decoder(
        paths,
        size,
        max_image_pixels=max_image_pixels,
        resample=resample,
        crop_fraction=crop_fraction,
    )
    done_keys, parts, failures = [], [], []
    with prefetched_batches(
        items,
        decode,
        batch_size=max(stop - start for start, stop in bounds),
        shape=(*size, 3),
        dtype=np.uint8,
        n_threads=n_decode_threads,
        bounds=bounds,
    ) as batches:
        for batch, images, results in batches:
            good, rows, failed = split_batch(batch, results, paths)
            failures.extend(failed)
            if not good:
                continue
            parts.append(backbone(images if len(rows) == len(images) else images[rows]))
            done_keys.extend(good)
    dim = parts[0].shape[1] if parts else 0
    vectors = np.concatenate(parts) if parts else np.zeros((0, dim), np.float32)
    return done_keys, vectors, failures
