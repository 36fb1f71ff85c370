"""Where the search gets its vectors, and what each batch of them will cost.

A *source* gives, for each backbone handle, the plain vectors of every row
(``plain``) and distorted views of chosen rows (``views``: ``"train"`` for
the training distortions, ``"flip"`` for the mirrored image), and *before*
computing them says how many seconds they will cost (``plain_cost``,
``views_cost``): the rows missing from the cache divided by the backbone's
measured throughput (images/s). The throughput is measured on real work:
every call that runs the backbone updates it, and when it is still unknown
the cost query embeds one batch of the very rows asked about (kept in the
cache, so not wasted) and times it.

:class:`EmbedderSource` reads image files through ``ImageEmbedder`` and
``embedding._augment`` and the HDF5 cache; :class:`ArraySource` serves
precomputed arrays (benchmarks on cached vectors, tests) with a declared
cost per image and an optional clock it advances, so the budget logic can be
exercised without a backbone.
"""

from __future__ import annotations

import time

import numpy as np

from embedclf.embedding._augment import STANDARD_DISTORTIONS

__all__ = ["AUGMENT", "ArraySource", "EmbedderSource"]

#: The training distortions the search tries (those of benchmark item 6).
AUGMENT = STANDARD_DISTORTIONS


def _settings(kind: str):
    from embedclf.embedding._augment import MIRROR, Distortions

    return MIRROR if kind == "flip" else Distortions(**AUGMENT)


class EmbedderSource:
    """Vectors of ``paths`` through ImageEmbedder and the cache.

    Parameters
    ----------
    paths : sequence of str
        Every image of the search (training and validation rows).
    cache : str, os.PathLike or None
    clock : callable returning seconds, default=time.perf_counter
    probe_rows : int, default=32
        Images embedded to measure a backbone's throughput when no work has
        measured it yet.
    **embedder_params
        ``image_size``, ``resample``, ``crop_fraction``, ``batch_size``,
        ``progress``, ``runtime``, ``precision``: as ImageEmbedder's
        (``normalize_each`` is the search's business: each backbone is
        embedded alone).
    """

    def __init__(
        self, paths, *, cache, clock=time.perf_counter, probe_rows=32, **embedder_params
    ):
        self.paths = np.asarray(paths, dtype=str)
        self.cache = cache
        self.clock = clock
        self.probe_rows = probe_rows
        self.embedder_params = embedder_params
        self.throughput = {}  # handle -> images/s measured here
        self.failed = np.zeros(len(self.paths), dtype=bool)
        self._plain = {}
        self._views = {}  # (handle, kind, copies) -> {row: (copies, dim)}
        self._keys = None
        self._last_computed = 0
        self._warmed = set()

    def _embedder(self, handle):
        from embedclf.embedding._embedder import ImageEmbedder

        return ImageEmbedder(
            handle, cache=self.cache, on_error="nan", **self.embedder_params
        )

    def _rt(self, handle):
        """(spec, effective runtime) of ``handle`` (converted once for OpenVINO)."""
        from embedclf.embedding._backbones import resolve_backbone

        spec = resolve_backbone(handle)
        return spec, self._embedder(handle)._runtime(spec)

    def _warm(self, handle):
        """Load the backbone and run it once, so a probe times only the work.

        The runtime the embedder will use (OpenVINO converted and compiled,
        or TensorFlow), so its throughput is what gets measured.
        """
        if handle in self._warmed:
            return
        from embedclf.embedding._inputs import normalize_size
        from embedclf.embedding._runtime import load_runtime

        size = self.embedder_params.get("image_size")
        spec, rt = self._rt(handle)
        backbone = load_runtime(spec, normalize_size(size), rt)
        side = size or backbone.default_image_size
        batch = self.embedder_params.get("batch_size", 32)
        backbone(np.zeros((batch, side, side, 3), dtype=np.float32))
        self._warmed.add(handle)

    def _measure(self, handle, n_computed, seconds):
        self._last_computed = n_computed
        # a few images say little, but beat no measurement at all
        enough = n_computed >= 8 or (n_computed and handle not in self.throughput)
        if enough and seconds > 0:
            self.throughput[handle] = n_computed / seconds

    def _content_keys(self):
        if self._keys is None:
            from embedclf.embedding._batches import IMAGE_ERRORS
            from embedclf.embedding._identity_memo import hash_paths

            keys, _ = hash_paths(
                list(self.paths),
                self.cache,
                n_threads=2,
                rehash=False,
                errors=IMAGE_ERRORS,
            )
            self._keys = keys
        return self._keys

    def _missing(self, namespace, keys) -> int:
        if self.cache is None:
            return len(keys)
        from embedclf.cache._store import EmbeddingCache

        keys = [k for k in keys if k is not None]
        if not keys:
            return 0
        _, found = EmbeddingCache(self.cache).get(namespace, keys)
        return int(len(keys) - np.sum(found))

    def _cost(self, handle, missing, probe) -> float:
        if missing == 0:
            return 0.0
        if handle not in self.throughput:
            self._warm(handle)
            probe()
            missing = max(0, missing - self._last_computed)
        rate = self.throughput.get(handle)
        return float("inf") if not rate else missing / rate

    def plain_cost(self, handle) -> float:
        """Seconds to embed the rows of ``handle`` missing from the cache."""
        if handle in self._plain:
            return 0.0
        from embedclf.embedding._backbones import resolve_backbone

        emb = self._embedder(handle)
        ns = emb._namespace(resolve_backbone(handle))
        keys = self._content_keys()
        missing = self._missing(ns, list(dict.fromkeys(keys)))

        def probe():
            miss = np.flatnonzero(self._missing_mask(ns, keys))[: self.probe_rows]
            t = self.clock()
            emb.transform(self.paths[miss])
            self._measure(handle, emb.n_computed_, self.clock() - t)

        return self._cost(handle, missing, probe)

    def _missing_mask(self, namespace, keys):
        if self.cache is None:
            return np.ones(len(keys), dtype=bool)
        from embedclf.cache._store import EmbeddingCache

        ok = [k or "" for k in keys]
        _, found = EmbeddingCache(self.cache).get(namespace, ok)
        return ~np.asarray(found, dtype=bool)

    def plain(self, handle) -> np.ndarray:
        """Vectors of every row (NaN rows for unreadable files, see ``failed``)."""
        if handle not in self._plain:
            emb = self._embedder(handle)
            t = self.clock()
            X = emb.transform(self.paths)
            self._measure(handle, emb.n_computed_, self.clock() - t)
            self.failed |= np.isin(self.paths, emb.failed_paths_)
            self._plain[handle] = X
        return self._plain[handle]

    def _view_namespace(self, handle, kind):
        from embedclf.embedding._augment import _namespace
        from embedclf.embedding._images import preprocessing_tag

        p = self.embedder_params
        size = p.get("image_size")
        size = (size, size) if isinstance(size, int) else size
        spec, rt = self._rt(handle)
        tag = preprocessing_tag(
            p.get("resample", "bilinear"), p.get("crop_fraction", 0.875)
        )
        return _namespace(spec, size, _settings(kind), "float32", tag + rt.tag)

    def views_cost(self, handle, rows, kind, copies) -> float:
        """Seconds to embed ``copies`` views of ``rows`` missing from the cache."""
        from embedclf.embedding._augment import view_key

        rows = np.asarray(rows)
        memo = self._views.get((handle, kind, copies), {})
        rows = np.asarray([r for r in rows if int(r) not in memo], dtype=int)
        if not len(rows) or not copies:
            return 0.0
        keys = self._content_keys()
        keyed = np.asarray([i for i in rows if keys[i]], dtype=int)
        vkeys = [view_key(keys[i], v) for i in keyed for v in range(copies)]
        if not vkeys:
            return 0.0
        ns = self._view_namespace(handle, kind)
        missing = self._missing_mask(ns, vkeys)
        # rows with a view missing: cached ones would time nothing
        to_probe = keyed[missing.reshape(-1, copies).any(axis=1)]

        def probe():
            n = max(1, self.probe_rows // copies)
            self.views(handle, to_probe[:n], kind, copies)

        return self._cost(handle, int(missing.sum()), probe)

    def views(self, handle, rows, kind, copies):
        """(views, source): ``copies`` views of each row; source indexes ``rows``."""
        from embedclf.embedding._augment import embed_views

        rows = np.asarray(rows, dtype=int)
        memo = self._views.setdefault((handle, kind, copies), {})
        todo = [int(r) for r in dict.fromkeys(rows.tolist()) if r not in memo]
        if todo:
            p = self.embedder_params
            size = p.get("image_size")
            t = self.clock()
            V, _, n = embed_views(
                list(self.paths[todo]),
                model=handle,
                settings=_settings(kind),
                copies=copies,
                cache=self.cache,
                image_size=(size, size) if isinstance(size, int) else size,
                batch_size=p.get("batch_size", 32),
                progress=bool(p.get("progress")),
                resample=p.get("resample", "bilinear"),
                crop_fraction=p.get("crop_fraction", 0.875),
                runtime=self._rt(handle)[1],
            )
            self._measure(handle, n, self.clock() - t)
            for j, r in enumerate(todo):
                memo[r] = V[j * copies : (j + 1) * copies]
        out = np.concatenate([memo[int(r)] for r in rows]) if len(rows) else None
        return out, np.repeat(np.arange(len(rows)), copies)


class ArraySource:
    """Precomputed vectors as a source, each image costing ``seconds_per_image``.

    Parameters
    ----------
    plain : dict
        Handle -> ndarray (n_rows, dim).
    views : callable or None
        ``views(handle, rows, kind, copies) -> ndarray (len(rows) * copies,
        dim)`` (views of row 0 first). None: no views (their cost is
        infinite, so the search skips them).
    seconds_per_image : dict, optional
        Handle -> seconds one image costs the backbone (default 0).
    clock : object with ``advance(seconds)`` or None
        A fake clock advanced by the cost of each computation.
    """

    def __init__(self, plain, *, views=None, seconds_per_image=None, clock=None):
        self._arrays = dict(plain)
        self._view_fn = views
        self.seconds_per_image = dict(seconds_per_image or {})
        self.clock = clock
        self.failed = np.zeros(len(next(iter(self._arrays.values()))), dtype=bool)
        self.done = set()  # (handle, kind, copies, row) computed already
        self.calls = []  # log of computations: (handle, kind, copies, n)

    def _spend(self, handle, n):
        if self.clock is not None:
            self.clock.advance(n * self.seconds_per_image.get(handle, 0.0))

    def plain_cost(self, handle) -> float:
        if (handle, "plain") in self.done:
            return 0.0
        return len(self.failed) * self.seconds_per_image.get(handle, 0.0)

    def plain(self, handle) -> np.ndarray:
        if (handle, "plain") not in self.done:
            self.done.add((handle, "plain"))
            self._spend(handle, len(self.failed))
            self.calls.append((handle, "plain", 0, len(self.failed)))
        return self._arrays[handle]

    def _todo(self, handle, rows, kind, copies):
        return [r for r in rows if (handle, kind, copies, int(r)) not in self.done]

    def views_cost(self, handle, rows, kind, copies) -> float:
        if self._view_fn is None:
            return float("inf")
        n = len(self._todo(handle, rows, kind, copies)) * copies
        return n * self.seconds_per_image.get(handle, 0.0)

    def views(self, handle, rows, kind, copies):
        rows = np.asarray(rows)
        todo = self._todo(handle, rows, kind, copies)
        self._spend(handle, len(todo) * copies)
        self.calls.append((handle, kind, copies, len(todo) * copies))
        self.done.update((handle, kind, copies, int(r)) for r in todo)
        V = self._view_fn(handle, rows, kind, copies)
        return V, np.repeat(np.arange(len(rows)), copies)
