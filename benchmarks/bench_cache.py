"""Item 2: loading N cached vectors, embedclf's HDF5 cache vs retrain.py's text files.

The baseline reproduces retrain.py's bottleneck cache (tensorflow/hub
``examples/image_retraining/retrain.py``): one text file per image,
``<bottleneck_dir>/<label>/<image file name>_<module name>.txt``, holding the
vector as ``','.join(str(x) for x in bottleneck_values)`` (written by
``create_bottleneck_file``), and read back by ``get_or_create_bottleneck`` as
``[float(x) for x in f.read().split(',')]``, one file at a time.

Vectors are synthetic (float32, the backbone's 1280 dimensions), keys are
SHA-256 hex strings as ImageEmbedder uses. Both stores are read with a warm OS
page cache (we cannot drop it without root); each load is repeated and the
median kept. Sizes are the files' apparent sizes and the bytes allocated on
disk (text files cost at least one 4 KiB block each).
"""

from __future__ import annotations

import hashlib
import os
import statistics

import numpy as np
from _common import Context, Timer, dir_size, file_size

_DIM = 1280
_MODULE_NAME = "https~tfhub.dev~google~imagenet~inception_v3~feature_vector~3"


def _retrain_path(root, label, image_name):
    # retrain.py get_bottleneck_path: image path + '_' + module_name + '.txt'
    return os.path.join(root, label, f"{image_name}_{_MODULE_NAME}.txt")


def _write_retrain(root, labels, names, vectors):
    for label in set(labels):
        os.makedirs(os.path.join(root, label), exist_ok=True)
    for label, name, vec in zip(labels, names, vectors):
        bottleneck_string = ",".join(str(x) for x in vec)
        with open(_retrain_path(root, label, name), "w") as f:
            f.write(bottleneck_string)


def _load_retrain(root, labels, names):
    out = []
    for label, name in zip(labels, names):
        with open(_retrain_path(root, label, name)) as f:
            bottleneck_string = f.read()
        out.append([float(x) for x in bottleneck_string.split(",")])
    return np.asarray(out, dtype=np.float32)


def run(ctx: Context) -> dict:
    from embedclf import EmbeddingCache
    from embedclf.cache._store import CacheNamespace

    n = 300 if ctx.quick else 5000
    repeats = 3
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((n, _DIM)).astype(np.float32)
    keys = [hashlib.sha256(f"image-{i}".encode()).hexdigest() for i in range(n)]
    labels = [f"class_{i % 50:02d}" for i in range(n)]
    names = [f"IMG_{i:06d}.jpg" for i in range(n)]
    work = ctx.fresh_dir("cache")

    ns = CacheNamespace("synthetic", "synthetic-1280", "default", "bench-v1")
    h5 = work / "cache.h5"
    with Timer() as t_write_h5:
        cache = EmbeddingCache(h5)
        for i in range(0, n, 64):  # one put per ImageEmbedder batch
            cache.put(ns, keys[i : i + 64], vectors[i : i + 64])
        cache.compact()
    text_root = work / "bottlenecks"
    with Timer() as t_write_txt:
        _write_retrain(text_root, labels, names, vectors)

    h5_times, txt_times = [], []
    for _ in range(repeats):
        with Timer() as t:
            got, found = EmbeddingCache(h5).get(ns, keys)  # a new reader each time
        h5_times.append(t.seconds)
        assert found.all() and np.array_equal(got, vectors)
        with Timer() as t:
            txt = _load_retrain(text_root, labels, names)
        txt_times.append(t.seconds)
    text_max_err = float(np.abs(txt - vectors).max())

    h5_apparent, h5_alloc = file_size(h5)
    leftovers = [p for p in os.listdir(work) if p.startswith("cache.h5.")]
    for extra in leftovers:  # journal or lock files, if any
        a, b = file_size(work / extra)
        h5_apparent += a
        h5_alloc += b
    txt_apparent, txt_alloc = dir_size(text_root)
    h5_t = statistics.median(h5_times)
    txt_t = statistics.median(txt_times)
    speedup = txt_t / h5_t
    return {
        "title": f"Cache load of {n} vectors: HDF5 vs retrain.py text files",
        "ratios": [
            {
                "name": f"text-file load / HDF5 load time, N={n}",
                "value": speedup,
                "target": ">= 20",
                "met": speedup >= 20,
            },
            {
                "name": "text / HDF5 bytes on disk",
                "value": txt_alloc / h5_alloc,
                "target": "report",
                "met": None,
            },
        ],
        "metrics": {
            "n_vectors": n,
            "dim": _DIM,
            "hdf5_load_s": h5_t,
            "text_load_s": txt_t,
            "hdf5_vectors_per_s": n / h5_t,
            "text_vectors_per_s": n / txt_t,
            "hdf5_write_s": t_write_h5.seconds,
            "text_write_s": t_write_txt.seconds,
            "hdf5_bytes": h5_apparent,
            "hdf5_bytes_on_disk": h5_alloc,
            "hdf5_files": 1 + len(leftovers),
            "text_bytes": txt_apparent,
            "text_bytes_on_disk": txt_alloc,
            "text_files": n,
            "text_roundtrip_max_abs_error": text_max_err,
        },
    }
