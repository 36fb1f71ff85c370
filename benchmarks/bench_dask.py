"""Item 18: embedding on a Dask cluster, 2 single-threaded workers vs 1.

Two ``distributed.LocalCluster``\\ s stay up for the whole item: one with one
worker process, one with two, each worker with one thread (so TensorFlow gets
one thread per worker, ``embedding/_dask_worker.py``). Before timing, each
worker loads the backbone (a warm-up transform of other images): the figure
is the throughput of embedding, not the start-up of a cluster. Each round
embeds the same 1500 grocery photos (fixed random order, EfficientNet-Lite0,
``ImageEmbedder``'s default batch size 32) into a fresh, cold cache, once on
each cluster; the order of the two alternates between rounds so that a drift
in the machine's load is shared. The ratio is 2-worker images/s over
1-worker images/s, per round; the median and the spread are reported
(5 rounds: the machine is shared, and a round that another process loads
shows as a low ratio and a low ceiling together).

The 2-core ceiling comes from the same photos without Dask: two independent
single-threaded local processes (``_dask_child.py``, TensorFlow set to one
thread) embedding half each, started together, over one such process
embedding all, measured in every round beside the Dask arms (so each
round's ratio can be read against its own ceiling). Also reported: a plain
local ``transform`` in this process with TensorFlow's default threads (both
cores), the alternative to a cluster on one machine. Every round checks
that the vectors equal the local ones bit for bit and that the workers ran
each distinct image through the backbone once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _common import Context, Timer

CHILD = Path(__file__).resolve().parent / "_dask_child.py"
TARGET = 1.7
#: 28 + 46 x 32: whole batches only, so no batch size the warm-up did not trace.
#: At 300 photos (the first runs) one 32-photo batch left to one worker at the
#: end is a tenth of its share, and the cluster reached 0.88 of the 2-core
#: ceiling; at 1500, 0.96 (the ratio then measures the cluster, not the tail).
N_IMAGES = 1500
#: Warm-up images: one batch of each size a timed run makes (4, 8, 16, 32).
WARM = 60


def _warm_workers(ctx, client, warm):
    """Load and trace the backbone on every worker, at every batch size."""
    from embedclf.embedding._backbones import resolve_backbone
    from embedclf.embedding._dask_worker import embed_shard
    from embedclf.embedding._images import content_key
    from embedclf.embedding._prefetch import batch_bounds

    emb = ctx.embedder(batch_size=32)
    keys = [content_key(Path(p).read_bytes()) for p in warm]
    client.run(
        embed_shard,
        warm,
        keys,
        resolve_backbone(ctx.model),
        None,
        bounds=batch_bounds(len(warm), 32),
        resample=emb.resample,
        crop_fraction=emb.crop_fraction,
        max_image_pixels=emb.max_image_pixels,
        n_decode_threads=emb.n_decode_threads,
    )


def _images(ctx: Context):
    train, _ = ctx.split("train")
    order = np.random.default_rng(0).permutation(len(train))
    n = 16 if ctx.quick else N_IMAGES
    return list(train[order[:n]]), list(
        train[order[n : n + (12 if ctx.quick else WARM)]]
    )


def _worker_calls(client) -> int:
    from embedclf.embedding._backbones import backbone_image_count

    return sum(client.run(backbone_image_count).values())


def _start_child(ctx, listing, warm):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), str(ctx.model), str(listing), str(warm)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    line = proc.stdout.readline()
    if not line.startswith("READY"):
        raise RuntimeError(f"bench_dask child did not start: {line!r}")
    return proc


def _run_children(procs) -> float:
    """Wall time from releasing ``procs`` together until each has finished."""
    start = time.perf_counter()
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    for proc in procs:
        json.loads(proc.stdout.readline())
    return time.perf_counter() - start


def run(ctx: Context) -> dict:
    import distributed

    paths, warm = _images(ctx)
    n = len(paths)
    rounds = 1 if ctx.quick else 5
    local_emb = ctx.embedder(batch_size=32)
    local_emb.transform(warm)  # load and trace the backbone here too
    with Timer() as t_local:
        reference = local_emb.transform(paths)
    local_rate = n / t_local.seconds

    work = ctx.fresh_dir("dask")
    lists = {}
    halves = (("a", paths[: n // 2]), ("b", paths[n // 2 :]))
    for name, part in (("all", paths), ("warm", warm), *halves):
        lists[name] = work / f"{name}.txt"
        lists[name].write_text("\n".join(part) + "\n")
    children = {
        "solo": [_start_child(ctx, lists["all"], lists["warm"])],
        "pair": [
            _start_child(ctx, lists["a"], lists["warm"]),
            _start_child(ctx, lists["b"], lists["warm"]),
        ],
    }
    clusters, clients = {}, {}
    per_round = []
    try:
        for k in (1, 2):
            clusters[k] = distributed.LocalCluster(
                n_workers=k,
                threads_per_worker=1,
                processes=True,
                dashboard_address=":0",
                silence_logs=40,
            )
            clients[k] = distributed.Client(clusters[k], set_as_default=False)
            _warm_workers(ctx, clients[k], warm)
        for r in range(rounds):
            row = {"loadavg_before": os.getloadavg()[0]}
            for k in (1, 2) if r % 2 == 0 else (2, 1):
                cache = ctx.fresh_dir(f"dask_{k}") / "cache.h5"
                emb = ctx.embedder(batch_size=32, cache=cache, scheduler=clients[k])
                before = _worker_calls(clients[k])
                with Timer() as t:
                    X = emb.transform(paths)
                row[f"workers_{k}_img_per_s"] = n / t.seconds
                row[f"workers_{k}_identical"] = bool(np.array_equal(X, reference))
                row[f"workers_{k}_backbone_images"] = _worker_calls(clients[k]) - before
            for name in ("solo", "pair") if r % 2 == 0 else ("pair", "solo"):
                row[f"{name}_img_per_s"] = n / _run_children(children[name])
            row["ratio"] = row["workers_2_img_per_s"] / row["workers_1_img_per_s"]
            row["ceiling"] = row["pair_img_per_s"] / row["solo_img_per_s"]
            row["of_ceiling"] = row["ratio"] / row["ceiling"]
            per_round.append(row)
            print(
                f"  round {r}: 2 workers / 1 = {row['ratio']:.2f}, two processes "
                f"/ one = {row['ceiling']:.2f} (load {row['loadavg_before']:.1f})",
                flush=True,
            )
    finally:
        for client in clients.values():
            client.close()
        for cluster in clusters.values():
            cluster.close()
        for proc in children["solo"] + children["pair"]:
            proc.stdin.close()
            proc.wait(timeout=60)

    ratios = [row["ratio"] for row in per_round]
    ceilings = [row["ceiling"] for row in per_round]
    two = [row["workers_2_img_per_s"] for row in per_round]
    ratio = float(np.median(ratios))
    identical = all(row[f"workers_{k}_identical"] for row in per_round for k in (1, 2))
    once = all(
        row[f"workers_{k}_backbone_images"] == n for row in per_round for k in (1, 2)
    )
    spread = f"{min(ratios):.2f}-{max(ratios):.2f}"
    return {
        "title": f"Dask LocalCluster, {n} photos: 2 workers x 1 thread vs 1 x 1",
        "ratios": [
            {
                "name": f"images/s, 2 workers / 1 worker, median of {rounds} "
                f"rounds ({spread})",
                "value": ratio,
                "target": f">= {TARGET}",
                "met": ratio >= TARGET,
            },
            {
                "name": "2-core ceiling: two single-threaded processes / one, "
                f"median ({min(ceilings):.2f}-{max(ceilings):.2f})",
                "value": float(np.median(ceilings)),
                "target": "report",
                "met": None,
            },
            {
                "name": "2 workers / 1 as a fraction of the same round's ceiling, "
                "median",
                "value": float(np.median([row["of_ceiling"] for row in per_round])),
                "target": "report",
                "met": None,
            },
            {
                "name": "images/s, 2 workers / one local process (TF default threads)",
                "value": float(np.median(two)) / local_rate,
                "target": "report",
                "met": None,
            },
            {
                "name": "vectors identical to a local run, each image embedded once",
                "value": float(identical and once),
                "target": "1",
                "met": identical and once,
            },
        ],
        "metrics": {
            "n_images": n,
            "rounds": per_round,
            "ratio_median": ratio,
            "ratio_min": min(ratios),
            "ratio_max": max(ratios),
            "ceiling_median": float(np.median(ceilings)),
            "local_default_threads_img_per_s": local_rate,
            "vectors_identical": identical,
            "each_image_once": once,
        },
    }
