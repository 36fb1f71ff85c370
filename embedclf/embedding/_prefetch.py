"""Decoding images in threads, one batch ahead of the backbone.

``concurrent.futures`` rather than ``tf.data``: decoding is Pillow code
(see ``_images.py``), per-file errors must reach the caller as values rather
than end the stream, and each batch is written straight into one buffer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np

__all__ = ["batch_bounds", "prefetched_batches", "batches_with_progress"]

#: Size of the first backbone call; the next ones double up to batch_size.
RAMP_START = 4


def batch_bounds(n: int, batch_size: int) -> list[tuple[int, int]]:
    """(start, stop) of each backbone call: a short ramp, then full batches.

    The backbone idles while the first batch is decoded (about 50 ms for 64
    photos on two threads), so the first calls take 4, 8, 16, ... images:
    each is decoded while the previous, smaller one runs. The backbone's cost
    per image barely depends on the batch size, and an image's vector does not
    depend on the other images of its batch; memory stays bounded by
    ``batch_size``.
    """
    bounds, start, size = [], 0, min(RAMP_START, batch_size)
    while start < n:
        stop = min(start + size, n)
        bounds.append((start, stop))
        start, size = stop, min(2 * size, batch_size)
    return bounds


@contextmanager
def prefetched_batches(
    items: Sequence,
    decode: Callable,
    *,
    batch_size: int,
    shape: tuple[int, ...],
    dtype,
    n_threads: int,
    bounds: Sequence[tuple[int, int]] | None = None,
) -> Iterator[Iterator[tuple[Sequence, np.ndarray, list]]]:
    """Batches of ``items`` decoded by ``decode`` in threads, one batch ahead.

    Parameters
    ----------
    items : sequence
        What to decode, in order.
    decode : callable
        ``decode(item, out)`` writes one item into ``out`` (an array of
        ``shape`` and ``dtype``) and returns anything, e.g. a key or an error
        value. It runs in a worker thread; exceptions it raises propagate to
        the consumer when that batch is reached.
    batch_size : int
        The largest batch (see :func:`batch_bounds` for the ramp).
    shape : tuple of int
        Shape of one decoded item.
    dtype : numpy dtype
    n_threads : int
        Worker threads.
    bounds : sequence of (start, stop) or None, default=None
        The batches to make, consecutive and covering ``items``; None uses
        :func:`batch_bounds` (a Dask worker replays the batches that a local
        run would make over the whole input, ``_dask_worker.py``).

    Yields
    ------
    batches : iterator of (items, images, results)
        ``images[row]`` holds the decoded ``items[row]`` and ``results[row]``
        what ``decode`` returned for it. The next batch is being decoded while
        the consumer handles this one. Leaving the ``with`` block early (an
        exception) waits for the batch in flight, never for the rest.
    """
    if bounds is None:
        bounds = batch_bounds(len(items), batch_size)
    with ThreadPoolExecutor(n_threads) as pool:

        def submit(start, stop):
            out = np.empty((stop - start, *shape), dtype=dtype)
            futures = [
                pool.submit(decode, item, out[row, ...])  # a view, even 0-d
                for row, item in enumerate(items[start:stop])
            ]
            return out, futures

        def batches():
            pending = submit(*bounds[0]) if bounds else None
            for b, (start, stop) in enumerate(bounds):
                images, futures = pending
                results = [f.result() for f in futures]
                if b + 1 < len(bounds):  # decoded while the consumer runs
                    pending = submit(*bounds[b + 1])
                yield items[start:stop], images, results

        yield batches()


@contextmanager
def batches_with_progress(items, decode, *, desc: str, unit: str, show: bool, **kw):
    """:func:`prefetched_batches` with a tqdm bar; yields ``(bar, batches)``.

    The bar is closed when a batch fails too, instead of staying on the
    terminal. ``kw`` are :func:`prefetched_batches`' keyword arguments.
    """
    from tqdm.auto import tqdm

    with (
        tqdm(
            total=len(items), unit=unit, desc=desc, leave=False, disable=not show
        ) as bar,
        prefetched_batches(items, decode, **kw) as batches,
    ):
        yield bar, batches
