"""embed_missing in real processes sharing one cache: parallel, yet once.

Each child (``_compute_once_worker.py``) embeds its own list of images with a
backbone the test can watch (a file per image it computes) or hold (it waits
for the other child, or hangs until killed). No TensorFlow: the point is the
cache's per-key leases, not the network.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from embedclf.cache._store import CacheNamespace, EmbeddingCache

WORKER = Path(__file__).resolve().parent / "_compute_once_worker.py"
NS = CacheNamespace("m", "m", "default", "v1")


def _start(work, tag, ids, *, mode="count", other=None, batch=4, ttl=600):
    cfg = {
        "cache": str(work / "c.h5"),
        "ids": list(ids),
        "batch": batch,
        "mode": mode,
        "dir": str(work),
        "tag": tag,
        "other": other,
        "ttl": ttl,
    }
    path = work / f"{tag}.json"
    path.write_text(json.dumps(cfg))
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "READY", proc.stderr.read()
    return proc


def _go(*procs):
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()


def _finish(proc, timeout=120):
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    report = json.loads(out.strip().splitlines()[-1])
    assert report["ok"]  # every vector returned is the right one
    return report


def _calls(work):
    """How many times each image id went through a backbone, any process."""
    names = os.listdir(work / "calls") if (work / "calls").exists() else []
    return collections.Counter(int(name.split("-")[0]) for name in names)


def _stored(work, ids):
    vectors, found = EmbeddingCache(work / "c.h5").get(NS, [f"{i:064x}" for i in ids])
    assert found.all()
    np.testing.assert_array_equal(vectors[:, 0], ids)


def test_processes_embedding_different_images_run_their_backbones_together(
    tmp_path,
):
    # Each backbone waits (up to 20 s) until the other process is inside its
    # own backbone too: under a global compute lock the first one waits in
    # vain, the second starts only after it, and saw_other is False.
    a = _start(tmp_path, "a", range(0, 4), mode="overlap", other="b")
    b = _start(tmp_path, "b", range(4, 8), mode="overlap", other="a")
    _go(a, b)
    ra, rb = _finish(a), _finish(b)
    assert ra["saw_other"] and rb["saw_other"]
    assert sorted(ra["computed"]) == [0, 1, 2, 3]
    assert sorted(rb["computed"]) == [4, 5, 6, 7]
    _stored(tmp_path, list(range(8)))


def test_processes_embedding_the_same_images_compute_each_once(tmp_path):
    rng = np.random.default_rng(0)
    ids = list(range(12))
    procs = [
        _start(tmp_path, f"p{n}", rng.permutation(ids).tolist(), mode="slow", batch=3)
        for n in range(3)
    ]
    _go(*procs)
    reports = [_finish(p) for p in procs]
    assert _calls(tmp_path) == collections.Counter(ids)  # each exactly once
    computed = [i for r in reports for i in r["computed"]]
    assert sorted(computed) == ids  # and each call says truly what it computed
    _stored(tmp_path, ids)
    assert os.listdir(tmp_path / "c.h5.leases") == []  # every lease released


def test_a_process_killed_holding_leases_does_not_block_the_other(tmp_path):
    victim = _start(tmp_path, "victim", range(6), mode="hang", batch=6)
    _go(victim)
    deadline = time.monotonic() + 60
    while not (tmp_path / "started-victim").exists():
        assert time.monotonic() < deadline and victim.poll() is None
        time.sleep(0.01)
    # The victim holds the leases of 0-5 and hangs in its backbone. The
    # survivor computes 6-9 and waits for 0-5 (the victim is alive)...
    survivor = _start(tmp_path, "survivor", range(10), batch=10)
    _go(survivor)
    while _calls(tmp_path)[9] == 0:
        assert time.monotonic() < deadline and survivor.poll() is None
        time.sleep(0.01)
    time.sleep(0.5)
    assert survivor.poll() is None
    # ...until the victim is killed: its leases are taken over at once (the
    # ttl is 600 s, so only the dead pid can explain a prompt finish).
    os.kill(victim.pid, signal.SIGKILL)
    victim.communicate(timeout=60)
    report = _finish(survivor, timeout=60)
    assert sorted(report["computed"]) == list(range(10))
    calls = _calls(tmp_path)
    assert [calls[i] for i in range(10)] == [2] * 6 + [1] * 4
    _stored(tmp_path, list(range(10)))
