"""retrain.py-style distortions of training images, embedded and cached.

retrain.py's ``--random_crop``, ``--random_scale``, ``--random_brightness``
(percentages) and ``--flip_left_right`` distort each training image before the
bottleneck, so it can never cache bottlenecks and every step pays for the
backbone. Here each training image gets ``copies`` fixed distorted *views*,
deterministic per (image content, view index, settings): they are embedded
once and stored in the same :class:`~embedclf.EmbeddingCache` as the plain
vectors, under a namespace whose preprocessing tag includes the distortion
settings, with keys ``sha256(content_key + ":" + view index)``. A second run
with the same settings computes nothing.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass

import numpy as np

from embedclf.cache._store import CacheNamespace, EmbeddingCache
from embedclf.embedding._backbones import resolve_backbone
from embedclf.embedding._compute_once import embed_missing
from embedclf.embedding._images import (
    content_key,
    decode_image,
    preprocessing_tag,
    read_image_bytes,
)
from embedclf.embedding._prefetch import batches_with_progress
from embedclf.embedding._runtime import TENSORFLOW, load_runtime
from embedclf.exceptions import ImageDecodeError

__all__ = [
    "MIRROR",
    "STANDARD_DISTORTIONS",
    "Distortions",
    "distort",
    "view_key",
    "embed_views",
    "embed_views_like",
]

logger = logging.getLogger("embedclf")


@dataclass(frozen=True)
class Distortions:
    """Distortion settings, as retrain.py's flags.

    Parameters
    ----------
    random_crop : float, default=0
        Percentage of margin around the crop box: the image is enlarged by
        ``1 + random_crop / 100`` and a random window of the output size is
        cut out.
    random_scale : float, default=0
        Percentage of extra random enlargement before cropping, drawn
        uniformly from ``[1, 1 + random_scale / 100]``.
    random_brightness : float, default=0
        Percentage: pixels are multiplied by a factor drawn uniformly from
        ``[1 - b/100, 1 + b/100]`` (then clipped to [0, 1]).
    flip_left_right : bool, default=False
        Mirror half of the views horizontally.
    mirror : bool, default=False
        Mirror every view (the test-time "flip" view: with no other
        distortion, view 0 is exactly the plain image mirrored).
    """

    random_crop: float = 0.0
    random_scale: float = 0.0
    random_brightness: float = 0.0
    flip_left_right: bool = False
    mirror: bool = False

    def __post_init__(self):
        for name in ("random_crop", "random_scale", "random_brightness"):
            value = getattr(self, name)
            if not 0 <= value <= (100 if name == "random_brightness" else 1000):
                raise ValueError(
                    f"{name} is a percentage and must be between 0 and "
                    f"{100 if name == 'random_brightness' else 1000}; got {value!r}."
                )

    @property
    def active(self) -> bool:
        return bool(
            self.random_crop
            or self.random_scale
            or self.random_brightness
            or self.flip_left_right
            or self.mirror
        )

    @property
    def tag(self) -> str:
        """Text that identifies the settings (part of the cache namespace)."""
        return (
            f"augment-v1:crop={self.random_crop:g},scale={self.random_scale:g},"
            f"brightness={self.random_brightness:g},"
            f"flip={int(self.flip_left_right)}"
            + (",mirror=1" if self.mirror else "")  # older tags unchanged
        )


#: The test-time flip view: the plain image, mirrored.
MIRROR = Distortions(mirror=True)
#: Crop, scale and brightness 10 %, flips: the distortions of benchmark item
#: 6, which ``--balance views`` and the budget search use when none is set.
STANDARD_DISTORTIONS = {
    "random_crop": 10.0,
    "random_scale": 10.0,
    "random_brightness": 10.0,
    "flip_left_right": True,
}


def view_key(image_key: str, view: int) -> str:
    """Cache key of view ``view`` of the image whose content key is ``image_key``."""
    return hashlib.sha256(f"{image_key}:{view}".encode()).hexdigest()


def _view_rng(image_key: str, view: int, settings: Distortions):
    seed = hashlib.sha256(f"{settings.tag}|{image_key}:{view}".encode()).digest()
    return np.random.default_rng(int.from_bytes(seed[:8], "little"))


def distort(
    data: bytes,
    image_size: tuple[int, int],
    settings: Distortions,
    image_key: str,
    view: int,
    *,
    path: str = "<bytes>",
    resample: str = "bilinear",
    crop_fraction: float = 1.0,
) -> np.ndarray:
    """Decode ``data`` and apply view ``view`` of the distortions.

    Deterministic: the same bytes, view index and settings always give the
    same array (the random draws are seeded from them).

    Returns
    -------
    ndarray of shape (height, width, 3), float32 in [0, 1]
    """
    rng = _view_rng(image_key, view, settings)
    h, w = int(image_size[0]), int(image_size[1])
    scale = (1.0 + settings.random_crop / 100.0) * rng.uniform(
        1.0, 1.0 + settings.random_scale / 100.0
    )
    big_h, big_w = max(h, round(h * scale)), max(w, round(w * scale))
    arr = decode_image(
        data,
        (big_h, big_w),
        path=path,
        resample=resample,
        crop_fraction=crop_fraction,
    )
    top = int(rng.integers(0, big_h - h + 1))
    left = int(rng.integers(0, big_w - w + 1))
    arr = arr[top : top + h, left : left + w]
    flip = settings.flip_left_right and rng.random() < 0.5
    if flip or settings.mirror:
        arr = arr[:, ::-1]
    b = settings.random_brightness / 100.0
    factor = rng.uniform(1.0 - b, 1.0 + b)
    if factor != 1.0:
        arr = np.clip(arr * factor, 0.0, 1.0)
    return np.ascontiguousarray(arr, dtype=np.float32)


def _namespace(
    spec, image_size, settings: Distortions, dtype: str, preprocessing: str
) -> CacheNamespace:
    size = "default" if image_size is None else f"{image_size[0]}x{image_size[1]}"
    return CacheNamespace(
        handle=spec.handle,
        identity=spec.identity,
        image_size=size,
        preprocessing=f"{preprocessing}|{settings.tag}",
        dtype=dtype,
    )


def embed_views(
    paths,
    *,
    model,
    settings: Distortions,
    copies: int,
    cache=None,
    image_size=None,
    batch_size: int = 32,
    cache_dtype: str = "float32",
    progress: bool = False,
    n_threads: int = 2,
    resample: str = "bilinear",
    crop_fraction: float = 1.0,
    runtime=None,
):
    """Embed ``copies`` distorted views of each image, through the cache.

    Parameters
    ----------
    paths : sequence of str
        Training images only, so that views never cross a split boundary.
    model : str
        Backbone handle, as for ImageEmbedder.
    settings : Distortions
    copies : int
        Views per image.
    cache : str, os.PathLike or None
        EmbeddingCache file; None computes every view.
    image_size : tuple of (height, width) or None
        None uses the backbone's default size.
    batch_size : int
    cache_dtype : {"float32", "float16"}
    progress : bool
        Show a tqdm bar (images/s, ETA) while views are computed.
    n_threads : int
        Threads that decode and distort views while the backbone runs.
    resample, crop_fraction
        Preprocessing, as ImageEmbedder's parameters of the same names.
    runtime : _runtime.Runtime or None
        The effective runtime (``ImageEmbedder._runtime``); None: TensorFlow.

    Returns
    -------
    vectors : ndarray of shape (len(paths) * copies, dim), float32
        Views of image 0 first, then of image 1, and so on.
    source : ndarray of shape (len(paths) * copies,), int
        Index into ``paths`` of the image each row is a view of.
    n_computed : int
        Views passed through the backbone (0 when all were cached).
    """
    paths = [os.fspath(p) for p in paths]
    spec = resolve_backbone(model)
    runtime = runtime or TENSORFLOW
    tag = preprocessing_tag(resample, crop_fraction) + runtime.tag
    ns = _namespace(spec, image_size, settings, cache_dtype, tag)
    store = EmbeddingCache(cache) if cache is not None else None
    image_keys = [content_key(read_image_bytes(p)) for p in paths]
    keys = [view_key(k, v) for k in image_keys for v in range(copies)]
    source = np.repeat(np.arange(len(paths)), copies)
    vectors: dict[str, np.ndarray] = {}
    if store is not None and keys:
        found_vecs, found = store.get(ns, keys)
        for j in np.flatnonzero(found):
            vectors[keys[j]] = found_vecs[j]
    todo = [j for j, k in enumerate(keys) if k not in vectors]
    todo = list({keys[j]: j for j in reversed(todo)}.values())[::-1]
    n_computed = 0
    if todo:
        requested = tuple(image_size) if image_size else None
        backbone = load_runtime(spec, requested, runtime)
        size = image_size or (backbone.default_image_size,) * 2
        decode = _view_decoder(
            paths, image_keys, copies, size, settings, resample, crop_fraction
        )
        with batches_with_progress(
            todo,
            decode,
            desc="augmenting",
            unit="view",
            show=progress,
            batch_size=batch_size,
            shape=(*size, 3),
            dtype=np.float32,
            n_threads=n_threads,
        ) as (bar, batches):
            n_computed = _embed_batches(
                batches, bar, keys, store, ns, backbone, vectors
            )
        if store is not None:
            store.compact()
    logger.info(
        "%d augmented views: %d computed, %d from cache",
        len(keys),
        n_computed,
        len(keys) - n_computed,
    )
    if not keys:
        return np.empty((0, 0), dtype=np.float32), source, 0
    return np.stack([vectors[k] for k in keys]).astype(np.float32), source, n_computed


def _view_decoder(paths, image_keys, copies, size, settings, resample, crop_fraction):
    """``decode(j, out)``: row ``j`` of :func:`embed_views` into ``out``.

    Row ``j`` is view ``j % copies`` of image ``j // copies``; a file whose
    bytes no longer match its content key raises ``ImageDecodeError``.
    """

    def decode(j, out):
        i, view = divmod(j, copies)
        data = read_image_bytes(paths[i])
        if content_key(data) != image_keys[i]:
            # Edited since it was hashed: its views belong to neither key.
            raise ImageDecodeError(
                paths[i], "the file changed while it was being embedded. Run again."
            )
        out[...] = distort(
            data,
            size,
            settings,
            image_keys[i],
            view,
            path=paths[i],
            resample=resample,
            crop_fraction=crop_fraction,
        )

    return decode


def _embed_batches(batches, bar, keys, store, ns, backbone, vectors) -> int:
    """Embed decoded batches of views into ``vectors``; the number computed."""
    n_computed = 0
    for batch, images, _ in batches:
        batch_keys = [keys[j] for j in batch]
        # once, even when another process augments the same images
        got, computed = embed_missing(store, ns, batch_keys, images, backbone)
        vectors.update(got)
        n_computed += len(computed)
        bar.update(len(batch))
    return n_computed


def embed_views_like(embedder, paths, *, settings: Distortions, copies: int):
    """:func:`embed_views` with every setting of ``embedder``, for any backbones.

    The rows line up with ``embedder.transform`` output: with several
    backbones each one's views are embedded (in its own namespace) and
    concatenated in ``model`` order, then normalised per backbone when
    ``embedder.normalize_each`` is set.

    Returns
    -------
    vectors, source, n_computed
        As :func:`embed_views`.
    """
    from embedclf.embedding._multi import backbone_handles, normalize_blocks

    size = embedder.image_size
    if isinstance(size, int):
        size = (size, size)
    show = embedder.progress is True or (
        embedder.progress == "auto" and len(paths) * copies >= 256
    )
    parts, slices, n_computed, start = [], [], 0, 0
    source = np.repeat(np.arange(len(paths)), copies)
    for handle in backbone_handles(embedder.model):
        sub = type(embedder)(**dict(embedder.get_params(deep=False), model=handle))
        vectors, source, n = embed_views(
            paths,
            model=handle,
            settings=settings,
            copies=copies,
            cache=embedder.cache,
            image_size=tuple(size) if size is not None else None,
            batch_size=embedder.batch_size,
            cache_dtype=embedder.cache_dtype,
            progress=show,
            n_threads=embedder.n_decode_threads,
            resample=embedder.resample,
            crop_fraction=embedder.crop_fraction,
            runtime=sub._runtime(resolve_backbone(handle)),
        )
        parts.append(vectors)
        slices.append(slice(start, start + vectors.shape[1]))
        start += vectors.shape[1]
        n_computed += n
    vectors = np.hstack(parts) if len(paths) and copies else parts[0]
    if embedder.normalize_each and len(vectors):
        normalize_blocks(vectors, slices)
    return vectors, source, n_computed
