"""A child process calling ``embed_missing`` with a backbone the test watches.

Run as ``python _compute_once_worker.py CONFIG.json``; the config holds
``cache``, ``ids`` (the rows: image ``i`` has key ``f"{i:064x}"`` and pixel
``[0, 0, 0] == i``), ``batch``, ``mode``, ``dir``, ``tag``, ``other`` and
``ttl`` (the cache's ``lease_ttl``). The child prints ``READY``, waits for a
line on stdin, embeds its ids batch by batch and prints one JSON line:
``computed`` (keys as ids), ``saw_other`` and ``ok`` (every vector right).

Every backbone call leaves one file ``calls/<id>-<tag>-<n>`` per image, so the
test counts computations per key across processes. Modes of the backbone:

``overlap``
    writes ``started-<tag>`` and waits (up to 20 s) for ``started-<other>``:
    ``saw_other`` says whether the other process was inside its backbone at
    the same time.
``hang``
    writes ``started-<tag>`` and sleeps until killed.
``slow``
    sleeps 50 ms per call.
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np

from embedclf.cache._store import CacheNamespace, EmbeddingCache
from embedclf.embedding._compute_once import embed_missing


def expected(ids):
    ids = np.asarray(ids, dtype=np.float32)
    return np.stack([ids, 2 * ids, np.ones_like(ids)], axis=1)


def main():
    cfg = json.loads(Path(sys.argv[1]).read_text())
    work, tag, mode = Path(cfg["dir"]), cfg["tag"], cfg["mode"]
    (work / "calls").mkdir(parents=True, exist_ok=True)
    counter = itertools.count()
    saw = []

    def backbone(images):
        ids = images[:, 0, 0, 0].astype(int)
        for i in ids:
            (work / "calls" / f"{i}-{tag}-{next(counter)}").touch()
        if mode in ("overlap", "hang"):
            (work / f"started-{tag}").touch()
        if mode == "overlap":
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if (work / f"started-{cfg['other']}").exists():
                    break
                time.sleep(0.01)
            saw.append((work / f"started-{cfg['other']}").exists())
        elif mode == "hang":
            time.sleep(1000)
        elif mode == "slow":
            time.sleep(0.05)
        return expected(ids)

    ns = CacheNamespace("m", "m", "default", "v1")
    cache = EmbeddingCache(cfg["cache"], lease_ttl=cfg["ttl"])
    ids = cfg["ids"]
    images = np.zeros((len(ids), 2, 2, 3), dtype=np.float32)
    images[:, 0, 0, 0] = ids
    keys = [f"{i:064x}" for i in ids]
    print("READY", flush=True)
    sys.stdin.readline()
    computed, ok = [], True
    for start in range(0, len(ids), cfg["batch"]):
        part = slice(start, start + cfg["batch"])
        got, done = embed_missing(cache, ns, keys[part], images[part], backbone)
        computed += [int(k, 16) for k in done]
        vectors = np.stack([got[k] for k in keys[part]])
        ok = ok and bool(np.array_equal(vectors, expected(ids[part])))
    print(json.dumps({"computed": computed, "saw_other": all(saw), "ok": ok}))


if __name__ == "__main__":
    main()
