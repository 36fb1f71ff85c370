"""Decoding the cache misses one batch ahead and running them through the backbone.

``ImageEmbedder.transform`` hashes and looks up; what the cache lacks comes
here: decoded with Pillow in threads (``_prefetch.py``) at the embedder's size,
resize filter and crop, embedded batch by batch through ``embed_missing`` (so
each vector is computed once however many processes share the cache).
"""

from __future__ import annotations

import numpy as np

from embedclf.embedding._compute_once import embed_missing
from embedclf.embedding._images import load_image
from embedclf.embedding._prefetch import batches_with_progress
from embedclf.exceptions import ImageDecodeError

__all__ = [
    "IMAGE_ERRORS",
    "PROGRESS_AUTO_MIN",
    "compute_missing",
    "image_decoder",
    "shows_progress",
    "split_batch",
]

#: Errors that ``on_error="zero"/"nan"`` turn into a filled row.
IMAGE_ERRORS = (
    ImageDecodeError,
    FileNotFoundError,
    IsADirectoryError,
    PermissionError,
)
PROGRESS_AUTO_MIN = 256


def shows_progress(embedder, n_images: int) -> bool:
    """Whether ``embedder`` shows a progress bar for ``n_images`` misses."""
    return embedder.progress is True or (
        embedder.progress == "auto" and n_images >= PROGRESS_AUTO_MIN
    )


def compute_missing(embedder, paths, todo, backbone, size, ns, cache, vectors, errors):
    """Decode (in threads, one batch ahead) and embed the keys in ``todo``.

    Parameters
    ----------
    embedder : ImageEmbedder
        Supplies batch size, threads, preprocessing, ``on_error``, progress.
    paths : ndarray of str
    todo : dict of str to int
        Content key -> index of the first path with that content.
    backbone : Backbone
    size : tuple of (height, width)
    ns : CacheNamespace
    cache : EmbeddingCache or None
    vectors : dict
        Filled in place: key -> float32 vector.
    errors : list
        Filled in place: the error of each path index, or None.

    Returns
    -------
    computed : set of str
        The keys this call ran through the backbone.
    """
    items = list(todo.items())
    decode = image_decoder(
        paths,
        size,
        max_image_pixels=embedder.max_image_pixels,
        resample=embedder.resample,
        crop_fraction=embedder.crop_fraction,
    )
    show = shows_progress(embedder, len(items))
    computed = set()
    with batches_with_progress(
        items,
        decode,
        desc="embedding",
        unit="img",
        show=show,
        batch_size=embedder.batch_size,
        shape=(*size, 3),
        dtype=np.uint8,
        n_threads=embedder.n_decode_threads,
    ) as (bar, batches):
        for batch, images, results in batches:
            computed |= _embed_batch(
                embedder.on_error,
                batch,
                results,
                images,
                backbone,
                ns,
                cache,
                vectors,
                errors,
                paths,
            )
            bar.update(len(batch))
    return computed


def image_decoder(paths, size, *, max_image_pixels, resample, crop_fraction):
    """The ``decode(item, out)`` of :func:`~._prefetch.prefetched_batches`.

    ``item`` is ``(key, index)``: the expected content key and the index in
    ``paths`` of the file. Decodes that file into ``out`` (uint8, scaled to
    [0, 1] inside the backbone call) and returns ``(the key of the bytes
    decoded, None)``, or ``(None, error)`` for a bad file.
    """

    def decode(item, out):
        _, index = item
        try:
            key, arr = load_image(
                paths[index],
                size,
                max_image_pixels=max_image_pixels,
                as_uint8=True,
                resample=resample,
                crop_fraction=crop_fraction,
            )
        except IMAGE_ERRORS as exc:
            return None, exc
        out[...] = arr  # in this thread, not between backbone calls
        return key, None

    return decode


def split_batch(batch, results, paths_of):
    """Sort a decoded batch into good rows and failures.

    Returns ``(keys, rows, failures)``: the content keys and batch rows of the
    images to embed, and ``(index, error)`` for each file that failed, in
    batch order. A file whose bytes no longer have the key it was hashed to
    (edited between hashing and decoding) fails: its vector belongs to neither
    key, so it is reported, never stored.
    """
    keys, rows, failures = [], [], []
    for row, ((key, index), (got_key, error)) in enumerate(zip(batch, results)):
        if error is None and got_key != key:
            error = ImageDecodeError(
                paths_of[index],
                "the file changed while it was being embedded. Run again.",
            )
        if error is not None:
            failures.append((index, error))
            continue
        keys.append(key)
        rows.append(row)
    return keys, rows, failures


def _embed_batch(
    on_error, batch, results, images, backbone, ns, cache, vectors, errors, paths_of
):
    """Embed one decoded batch: ``images[row]`` holds the row-th image."""
    keys, rows, failures = split_batch(batch, results, paths_of)
    for index, error in failures:
        errors[index] = error
    if failures and on_error == "raise":
        raise failures[0][1]
    if len(rows) < len(images):
        images = images[rows]  # a copy without the failed rows
    if not keys:
        return set()
    got, computed = embed_missing(cache, ns, keys, images, backbone)
    vectors.update(got)
    return set(computed)
